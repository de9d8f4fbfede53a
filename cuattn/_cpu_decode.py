"""Numba CPU kernels for ``cuattn.decode``: split-KV over a GQA group's rows, exact softmax.

A work item is (batch row, KV head, key split): it reads each of its keys and values once for all
``group x Sq`` query rows that share the KV head (so a GQA cache is not read once per query head).
A parallel task runs one item, or, for caches whose heads' rows of a key lie side by side
(FlashAttention's (B, L, Hkv, D), vLLM's pages), the items of several KV heads of one split block
by block (heads_per_task), so a block's rows are read while their neighbours are in cache; each
item's arithmetic is the same either way (the same bits). Keys every row sees go in blocks of
BLOCK: gathered into contiguous buffers (pages too), scored for all rows by one BLAS product,
folded into each row's running max, sum of exponentials and weighted values (online softmax in log2
units, with the attention kernel's vectorized exp2), values and the sums of the weights given by a
second product. The few newest keys that only later tokens see (Sq > 1) are scored one by one, for
the rows that see them: invisible keys are never scored nor weighted (exact masking; a NaN there
stays out of the rows that do not see it). A second kernel merges a row's partials by log-sum-exp,
split by split in a fixed order; a row with no visible key writes zeros and lse -inf. Splits and
blocks depend on the sizes alone, so a paged cache and the contiguous one give identical bits; a
contiguous cache is a paged one with one page of length ``L`` per batch row. No "nnan"/"ninf"
fast-math flags: NaN inputs must flow into their own row.

The caches are read where they lie, strided views and pages too: float16/bfloat16 keys and values
are widened to float32 as each block is gathered (cuattn/_bits16.py: exact, from the bits), not by a
float32 copy of the whole cache first (which took ~90% of a float16 call's time, bfloat16's more,
and twice the cache's memory).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from . import _checks, _numba_cache
from ._cpu_attention import LANES, LN2, LOG2E, _exp2, _row_max, _single_threaded_blas
from ._bits16 import patterns, widen_row

_FLAGS = {"reassoc", "contract"}
MIN_CHUNK = 256          # keys per item at least (tests lower it to force splits on small caches)
ITEMS_PER_THREAD = 4     # split until there are this many items per Numba thread
BLOCK = 128              # keys per block of dot products (two BLAS products a block)


def plan(batch: int, num_kv_heads: int, length: int, threads: int) -> tuple[int, int]:
    """(splits, keys per split) of the KV range for ``batch x num_kv_heads`` row groups."""
    if length <= 0:
        return 1, 1
    groups = max(1, batch * num_kv_heads)
    splits = max(1, min(-(-ITEMS_PER_THREAD * max(1, threads) // groups), -(-length // MIN_CHUNK)))
    chunk = -(-length // splits)
    return -(-length // chunk), chunk


@njit(cache=True)
def _unravel(i, inner, middle):
    """(i % inner, (i // inner) % middle, i // (inner * middle)): the indices of flat index i over
    (outer, middle, inner), inner fastest."""
    return i % inner, (i // inner) % middle, i // (inner * middle)


def _rows_apart(x):
    """(array, swap) for the kernels: a cache whose axes 1 and 2 swapped are C-contiguous
    (FlashAttention's (B, L, Hkv, D) or vLLM's (pages, page_size, Hkv, D) passed as their
    transpose) as that C-contiguous array with swap True, so that Numba types it contiguous (its
    rows' copies vectorize: a strided view of it ran 2-4x slower); any other as it is, swap None."""
    if x.ndim == 4 and not x.flags.c_contiguous and x.shape[1] > 1 and x.shape[2] > 1:
        t = x.transpose(0, 2, 1, 3)
        if t.flags.c_contiguous:
            return t, True
    return x, None


def _row(x, swap, page, head, row):
    """Row [page, head, row] of the cache, as it lies (16-bit caches as their bits: see _bits16;
    swap: see _rows_apart). Numba code only."""
    raise NotImplementedError("compiled by Numba (overload below)")


@overload(_row)
def _row_typed(x, swap, page, head, row):  # typed per call: no branch at run time
    if isinstance(swap, types.NoneType):
        return lambda x, swap, page, head, row: x[page, head, row]
    return lambda x, swap, page, head, row: x[page, row, head]


@njit(cache=True, fastmath=_FLAGS)
def _add_bias(x, n, slope, dist0, iota):
    """x[i] += slope * (dist0 + i) for i < n (key distances dist0 + i: exact float sums, so the
    loop vectorizes; an int64 -> float conversion per score did not)."""
    for i in range(n):
        x[i] = x[i] + slope * (dist0 + iota[i])


@njit(cache=True, fastmath=_FLAGS)
def _exp2_row(x, n, shift):
    """x[i] = 2 ** (x[i] - shift) for i < n (elementwise: vectorizes; their sum comes from the
    P V product's column of ones, see _partials)."""
    for i in range(n):
        x[i] = _exp2(x[i] - shift)


@njit(cache=True, fastmath=_FLAGS)
def _take(m, l, a, r, x_max):
    """Raise row r's running max to x_max (log2 units): rescale its sum and values; returns the
    new shift."""
    m_new = x_max if x_max > m[r] else m[r]
    if m_new != m[r]:
        if m[r] != -np.inf:  # (else nothing is summed yet, or only NaN: kept as it is)
            f = _exp2(m[r] - m_new)
            l[r] *= f
            for c in range(a.shape[1]):
                a[r, c] *= f
        m[r] = m_new
    return m[r] if m[r] != -np.inf else l.dtype.type(0)


@njit(parallel=True, cache=True, fastmath=_FLAGS)
def _partials(q, k, v, hkv, kswap, vswap, lens, table, page_size, slopes, scale, splits, chunk, heads, best, total,
              acc):
    """Per item and row: the largest logit (log2 units: scale and slopes times log2 e), the sum of
    2 ** (logit - it) and the values weighted by those (see the module docstring). ``k``, ``v``
    float16/bfloat16 come as their bits (see _bits16); ``kswap``/``vswap`` True where that cache
    comes with axes 1 and 2 swapped (see _rows_apart). A parallel task takes ``heads`` KV heads of
    one split, block by block (each head's partial computed as alone: the same bits for any
    ``heads``): where the heads' rows of a key lie side by side (a swapped cache), a block's rows
    are then read while the neighbouring heads' bytes are in cache."""
    batch, hq, sq, d = q.shape
    group = hq // hkv
    rows = group * sq
    lowest = q.dtype.type(-np.inf)
    log2e = q.dtype.type(LOG2E)
    head_groups = hkv // heads
    for task in prange(batch * head_groups * splits):
        s, hg, b = _unravel(task, splits, head_groups)
        hk0 = hg * heads
        length = lens[b]
        k0 = s * chunk
        k1 = min(length, k0 + chunk)
        # the group's rows r = (h - hk * group) * sq + t, at positions length - sq + t
        qloc = np.empty((heads, rows, d), q.dtype)
        pos = np.empty(rows, np.int64)
        slope = np.empty((heads, rows), q.dtype)
        top, bottom = -1, length
        for r in range(rows):
            t = r % sq
            pos[r] = length - sq + t
            top = max(top, pos[r])
            bottom = min(bottom, pos[r])
            for g in range(heads):
                h = (hk0 + g) * group + r // sq
                for c in range(d):
                    qloc[g, r, c] = q[b, h, t, c] * scale  # scale: scale x log2 e (log2 units)
                slope[g, r] = slopes[h] * log2e
        m = np.full((heads, rows), -np.inf, q.dtype)  # running max, sum of exponentials, weighted values
        l = np.zeros((heads, rows), q.dtype)
        a = np.zeros((heads, rows, d), q.dtype)
        kend = min(k1, top + 1)          # keys some row sees
        kall = max(k0, min(kend, bottom + 1))  # keys k0 .. kall - 1 every row sees: blocks of BLOCK
        kbuf = np.empty((BLOCK, d), q.dtype)
        vbuf = np.empty((BLOCK, d + 1), q.dtype)  # values, then a column of ones (the sums)
        vbuf[:, d] = 1
        iota = np.arange(BLOCK).astype(q.dtype)
        lanes = np.empty(LANES, q.dtype)
        for j0 in range(k0, kall, BLOCK):
            n = min(BLOCK, kall - j0)
            for g in range(heads):
                hk = hk0 + g
                mg, lg, ag = m[g], l[g], a[g]
                for i in range(n):
                    page = table[b, (j0 + i) // page_size]
                    off = (j0 + i) % page_size
                    widen_row(_row(k, kswap, page, hk, off), kbuf[i])
                    widen_row(_row(v, vswap, page, hk, off), vbuf[i, :d])
                x = np.dot(qloc[g], kbuf[:n].T)  # (rows, n) dot products
                for r in range(rows):  # (row by row through 1-d helpers: their loops vectorize)
                    _add_bias(x[r], n, slope[g, r], x.dtype.type(j0 - pos[r]), iota)
                    _exp2_row(x[r], n, _take(mg, lg, ag, r, _row_max(x[r], n, lowest, lanes)))
                # the weighted values and, in column d, each row's sum of weights: BLAS adds them up
                # in one fixed order for every layout (a "reassoc" loop summing them may be
                # vectorized in an order that depends on the code around it: each layout and dtype
                # compiles its own _partials, and their bits must agree)
                pv = np.dot(x, vbuf[:n])
                ag += pv[:, :d]
                for r in range(rows):
                    lg[r] += pv[r, d]
        for j in range(kall, kend):  # the newest keys, seen by the later tokens only (Sq > 1)
            page = table[b, j // page_size]
            off = j % page_size
            for g in range(heads):
                hk = hk0 + g
                mg, lg, ag = m[g], l[g], a[g]
                widen_row(_row(k, kswap, page, hk, off), kbuf[0])  # gathered first: the same sums
                widen_row(_row(v, vswap, page, hk, off), vbuf[0, :d])  # for every layout and dtype
                dots = np.dot(qloc[g], kbuf[0])  # (BLAS: one fixed order, as the blocks' products)
                for r in range(rows):
                    if j <= pos[r]:
                        xj = dots[r] + slope[g, r] * (j - pos[r])
                        shift = _take(mg, lg, ag, r, xj)
                        p = _exp2(xj - shift)
                        lg[r] += p
                        for c in range(d):
                            ag[r, c] += p * vbuf[0, c]
        for g in range(heads):
            item = s + splits * (hk0 + g + hkv * b)  # (split, kv head, batch row), split fastest
            for r in range(rows):
                best[item, r] = m[g, r]
                total[item, r] = l[g, r]
                for c in range(d):
                    acc[item, r, c] = a[g, r, c]


def heads_per_task(batch: int, hkv: int, splits: int, threads: int, swapped: bool) -> int:
    """KV heads per parallel task of _partials: 1 for caches whose heads lie apart (each head's rows
    back to back); for swapped ones (a key's rows of all heads side by side) the most heads (a
    divisor of hkv) that still leave a task per Numba thread."""
    if not swapped:
        return 1
    best = 1
    for heads in range(1, hkv + 1):
        if hkv % heads == 0 and batch * (hkv // heads) * splits >= threads:
            best = heads
    return best


@njit(parallel=True, cache=True, fastmath=_FLAGS)
def _merge(best, total, acc, lens, hkv, splits, chunk, o, lse):
    batch, hq, sq, d = o.shape
    group = hq // hkv
    zero = o.dtype.type(0)
    ln2 = o.dtype.type(LN2)
    for row in prange(batch * hq * sq):
        t, h, b = _unravel(row, sq, hq)
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
            w = _exp2(x - top)  # 1 for the split holding the largest logit
            tot += total[base + s, r] * w
            for c in range(d):
                a[c] += acc[base + s, r, c] * w
        if tot > 0:
            lse[b, h, t] = (top + np.log2(tot)) * ln2
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
    q = np.ascontiguousarray(q, dtype=work)
    hkv = k_cache.shape[1]
    (k, kswap), (v, vswap) = _rows_apart(k_cache), _rows_apart(v_cache)
    k, v = patterns(k), patterns(v)  # read in place, widened as they are read
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
        threads = numba.get_num_threads()
        splits, chunk = plan(batch, hkv, sizes["cache_len"], threads)
        heads = heads_per_task(batch, hkv, splits, threads, bool(kswap or vswap))
        items = batch * hkv * splits
        best = np.empty((items, rows), dtype=work)
        total = np.empty((items, rows), dtype=work)
        acc = np.empty((items, rows, d), dtype=work)
        with _single_threaded_blas():  # the Numba threads each run their own small products
            _partials(q, k, v, np.int64(hkv), kswap, vswap, lens, table, np.int64(page_size), slope,
                      work(scale * LOG2E), np.int64(splits), np.int64(chunk), np.int64(heads), best, total, acc)
        _merge(best, total, acc, lens, np.int64(hkv), np.int64(splits), np.int64(chunk), o, lse)
    return o.astype(in_dtype, copy=False), lse.astype(np.float32)


_numba_cache.guard(globals())  # after every kernel: Numba does not see edits of the files they call into
