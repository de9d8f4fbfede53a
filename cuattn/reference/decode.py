"""Float64 reference for ALiBi decode: the formula of DESIGN.md, materialized per batch row."""

from __future__ import annotations

import numpy as np
from scipy import special

from .._backend import to_numpy
from .._checks import check_bool, check_scale


def decode(q, k_cache, v_cache, *, cache_seqlens=None, alibi_slopes=None, scale=None, block_table=None,
           return_lse=False, backend=None):
    """Decode attention with ALiBi bias in float64 (materializes every row's logits).

    Same signature and semantics as :func:`cuattn.decode`; ``backend`` is accepted and ignored.
    Returns NumPy float64 ``o`` (and float64 ``lse`` if ``return_lse``).
    """
    from ..decode import check_seqlens, decode_shapes, resolve_slopes, validate_values

    q, k_cache, v_cache = (np.asarray(to_numpy(x), dtype=np.float64) for x in (q, k_cache, v_cache))
    cache_seqlens, block_table = to_numpy(cache_seqlens), to_numpy(block_table)
    if alibi_slopes is not None and not isinstance(alibi_slopes, str):
        alibi_slopes = to_numpy(alibi_slopes)
    return_lse = check_bool(return_lse, "return_lse")
    sizes = decode_shapes(q, k_cache, v_cache, block_table)
    check_seqlens(cache_seqlens, sizes)
    validate_values(np, cache_seqlens, block_table, sizes)
    scale = check_scale(scale, sizes["head_dim"])
    slopes = resolve_slopes(alibi_slopes, sizes["num_q_heads"])
    batch, hq, sq, d = q.shape
    hkv, length = sizes["num_kv_heads"], sizes["cache_len"]
    lens = np.full(batch, length) if cache_seqlens is None else cache_seqlens.astype(np.int64)
    slopes = np.zeros(hq) if slopes is None else np.asarray(slopes, dtype=np.float64)
    o = np.zeros((batch, hq, sq, d))
    lse = np.full((batch, hq, sq), -np.inf)
    for b in range(batch):
        n = int(lens[b])
        if block_table is None:
            k, v = k_cache[b, :, :n], v_cache[b, :, :n]
        else:  # gather the pages into (Hkv, n, D)
            j = np.arange(n)
            pages = block_table[b, j // sizes["page_size"]]
            k = k_cache[pages, :, j % sizes["page_size"]].transpose(1, 0, 2)
            v = v_cache[pages, :, j % sizes["page_size"]].transpose(1, 0, 2)
        if n == 0:
            continue
        group = hq // hkv  # query head h reads kv head h // group: group the rows per kv head
        qg = q[b].reshape(hkv, group * sq, d)
        i = n - sq + np.tile(np.arange(sq), group)[:, None]  # query positions, rows (g, t)
        j = np.arange(n)[None, :]                            # key positions
        slope = np.repeat(slopes, sq).reshape(hkv, group * sq, 1)
        s = scale * (qg @ k.swapaxes(-1, -2)) + slope * (j - i)  # bias <= 0 where j <= i
        s = np.where(j <= i, s, -np.inf)
        with np.errstate(invalid="ignore", divide="ignore"):
            row_lse = special.logsumexp(s, axis=-1)
            seen = row_lse != -np.inf                        # a row that sees no key outputs zeros
            p = np.where(seen[..., None], np.exp(s - np.where(seen, row_lse, 0.0)[..., None]), 0.0)
        o[b] = (p @ v).reshape(hq, sq, d)
        lse[b] = row_lse.reshape(hq, sq)
    return (o, lse) if return_lse else o
