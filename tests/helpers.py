"""Error measures used by the tests (norm-wise, as DESIGN.md asks)."""

import numpy as np

import cuattn
from cuattn._backend import to_numpy


def rel_error(x, ref):
    """||x - ref|| / ||ref|| in float64 (Frobenius); NaN anywhere in x gives inf."""
    x = np.asarray(to_numpy(x), dtype=np.float64)
    ref = np.asarray(to_numpy(ref), dtype=np.float64)
    assert x.shape == ref.shape, (x.shape, ref.shape)
    if x.size == 0:
        return 0.0
    if not np.all(np.isfinite(x)):
        return np.inf
    denom = np.linalg.norm(ref)
    return float(np.linalg.norm(x - ref) / (denom if denom > 0 else 1.0))


def lse_error(lse, ref):
    """Max |lse - ref| over finite entries; inf if the -inf pattern differs."""
    lse = np.asarray(to_numpy(lse), dtype=np.float64)
    ref = np.asarray(to_numpy(ref), dtype=np.float64)
    assert lse.shape == ref.shape
    if not np.array_equal(np.isneginf(lse), np.isneginf(ref)):
        return np.inf
    finite = np.isfinite(ref)
    if not finite.any():
        return 0.0
    return float(np.max(np.abs(lse[finite] - ref[finite])))


def gla_gates(rng, shape, kind, dtype):
    """Log-space GLA gates: logsigmoid of normals, optionally with ~15% of the entries masked to
    -20, to -0.1 * finfo(float32).max or to -inf (whole tokens and single channels)."""
    x = rng.standard_normal(shape)
    g = -np.logaddexp(0.0, -x)  # logsigmoid
    if kind != "logsigmoid":
        value = {"masked_-20": -20.0, "masked_-0.1max": -0.1 * float(np.finfo(np.float32).max),
                 "masked_-inf": -np.inf}[kind]
        g = np.where(rng.random(shape) < 0.1, value, g)
        tokens = rng.random(shape[:-1]) < 0.05
        g[tokens] = value
    with np.errstate(over="ignore"):  # -3.4e37 is -inf in float16: still a reset
        return g.astype(np.float32).astype(dtype)


def gla_inputs(rng, lead, kdim, vdim, gates, dtype):
    """q, k (lead + (K,)), v (lead + (V,)), gk: random normal inputs in ``dtype``."""
    q = rng.standard_normal(lead + (kdim,)).astype(np.float32).astype(dtype)
    k = rng.standard_normal(lead + (kdim,)).astype(np.float32).astype(dtype)
    v = rng.standard_normal(lead + (vdim,)).astype(np.float32).astype(dtype)
    return q, k, v, gla_gates(rng, lead + (kdim,), gates, dtype)


def draw(rng, shape, dtype):
    """Standard normal values of `shape`, drawn in float32 and rounded to `dtype` (float32 draws:
    a third of the time of float64 ones, which dominated the long-context GPU tests' host time)."""
    return rng.standard_normal(shape, dtype=np.float32).astype(dtype, copy=False)


def to_paged(rng, k, v, page_size):
    """The cache (B, Hkv, L, D), L a multiple of page_size (so a call without cache_seqlens sees
    the same keys), as pages of page_size keys in shuffled order (num_pages, Hkv, page_size, D),
    plus its block table (B, L // page_size) int32: cuattn.paged_cache."""
    assert k.shape[2] % page_size == 0, "whole pages"
    return cuattn.paged_cache(k, v, page_size, seed=rng)


def ragged_inputs(rng, b, hq, hkv, length, d, page, zero_row=False):
    """fp16 q, k, v of one query token with ragged lengths (row 0 full; row 1 empty with zero_row),
    default slopes, paged with pages of `page` keys where page > 0 (length a whole number of
    pages): (q, k, v, decode keywords)."""
    q, k, v = (draw(rng, s, np.float16) for s in ((b, hq, 1, d), (b, hkv, length, d), (b, hkv, length, d)))
    lens = rng.integers(0, length + 1, size=b).astype(np.int32)
    lens[0] = length
    if zero_row:
        lens[1] = 0
    kw = dict(cache_seqlens=lens, alibi_slopes="default")
    if page:
        k, v, kw["block_table"] = to_paged(rng, k, v, page)
    return q, k, v, kw


def on_device(cp, kw):
    """The keyword arguments `kw` with their NumPy arrays copied to the GPU (CuPy), the rest as they are."""
    return {n: (cp.asarray(x) if isinstance(x, np.ndarray) else x) for n, x in kw.items()}


def queued_sets(cp, rng, b, hq, hkv, length, d, count=3):
    """`count` fp16 (q, k, v) of one query token on the GPU, each drawn afresh: inputs of decode calls
    queued back to back."""
    shapes = ((b, hq, 1, d), (b, hkv, length, d), (b, hkv, length, d))
    return [tuple(cp.asarray(draw(rng, s, np.float16)) for s in shapes) for _ in range(count)]


def broken_page_cases(items):
    """Node ids of collected tests whose parameters ask ``to_paged`` (directly or through
    ``ragged_inputs`` or test_decode_gpu's ``mma_bits_case``) for pages of a length that is not a
    whole number of pages.

    Those tests are GPU tests: on a machine without a GPU they are skipped before their setup runs,
    so the assertion in ``to_paged`` would first fire on the device. conftest.py runs this over
    every collection and stops it with a UsageError naming them. The length and page size are
    read from the parameters ``length`` and ``page`` / ``page_size``, or from a ``case`` tuple
    ``(B, Hq, Hkv, Sq, L, D, lens, page, ...)`` whose page entry is an integer."""
    import inspect

    bad, pages = [], {}  # pages: test function -> whether its source pages a cache
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", None)
        fn = getattr(item, "function", None)
        if not params or fn is None:
            continue
        if fn not in pages:
            try:
                source = inspect.getsource(fn)
            except (OSError, TypeError):
                source = ""
            pages[fn] = any(f"{helper}(" in source for helper in ("to_paged", "ragged_inputs", "mma_bits_case"))
        if not pages[fn]:
            continue
        length, page = params.get("length"), params.get("page", params.get("page_size"))
        case = params.get("case")
        if isinstance(case, tuple) and len(case) >= 8:
            length, page = case[4], case[7]
        if all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in (length, page)):
            if page > 0 and length % page:
                bad.append(f"{item.nodeid} (length {length}, pages of {page})")
    return bad


def poison(cp, *shapes, itemsize=4):
    """Fill memory-pool blocks the size of these shapes (of ``itemsize``-byte elements) with NaN
    and free them: the next allocations of those sizes reuse them, so an element a kernel
    forgets to write reads NaN (for bfloat16, a huge finite value) and fails."""
    dtype = {2: cp.float16, 4: cp.float32, 8: cp.float64}[itemsize]
    blocks = [cp.full(s, cp.nan, dtype=dtype) for s in shapes]
    del blocks


def elementwise_mismatches(x, ref, unit, slack):
    """Number of elements with |x - ref| > unit * |ref| + slack * max|ref over its last axis|.

    ``unit`` is the output dtype's unit roundoff (rounding the exact result can cost no more);
    ``slack`` covers float32 arithmetic before that rounding. NaN in x counts as a mismatch.
    This catches a few bad elements that a norm-wise error would average away."""
    x = np.asarray(to_numpy(x), dtype=np.float64)
    ref = np.asarray(to_numpy(ref), dtype=np.float64)
    assert x.shape == ref.shape, (x.shape, ref.shape)
    row_max = np.max(np.abs(ref), axis=-1, keepdims=True) if ref.size else ref
    bound = unit * np.abs(ref) + slack * row_max
    bad = ~(np.abs(x - ref) <= bound)
    return int(np.count_nonzero(bad))


UNIT_ROUNDOFF = {"float16": 2.0 ** -11, "bfloat16": 2.0 ** -8, "float32": 2.0 ** -24, "float64": 2.0 ** -53}


def flash_layout(cp, x):
    """The cache x (B, Hkv, L, D) on the GPU as FlashAttention's (B, L, Hkv, D) array, passed as its
    (B, Hkv, L, D) transpose: the same values, key rows Hkv x D elements apart."""
    return cp.ascontiguousarray(cp.asarray(x).transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)


def misaligned(cp, x, rows=False):
    """x on the GPU at an address 16-byte loads cannot take: contiguous data one element past a
    16-byte boundary, or (``rows``) a view into rows one element longer (row stride and start
    off 16-byte boundaries, the last dim still contiguous). The GPU paths must copy either."""
    if rows:
        wide = cp.empty(x.shape[:-1] + (x.shape[-1] + 1,), dtype=x.dtype)
        out = wide[..., 1:]
    else:
        out = cp.empty(x.size + 1, dtype=x.dtype)[1:].reshape(x.shape)
    out[...] = cp.asarray(x)
    assert out.data.ptr % 16 != 0
    return out
