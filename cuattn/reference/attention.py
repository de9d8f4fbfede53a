"""Float64 reference for softmax attention: the formula of DESIGN.md, materialized."""

from __future__ import annotations

import numpy as np
from scipy import special

from .._backend import to_numpy
from .._checks import attention_shapes, check_bool, check_scale


def attention(q, k, v, *, causal=False, scale=None, return_lse=False, backend=None):
    """Exact softmax attention in float64 (materializes the score matrix).

    Same signature and semantics as :func:`cuattn.attention`; ``backend`` is accepted and
    ignored. Returns NumPy float64 ``o`` (and float64 ``lse`` if ``return_lse``).
    """
    q, k, v = (np.asarray(to_numpy(x), dtype=np.float64) for x in (q, k, v))
    sizes = attention_shapes(q, k, v)
    causal = check_bool(causal, "causal")
    scale = check_scale(scale, sizes["head_dim"])
    group = sizes["num_q_heads"] // sizes["num_kv_heads"]
    k = np.repeat(k, group, axis=-3)
    v = np.repeat(v, group, axis=-3)
    s = scale * (q @ np.swapaxes(k, -1, -2))
    sq, sk = sizes["seqlen_q"], sizes["seqlen_k"]
    if causal:  # bottom-right aligned: query i sees keys j <= i + sk - sq
        i = np.arange(sq)[:, None]
        j = np.arange(sk)[None, :]
        s = np.where(j <= i + (sk - sq), s, -np.inf)
    with np.errstate(invalid="ignore", divide="ignore"):
        lse = special.logsumexp(s, axis=-1) if sk > 0 else np.full(s.shape[:-1], -np.inf)
        seen = lse != -np.inf  # a row that sees no key outputs zeros
        p = np.where(seen[..., None], np.exp(s - np.where(seen, lse, 0.0)[..., None]), 0.0)
    o = p @ v
    return (o, lse) if return_lse else o
