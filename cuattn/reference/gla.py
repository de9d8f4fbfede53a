"""Float64 reference for gated linear attention: the recurrence of DESIGN.md, one token at a time."""

from __future__ import annotations

import numpy as np

from .._backend import to_numpy


def gla(q, k, v, gk, *, scale=None, initial_state=None, output_final_state=False, cu_seqlens=None,
        mode="chunk", backend=None):
    """Gated linear attention in float64, step by step:
    ``S_t = diag(exp(gk_t)) S_{t-1} + k_t^T v_t``, ``o_t = scale * q_t S_t``.

    Same signature and semantics as :func:`cuattn.gla` (``mode`` and ``backend`` are accepted
    and ignored). Returns NumPy float64 ``(o, final_state)``; ``final_state`` is None unless
    ``output_final_state``.
    """
    from ..gla import check_gla_args

    q, k, v, gk, h0 = (None if x is None else np.asarray(to_numpy(x), dtype=np.float64)
                       for x in (q, k, v, gk, initial_state))
    cu = None if cu_seqlens is None else np.asarray(to_numpy(cu_seqlens))
    sizes = check_gla_args(q, k, v, gk, h0, cu, scale, output_final_state, mode)
    cu = sizes["cu_seqlens"]
    q, k, v, gk = (np.broadcast_to(x, sizes["batch"] + x.shape[-3:]) for x in (q, k, v, gk))
    scale = sizes["scale"]
    bounds = [(int(a), int(b)) for a, b in zip(cu[:-1], cu[1:])] if cu is not None else [(0, sizes["seqlen"])]
    o = np.zeros(q.shape[:-1] + (v.shape[-1],))
    finals = []
    for n, (bos, eos) in enumerate(bounds):
        state_shape = sizes["batch"] + (sizes["num_heads"], sizes["head_dim_k"], sizes["head_dim_v"])
        if h0 is None:
            s = np.zeros(state_shape)
        else:
            s = np.broadcast_to(h0[n] if cu is not None else h0, state_shape).copy()
        for t in range(bos, eos):
            s = np.exp(gk[..., t, :])[..., :, None] * s + k[..., t, :, None] * v[..., t, None, :]
            o[..., t, :] = scale * np.einsum("...k,...kv->...v", q[..., t, :], s)
        finals.append(s)
    if not output_final_state:
        return o, None
    final = np.concatenate(finals, axis=0) if cu is not None else finals[0]
    return o, final
