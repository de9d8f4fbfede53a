"""cuattn.decode on the CPU backend, the float64 reference and the default ALiBi slopes.

Tolerances: float64 work agrees with the reference to ~1e-12 norm-wise (only summation order
differs), so 1e-10; float32 work to a few units of float32 rounding over D and L terms, so 1e-5
norm-wise and, element by element, 1e-4 of the row's largest output (sequential float32 sums
over up to 33001 keys). Paged and contiguous caches run the same arithmetic: identical results.
"""

import sys

import numpy as np
import pytest

import cuattn
from cuattn._checks import dtype_name
from helpers import UNIT_ROUNDOFF, draw, elementwise_mismatches, lse_error, rel_error, to_paged

TOL = {np.float32: 1e-5, np.float64: 1e-10}
SLACK = {np.float32: 1e-4, np.float64: 1e-10}


def make(rng, batch, hq, hkv, sq, length, d, dtype=np.float64):
    q = rng.standard_normal((batch, hq, sq, d)).astype(dtype)
    k = rng.standard_normal((batch, hkv, length, d)).astype(dtype)
    v = rng.standard_normal((batch, hkv, length, d)).astype(dtype)
    return q, k, v


# --- default slopes ----------------------------------------------------------------------

@pytest.mark.parametrize("heads", [1, 2, 8, 16, 32, 64])
def test_slopes_power_of_two(heads):
    expected = 2.0 ** (-8.0 * np.arange(1, heads + 1) / heads)
    assert np.allclose(cuattn.alibi_slopes(heads), expected, rtol=1e-7, atol=0)


def test_slopes_non_power_of_two():
    s12 = cuattn.alibi_slopes(12)  # 8 slopes of 2**(-h), then 2**(-0.5), 2**(-1.5), ...
    assert np.allclose(s12, [2.0 ** -h for h in range(1, 9)] + [2.0 ** -(h + 0.5) for h in range(4)], rtol=1e-7)
    s40 = cuattn.alibi_slopes(40)
    assert s40.dtype == np.float32 and s40.shape == (40,)
    assert np.array_equal(s40[:32], cuattn.alibi_slopes(32))
    assert np.allclose(s40[32:], 2.0 ** (-8.0 * np.arange(1, 64, 2)[:8] / 64), rtol=1e-7)


def test_slopes_errors():
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="num_heads"):
            cuattn.alibi_slopes(bad)


# --- the reference against hand-made cases ----------------------------------------------------

def test_reference_sees_only_past_keys(rng):
    """Sq = 3 at length 5: token t sees keys 0..2+t; zero scale, no bias: the mean of those values."""
    q, k, v = make(rng, 1, 2, 1, 3, 5, 4)
    o, lse = cuattn.reference.decode(q, k, v, scale=0.0, return_lse=True)
    for t in range(3):
        assert np.allclose(o[0, :, t], v[0, 0, : 3 + t].mean(axis=0))
        assert np.allclose(lse[0, :, t], np.log(3 + t))


def test_reference_bias_formula(rng):
    """Against the formula written out for one row: logits scale q.k_j + slope (j - i)."""
    q, k, v = make(rng, 1, 1, 1, 1, 9, 4)
    slopes = np.array([0.7], np.float32)
    lens = np.array([6], np.int32)
    o = cuattn.reference.decode(q, k, v, cache_seqlens=lens, alibi_slopes=slopes, scale=0.3)
    j = np.arange(6)
    logits = 0.3 * (k[0, 0, :6] @ q[0, 0, 0]) + np.float64(slopes[0]) * (j - 5)
    p = np.exp(logits - logits.max())
    assert np.allclose(o[0, 0, 0], p @ v[0, 0, :6] / p.sum(), rtol=1e-12)


def test_reference_huge_slope_picks_newest_key(rng):
    """Bias -1e6 per position: the newest visible key takes all the weight, with no NaN."""
    q, k, v = make(rng, 1, 2, 2, 2, 40, 8)
    o = cuattn.reference.decode(q, k, v, alibi_slopes=np.full(2, 1e6, np.float32))
    assert np.allclose(o[0, :, 0], v[0, :, 38]) and np.allclose(o[0, :, 1], v[0, :, 39])


# --- CPU backend against the reference ----------------------------------------------------

CASES = [
    # (batch, hq, hkv, sq, length, d, lens, slopes)
    (1, 4, 4, 1, 200, 32, None, None),
    (3, 8, 2, 1, 300, 64, [300, 0, 17], "default"),
    (2, 12, 4, 3, 129, 16, [129, 2], "default"),   # Sq > 1; row 1 shorter than Sq: token 0 sees nothing
    (2, 6, 1, 2, 64, 40, [1, 64], "array"),        # MQA, caller slopes
    (1, 40, 8, 1, 1000, 24, None, "default"),      # non-power-of-two head count
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_cpu_matches_reference(rng, dtype, case):
    batch, hq, hkv, sq, length, d, lens, slopes = case
    q, k, v = make(rng, batch, hq, hkv, sq, length, d, dtype)
    lens = None if lens is None else np.array(lens, np.int32)
    if slopes == "array":
        slopes = rng.uniform(0.0, 2.0, hq).astype(np.float32)
    o, lse = cuattn.decode(q, k, v, cache_seqlens=lens, alibi_slopes=slopes, return_lse=True)
    ro, rl = cuattn.reference.decode(q, k, v, cache_seqlens=lens, alibi_slopes=slopes, return_lse=True)
    assert o.dtype == dtype and lse.dtype == np.float32 and o.shape == (batch, hq, sq, d)
    assert rel_error(o, ro) < TOL[dtype]
    assert elementwise_mismatches(o, ro, 0.0, SLACK[dtype]) == 0
    assert lse_error(lse, rl) < 1e-5 * max(1.0, np.abs(rl[np.isfinite(rl)]).max(initial=1.0))


@pytest.mark.parametrize("length,heads", [(33001, 8), (33001, 12)])
def test_cpu_long_context(rng, length, heads):
    """Lesson 5's length: the steepest head's bias reaches -1.65e4 at the oldest key; every
    element must match (a 7-of-4096 mismatch fails the element-wise check)."""
    q, k, v = make(rng, 1, heads, heads // 4, 1, length, 128, np.float32)
    lens = np.array([length], np.int32)
    o = cuattn.decode(q, k, v, cache_seqlens=lens, alibi_slopes="default")
    ro = cuattn.reference.decode(q, k, v, cache_seqlens=lens, alibi_slopes="default")
    assert rel_error(o, ro) < 1e-5
    assert elementwise_mismatches(o, ro, 0.0, 1e-4) == 0


@pytest.mark.parametrize("page_size", [1, 8, 50])
def test_cpu_paged_equals_contiguous(rng, page_size):
    q, k, v = make(rng, 3, 8, 4, 2, 200, 16, np.float32)
    kp, vp, table = to_paged(rng, k, v, page_size)
    lens = np.array([200, 51, 0], np.int32)
    table[1, -1] = -7  # unused entries (past the row's length) may hold anything
    o1, l1 = cuattn.decode(q, k, v, cache_seqlens=lens, alibi_slopes="default", return_lse=True)
    o2, l2 = cuattn.decode(q, kp, vp, cache_seqlens=lens, alibi_slopes="default", block_table=table,
                           return_lse=True)
    assert np.array_equal(o1, o2) and np.array_equal(l1, l2)
    ro = cuattn.reference.decode(q, kp, vp, cache_seqlens=lens, alibi_slopes="default", block_table=table)
    assert rel_error(o2, ro) < 1e-5


def test_cpu_zero_length_rows(rng):
    q, k, v = make(rng, 2, 4, 2, 2, 10, 8, np.float32)
    o, lse = cuattn.decode(q, k, v, cache_seqlens=np.zeros(2, np.int32), alibi_slopes="default", return_lse=True)
    assert np.all(o == 0) and np.all(np.isneginf(lse))
    q, k, v = make(rng, 1, 2, 2, 1, 0, 8, np.float32)  # an empty cache
    o, lse = cuattn.decode(q, k, v, return_lse=True)
    assert np.all(o == 0) and np.all(np.isneginf(lse))


@pytest.mark.parametrize("scale", [-1.0, 0.0, 0.37])
def test_cpu_scales(rng, scale):
    q, k, v = make(rng, 2, 4, 2, 1, 77, 16, np.float64)
    o = cuattn.decode(q, k, v, scale=scale, alibi_slopes="default")
    ro = cuattn.reference.decode(q, k, v, scale=scale, alibi_slopes="default")
    assert rel_error(o, ro) < 1e-10


def test_cpu_half_inputs_keep_dtype(rng):
    q, k, v = make(rng, 1, 2, 2, 1, 30, 8, np.float16)
    o = cuattn.decode(q, k, v, alibi_slopes="default")
    assert o.dtype == np.float16
    assert rel_error(o, cuattn.reference.decode(q, k, v, alibi_slopes="default")) < 1e-3  # fp16 output rounding


HALF = [np.float16] + ([cuattn._checks.BFLOAT16] if cuattn._checks.BFLOAT16 is not None else [])


def _views(rng, k, v):
    """The caches as views the CPU kernels read in place: contiguous, FlashAttention's (B, L, Hkv, D)
    transposed, keys reversed (negative strides) on every other head, shuffled pages, and pages
    with key rows Hkv x D apart."""
    yield "dense", k, v, None
    flash = [np.ascontiguousarray(x.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3) for x in (k, v)]
    yield "bshd", flash[0], flash[1], None
    yield "reversed", k[:, ::2, ::-1], v[:, ::2, ::-1], None
    kp, vp, table = to_paged(rng, k, v, 8)
    yield "paged", kp, vp, table
    nhd = [np.ascontiguousarray(x.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3) for x in (kp, vp)]
    yield "paged nhd", nhd[0], nhd[1], table  # vLLM's (pages, page_size, Hkv, D) as its transpose


@pytest.mark.parametrize("dtype", [np.float32] + HALF, ids=lambda d: np.dtype(d).name)
def test_cpu_caches_read_in_place(rng, dtype):
    """16-bit caches are widened block by block as they are gathered (cuattn/_bits16.py), and
    strided views are read where they lie: bit for bit the result of first copying the cache to a
    contiguous float32 one (the q rows too), then rounding the output to the input dtype."""
    q, k, v = (draw(rng, x.shape, dtype) for x in make(rng, 2, 6, 2, 3, 136, 24))
    for name, kc, vc, table in _views(rng, k, v):
        hkv = kc.shape[1]
        qc = q[:, : 3 * hkv]
        lens = np.array([136, 57], np.int32)
        o, lse = cuattn.decode(qc, kc, vc, cache_seqlens=lens, alibi_slopes="default", block_table=table,
                               return_lse=True)
        wide = [np.ascontiguousarray(x).astype(np.float32) for x in (qc, kc, vc)]
        ow, lw = cuattn.decode(*wide, cache_seqlens=lens, alibi_slopes="default", block_table=table,
                               return_lse=True)
        assert o.dtype == dtype, name
        assert np.array_equal(o, ow.astype(dtype), equal_nan=True), name
        assert np.array_equal(lse, lw), name
        ro = cuattn.reference.decode(qc, kc, vc, cache_seqlens=lens, alibi_slopes="default", block_table=table)
        assert rel_error(o, ro) < (1e-5 if dtype == np.float32 else 2 * UNIT_ROUNDOFF[dtype_name(dtype)]), name


def test_cpu_heads_per_task_plan():
    """heads_per_task: one KV head per task for caches whose heads lie apart; for swapped caches the
    most heads (a divisor of Hkv) that leave a task per thread, never fewer tasks than threads
    where one head per task gives enough."""
    from cuattn._cpu_decode import heads_per_task

    assert heads_per_task(1, 8, 1, 2, False) == 1
    assert heads_per_task(1, 8, 1, 2, True) == 4
    assert heads_per_task(1, 8, 2, 2, True) == 8
    assert heads_per_task(1, 8, 8, 16, True) == 4
    assert heads_per_task(4, 6, 1, 64, True) == 1  # fewer tasks than threads either way
    for batch, hkv, splits, threads in [(1, 8, 1, 2), (2, 12, 3, 16), (3, 5, 2, 7), (1, 32, 4, 64)]:
        heads = heads_per_task(batch, hkv, splits, threads, True)
        assert hkv % heads == 0
        assert batch * (hkv // heads) * splits >= min(threads, batch * hkv * splits)


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=lambda d: np.dtype(d).name)
def test_cpu_heads_per_task_same_bits(rng, monkeypatch, dtype):
    """_partials with 1, 2, 3 or 6 KV heads per parallel task (forced, where they divide Hkv) gives
    the bits of one head per task, on every view _views makes (dense, FlashAttention's layout,
    reversed keys, shuffled pages, vLLM-order pages), with Sq 2 (the newest keys' one-by-one loop),
    ragged lengths and several splits; the views of the same keys agree with dense."""
    from cuattn import _cpu_decode

    monkeypatch.setattr(_cpu_decode, "MIN_CHUNK", 64)
    b, hq, hkv, sq, length, d = 2, 12, 6, 2, 320, 24
    group = hq // hkv
    q, k, v = (draw(rng, x.shape, dtype) for x in make(rng, b, hq, hkv, sq, length, d))
    lens = np.array([320, 101], np.int32)
    views = list(_views(rng, k, v))  # (the same pages for every head count)
    answers = {}
    for heads in (1, 2, 3, 6):
        monkeypatch.setattr(_cpu_decode, "heads_per_task", lambda batch, n, *rest, h=heads: h if n % h == 0 else 1)
        for name, kc, vc, table in views:
            answers[heads, name] = cuattn.decode(q[:, : group * kc.shape[1]], kc, vc, cache_seqlens=lens,
                                                 alibi_slopes="default", block_table=table, return_lse=True)
    o1, l1 = answers[1, "dense"]
    ro = cuattn.reference.decode(q, k, v, cache_seqlens=lens, alibi_slopes="default")
    assert rel_error(o1, ro) < (1e-5 if dtype == np.float32 else 2 * UNIT_ROUNDOFF[dtype_name(dtype)])
    for (heads, name), (o, lse) in answers.items():
        one = answers[1, "dense" if name != "reversed" else name]
        assert np.array_equal(o, one[0]) and np.array_equal(lse, one[1]), (heads, name)


def test_cpu_nan_stays_in_its_row(rng):
    q, k, v = make(rng, 2, 2, 2, 1, 20, 8, np.float32)
    q[1, 0, 0, 3] = np.nan
    o, lse = cuattn.decode(q, k, v, return_lse=True)
    assert np.all(np.isnan(o[1, 0, 0])) and np.isnan(lse[1, 0, 0])
    o[1, 0, 0] = 0
    assert np.all(np.isfinite(o))


@pytest.mark.parametrize("case", CASES, ids=str)
def test_cpu_split_keys_match_reference(rng, monkeypatch, case):
    """Keys split into many short items (MIN_CHUNK 7, 64 items a thread): the merge of the
    partials by log-sum-exp gives the reference, a paged cache the contiguous bits."""
    from cuattn import _cpu_decode

    monkeypatch.setattr(_cpu_decode, "MIN_CHUNK", 7)
    monkeypatch.setattr(_cpu_decode, "ITEMS_PER_THREAD", 64)
    batch, hq, hkv, sq, length, d, lens, slopes = case
    q, k, v = make(rng, batch, hq, hkv, sq, length, d, np.float32)
    lens = None if lens is None else np.array(lens, np.int32)
    if slopes == "array":
        slopes = rng.uniform(0.0, 2.0, hq).astype(np.float32)
    assert _cpu_decode.plan(batch, hkv, length, 1)[0] > 1
    o, lse = cuattn.decode(q, k, v, cache_seqlens=lens, alibi_slopes=slopes, return_lse=True)
    ro, rl = cuattn.reference.decode(q, k, v, cache_seqlens=lens, alibi_slopes=slopes, return_lse=True)
    assert rel_error(o, ro) < TOL[np.float32]
    assert elementwise_mismatches(o, ro, 0.0, SLACK[np.float32]) == 0
    assert lse_error(lse, rl) < 1e-5 * max(1.0, np.abs(rl[np.isfinite(rl)]).max(initial=1.0))
    kp, vp, table = cuattn.paged_cache(k, v, 8, seed=rng)  # (the last page of a row zero-padded)
    if lens is None:
        lens = np.full(batch, length, np.int32)
    o1 = cuattn.decode(q, k, v, cache_seqlens=lens, alibi_slopes=slopes)
    o2 = cuattn.decode(q, kp, vp, cache_seqlens=lens, alibi_slopes=slopes, block_table=table)
    assert np.array_equal(o1, o2)


@pytest.mark.parametrize("where", ["k", "v"])
def test_cpu_nan_key_reaches_only_the_rows_that_see_it(rng, monkeypatch, where):
    """A NaN in the newest key (Sq = 2: seen by token 1 only) makes token 1 of its kv head's
    query heads NaN (a NaN in K: the whole row; in V: that column); token 0 of those heads and
    the other kv head stay finite, split or not."""
    from cuattn import _cpu_decode

    for min_chunk in (256, 5):
        monkeypatch.setattr(_cpu_decode, "MIN_CHUNK", min_chunk)
        q, k, v = make(rng, 1, 4, 2, 2, 40, 8, np.float32)
        (k if where == "k" else v)[0, 0, 39, 3] = np.nan
        o = cuattn.decode(q, k, v, alibi_slopes="default")
        seen = o[0, :2, 1] if where == "k" else o[0, :2, 1, 3]
        assert np.all(np.isnan(seen)), min_chunk
        if where == "v":
            assert np.all(np.isfinite(np.delete(o[0, :2, 1], 3, axis=-1))), min_chunk
        assert np.all(np.isfinite(o[0, :2, 0])) and np.all(np.isfinite(o[0, 2:])), min_chunk


def test_cpu_blas_one_thread_inside_and_restored(rng):
    """The kernel calls BLAS from every Numba thread: BLAS runs single-threaded inside the call
    (first call: libraries looked up; later calls: the kept lookup) and as before after it."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from cuattn._cpu_attention import _single_threaded_blas

    def blas_threads():
        return [info["num_threads"] for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas"]

    before = blas_threads()
    q, k, v = make(rng, 1, 8, 2, 1, 600, 16, np.float32)
    for _ in range(2):
        cuattn.decode(q, k, v)
        assert blas_threads() == before
        with _single_threaded_blas():
            assert all(n == 1 for n in blas_threads())
        assert blas_threads() == before


def test_reference_backend_and_inputs_unchanged(rng):
    q, k, v = make(rng, 1, 2, 1, 1, 12, 8, np.float32)
    before = [x.copy() for x in (q, k, v)]
    o = cuattn.decode(q, k, v, backend="reference", alibi_slopes="default")
    assert o.dtype == np.float64
    assert all(np.array_equal(a, b) for a, b in zip((q, k, v), before))


# --- errors --------------------------------------------------------------------------------

def test_errors(rng):
    q, k, v = make(rng, 2, 4, 2, 1, 16, 8, np.float32)
    with pytest.raises(ValueError, match=r"cache_seqlens must lie in \[0, 16\]"):
        cuattn.decode(q, k, v, cache_seqlens=np.array([17, 3], np.int32))
    with pytest.raises(ValueError, match="cache_seqlens must lie"):
        cuattn.decode(q, k, v, cache_seqlens=np.array([-1, 3], np.int32))
    with pytest.raises(TypeError, match="cache_seqlens must be int32"):
        cuattn.decode(q, k, v, cache_seqlens=np.array([1, 3], np.int64))
    with pytest.raises(ValueError, match="cache_seqlens must have shape"):
        cuattn.decode(q, k, v, cache_seqlens=np.array([1, 3, 4], np.int32))
    with pytest.raises(ValueError, match="multiple"):
        cuattn.decode(q[:, :3], k, v)
    with pytest.raises(ValueError, match="v_cache must have"):
        cuattn.decode(q, k, v[:, :, :5])
    with pytest.raises(ValueError, match="alibi_slopes must be None, 'default'"):
        cuattn.decode(q, k, v, alibi_slopes="press")
    with pytest.raises(ValueError, match="alibi_slopes must have shape"):
        cuattn.decode(q, k, v, alibi_slopes=np.ones(3, np.float32))
    with pytest.raises(TypeError, match="alibi_slopes must be float32"):
        cuattn.decode(q, k, v, alibi_slopes=np.ones(4))
    with pytest.raises(TypeError, match="share one dtype"):
        cuattn.decode(q, k.astype(np.float64), v)
    with pytest.raises(ValueError, match="scale must be finite"):
        cuattn.decode(q, k, v, scale=float("inf"))


def test_paged_errors(rng):
    q, k, v = make(rng, 2, 4, 2, 1, 16, 8, np.float32)
    kp, vp, table = to_paged(rng, k, v, 4)  # 8 pages of 4 keys
    bad = table.copy()
    bad[0, 1] = 8
    with pytest.raises(ValueError, match=r"pages outside \[0, 8\)"):
        cuattn.decode(q, kp, vp, block_table=bad)
    bad[0, 1] = -1
    with pytest.raises(ValueError, match="pages outside"):
        cuattn.decode(q, kp, vp, block_table=bad)
    # an out-of-range entry past the row's length is never read, so it is no error
    cuattn.decode(q, kp, vp, block_table=bad, cache_seqlens=np.array([4, 16], np.int32))
    with pytest.raises(TypeError, match="block_table must be int32"):
        cuattn.decode(q, kp, vp, block_table=table.astype(np.int64))
    with pytest.raises(ValueError, match="block_table must have shape"):
        cuattn.decode(q, kp, vp, block_table=table[:1])
    with pytest.raises(ValueError, match=r"cache_seqlens must lie in \[0, 16\]"):
        cuattn.decode(q, kp, vp, block_table=table, cache_seqlens=np.array([17, 1], np.int32))


# --- the GPU launch plan (pure Python) --------------------------------------------------------

@pytest.mark.parametrize("batch,hq,hkv,sq,length", [(1, 32, 32, 1, 33001), (1, 32, 8, 1, 131072),
                                                    (64, 32, 32, 1, 2048), (2, 40, 8, 3, 5000), (1, 1, 1, 1, 0)])
def test_plan_covers_every_key_and_fills_the_device(batch, hq, hkv, sq, length):
    decode_module = __import__("sys").modules["cuattn.decode"]
    sizes = dict(batch=batch, num_q_heads=hq, num_kv_heads=hkv, seqlen_q=sq, cache_len=length)
    rows, row_chunks, splits, chunk = decode_module.plan(sizes, 132)
    num_rows = hq // hkv * sq
    assert rows in decode_module.ROWS and rows * row_chunks >= num_rows and (row_chunks - 1) * rows < num_rows
    assert splits * chunk >= length and (splits - 1) * chunk < max(length, 1)
    blocks = splits * hkv * row_chunks * batch
    # the block target, up to the rounding of the chunk to CHUNK_ALIGN keys, unless chunks hit their minimum
    target = decode_module.BLOCKS_PER_SM * 132
    assert blocks >= 0.85 * target or chunk <= decode_module.MIN_CHUNK + decode_module.CHUNK_ALIGN


def test_split_kernel_switch(monkeypatch):
    """Every split kernel is listed for the compile tests (the bulk-copy ones for sm_90a only);
    the module switch picks one."""
    import sys

    mod = sys.modules["cuattn.decode"]
    per_rows = 3 * len(mod.HEAD_DIMS) * 2  # dtypes x head dims x (contiguous, paged)
    # the bulk-copy kernel: each row-block size's ring, and where a launch of one block per SM takes
    # a deeper one (one_block_stages), that one too
    deeper = sum(mod.one_block_stages(r, d, size) != mod.tma_config(r, d, size)[1]
                 for r in mod.TMA_ROWS for d in mod.HEAD_DIMS for size in (2, 2, 4))  # fp16, bf16, fp32
    assert deeper > 0  # (one row's ring: 4 stages for three blocks per SM, 6 for one)
    expected = {"regs": per_rows * len(mod.ROWS), "tma": per_rows * len(mod.TMA_ROWS) + 2 * deeper,
                # the tensor-core kernel: dtypes x (contiguous, paged) x producers x its two-block ring
                # and, where MMA_DEEP_STAGES names the head dim, its one-block ring
                "mma": len(mod.MMA_TYPES) * 2 * len(mod.MMA_COPIES) * (len(mod.MMA_HEAD_DIMS)
                                                                      + len(mod.MMA_DEEP_STAGES))}
    for arch, kernels in (("sm_80", ("regs",)), ("sm_90a", ("tma", "regs", "mma"))):
        exprs = mod.all_kernel_expressions(arch)
        for kernel, name in (("tma", "decode_split_tma<"), ("regs", "decode_split<"), ("mma", "decode_split_mma<")):
            assert sum(e.startswith(name) for e in exprs) == (expected[kernel] if kernel in kernels else 0)
    for kernel, prefix in (("tma", "decode_split_tma<half_t, 128, 4, true, "),
                           ("regs", "decode_split<half_t, 128, 4, true>"),
                           ("mma", "decode_split_mma<half_t, 128, true, ")):
        monkeypatch.setattr(mod, "KERNEL", kernel)
        assert mod.split_expression("half_t", 128, 4, True).startswith(prefix)
    monkeypatch.setattr(mod, "KERNEL", None)  # automatic: tensor cores for row groups, bulk copies for one row
    assert mod.split_expression("half_t", 128, 4, True).startswith("decode_split_mma<half_t, 128, true, ")
    assert mod.split_expression("half_t", 128, 1, False).startswith("decode_split_tma<half_t, 128, 1, false, ")
    # MMA_COPY None: cp.async at padded D 128 and at 64 with P_lo packed, tensor copies at 64 unpacked
    assert mod.split_expression("half_t", 128, 4, True).endswith(", true>")
    assert mod.split_expression("half_t", 64, 4, True).endswith(", false>")
    assert [mod.mma_copy(d, packed) for d in (128, 64) for packed in (False, True)] == \
        ["cp.async", "cp.async", "tensor", "cp.async"]
    monkeypatch.setattr(mod, "MMA_COPY", "tensor")
    # pages shorter than a tile (or not whole tiles): cp.async whatever MMA_COPY says
    assert [mod.mma_copy(64, False, ps) for ps in (0, 16, 100, 128)] == ["tensor", "cp.async", "cp.async", "tensor"]
    assert mod.split_expression("half_t", 128, 4, True).endswith(", false>")
    monkeypatch.setattr(mod, "MMA_COPY", "cp.async")
    assert mod.split_expression("half_t", 128, 4, True).endswith(", true>")
    assert mod.split_expression("half_t", 64, 4, True).endswith(", true>")
    monkeypatch.setattr(mod, "MMA_COPY", "other")
    with pytest.raises(ValueError, match="MMA_COPY"):
        mod.split_expression("half_t", 128, 4, True)
    monkeypatch.setattr(mod, "MMA_COPY", None)
    monkeypatch.setattr(mod, "KERNEL", "other")
    with pytest.raises(ValueError, match="KERNEL"):
        mod.split_expression("half_t", 128, 4, True)


def test_mma_config_fits_the_shared_memory():
    import sys

    mod = sys.modules["cuattn.decode"]
    two_block = dict(mod.MMA_TWO_BLOCK_STAGES)
    for padded in mod.MMA_HEAD_DIMS:
        resident, stages = mod.mma_config(padded)
        smem = mod.mma_shared_bytes(stages, padded)
        deepest = mod.mma_two_block_stages(padded)
        assert resident == 2 and 3 <= stages <= deepest <= 8, padded
        assert stages == two_block.get(padded, deepest)
        assert resident * (smem + 1024) <= mod.SMEM_PER_SM and smem <= 227 * 1024
        deep = mod.mma_deep_config(padded)  # split row groups: one block per SM, a deeper ring
        if deep is not None:
            deep_smem = mod.mma_shared_bytes(deep[1], padded)
            assert deep[0] == 1 and deep[1] > deepest and deep_smem + 1024 <= mod.SMEM_PER_SM, padded
            assert 2 * (deep_smem + 1024) > mod.SMEM_PER_SM  # (else it would not need one block per SM)
    assert mod.mma_deep_config(128) == (1, 6) and mod.mma_deep_config(64) is None
    assert mod.mma_config(64) == (2, 4) and mod.mma_config(128) == (2, 3)  # the defaults
    assert mod.CHUNK_ALIGN % mod.MMA_TILE_KEYS == 0


def test_mma_stages_setting_overrides_the_rules(monkeypatch):
    import sys

    mod = sys.modules["cuattn.decode"]
    monkeypatch.setattr(mod, "MMA_STAGES", 5)
    assert mod.mma_config(128) == (1, 5) and mod.mma_config(64) == (2, 5)
    assert mod.mma_deep_config(128) is None
    monkeypatch.setattr(mod, "MMA_STAGES", None)
    monkeypatch.setattr(mod, "MMA_DEEP_STAGES", ())
    monkeypatch.setattr(mod, "MMA_TWO_BLOCK_STAGES", ())
    assert mod.mma_deep_config(128) is None
    assert mod.mma_config(64) == (2, mod.mma_two_block_stages(64)) == (2, 6)
    assert mod.mma_config(128) == (2, 3)
    monkeypatch.setattr(mod, "MMA_TWO_BLOCK_STAGES", ((64, 4),))
    assert mod.mma_config(64) == (2, 4) and mod.mma_config(128) == (2, 3)


def test_mma_plan_and_the_whole_rows_rule(monkeypatch):
    """mma_plan: two blocks of mma_config's ring where row groups stay whole, else one block of the
    deep ring re-planned; mma_keeps_rows_whole (ONE_ROW_MMA_WHOLE, the default) on decode.py's MHA rows
    and small calls, on 132 SMs."""
    import sys

    mod = sys.modules["cuattn.decode"]
    assert mod.ONE_ROW_MMA_WHOLE is True
    assert mod.mma_plan(16, 8, 1, 33001, 128, 132)[:3] == (2, 3, 1)  # B 16 32/8: whole row groups
    b1 = mod.mma_plan(1, 8, 1, 131072, 128, 132)
    assert b1[:2] == (1, 6) and b1[2] > 1, b1  # B 1 32/8: split, the deep ring
    assert mod.mma_plan(4, 4, 1, 32768, 64, 132)[:2] == (2, 4)  # D 64: no deep ring
    # B 64 32/32 L 2048: split on two blocks an SM, whole on one (the deep ring): the rule applies
    assert mod.mma_plan(64, 32, 1, 2048, 128, 132)[:3] == (1, 6, 1)
    assert mod.mma_keeps_rows_whole(64, 32, 2048, 128, 132)
    assert not mod.mma_keeps_rows_whole(16, 32, 4096, 128, 132)  # split row groups
    assert not mod.mma_keeps_rows_whole(1, 32, 33001, 128, 132)
    assert not mod.mma_keeps_rows_whole(2, 8, 100, 128, 132)  # whole, but fewer row groups than blocks
    assert mod.mma_keeps_rows_whole(33, 8, 300, 128, 132) and mod.mma_keeps_rows_whole(33, 8, 129, 64, 132)
    monkeypatch.setattr(mod, "MMA_DEEP_STAGES", ())  # no deep ring: B 64 32/32 splits on two blocks
    assert not mod.mma_keeps_rows_whole(64, 32, 2048, 128, 132)


def test_the_few_split_rows_rule(monkeypatch):
    """mma_splits_few_rows (ONE_ROW_MMA_FEW, the default since the 43rd session): the tensor-core
    plan splits every row group over one block per SM, with at most half as many row groups as
    SMs: B 1 32/32 L 33001 (4 splits of 8320 keys) and B 2 (64 row groups) yes; B 3 (96: measured
    slower, 44th session), B 16 32/32 L 4096 (more row groups than SMs), B 64 L 2048
    (whole), B 4 32/32 (whole on two blocks), D 64 (two blocks an SM), a short row kept whole no;
    no deep ring, no rule."""
    import sys

    mod = sys.modules["cuattn.decode"]
    assert mod.ONE_ROW_MMA_FEW is True
    assert mod.mma_plan(1, 32, 1, 33001, 128, 132) == (1, 6, 4, 8320)
    assert mod.mma_splits_few_rows(1, 32, 33001, 128, 132) and mod.mma_splits_few_rows(2, 32, 33001, 128, 132)
    assert not mod.mma_splits_few_rows(3, 32, 33001, 128, 132) and mod.mma_plan(3, 32, 1, 33001, 128, 132)[2] > 1
    assert mod.mma_splits_few_rows(1, 32, 33001, 128, 64) and not mod.mma_splits_few_rows(1, 32, 33001, 128, 63)
    for shape in ((16, 32, 4096, 128), (64, 32, 2048, 128), (4, 32, 33001, 128), (1, 32, 33001, 64), (1, 32, 200, 128)):
        assert not mod.mma_splits_few_rows(*shape, 132), shape
    assert mod.mma_splits_few_rows(1, 32, 33001, 128, 32) is False  # as many row groups as SMs
    # the automatic choice: either rule, where it is on
    assert mod.one_row_takes_mma(1, 32, 33001, 128, 132) and mod.one_row_takes_mma(64, 32, 2048, 128, 132)
    assert not mod.one_row_takes_mma(8, 32, 2048, 128, 132)
    monkeypatch.setattr(mod, "ONE_ROW_MMA_FEW", False)
    assert not mod.one_row_takes_mma(1, 32, 33001, 128, 132) and mod.one_row_takes_mma(64, 32, 2048, 128, 132)
    monkeypatch.setattr(mod, "ONE_ROW_MMA_WHOLE", False)
    assert not mod.one_row_takes_mma(64, 32, 2048, 128, 132)
    monkeypatch.setattr(mod, "MMA_DEEP_STAGES", ())  # split on two blocks an SM: not the rule's case
    assert not mod.mma_splits_few_rows(1, 32, 33001, 128, 132)


def test_tma_config_fits_the_shared_memory():
    """Every bulk-copy variant's ring fits its blocks per SM and the per-block limit."""
    import sys

    mod = sys.modules["cuattn.decode"]
    for rows in mod.TMA_ROWS:
        for padded in mod.HEAD_DIMS:
            for itemsize in (2, 4):
                resident, stages = mod.tma_config(rows, padded, itemsize)
                smem = mod.tma_shared_bytes(stages, rows, padded)
                assert 1 <= resident <= 3 and 3 <= stages <= 8
                assert resident * (smem + 1024) <= mod.SMEM_PER_SM and smem <= 227 * 1024
                # one block per SM: a deeper ring that still fits two blocks (should two land on one SM)
                deep = mod.one_block_stages(rows, padded, itemsize)
                deep_smem = mod.tma_shared_bytes(deep, rows, padded)
                assert stages <= deep <= 8 and 2 * (deep_smem + 1024) <= mod.SMEM_PER_SM
                assert mod.tma_tile_keys(padded, itemsize) * padded * itemsize == mod.TMA_TILE_BYTES
                assert mod.CHUNK_ALIGN % mod.tma_tile_keys(padded, itemsize) == 0


@pytest.mark.parametrize("batch,hkv,row_chunks,length", [(1, 32, 1, 33001), (1, 8, 1, 131072), (16, 32, 1, 4096),
                                                          (64, 32, 1, 2048), (3, 5, 2, 777), (1, 1, 1, 1),
                                                          (2, 2, 1, 0)])
def test_plan_persistent_covers_every_key_and_balances(batch, hkv, row_chunks, length):
    import sys

    mod = sys.modules["cuattn.decode"]
    grid = 2 * 132
    splits, chunk = mod.plan_persistent(batch, hkv, row_chunks, length, grid)
    assert chunk % mod.CHUNK_ALIGN == 0 and splits * chunk >= length and (splits - 1) * chunk < max(length, 1)
    items = batch * hkv * row_chunks * splits
    # blocks take items one by one: the expected time (an even share of the keys plus half an item
    # once items outnumber blocks) is at most ~15% over an even share, or one item
    item = chunk + mod.TMA_ITEM_OVERHEAD
    even = batch * hkv * row_chunks * (max(length, 1) + splits * mod.TMA_ITEM_OVERHEAD) / grid
    expected = even + 0.5 * item if items > grid else item
    assert expected <= max(1.15 * even, item)


@pytest.mark.parametrize("batch,hkv,row_chunks,length,sms,expect", [
    (8, 16, 1, 33001, 132, (1, 33024)),   # B8 Hkv16 D256: one item per SM, no split
    (1, 32, 1, 33001, 132, (4, 8320)),    # B1 Hkv32: 128 items of 8320 keys
    (1, 8, 1, 131072, 132, (16, 8192)),   # B1 Hkv8: 128 items
    (4, 4, 1, 32768, 132, (8, 4096)),     # B4 Hkv4 (the short D 64 row): 128 items
    (16, 32, 1, 4096, 132, None),         # 512 rows: more than one item per SM whatever the split
    (128, 1, 1, 1000, 132, None),         # short items: the cost model's choice
])
def test_plan_persistent_one_item_per_sm(batch, hkv, row_chunks, length, sms, expect):
    import sys

    mod = sys.modules["cuattn.decode"]
    plan = mod.plan_persistent(batch, hkv, row_chunks, length, 3 * sms, sms)
    if expect is None:
        assert plan == mod.plan_persistent(batch, hkv, row_chunks, length, 3 * sms)
    else:
        assert plan == expect
        assert 0.9 * sms < batch * hkv * row_chunks * plan[0] <= sms
    # allow_one False (the tensor-core kernel below ONE_PER_SM_MMA_MIN_DIM): the cost model's choice
    many = mod.plan_persistent(batch, hkv, row_chunks, length, 3 * sms, sms, False)
    assert many == mod.plan_persistent(batch, hkv, row_chunks, length, 3 * sms)
    if expect is not None:
        assert many != expect and batch * hkv * row_chunks * many[0] > sms


@pytest.mark.parametrize("chunk,padded,itemsize", [(33024, 128, 2), (8192, 64, 2), (4096, 256, 4), (128, 32, 2),
                                                   (1 << 24, 128, 2), (256, 128, 2)])
def test_steal_plan_grains(monkeypatch, chunk, padded, itemsize):
    """Grains are whole CHUNK_ALIGN keys (whole ring tiles of both kernels), about GRAIN_BYTES of
    K and V unless that makes more than MAX_GRAINS per item (the claim words count them in 16
    bits); the pool leaves room for the grid's pending steals; STEAL off means one grain an item."""
    import sys

    mod = sys.modules["cuattn.decode"]
    monkeypatch.setattr(mod, "STEAL", True)
    grid = 264
    grain, pool, window = mod.steal_plan(chunk, padded, itemsize, 128, grid)
    assert grain % mod.CHUNK_ALIGN == 0 and grain >= mod.CHUNK_ALIGN
    assert -(-chunk // grain) <= mod.MAX_GRAINS
    if chunk < mod.MAX_GRAINS * mod.CHUNK_ALIGN:
        per_key = 2 * padded * itemsize
        assert grain == max(mod.CHUNK_ALIGN, -(-mod.GRAIN_BYTES // per_key // mod.CHUNK_ALIGN) * mod.CHUNK_ALIGN)
    assert grid < pool <= 32767 and window >= grid
    monkeypatch.setattr(mod, "STEAL", False)
    assert mod.steal_plan(chunk, padded, itemsize, 128, grid)[0] >= chunk  # no stealing


def test_steal_plan_owner_grains_needs_a_pool(monkeypatch):
    """The test setting OWNER_GRAINS leaves every grain but the owners' to thieves: the pool must
    hold them all (and thieves look at every item), else a clear error."""
    import sys

    mod = sys.modules["cuattn.decode"]
    monkeypatch.setattr(mod, "STEAL", True)
    monkeypatch.setattr(mod, "OWNER_GRAINS", 1)
    grain, pool, window = mod.steal_plan(4096, 128, 2, 24, 264)
    assert pool >= 264 + 24 * (4096 // grain) and window == 24
    with pytest.raises(ValueError, match="OWNER_GRAINS"):
        mod.steal_plan(1 << 20, 128, 2, 1024, 264)


def test_plan_even_cuts_the_row_groups_end_to_end():
    """plan_even's pieces: equal, whole CHUNK_ALIGN keys, covering every row group (fewer or more
    row groups than pieces); the split slots are the most pieces any row group meets; None where
    pieces would be too short or the order too long for the kernels' 32-bit counts."""
    mod = sys.modules["cuattn.decode"]
    align = mod.CHUNK_ALIGN
    for groups, length, pieces in [(32, 33001, 132), (8, 131072, 132), (128, 33001, 132), (5, 3001, 11), (4, 1024, 4),
                                   (512, 4096, 132), (2048, 2048, 396), (7, 1000, 3)]:
        slots, piece, span, takes = mod.plan_even(groups, length, pieces, 128)
        assert span % align == 0 and span - align < length <= span and piece % align == 0
        assert takes <= pieces and (takes - 1) * piece < groups * span <= takes * piece
        meets = [(rg * span + span - 1) // piece - rg * span // piece + 1 for rg in range(groups)]
        assert slots == max(meets) and sum(meets) == takes + sum(
            1 for rg in range(1, groups) if rg * span % piece)  # a piece that crosses a row start counts twice
    assert mod.plan_even(32, 33001, 132, 1 << 20) is None
    assert mod.plan_even(1 << 20, 1 << 20, 132, 128) is None  # beyond the kernels' 32-bit counts


def test_pick_kernel_falls_back():
    """The split kernel a launch runs: the tensor-core kernel for 16-bit rows at D 64/128, the
    bulk-copy kernel for one or four rows, the register kernel on GPUs other than Hopper (cc 90:
    sm_90a cubins load there only), for eight rows per block and for caches of
    PERSISTENT_MAX_KEYS keys or more (the ring headers' key field), whichever kernel was asked for."""
    mod = sys.modules["cuattn.decode"]
    big = mod.PERSISTENT_MAX_KEYS

    def sizes(hq, hkv, length, sq=1, paged=False, page_size=0):
        return dict(num_q_heads=hq, num_kv_heads=hkv, seqlen_q=sq, cache_len=length, paged=paged,
                    page_size=page_size)

    assert mod.pick_kernel("mma", 90, "half_t", 128, sizes(32, 8, big - 1)) == "mma"
    assert mod.pick_kernel("mma", 90, "half_t", 128, sizes(32, 8, big)) == "regs"
    assert mod.pick_kernel("mma", 90, "float", 128, sizes(32, 4, 4096)) == "regs"  # 8 rows: registers
    assert mod.pick_kernel("mma", 90, "float", 128, sizes(16, 4, 4096)) == "tma"  # 4 rows
    assert mod.pick_kernel("mma", 90, "half_t", 256, sizes(16, 4, 4096)) == "tma"
    # pages shorter than a 64-key tile: the cp.async producer looks them up per row, from 4 keys a page
    assert mod.pick_kernel("mma", 90, "half_t", 128, sizes(16, 4, 4096, paged=True, page_size=16)) == "mma"
    assert mod.pick_kernel("mma", 90, "half_t", 128, sizes(16, 4, 4096, paged=True, page_size=4)) == "mma"
    assert mod.pick_kernel("mma", 90, "half_t", 128, sizes(16, 4, 4096, paged=True, page_size=3)) == "tma"
    assert mod.pick_kernel("mma", 90, "half_t", 128, sizes(16, 4, 4096, paged=True, page_size=192)) == "mma"
    assert mod.pick_kernel("mma", 90, "half_t", 128, sizes(16, 4, 0)) == "tma"
    assert mod.pick_kernel("tma", 90, "half_t", 128, sizes(32, 32, big - 1)) == "tma"
    assert mod.pick_kernel("tma", 90, "half_t", 128, sizes(32, 32, big)) == "regs"
    for kernel in ("mma", "tma", "regs"):
        for cc in (80, 86, 89, 100, 120):  # before Hopper, and after it: sm_90a cubins load on cc 90 only
            assert mod.pick_kernel(kernel, cc, "half_t", 128, sizes(32, 8, 4096)) == "regs"
    # KERNEL None: tensor cores for row groups, and for one row on a strided or paged cache
    assert mod.KERNEL is None
    choices = [mod._kernel_choice(rows, dense) for rows in (1, 4) for dense in (True, False)]
    assert choices == ["tma", "mma", "mma", "mma"]


def test_even_pieces_rule(monkeypatch):
    """even_pieces: the default (EVEN_SPLIT None) cuts pieces on the bulk-copy kernel only, one per
    block with several rows per block, two per SM with one row per block where equal splits would
    be more than one and fewer than EVEN_MAX_SPLITS_PER_BLOCK per block (fewer than
    EVEN_MAX_SPLITS_PER_BLOCK_LONG with row groups of at least EVEN_LONG_ROW_KEYS keys); EVEN_SPLIT
    True: both kernels (EVEN_PIECES or one per SM); False or stealing: never."""
    mod = sys.modules["cuattn.decode"]
    grid, sms = 396, 132
    assert mod.even_pieces("mma", 16, 2048, 264, sms) is None
    assert mod.even_pieces("tma", 4, 128, 264, sms) == 264
    assert [mod.even_pieces("tma", 1, items, grid, sms) for items in (128, 396, 397, 2048, 3167, 3168, 4096)] == \
        [None, None, 264, 264, 264, None, None]
    assert [mod.even_pieces("tma", 1, items, grid, sms, length) for items, length in (
        (3168, 2048), (3168, 2047), (4096, 4096), (4096, 1024), (6335, 2048), (6336, 2048), (396, 4096))] == \
        [264, None, 264, None, 264, None, None]
    monkeypatch.setattr(mod, "EVEN_PIECES", 500)
    assert mod.even_pieces("tma", 1, 128, grid, sms) == 500 and mod.even_pieces("mma", 16, 128, 264, sms) is None
    monkeypatch.setattr(mod, "EVEN_SPLIT", True)
    assert mod.even_pieces("mma", 16, 128, 264, sms) == 500
    monkeypatch.setattr(mod, "EVEN_PIECES", None)
    assert mod.even_pieces("mma", 16, 128, 264, sms) == sms
    monkeypatch.setattr(mod, "STEAL", True)
    assert mod.even_pieces("tma", 1, 2048, grid, sms) is None
    monkeypatch.setattr(mod, "STEAL", False)
    monkeypatch.setattr(mod, "EVEN_SPLIT", False)
    assert mod.even_pieces("tma", 4, 2048, 264, sms) is None


def test_tma_whole_rows_rule(monkeypatch):
    """tma_whole_rows: one row per block, at least TMA_WHOLE_ROWS_PER_SM row groups per SM and at
    most the resident blocks keep every row group whole (B 8 32/32: 256 row groups on 132 SMs of
    396 blocks, yes; 224, 512 or 4 rows per block, no), and only while the default pieces rule is
    in force (TMA_WHOLE_ROWS on: opt-in; EVEN_SPLIT and EVEN_PIECES None, stealing off)."""
    mod = sys.modules["cuattn.decode"]
    sms, grid = 132, 396
    assert not mod.tma_whole_rows(1, 256, sms, grid)  # off by default
    monkeypatch.setattr(mod, "TMA_WHOLE_ROWS", True)
    assert mod.EVEN_SPLIT is None and mod.EVEN_PIECES is None and not mod.STEAL
    assert [mod.tma_whole_rows(1, groups, sms, grid) for groups in (160, 224, 250, 251, 256, 396, 397, 512)] == \
        [False, False, False, True, True, True, False, False]
    assert not mod.tma_whole_rows(4, 256, sms, grid)
    assert not mod.tma_whole_rows(1, 256, 140, 420)  # per SM of the GPU
    assert mod.tma_whole_rows(1, 512, sms, 528) and not mod.tma_whole_rows(1, 512, sms, 511)  # its blocks
    for name, value in (("TMA_WHOLE_ROWS", False), ("EVEN_SPLIT", True), ("EVEN_SPLIT", False),
                        ("EVEN_PIECES", 264), ("STEAL", True)):
        with monkeypatch.context() as m:
            m.setattr(mod, name, value)
            assert not mod.tma_whole_rows(1, 256, sms, grid), name
    # where it applies, the default would otherwise cut even pieces (B 8 32/32 L 8192: 8 equal splits)
    resident = mod.tma_config(1, 128, 2)[0]
    assert resident * sms == grid
    splits, chunk = mod.plan_persistent(8, 32, 1, 8192, grid, sms)
    assert mod.even_pieces("tma", 1, splits * 256, grid, sms, 8192) == 2 * sms


# Module names that are fixed by the CUDA sources or are not launch settings (all other upper-case
# names of cuattn.decode are settings, and a launch plan must be keyed on them)
DECODE_CONSTANTS = {"HEAD_DIMS", "KERNELS", "LOG2E", "MAX_GRID_Z", "MAX_HEAD_DIM", "MAX_PLANS", "MMA_COPIES",
                    "MMA_HEAD_DIMS", "MMA_ROWS", "MMA_TILE_KEYS", "MMA_TYPES", "PERSISTENT_MAX_KEYS",
                    "RING_STAGE_EXTRA", "ROWS", "SMEM_PER_SM", "SMEM_PER_BLOCK", "TMA_TILE_BYTES", "TYPE_NAMES",
                    "VALIDATE_EXPRESSION", "MMA_SLABS_OPTION",
                    "MMA_PACK_LO_OPTION", "PAGE_PREFETCH_OPTION", "STATIC_FIRST_OPTION",
                    "PDL_OPTION", "PDL_TRIGGER_OPTION"}


def test_plan_key_covers_every_setting(monkeypatch):
    """Changing any module setting changes the launch plans' key (_settings): a plan cached under
    one setting is never reused under another (a benchmark column once timed another's plan)."""
    mod = sys.modules["cuattn.decode"]
    names = [n for n in vars(mod) if n.isupper() and not n.startswith("_") and n not in DECODE_CONSTANTS]
    assert "KERNEL" in names and "SHORT_PAGE_MIN" in names
    for name in names:
        before = mod._settings()
        with monkeypatch.context() as m:
            m.setattr(mod, name, object())
            assert mod._settings() != before, f"cuattn.decode.{name} is not in _settings()"


def test_broken_page_cases_found():
    """conftest.py stops a collection holding a paged GPU test case that is not whole pages (two
    such cases first failed in their setup on the device, 21st session). The check itself: it
    names a bad case given by ``length``/``page`` or by a ``case`` tuple, passes whole pages,
    unpaged cases (page 0), tests that never page and tuples whose entry 7 is not a page size."""
    from types import SimpleNamespace

    from helpers import broken_page_cases

    def pages_it(length, page):
        return to_paged(None, None, None, page)

    def plain(length, page):
        return length + page

    def item(fn, **params):
        return SimpleNamespace(function=fn, callspec=SimpleNamespace(params=params), nodeid=f"t[{params}]")

    bad = [item(pages_it, length=3001, page=64), item(pages_it, case=(2, 8, 8, 1, 3000, 128, None, 16, 5))]
    good = [item(pages_it, length=3008, page=64), item(pages_it, length=3001, page_size=0),
            item(pages_it, case=(2, 8, 8, 1, 3001, 128, None, 0)),
            item(pages_it, case=(2, 8, 8, 1, 3001, 128, None, "default")),
            item(plain, length=3001, page=64), SimpleNamespace(function=pages_it, nodeid="no params")]
    assert broken_page_cases(bad + good) == [bad[0].nodeid + " (length 3001, pages of 64)",
                                             bad[1].nodeid + " (length 3000, pages of 16)"]
    assert broken_page_cases(good) == []
