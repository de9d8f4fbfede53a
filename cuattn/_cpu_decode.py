"""Numba CPU kernel for ``cuattn.decode``: one query row at a time, exact softmax over its keys.

Work items are the ``B x Hq x Sq`` query rows, spread over Numba threads by ``prange``. A row
at position ``i`` scores its visible keys ``j = 0..i`` (``scale * q . k_j + slope * (j - i)``)
into a per-worker buffer of length ``L``, then takes the max, the exponentials, their sum and
the weighted sum of values. Invisible keys are simply never scored (exact masking); a row with
no visible key writes zeros and lse -inf. Contiguous and paged caches share one path: a
contiguous cache is a paged one with one page of length ``L`` per batch row.
No "nnan"/"ninf" fast-math flags: NaN inputs must flow into their own row.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import _checks

_FLAGS = {"reassoc", "contract"}


@njit(parallel=True, cache=True, fastmath=_FLAGS)
def _decode_kernel(q, k, v, lens, table, page_size, slopes, scale, o, lse):
    batch, hq, sq, d = q.shape
    hkv = k.shape[1]
    group = hq // hkv
    length = table.shape[1] * page_size
    zero = q.dtype.type(0)
    for item in prange(batch * hq * sq):
        t = item % sq
        h = (item // sq) % hq
        b = item // (sq * hq)
        hk = h // group
        pos = lens[b] - sq + t
        count = min(pos + 1, lens[b])
        if count <= 0:
            for c in range(d):
                o[b, h, t, c] = zero
            lse[b, h, t] = -np.inf
            continue
        scores = np.empty(max(length, 1), q.dtype)
        best = -np.inf
        for j in range(count):
            page = table[b, j // page_size]
            off = j % page_size
            s = zero
            for c in range(d):
                s += q[b, h, t, c] * k[page, hk, off, c]
            s = s * scale + slopes[h] * (j - pos)
            scores[j] = s
            best = s if s > best else best
        shift = best if best != -np.inf else zero
        total = zero
        acc = np.zeros(d, q.dtype)
        for j in range(count):
            p = np.exp(scores[j] - shift)
            total += p
            page = table[b, j // page_size]
            off = j % page_size
            for c in range(d):
                acc[c] += p * v[page, hk, off, c]
        if total > 0:
            lse[b, h, t] = shift + np.log(total)
            for c in range(d):
                o[b, h, t, c] = acc[c] / total
        else:  # NaN (total 0 cannot happen: the largest logit contributes exp(0) = 1)
            lse[b, h, t] = total
            for c in range(d):
                o[b, h, t, c] = total


def decode_cpu(q, k_cache, v_cache, cache_seqlens, slopes, scale, block_table, sizes):
    """Run the Numba kernel on NumPy arrays; returns (o in the input dtype, lse float32)."""
    in_dtype = q.dtype
    work = np.float64 if in_dtype == _checks.FLOAT64 else np.float32
    batch, hq, sq, d = q.shape
    q, k, v = (np.ascontiguousarray(x, dtype=work) for x in (q, k_cache, v_cache))
    if block_table is None:
        table = np.arange(batch, dtype=np.int32)[:, None]
        page_size = max(1, sizes["cache_len"])
    else:
        table = np.ascontiguousarray(block_table, dtype=np.int32)
        page_size = sizes["page_size"]
    lens = (np.full(batch, sizes["cache_len"], dtype=np.int64) if cache_seqlens is None
            else cache_seqlens.astype(np.int64))
    slope = np.zeros(hq, work) if slopes is None else np.asarray(slopes, dtype=work)
    o = np.empty((batch, hq, sq, d), dtype=work)
    lse = np.empty((batch, hq, sq), dtype=work)
    if lse.size:
        _decode_kernel(q, k, v, lens, table, np.int64(page_size), slope, work(scale), o, lse)
    return o.astype(in_dtype, copy=False), lse.astype(np.float32)
