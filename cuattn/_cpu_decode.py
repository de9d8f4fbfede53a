"""Numba CPU kernels for ``cuattn.decode``: split-KV over a GQA group's rows, exact softmax.

A work item is (batch row, KV head, key split): it reads each of its keys and values once for
all ``group x Sq`` query rows that share the KV head (so a GQA cache is not read once per query
head), and keeps per row the largest logit, the sum of exponentials and the weighted sum of
values (a partial). A second kernel merges a row's partials by log-sum-exp, split by split in a
fixed order. A row at position ``i`` sees keys ``j = 0..i`` (``scale * q . k_j + slope * (j - i)``);
invisible keys are never scored (exact masking); a row with no visible key writes zeros and lse
-inf. Splits are planned from the sizes alone (``plan``), so a paged cache and the contiguous one
give identical bits; a contiguous cache is a paged one with one page of length ``L`` per batch
row. No "nnan"/"ninf" fast-math flags: NaN inputs must flow into their own row.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from . import _checks

_FLAGS = {"reassoc", "contract"}
MIN_CHUNK = 256          # keys per item at least (tests lower it to force splits on small caches)
ITEMS_PER_THREAD = 4     # split until there are this many items per Numba thread
MAX_SCORES = 1 << 20     # an item's scores (rows x keys) at most: splits cap memory for long Sq


def plan(batch: int, num_kv_heads: int, rows: int, length: int, threads: int) -> tuple[int, int]:
    """(splits, keys per split) of the KV range for ``batch x num_kv_heads`` row groups of
    ``rows`` query rows each."""
    if length <= 0:
        return 1, 1
    groups = max(1, batch * num_kv_heads)
    splits = max(1, min(-(-ITEMS_PER_THREAD * max(1, threads) // groups), -(-length // MIN_CHUNK)))
    chunk = -(-length // splits)
    chunk = max(1, min(chunk, MAX_SCORES // max(1, rows)))
    return -(-length // chunk), chunk


@njit(parallel=True, cache=True, fastmath=_FLAGS)
def _partials(q, k, v, lens, table, page_size, slopes, scale, splits, chunk, best, total, acc):
    batch, hq, sq, d = q.shape
    hkv = k.shape[1]
    group = hq // hkv
    rows = group * sq
    zero = q.dtype.type(0)
    for item in prange(batch * hkv * splits):
        s = item % splits
        hk = (item // splits) % hkv
        b = item // (splits * hkv)
        length = lens[b]
        k0 = s * chunk
        k1 = min(length, k0 + chunk)
        # the group's rows r = (h - hk * group) * sq + t, at positions length - sq + t
        qloc = np.empty((rows, d), q.dtype)
        pos = np.empty(rows, np.int64)
        slope = np.empty(rows, q.dtype)
        top = -1
        for r in range(rows):
            h = hk * group + r // sq
            t = r % sq
            for c in range(d):
                qloc[r, c] = q[b, h, t, c]
            pos[r] = length - sq + t
            slope[r] = slopes[h]
            top = max(top, pos[r])
        best_r = np.full(rows, -np.inf, q.dtype)
        total_r = np.zeros(rows, q.dtype)
        acc_r = np.zeros((rows, d), q.dtype)
        kend = min(k1, top + 1)  # keys some row sees
        if kend > k0:
            scores = np.empty((rows, kend - k0), q.dtype)
            for j in range(k0, kend):
                krow = k[table[b, j // page_size], hk, j % page_size]
                for r in range(rows):
                    if j <= pos[r]:
                        dot = zero
                        for c in range(d):
                            dot += qloc[r, c] * krow[c]
                        x = dot * scale + slope[r] * (j - pos[r])
                        scores[r, j - k0] = x
                        if x > best_r[r]:
                            best_r[r] = x
            shift = np.empty(rows, q.dtype)
            for r in range(rows):
                shift[r] = best_r[r] if best_r[r] != -np.inf else zero
            for j in range(k0, kend):
                vrow = v[table[b, j // page_size], hk, j % page_size]
                for r in range(rows):
                    if j <= pos[r]:
                        p = np.exp(scores[r, j - k0] - shift[r])
                        total_r[r] += p
                        for c in range(d):
                            acc_r[r, c] += p * vrow[c]
        for r in range(rows):
            best[item, r] = best_r[r]
            total[item, r] = total_r[r]
            for c in range(d):
                acc[item, r, c] = acc_r[r, c]


@njit(parallel=True, cache=True, fastmath=_FLAGS)
def _merge(best, total, acc, lens, hkv, splits, chunk, o, lse):
    batch, hq, sq, d = o.shape
    group = hq // hkv
    zero = o.dtype.type(0)
    for row in prange(batch * hq * sq):
        t = row % sq
        h = (row // sq) % hq
        b = row // (sq * hq)
        r = (h % group) * sq + t
        count = min(lens[b] - sq + t + 1, lens[b])  # keys 0..count-1 visible
        if count <= 0:
            for c in range(d):
                o[b, h, t, c] = zero
            lse[b, h, t] = -np.inf
            continue
        base = (b * hkv + h // group) * splits
        used = min(splits, (count + chunk - 1) // chunk)  # the splits holding visible keys
        top = -np.inf
        for s in range(used):
            if best[base + s, r] > top:
                top = best[base + s, r]
        tot = zero
        a = np.zeros(d, o.dtype)
        for s in range(used):
            x = best[base + s, r]
            if x == -np.inf:  # every score -inf (weight 0) or NaN (total NaN: the row is NaN)
                if total[base + s, r] != zero:
                    tot += total[base + s, r]
                continue
            w = np.exp(x - top)  # 1 for the split holding the largest logit
            tot += total[base + s, r] * w
            for c in range(d):
                a[c] += acc[base + s, r, c] * w
        if tot > 0:
            lse[b, h, t] = top + np.log(tot)
            for c in range(d):
                o[b, h, t, c] = a[c] / tot
        else:  # NaN (a sum of 0 needs every score -inf: then 0, as one split gives)
            lse[b, h, t] = tot
            for c in range(d):
                o[b, h, t, c] = tot


def decode_cpu(q, k_cache, v_cache, cache_seqlens, slopes, scale, block_table, sizes):
    """Run the Numba kernels on NumPy arrays; returns (o in the input dtype, lse float32)."""
    in_dtype = q.dtype
    work = np.float64 if in_dtype == _checks.FLOAT64 else np.float32
    batch, hq, sq, d = q.shape
    q, k, v = (np.ascontiguousarray(x, dtype=work) for x in (q, k_cache, v_cache))
    hkv = k.shape[1]
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
        rows = hq // hkv * sq
        splits, chunk = plan(batch, hkv, rows, sizes["cache_len"], numba.get_num_threads())
        items = batch * hkv * splits
        best = np.empty((items, rows), dtype=work)
        total = np.empty((items, rows), dtype=work)
        acc = np.empty((items, rows, d), dtype=work)
        _partials(q, k, v, lens, table, np.int64(page_size), slope, work(scale), np.int64(splits), np.int64(chunk),
                  best, total, acc)
        _merge(best, total, acc, lens, np.int64(hkv), np.int64(splits), np.int64(chunk), o, lse)
    return o.astype(in_dtype, copy=False), lse.astype(np.float32)
