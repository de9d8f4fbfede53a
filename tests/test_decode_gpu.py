"""cuattn.decode on the GPU against the float64 reference (marked gpu; skipped without one).

The reference runs on the same (rounded) inputs, so the only error left is the kernel's:
float32 arithmetic (fp32 accumulation, hardware exp2) and the final rounding of the output to
its dtype. Hence, element by element, |o - ref| <= u |ref| + slack * max|ref row| with u the
output dtype's unit roundoff and slack 2e-5 (fp16/bf16) or 1e-5 (fp32) for the float32 work
(a few float32 ulps over logits of size ~10 and sums over up to 131072 keys). Lesson 5's
failure (7 of 4096 outputs off by up to 2.4e-3 on outputs of size ~1) breaks this bound by
several times. Norm-wise the error must stay under u (fp16/bf16) or 1e-5 (fp32).
Outputs are poisoned (NaN-filled pool blocks of the output sizes) so an unwritten element fails.
"""

import sys

import numpy as np
import pytest

import cuattn
from cuattn._checks import BFLOAT16, dtype_name
from helpers import (UNIT_ROUNDOFF, draw, elementwise_mismatches, flash_layout, lse_error, misaligned, on_device,
                     poison, queued_sets, ragged_inputs, rel_error, to_paged)

pytestmark = pytest.mark.gpu

DTYPES = [np.float16, BFLOAT16, np.float32]
SLACK = {"float16": 2e-5, "bfloat16": 2e-5, "float32": 1e-5}
DECODE_MODULE = sys.modules["cuattn.decode"]


@pytest.fixture(autouse=True, params=DECODE_MODULE.KERNELS)
def split_kernel(request, monkeypatch):
    """Every GPU test runs with each split kernel (DECODE_MODULE.KERNELS). Tests marked
    ``kernels_inside`` (the long caches, where the float64 reference dominates) run once and loop
    over the kernels themselves, sharing one reference."""
    if request.node.get_closest_marker("kernels_inside") and request.param != DECODE_MODULE.KERNELS[0]:
        pytest.skip("runs every kernel inside the test")
    monkeypatch.setattr(DECODE_MODULE, "KERNEL", request.param)
    return request.param


def check(o, lse, q, k, v, **kw):
    """Compare a GPU result with the float64 reference on the same inputs; returns the error."""
    return compare(o, lse, *cuattn.reference.decode(q, k, v, return_lse=True, **kw), q.dtype)


def check_every_kernel(monkeypatch, cp, q, k, v, **kw):
    """Run each split kernel on the same inputs and compare each with one float64 reference."""
    ro, rl = cuattn.reference.decode(q, k, v, return_lse=True, **kw)
    for kernel in DECODE_MODULE.KERNELS:
        monkeypatch.setattr(DECODE_MODULE, "KERNEL", kernel)
        o, lse = run(cp, q, k, v, **kw)
        compare(o, lse, ro, rl, q.dtype)


def compare(o, lse, ro, rl, dtype):
    """A GPU result (o, lse) against the float64 reference (ro, rl); returns the error."""
    name = dtype_name(dtype)
    assert o.dtype == dtype and o.shape == ro.shape and lse.dtype == np.float32
    err = rel_error(o, ro)
    bad = elementwise_mismatches(o, ro, UNIT_ROUNDOFF[name], SLACK[name])
    assert bad == 0, f"{bad} of {ro.size} elements off (norm-wise error {err:.3g})"
    assert err <= (1e-5 if name == "float32" else UNIT_ROUNDOFF[name]), err
    # lse: float32 sums and logs, a few ulps of the largest logit
    assert lse_error(lse, rl) < 1e-5 * max(1.0, np.abs(rl[np.isfinite(rl)]).max(initial=1.0))
    return err


def run(cp, q, k, v, **kw):
    """Copy to the GPU, poison the output sizes, run, return host arrays (o, lse)."""
    dev = on_device(cp, kw)
    batch, hq, sq, d = q.shape
    dq, dk, dv = cp.asarray(q), cp.asarray(k), cp.asarray(v)  # before poisoning: q has o's size
    poison(cp, (batch, hq, sq, d), itemsize=q.dtype.itemsize)
    poison(cp, (batch, hq, sq))
    o, lse = cuattn.decode(dq, dk, dv, return_lse=True, **dev)
    assert isinstance(o, cp.ndarray)
    return o.get(), lse.get()


def run_settings(cp, monkeypatch, name, values, q, k, v, ref, **kw):
    """Run with DECODE_MODULE.<name> set to each of `values` in turn, each result checked on the
    reference `ref`; returns {value: (o, lse)}."""
    out = {}
    for value in values:
        monkeypatch.setattr(DECODE_MODULE, name, value)
        out[value] = run(cp, q, k, v, **kw)
        compare(*out[value], *ref, q.dtype)
    return out


def mma_bits_case(rng, monkeypatch, b, hq, hkv, sq, length, d, page, dtype, copy):
    """A tensor-core (or any persistent kernel's) case for bit-identity tests: work stealing off
    (every item streamed by its owner), MMA_COPY `copy`; fresh q, k, v with ragged lengths (the
    first row whole, the second 0 where b > 2), paged where `page`; returns q, k, v, the call's
    kwargs and the reference."""
    monkeypatch.setattr(DECODE_MODULE, "STEAL", False)
    monkeypatch.setattr(DECODE_MODULE, "MMA_COPY", copy)
    q, k, v = (draw(rng, s, dtype) for s in ((b, hq, sq, d), (b, hkv, length, d), (b, hkv, length, d)))
    lens = rng.integers(sq, length + 1, size=b).astype(np.int32)
    lens[0] = length
    if b > 2:
        lens[1] = 0
    kw = dict(cache_seqlens=lens, alibi_slopes="default")
    if page:
        k, v, kw["block_table"] = to_paged(rng, k, v, page)
    return q, k, v, kw, cuattn.reference.decode(q, k, v, return_lse=True, **kw)


def last_persistent_plan():
    """The launch plan of the last decode call planned for a persistent kernel (its even_rule:
    kernel, rows, items, grid, pieces)."""
    return [p for p in DECODE_MODULE._PLANS.values() if hasattr(p, "even_rule")][-1]


def tma_case_on_sm90(split_kernel, monkeypatch, why):
    """For the tests that pick or plan the bulk-copy kernel's calls themselves: skip unless this is
    the "tma" parametrization (`why` says what the test leaves to the rule) on an sm_90 GPU (the
    persistent kernels' own); the cached plans cleared. Returns the device's properties."""
    if split_kernel != "tma":
        pytest.skip(why)
    props = DECODE_MODULE.device_properties()
    if props["cc"] != 90:
        pytest.skip("the persistent kernels are sm_90's")
    monkeypatch.setattr(DECODE_MODULE, "_PLANS", {})
    return props


def force_thieves(patch, owner_grains=1):
    """Work stealing forced (`patch`: monkeypatch or its context): grains of 128 keys, owners
    stop after `owner_grains` of them (OWNER_GRAINS, a test setting), thieves take the rest."""
    patch.setattr(DECODE_MODULE, "STEAL", True)
    patch.setattr(DECODE_MODULE, "OWNER_GRAINS", owner_grains)
    patch.setattr(DECODE_MODULE, "GRAIN_BYTES", 1)


def assert_counters_zero(cp):
    """The persistent kernels' zero-between-launches counters of this stream are all zero."""
    cp.cuda.Device().synchronize()
    counters = DECODE_MODULE._COUNTERS.get((cp.cuda.Device().id, cp.cuda.get_current_stream().ptr))
    assert counters is None or not bool(cp.any(counters))


# --- lesson 5: long contexts, default slopes ------------------------------------------------

LONG = [
    # (length, D, Hq, Hkv)
    (33001, 128, 8, 8),
    (33001, 256, 8, 2),
    (33001, 128, 12, 4),
    (33001, 256, 12, 12),
    (33001, 128, 32, 8),
    (33001, 256, 40, 8),
    (131072, 128, 32, 8),
    (131072, 256, 40, 8),
    (131072, 128, 12, 1),
    (131072, 256, 8, 8),
]


@pytest.mark.kernels_inside
@pytest.mark.parametrize("length,d,hq,hkv", LONG, ids=str)
def test_gpu_long_context_default_slopes(cp, rng, monkeypatch, length, d, hq, hkv):
    q, k, v = draw(rng, (1, hq, 1, d), np.float16), draw(rng, (1, hkv, length, d), np.float16), \
        draw(rng, (1, hkv, length, d), np.float16)
    check_every_kernel(monkeypatch, cp, q, k, v, alibi_slopes="default")


@pytest.mark.kernels_inside
@pytest.mark.parametrize("dtype", [BFLOAT16, np.float32], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("length", [33001, 131072])
def test_gpu_long_context_other_dtypes(cp, rng, monkeypatch, dtype, length):
    q, k, v = draw(rng, (1, 32, 1, 128), dtype), draw(rng, (1, 8, length, 128), dtype), \
        draw(rng, (1, 8, length, 128), dtype)
    lens = np.array([length - 5], np.int32)
    check_every_kernel(monkeypatch, cp, q, k, v, alibi_slopes="default", cache_seqlens=lens)


@pytest.mark.kernels_inside
def test_gpu_bias_far_below_any_finite_stand_in(cp, rng, monkeypatch):
    """Caller slopes up to 8 at 33001: the bias reaches -2.6e5, far below -5e4; exact masking
    and relative logits keep every element right; no bias at all (slope 0) too."""
    hq = 8
    slopes = np.array([8.0, 2.0, 0.5, 0.01, 1e-4, 0.0, 3.0, 1.0], np.float32)
    q, k, v = draw(rng, (2, hq, 1, 128), np.float16), draw(rng, (2, 4, 33001, 128), np.float16), \
        draw(rng, (2, 4, 33001, 128), np.float16)
    lens = np.array([33001, 20000], np.int32)
    check_every_kernel(monkeypatch, cp, q, k, v, alibi_slopes=slopes, cache_seqlens=lens)


# --- shapes, dtypes, ragged batches, GQA, Sq > 1 ---------------------------------------------

CASES = [
    # (batch, hq, hkv, sq, length, d, lens, slopes)
    (1, 4, 4, 1, 1000, 128, None, None),
    (4, 32, 8, 1, 4099, 128, [4099, 0, 1, 777], "default"),   # ragged, a zero-length row, GQA 4
    (3, 12, 4, 3, 2500, 64, [2500, 2, 1300], "default"),      # Sq 3; a row shorter than Sq
    (2, 40, 8, 2, 3000, 256, [3000, 1999], "default"),        # GQA 5 x Sq 2 = 10 rows: two row chunks
    (2, 16, 1, 1, 5000, 64, [5000, 4097], "array"),           # MQA 16 rows
    (2, 6, 2, 4, 700, 40, [700, 64], "array"),                # D 40 (padded to 64), 12 rows
    (1, 2, 2, 1, 300, 200, None, "default"),                  # D 200 (padded to 256)
    (2, 8, 8, 1, 65, 32, [65, 3], "default"),                 # D 32
    (1, 64, 8, 1, 20000, 128, None, "default"),               # group 8
]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_gpu_matches_reference(cp, rng, dtype, case):
    batch, hq, hkv, sq, length, d, lens, slopes = case
    q, k, v = draw(rng, (batch, hq, sq, d), dtype), draw(rng, (batch, hkv, length, d), dtype), \
        draw(rng, (batch, hkv, length, d), dtype)
    lens = None if lens is None else np.array(lens, np.int32)
    if slopes == "array":
        slopes = rng.uniform(0.0, 1.0, hq).astype(np.float32)
    o, lse = run(cp, q, k, v, cache_seqlens=lens, alibi_slopes=slopes)
    check(o, lse, q, k, v, cache_seqlens=lens, alibi_slopes=slopes)
    if lens is not None:
        assert np.all(np.isneginf(lse[lens == 0])) and np.all(o[lens == 0] == 0)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("page_size", [4, 16, 64, 256])
def test_gpu_paged_identical_to_contiguous(cp, rng, monkeypatch, dtype, page_size, split_kernel):
    """Same keys through a shuffled block table: bit-identical (same arithmetic, same splits)
    whenever both calls run the same kernel without work stealing (which makes the split of the
    keys depend on timing): "tma" copies runs of a page's keys, "mma" (cp.async) looks pages of
    part tiles up per row."""
    monkeypatch.setattr(DECODE_MODULE, "STEAL", False)
    q, k, v = draw(rng, (3, 16, 2, 128), dtype), draw(rng, (3, 4, 8192, 128), dtype), \
        draw(rng, (3, 4, 8192, 128), dtype)
    kp, vp, table = to_paged(rng, k, v, page_size)
    lens = np.array([8192, 5000, 0], np.int32)
    table[1, -1] = -3  # entries past a row's length are never read
    o1, l1 = run(cp, q, k, v, cache_seqlens=lens, alibi_slopes="default")
    o2, l2 = run(cp, q, kp, vp, cache_seqlens=lens, alibi_slopes="default", block_table=table)
    assert np.array_equal(o1, o2, equal_nan=True) and np.array_equal(l1, l2)
    check(o2, l2, q, kp, vp, cache_seqlens=lens, alibi_slopes="default", block_table=table)


def test_gpu_concurrent_streams_and_repeated_calls(cp, rng):
    """Calls queued on two streams at once, several times over, each match the reference (the
    bulk-copy kernel's split counters are per stream and reset by the merging block)."""
    shapes = [((1, 32, 1, 128), (1, 8, 20000, 128)), ((4, 8, 2, 64), (4, 8, 3000, 64))]
    inputs = [(draw(rng, qs, np.float16), draw(rng, ks, np.float16), draw(rng, ks, np.float16)) for qs, ks in shapes]
    dev = [tuple(cp.asarray(x) for x in xs) for xs in inputs]
    streams = [cp.cuda.Stream(non_blocking=True) for _ in dev]
    outs = [[] for _ in dev]
    for _ in range(3):
        for i, (stream, (q, k, v)) in enumerate(zip(streams, dev)):
            with stream:
                outs[i].append(cuattn.decode(q, k, v, alibi_slopes="default", return_lse=True))
    for stream in streams:
        stream.synchronize()
    for (q, k, v), results in zip(inputs, outs):
        for o, lse in results:
            check(o.get(), lse.get(), q, k, v, alibi_slopes="default")


@pytest.mark.parametrize("paged", [False, True], ids=["contiguous", "paged"])
def test_gpu_repeated_layout_reuses_its_plan(cp, rng, split_kernel, paged):
    """Calls with one layout share one launch plan (checked and planned once), yet each gets its
    own data right: new queries, lengths, cache arrays (new addresses: new tensor maps) and block
    tables, queued back to back without a sync; a bad length or page through the cached plan
    still raises, and the calls after it are right again."""
    b, hq, hkv, length, d = 3, 16, 4, 4096, 128

    def inputs():
        q, k, v = draw(rng, (b, hq, 1, d), np.float16), draw(rng, (b, hkv, length, d), np.float16), \
            draw(rng, (b, hkv, length, d), np.float16)
        kw = dict(cache_seqlens=rng.integers(1, length + 1, b).astype(np.int32), alibi_slopes="default")
        if paged:
            k, v, kw["block_table"] = to_paged(rng, k, v, 64)
        return q, k, v, kw

    def queue(q, k, v, kw):
        return cuattn.decode(cp.asarray(q), cp.asarray(k), cp.asarray(v), return_lse=True,
                             **on_device(cp, kw))

    first = inputs()
    results = [(first, queue(*first))]
    plans = dict(DECODE_MODULE._PLANS)
    for _ in range(3):
        args = inputs()
        results.append((args, queue(*args)))
    assert DECODE_MODULE._PLANS == plans  # no new plan: the same objects under the same keys
    for (q, k, v, kw), (o, lse) in results:
        check(o.get(), lse.get(), q, k, v, **kw)
    q, k, v, kw = inputs()
    bad = dict(kw, cache_seqlens=np.array([length, length + 1, 5], np.int32))
    with pytest.raises(ValueError, match="cache_seqlens must lie"):
        queue(q, k, v, bad)
    if paged:
        kw["block_table"][1, 0] = kw["block_table"].max() + 1
        with pytest.raises(ValueError, match="pages outside"):
            queue(q, k, v, kw)
        kw["block_table"][1, 0] = 0
    o, lse = queue(q, k, v, kw)
    check(o.get(), lse.get(), q, k, v, **kw)
    assert DECODE_MODULE._PLANS == plans


@pytest.mark.parametrize("rows", [False, True], ids=["contiguous", "rows"])
def test_gpu_unaligned_inputs(cp, rng, rows):
    """q and caches whose data starts off a 16-byte boundary (contiguous, or rows one element
    longer) are copied to aligned memory on every call, the first and those through the cached
    plan, and the plan's strides are the copies'."""
    b, hq, hkv, length, d = 2, 8, 2, 3000, 128
    for _ in range(3):
        q, k, v = draw(rng, (b, hq, 1, d), np.float16), draw(rng, (b, hkv, length, d), np.float16), \
            draw(rng, (b, hkv, length, d), np.float16)
        lens = rng.integers(1, length + 1, b).astype(np.int32)
        o, lse = cuattn.decode(*(misaligned(cp, x, rows) for x in (q, k, v)), cache_seqlens=cp.asarray(lens),
                               alibi_slopes="default", return_lse=True)
        check(o.get(), lse.get(), q, k, v, cache_seqlens=lens, alibi_slopes="default")


@pytest.mark.kernels_inside
def test_gpu_paged_long(cp, rng, monkeypatch):
    q, k, v = draw(rng, (2, 32, 1, 128), np.float16), draw(rng, (2, 8, 33024, 128), np.float16), \
        draw(rng, (2, 8, 33024, 128), np.float16)
    kp, vp, table = to_paged(rng, k, v, 64)
    lens = np.array([33001, 1], np.int32)
    check_every_kernel(monkeypatch, cp, q, kp, vp, cache_seqlens=lens, alibi_slopes="default", block_table=table)


@pytest.mark.parametrize("scale", [-1.0, 0.0, 0.3])
def test_gpu_scales(cp, rng, scale):
    q, k, v = draw(rng, (2, 8, 2, 64), np.float32), draw(rng, (2, 2, 3000, 64), np.float32), \
        draw(rng, (2, 2, 3000, 64), np.float32)
    o, lse = run(cp, q, k, v, scale=scale, alibi_slopes="default")
    check(o, lse, q, k, v, scale=scale, alibi_slopes="default")


def test_gpu_zero_lengths(cp, rng):
    q, k = cp.asarray(draw(rng, (2, 4, 2, 64), np.float16)), cp.asarray(draw(rng, (2, 2, 100, 64), np.float16))
    lens = cp.zeros(2, cp.int32)
    poison(cp, (2, 4, 2, 64), itemsize=2)
    poison(cp, (2, 4, 2))
    o, lse = cuattn.decode(q, k, k, cache_seqlens=lens, alibi_slopes="default", return_lse=True)
    assert bool(cp.all(o == 0)) and bool(cp.all(cp.isneginf(lse)))
    empty = cp.zeros((2, 2, 0, 64), cp.float16)
    poison(cp, (2, 4, 2, 64), itemsize=2)
    poison(cp, (2, 4, 2))
    o, lse = cuattn.decode(q, empty, empty, return_lse=True)
    assert bool(cp.all(o == 0)) and bool(cp.all(cp.isneginf(lse)))


def test_gpu_strided_cache_view(cp, rng):
    """A (B, L, H, D) cache passed as a transposed view (no copy); a cache longer than used."""
    q = draw(rng, (2, 8, 1, 128), np.float16)
    k, v = draw(rng, (2, 5000, 2, 128), np.float16), draw(rng, (2, 5000, 2, 128), np.float16)
    kt, vt = (np.ascontiguousarray(x.transpose(0, 2, 1, 3)) for x in (k, v))
    lens = np.array([4321, 5000], np.int32)
    dq, dk, dv, dlens = cp.asarray(q), cp.asarray(k).transpose(0, 2, 1, 3), cp.asarray(v).transpose(0, 2, 1, 3), \
        cp.asarray(lens)
    poison(cp, (2, 8, 1, 128), itemsize=2)
    poison(cp, (2, 8, 1))
    o, lse = cuattn.decode(dq, dk, dv, cache_seqlens=dlens, alibi_slopes="default", return_lse=True)
    check(o.get(), lse.get(), q, kt, vt, cache_seqlens=lens, alibi_slopes="default")


def test_gpu_nan_stays_in_its_row(cp, rng):
    q, k, v = draw(rng, (2, 4, 1, 64), np.float16), draw(rng, (2, 2, 500, 64), np.float16), \
        draw(rng, (2, 2, 500, 64), np.float16)
    q[1, 2, 0, 7] = np.nan
    o, lse = run(cp, q, k, v, alibi_slopes="default")
    o = o.astype(np.float32)
    assert np.all(np.isnan(o[1, 2, 0])) and np.isnan(lse[1, 2, 0])
    o[1, 2, 0] = 0
    lse[1, 2, 0] = 0
    assert np.all(np.isfinite(o)) and np.all(np.isfinite(lse))


def test_gpu_inputs_not_modified(cp, rng):
    q, k, v = (cp.asarray(draw(rng, s, np.float16)) for s in ((1, 4, 1, 64), (1, 2, 300, 64), (1, 2, 300, 64)))
    before = [x.copy() for x in (q, k, v)]
    cuattn.decode(q, k, v, alibi_slopes="default")
    assert all(bool(cp.array_equal(a, b)) for a, b in zip((q, k, v), before))


def test_gpu_errors(cp):
    q = cp.ones((2, 4, 1, 64), cp.float16)
    k = cp.ones((2, 2, 16, 64), cp.float16)
    with pytest.raises(ValueError, match="cache_seqlens must lie"):
        cuattn.decode(q, k, k, cache_seqlens=cp.array([17, 1], cp.int32))
    with pytest.raises(TypeError, match="cache_seqlens must be int32"):
        cuattn.decode(q, k, k, cache_seqlens=cp.array([1, 1], cp.int64))
    with pytest.raises(TypeError, match="mix NumPy and GPU"):
        cuattn.decode(q, k, k, cache_seqlens=np.array([1, 1], np.int32))
    pages = cp.ones((4, 2, 8, 64), cp.float16)
    with pytest.raises(ValueError, match="pages outside"):
        cuattn.decode(q, pages, pages, block_table=cp.array([[0, 1], [2, 4]], cp.int32))
    with pytest.raises(ValueError, match="pages outside"):
        cuattn.decode(q, pages, pages, block_table=cp.array([[0, -1], [2, 3]], cp.int32),
                      cache_seqlens=cp.array([9, 16], cp.int32))
    with pytest.raises(ValueError, match="cache_seqlens must lie"):
        cuattn.decode(q, pages, pages, block_table=cp.array([[0, 1], [2, 3]], cp.int32),
                      cache_seqlens=cp.array([-1, 3], cp.int32))
    with pytest.raises(ValueError, match="cache_seqlens must lie"):
        cuattn.decode(q, pages, pages, block_table=cp.array([[0, 1], [2, 3]], cp.int32),
                      cache_seqlens=cp.array([17, 3], cp.int32))
    # pages past a row's length are never read, so they are not checked
    o = cuattn.decode(q, pages, pages, block_table=cp.array([[0, 99], [2, -5]], cp.int32),
                      cache_seqlens=cp.array([8, 0], cp.int32))
    assert bool(cp.all(cp.isfinite(o)))
    with pytest.raises(ValueError, match="head dim D=20"):
        cuattn.decode(cp.ones((1, 2, 1, 20), cp.float16), cp.ones((1, 2, 5, 20), cp.float16),
                      cp.ones((1, 2, 5, 20), cp.float16))


def test_gpu_value_checks_come_before_the_attention_launches(cp, rng, monkeypatch, split_kernel):
    """Bad lengths or pages raise after the check kernel. Every attention kernel is queued right
    after the check (so the GPU need not wait for the host) and skips all work on its flags: the
    work counters are back to zero and the next calls are right (tests/sanitize_decode.py runs
    such calls under memcheck)."""
    launched = []
    real_launch = DECODE_MODULE.launch_packed
    monkeypatch.setattr(DECODE_MODULE, "launch_packed",
                        lambda packed, *a: (launched.append(packed.kernel), real_launch(packed, *a)))
    q = cp.ones((2, 4, 1, 64), cp.float16)
    pages = cp.ones((4, 2, 8, 64), cp.float16)
    validate = DECODE_MODULE.get_kernel("decode.cu", DECODE_MODULE.VALIDATE_EXPRESSION)
    with pytest.raises(ValueError, match="pages outside"):
        cuattn.decode(q, pages, pages, block_table=cp.array([[0, 1], [2, 4]], cp.int32))
    persistent = split_kernel != "regs" and DECODE_MODULE.device_properties()["cc"] >= 90
    assert launched[0] is validate and len(launched) == (2 if persistent else 3)  # (regs: split, merge)
    with pytest.raises(ValueError, match="cache_seqlens must lie"):
        cuattn.decode(q, pages, pages, block_table=cp.array([[0, 1], [2, 3]], cp.int32),
                      cache_seqlens=cp.array([16, 1 << 30], cp.int32))
    assert_counters_zero(cp)
    qr = draw(rng, (2, 4, 1, 64), np.float16)
    kr, vr = draw(rng, (4, 2, 8, 64), np.float16), draw(rng, (4, 2, 8, 64), np.float16)
    table = np.array([[3, 1], [0, 2]], np.int32)
    got = cuattn.decode(cp.asarray(qr), cp.asarray(kr), cp.asarray(vr), block_table=cp.asarray(table))
    ref = cuattn.reference.decode(qr, kr, vr, block_table=table)
    assert rel_error(got, ref) < 2e-3
    launched.clear()
    o = cuattn.decode(q, pages, pages, block_table=cp.array([[0, 1], [2, 3]], cp.int32))
    assert launched[0] is validate and len(launched) >= 2
    assert bool(cp.all(cp.isfinite(o)))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("hq,hkv,sq,length,d", [(8, 8, 1, 5000, 128), (32, 8, 1, 9001, 128), (16, 2, 1, 3000, 256),
                                                (12, 4, 3, 777, 72), (6, 3, 2, 64, 32)], ids=str)
def test_gpu_kernels_bit_identical(cp, rng, monkeypatch, split_kernel, dtype, hq, hkv, sq, length, d):
    """The two split kernels do the same math in the same order: identical bits (given the same
    split of the keys: the persistent kernel takes the register kernel's plan here, and does not
    steal)."""
    if split_kernel != "tma":
        pytest.skip("compares both kernels once")
    monkeypatch.setattr(DECODE_MODULE, "STEAL", False)
    plan = DECODE_MODULE.plan
    monkeypatch.setattr(DECODE_MODULE, "plan_persistent", lambda b, hkv_, chunks, length, grid, sms=0, allow_one=True:
                        plan(dict(batch=b, num_q_heads=hq, num_kv_heads=hkv_, seqlen_q=sq, cache_len=length), 132)[2:])
    q, k, v = (draw(rng, s, dtype) for s in ((2, hq, sq, d), (2, hkv, length, d), (2, hkv, length, d)))
    kw = dict(cache_seqlens=np.array([length, max(0, length // 3)], np.int32), alibi_slopes="default")
    o1, l1 = run(cp, q, k, v, **kw)
    monkeypatch.setattr(DECODE_MODULE, "KERNEL", "regs")
    o2, l2 = run(cp, q, k, v, **kw)
    np.testing.assert_array_equal(o1, o2)
    np.testing.assert_array_equal(l1, l2)


# --- the tensor-core kernel's two producers (MMA_COPY) -------------------------------------------

MMA_COPY_CASES = [
    # (B, Hq, Hkv, Sq, L, D, lens, paged page size or 0)
    (2, 32, 8, 1, 9001, 128, [9001, 4097], 0),
    (3, 12, 4, 3, 777, 96, [777, 130, 3], 0),
    (4, 12, 4, 2, 3000, 64, [3000, 129, 0, 2048], 0),
    (2, 32, 8, 1, 8192, 128, [8192, 5000], 64),
    (2, 16, 2, 2, 4096, 128, [4096, 1000], 256),
    (1, 16, 1, 1, 130, 128, [130], 0),
    (2, 40, 8, 1, 4160, 72, [4160, 64], 64),
]


@pytest.mark.parametrize("dtype", [np.float16, BFLOAT16], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", MMA_COPY_CASES, ids=str)
def test_gpu_mma_copies_bit_identical(cp, rng, monkeypatch, split_kernel, dtype, case):
    """The cp.async producer fills tiles the consumers read as the tensor copies'
    (zeros past D and past the item's keys included): identical bits, all on the reference; and
    with thieves forced (OWNER_GRAINS) on the reference too."""
    if split_kernel != "mma":
        pytest.skip("the tensor-core kernel's producers")
    b, hq, hkv, sq, length, d, lens, page = case
    monkeypatch.setattr(DECODE_MODULE, "STEAL", False)
    q, k, v = (draw(rng, s, dtype) for s in ((b, hq, sq, d), (b, hkv, length, d), (b, hkv, length, d)))
    kw = dict(cache_seqlens=np.array(lens, np.int32), alibi_slopes="default")
    if page:
        k, v, kw["block_table"] = to_paged(rng, k, v, page)
    ref = cuattn.reference.decode(q, k, v, return_lse=True, **kw)
    out = run_settings(cp, monkeypatch, "MMA_COPY", DECODE_MODULE.MMA_COPIES, q, k, v, ref, **kw)
    for copy in DECODE_MODULE.MMA_COPIES:
        np.testing.assert_array_equal(out["tensor"][0], out[copy][0], err_msg=copy)
        np.testing.assert_array_equal(out["tensor"][1], out[copy][1], err_msg=copy)
    force_thieves(monkeypatch)
    for copy in DECODE_MODULE.MMA_COPIES:
        monkeypatch.setattr(DECODE_MODULE, "MMA_COPY", copy)
        compare(*run(cp, q, k, v, **kw), *ref, q.dtype)


def test_gpu_mma_cp_async_strided_views(cp, rng, monkeypatch, split_kernel):
    """cp.async reads any 16-byte-aligned strides in place: a cache that is
    a column slice of a wider array, and one whose heads share one row (zero stride: the tensor
    copies copy such a cache first); bit-identical to the tensor copies, all on the reference."""
    if split_kernel != "mma":
        pytest.skip("the tensor-core kernel's producers")
    b, hq, hkv, length, d = 2, 16, 2, 3000, 128
    q = draw(rng, (b, hq, 1, d), np.float16)
    wide = cp.asarray(draw(rng, (b, hkv, length, 2 * d), np.float16))
    views = {"column slice": (wide[..., :d], wide[..., d:]),
             "zero head stride": (cp.broadcast_to(wide[:, :1, :, :d], (b, hkv, length, d)),
                                  cp.broadcast_to(wide[:, :1, :, d:], (b, hkv, length, d)))}
    lens = np.array([length, 1234], np.int32)
    for name, (kc, vc) in views.items():
        ref = cuattn.reference.decode(q, kc.get(), vc.get(), cache_seqlens=lens, alibi_slopes="default")
        out = {}
        for copy in DECODE_MODULE.MMA_COPIES:
            monkeypatch.setattr(DECODE_MODULE, "MMA_COPY", copy)
            poison(cp, (b, hq, 1, d), itemsize=2)
            out[copy] = cuattn.decode(cp.asarray(q), kc, vc, cache_seqlens=cp.asarray(lens),
                                      alibi_slopes="default").get()
            assert rel_error(out[copy], ref) <= UNIT_ROUNDOFF["float16"], (name, copy)
        for copy in DECODE_MODULE.MMA_COPIES:
            np.testing.assert_array_equal(out["tensor"], out[copy], err_msg=f"{name}: {copy}")


PREFETCH_CASES = [
    # (B, Hq, Hkv, Sq, L, D, lens, page size)
    (2, 32, 8, 1, 8192, 128, [8192, 5000], 64),
    (3, 16, 2, 2, 4096, 128, [4096, 1000, 1], 256),
    (2, 16, 4, 1, 3008, 64, [3008, 193], 64),
    (2, 24, 8, 1, 2560, 72, [2560, 640], 128),
]


def thieves_and_pieces(cp, monkeypatch, q, k, v, ref, **kw):
    """The call on the reference `ref` with thieves forced (grains from the back), then with even
    pieces (5 pieces of the row groups' keys), the module's other settings as they are."""
    with monkeypatch.context() as m:
        force_thieves(m)
        compare(*run(cp, q, k, v, **kw), *ref, q.dtype)
    with monkeypatch.context() as m:
        m.setattr(DECODE_MODULE, "EVEN_SPLIT", True)
        m.setattr(DECODE_MODULE, "EVEN_MIN_KEYS", 128)
        m.setattr(DECODE_MODULE, "EVEN_PIECES", 5)
        compare(*run(cp, q, k, v, **kw), *ref, q.dtype)


@pytest.mark.parametrize("dtype", [np.float16, BFLOAT16], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", PREFETCH_CASES, ids=str)
def test_gpu_page_prefetch_bit_identical(cp, rng, monkeypatch, split_kernel, dtype, case):
    """PAGE_PREFETCH (opt-in: block-table entries loaded a page ahead by the cp.async producer):
    identical bits to the default on paged caches (pages of 1 and more tiles, ragged lengths that
    end inside and at the end of a page, Sq 2, D 64 and 72), on the reference; and on the
    reference with thieves forced (grains from the back) and with even pieces."""
    if split_kernel != "mma":
        pytest.skip("the tensor-core kernel's cp.async producer")
    b, hq, hkv, sq, length, d, lens, page = case
    monkeypatch.setattr(DECODE_MODULE, "MMA_COPY", "cp.async")
    q, k, v = (draw(rng, s, dtype) for s in ((b, hq, sq, d), (b, hkv, length, d), (b, hkv, length, d)))
    kw = dict(cache_seqlens=np.array(lens, np.int32), alibi_slopes="default")
    k, v, kw["block_table"] = to_paged(rng, k, v, page)
    ref = cuattn.reference.decode(q, k, v, return_lse=True, **kw)
    out = run_settings(cp, monkeypatch, "PAGE_PREFETCH", (False, True), q, k, v, ref, **kw)
    np.testing.assert_array_equal(out[False][0], out[True][0])
    np.testing.assert_array_equal(out[False][1], out[True][1])
    thieves_and_pieces(cp, monkeypatch, q, k, v, ref, **kw)


PACK_LO_CASES = [
    # (B, Hq, Hkv, Sq, L, D, lens, page size or 0): query rows per row group (Hq / Hkv x Sq)
    (2, 32, 8, 1, 9001, 128, [9001, 4097], 0),       # 4 rows
    (3, 12, 4, 2, 3000, 64, [3000, 1, 0], 0),        # 6 rows, a row shorter than Sq, an empty one
    (2, 16, 2, 1, 5000, 128, [5000, 2500], 0),       # 8 rows: every row g + 8 carries P_lo
    (2, 32, 8, 1, 8192, 128, [8192, 5000], 64),      # paged
    (2, 32, 2, 1, 3000, 128, [3000, 1700], 0)]       # 16 rows: the host leaves the option off


@pytest.mark.parametrize("dtype", [np.float16, BFLOAT16], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", PACK_LO_CASES, ids=str)
def test_gpu_mma_pack_lo(cp, rng, monkeypatch, split_kernel, dtype, case):
    """MMA_PACK_LO (the default: with at most 8 query rows a row group, the tensor-core kernel's P V
    product carries P_lo of rows g in rows g + 8, one product a tile): on the reference with each
    producer, with thieves forced and with even pieces, no less accurate than the default, and
    asked for only where a row group has at most 8 rows."""
    if split_kernel != "mma":
        pytest.skip("the tensor-core kernel")
    monkeypatch.setattr(DECODE_MODULE, "_PLANS", {})  # (only this test's plans below)
    b, hq, hkv, sq, length, d, lens, page = case
    q, k, v = (draw(rng, s, dtype) for s in ((b, hq, sq, d), (b, hkv, length, d), (b, hkv, length, d)))
    kw = dict(cache_seqlens=np.array(lens, np.int32), alibi_slopes="default")
    if page:
        k, v, kw["block_table"] = to_paged(rng, k, v, page)
    ref = cuattn.reference.decode(q, k, v, return_lse=True, **kw)
    for copy in DECODE_MODULE.MMA_COPIES:
        monkeypatch.setattr(DECODE_MODULE, "MMA_COPY", copy)
        out = run_settings(cp, monkeypatch, "MMA_PACK_LO", (False, True), q, k, v, ref, **kw)
        err = {value: rel_error(out[value][0], ref[0]) for value in out}
        assert err[True] <= 1.05 * err[False] + 1e-7, err
    thieves_and_pieces(cp, monkeypatch, q, k, v, ref, **kw)
    packed = [DECODE_MODULE.MMA_PACK_LO_OPTION in plan.options
              for plan in DECODE_MODULE._PLANS.values() if hasattr(plan, "options")]
    assert any(packed) == (hq // hkv * sq <= 8)
    assert_counters_zero(cp)


@pytest.mark.parametrize("b, hq, hkv, d", [(2, 16, 2, 64), (2, 32, 2, 64), (2, 32, 8, 128), (2, 32, 2, 128)],
                         ids=["d64_8rows", "d64_16rows", "d128_4rows", "d128_16rows"])
def test_gpu_mma_default_copy(cp, rng, monkeypatch, split_kernel, b, hq, hkv, d):
    """MMA_COPY None: the tensor-core kernel fills its ring by cp.async at D 128, and at D 64 where
    P_lo is packed (row groups of <= 8 rows), by tensor copies at D 64 unpacked; right on the
    reference either way."""
    if split_kernel != "mma":
        pytest.skip("the tensor-core kernel's producers")
    assert DECODE_MODULE.MMA_COPY is None and DECODE_MODULE.MMA_PACK_LO
    monkeypatch.setattr(DECODE_MODULE, "_PLANS", {})
    length = 3001
    q, k, v = (draw(rng, s, np.float16) for s in ((b, hq, 1, d), (b, hkv, length, d), (b, hkv, length, d)))
    kw = dict(cache_seqlens=np.array([length, 1500], np.int32), alibi_slopes="default")
    compare(*run(cp, q, k, v, **kw), *cuattn.reference.decode(q, k, v, return_lse=True, **kw), q.dtype)
    plans = [plan for plan in DECODE_MODULE._PLANS.values() if hasattr(plan, "options")]
    assert len(plans) == 1 and plans[0].expression.startswith("decode_split_mma<")
    packed = hq // hkv <= 8
    assert (DECODE_MODULE.MMA_PACK_LO_OPTION in plans[0].options) == packed
    assert plans[0].expression.endswith(", true>" if d == 128 or packed else ", false>")
    assert (plans[0].tensor_maps is None) == (d == 128 or packed)
    assert_counters_zero(cp)


@pytest.mark.parametrize("layout", ["bshd", "paged 16", "paged 100", "paged 16 nhd", "paged 64 nhd", "dense"])
@pytest.mark.parametrize("hq, hkv, d", [(8, 8, 128), (8, 8, 64), (16, 4, 128), (8, 8, 256)],
                         ids=["mha_d128", "mha_d64", "gqa_d128", "mha_d256"])
def test_gpu_cache_layouts(cp, rng, monkeypatch, split_kernel, layout, hq, hkv, d):
    """How each layout reaches shared memory (KERNEL None): strided key rows (FlashAttention's
    (B, L, Hkv, D) as its transpose) and paged caches go to the tensor-core kernel where it takes
    the head dim (cp.async: any stride; pages of 16 or 100 keys looked up per 16-row group or per
    row), one row per block included, and so does a dense cache of one row per block where a
    one-row rule takes it (ONE_ROW_MMA_FEW: MHA D 128's 16 row groups, each split); else to the
    bulk-copy kernel, one copy per key row where strided, per page's run of keys where pages are
    not whole tiles (run_keys), per whole tile where dense. "nhd": vLLM's paged (pages, page_size,
    Hkv, D) passed as its transpose (strided pages: whole tiles of strided rows at 64 keys, row by
    row at 16). Right on the reference (ragged, a row ending mid-page), bit-identical to the dense
    cache's call where both run the same kernel."""
    if split_kernel != DECODE_MODULE.KERNELS[0]:
        pytest.skip("the automatic choice (KERNEL None): once")
    monkeypatch.setattr(DECODE_MODULE, "KERNEL", None)
    monkeypatch.setattr(DECODE_MODULE, "_PLANS", {})
    monkeypatch.setattr(DECODE_MODULE, "STEAL", False)  # (bit-identity: splits fixed)
    b, length = 2, 3200  # (whole pages: the paged call's cache length, hence its splits, as the dense one's)
    q, k, v = (draw(rng, s, np.float16) for s in ((b, hq, 1, d), (b, hkv, length, d), (b, hkv, length, d)))
    kw = dict(cache_seqlens=np.array([length - 7, 1234], np.int32), alibi_slopes="default")
    kc, vc = k, v
    if layout.startswith("paged"):
        kc, vc, kw["block_table"] = to_paged(rng, k, v, int(layout.split()[1]))
    ref_kv = (kc, vc)
    strided = layout == "bshd" or layout.endswith("nhd")
    if strided:  # (built on the GPU: key rows hkv x d apart)
        kc, vc = flash_layout(cp, kc), flash_layout(cp, vc)
        assert kc.strides[2] == hkv * d * 2
    o, lse = run(cp, q, kc, vc, **kw)
    compare(o, lse, *cuattn.reference.decode(q, *ref_kv, return_lse=True, **kw), q.dtype)
    plans = [plan for plan in DECODE_MODULE._PLANS.values() if hasattr(plan, "expression")]
    assert len(plans) == 1
    expr, run_keys = plans[0].expression, plans[0].run_keys
    one_row_mma = DECODE_MODULE.one_row_takes_mma(b, hkv, length, d, DECODE_MODULE.device_properties()["num_sms"])
    if d in DECODE_MODULE.MMA_HEAD_DIMS and (hq != hkv or layout != "dense" or one_row_mma):
        assert expr.startswith("decode_split_mma<")
        if layout.startswith("paged"):
            assert expr.endswith(", true>")  # cp.async
    else:
        assert expr.startswith("decode_split_tma<")
        tile = DECODE_MODULE.tma_tile_keys(d, 2)
        if strided:
            assert run_keys == 1
        elif layout.startswith("paged"):
            pages = int(layout.split()[1])
            assert run_keys == (0 if pages % tile == 0 else pages)
        else:
            assert run_keys in (0, 1 << 30)
    if layout != "dense":
        kw.pop("block_table", None)
        monkeypatch.setattr(DECODE_MODULE, "_PLANS", {})
        o2, lse2 = run(cp, q, k, v, **kw)
        dense_expr = [plan.expression for plan in DECODE_MODULE._PLANS.values() if hasattr(plan, "expression")][0]
        if dense_expr.split("<")[0] == expr.split("<")[0]:  # the same kernel both times
            assert np.array_equal(o, o2, equal_nan=True) and np.array_equal(lse, lse2)
    assert_counters_zero(cp)


def opt_in_runs(cp, monkeypatch, name, q, k, v, exact, **kw):
    """DECODE_MODULE.<name> off, then on: each on the float64 reference, a failed value check in
    between (the next call is right again), and the repeated call the same bits where `exact`;
    returns {False: (o, lse), True: (o, lse)}."""
    ref = cuattn.reference.decode(q, k, v, return_lse=True, **kw)
    b, length = q.shape[0], k.shape[2] * (kw["block_table"].shape[1] if "block_table" in kw else 1)
    out = {}
    for value in (False, True):
        monkeypatch.setattr(DECODE_MODULE, name, value)
        out[value] = run(cp, q, k, v, **kw)
        compare(*out[value], *ref, q.dtype)
        with pytest.raises(ValueError, match="cache_seqlens must lie"):
            run(cp, q, k, v, **dict(kw, cache_seqlens=np.full(b, length + 1, np.int32)))
        again = run(cp, q, k, v, **kw)
        compare(*again, *ref, q.dtype)
        if exact:
            np.testing.assert_array_equal(again[0], out[value][0])
            np.testing.assert_array_equal(again[1], out[value][1])
    return out


@pytest.mark.parametrize("steal", [False, True], ids=["owners", "thieves"])
def test_gpu_static_first_items(cp, rng, monkeypatch, split_kernel, steal):
    """STATIC_FIRST (opt-in: block i's first item is i, the counter hands out the rest): the same
    bits as the default without stealing, the reference with thieves forced; over repeated calls,
    one-item-per-SM and many-items-per-block plans, paged caches, a failed value check in
    between (every block drains the counter: the next call is right again), and the counters
    zero afterwards."""
    if split_kernel == "regs":
        pytest.skip("the register kernel is not persistent")
    if steal:
        force_thieves(monkeypatch)
    for b, hq, hkv, length, d, page in [(1, 32, 8, 33001, 128, 0), (24, 32, 8, 4096, 128, 0), (3, 8, 8, 5000, 64, 0),
                                        (2, 16, 4, 8192, 128, 256)]:
        q, k, v, kw = ragged_inputs(rng, b, hq, hkv, length, d, page)
        out = opt_in_runs(cp, monkeypatch, "STATIC_FIRST", q, k, v, exact=not steal, **kw)
        if not steal:
            np.testing.assert_array_equal(out[False][0], out[True][0])
            np.testing.assert_array_equal(out[False][1], out[True][1])
    assert_counters_zero(cp)


@pytest.mark.parametrize("b, hq, hkv, sq, length, d, page, copy", [
    (1, 32, 8, 1, 33001, 128, 0, "cp.async"),   # split row groups: one block per SM, the deep ring
    (1, 32, 8, 1, 20000, 128, 0, "tensor"),
    (4, 32, 4, 1, 8192, 64, 0, "tensor"),       # D 64: two blocks per SM of 4 stages
    (3, 16, 4, 2, 3000, 128, 0, "cp.async"),    # 8 query rows a group (2 tokens), a zero-length row
    (2, 16, 4, 1, 8192, 128, 256, "cp.async"),  # paged
    (3, 8, 8, 1, 5056, 64, 64, "tensor")])      # one query row a group, paged (whole pages)
def test_gpu_mma_slabs_same_bits(cp, rng, monkeypatch, split_kernel, b, hq, hkv, sq, length, d, page, copy):
    """MMA_SLABS (the default since the 40th session: with P_lo packed, every warp writes its rows
    into a slab of its own at once and the rows' writes add the slabs warp by warp, where the
    shared memory leaves the blocks per SM as they are) against the warps' serial merge (False):
    the same sums in the same order, so the same bits; each on the float64 reference, ragged and
    zero lengths, both producers, and the plan's options say which ran."""
    if split_kernel != "mma":
        pytest.skip("the tensor-core kernel's item end")
    q, k, v, kw, ref = mma_bits_case(rng, monkeypatch, b, hq, hkv, sq, length, d, page, np.float16, copy)
    out = {}
    for slabs in (False, True):
        monkeypatch.setattr(DECODE_MODULE, "MMA_SLABS", slabs)
        out[slabs] = run(cp, q, k, v, **kw)
        compare(*out[slabs], *ref, q.dtype)
        plan = last_persistent_plan()
        stages = int(plan.expression.split(", ")[-2])
        fits = DECODE_MODULE.mma_slabs_fit(stages, d, DECODE_MODULE._mma_resident(stages, d))
        packed = DECODE_MODULE.MMA_PACK_LO_OPTION in plan.options
        assert (DECODE_MODULE.MMA_SLABS_OPTION in plan.options) == (slabs and packed and fits), plan.expression
        assert not slabs or d != 64 or DECODE_MODULE.MMA_SLABS_OPTION in plan.options  # (D 64 always has room)
    np.testing.assert_array_equal(out[False][0], out[True][0])
    np.testing.assert_array_equal(out[False][1], out[True][1])
    assert_counters_zero(cp)


TICKETS = ("-DCUATTN_DECODE_TICKETS",)  # decode.cu, Work: the probe option (40th session)


@pytest.mark.parametrize("b, hq, hkv, sq, length, d, page", [
    (1, 32, 8, 1, 33001, 128, 0),    # every item a split, one block per SM, every merge at the end
    (1, 32, 32, 1, 33001, 128, 0),   # one query row: the bulk-copy kernel's splits
    (24, 32, 8, 1, 4096, 128, 0),    # many items a block: even pieces' end fragments merged mid-call
    (3, 8, 8, 3, 5000, 64, 0),       # D 64, several query tokens
    (2, 16, 4, 1, 8192, 128, 256),   # paged
    (4, 8, 2, 1, 304, 128, 16)])     # short rows, empty splits (end records without tiles)
def test_gpu_tickets_same_bits_as_the_count(cp, rng, monkeypatch, split_kernel, b, hq, hkv, sq, length, d, page):
    """The probe option -DCUATTN_DECODE_TICKETS (decode.cu, Work: a row group merged by the block
    whose key loop ended last, found by tickets taken as the loops end) against the default (the
    block that completes the count after its partial merges): the same partials merged in the
    same order, so the same bits; each on the float64 reference, with ragged and zero lengths,
    three calls in a row on one stream (the flags and counts set back to 0 by each launch: a
    stale flag would let a merge read a partial before it is written), the counters zero after."""
    if split_kernel == "regs":
        pytest.skip("the register kernel is not persistent")
    # (stealing off; MMA_COPY None: each head dim's default producer)
    q, k, v, kw, ref = mma_bits_case(rng, monkeypatch, b, hq, hkv, sq, length, d, page, np.float16, None)
    default = DECODE_MODULE.TMA_OPTIONS
    out = {}
    for options in (default, default + TICKETS):
        monkeypatch.setattr(DECODE_MODULE, "TMA_OPTIONS", options)
        runs = [run(cp, q, k, v, **kw) for _ in range(3)]
        for o, lse in runs:
            compare(o, lse, *ref, q.dtype)
            np.testing.assert_array_equal(o, runs[0][0])
            np.testing.assert_array_equal(lse, runs[0][1])
        out[options] = runs[0]
        assert_counters_zero(cp)
    assert TICKETS[0] in last_persistent_plan().options
    np.testing.assert_array_equal(out[default][0], out[default + TICKETS][0])
    np.testing.assert_array_equal(out[default][1], out[default + TICKETS][1])


BARRIER_STORE = ("-DCUATTN_DECODE_BARRIER_STORE",)  # decode.cu: the probe option (the default to the 41st session)


@pytest.mark.parametrize("b, hq, hkv, sq, length, d, page, dtype", [
    (1, 32, 8, 1, 33001, 128, 0, np.float16),    # split row groups (partials, merges), the deep ring, slabs
    (16, 32, 8, 1, 2048, 128, 0, np.float16),    # a row group an item: outputs written straight (lone)
    (16, 32, 8, 1, 2048, 128, 0, BFLOAT16),
    (4, 32, 4, 1, 8192, 64, 0, np.float16),      # D 64, two blocks per SM
    (3, 16, 4, 2, 3000, 96, 0, np.float16),      # head_dim 96 on the 128 kernel: the scalar loop; 8 rows
    (2, 16, 4, 1, 8192, 128, 256, np.float16)])  # paged
def test_gpu_store_phase_same_bits(cp, rng, monkeypatch, split_kernel, b, hq, hkv, sq, length, d, page, dtype):
    """The tensor-core kernel's rows' store phase (decode.cu: by default without a barrier for
    1 / total, four columns a thread: one 16-byte or 8-byte store where head_dim is the kernel's, a
    store a column where it is padded) against the probe option -DCUATTN_DECODE_BARRIER_STORE (1 /
    total published through a barrier, a column a thread; the default to the 41st session): the
    same sums in the same order, so the same bits; each on the float64 reference,
    ragged and zero lengths, partials and straight outputs, D 64 / 96 / 128, fp16 and bf16."""
    if split_kernel != "mma":
        pytest.skip("the tensor-core kernel's item end")
    q, k, v, kw, ref = mma_bits_case(rng, monkeypatch, b, hq, hkv, sq, length, d, page, dtype, None)
    default = DECODE_MODULE.TMA_OPTIONS
    out = {}
    for options in (default, default + BARRIER_STORE):
        out.update(run_settings(cp, monkeypatch, "TMA_OPTIONS", (options,), q, k, v, ref, **kw))
        assert (BARRIER_STORE[0] in last_persistent_plan().options) == (options != default)
    np.testing.assert_array_equal(out[default][0], out[default + BARRIER_STORE][0])
    np.testing.assert_array_equal(out[default][1], out[default + BARRIER_STORE][1])
    assert_counters_zero(cp)


# test_gpu_programmatic_launch's plans (b, hq, hkv, length, d, page) and queued calls (b, hq, hkv,
# length, d); tests/pdl_steps.py runs the same steps one at a time. (1, 16, 16, 32768, 128): 8 splits
# of 4096 keys, 128 items, one block per SM (plan_persistent)
PDL_PLANS = [(1, 32, 8, 33001, 128, 0), (24, 32, 8, 4096, 128, 0), (3, 8, 8, 5000, 64, 0), (2, 16, 4, 8192, 128, 256),
             (4, 16, 16, 3000, 256, 0), (1, 16, 16, 32768, 128, 0)]
PDL_QUEUED = [(1, 32, 8, 20000, 128), (16, 16, 16, 2048, 128), (8, 8, 2, 4100, 64)]


@pytest.mark.parametrize("setting", ["PDL", "PDL_TRIGGER"])
def test_gpu_programmatic_launch(cp, rng, monkeypatch, split_kernel, setting):
    """PDL (programmatic dependent launch of the persistent kernels, the default) off, then on: the
    same bits over repeated calls with a failed value check between (one-item-per-SM and
    many-items-per-block plans, GQA and MHA, D 64 / 128 / 256, paged), and calls queued back to back
    on one plan, each on inputs of its own: a launch that begins while the one before it ends must
    neither read nor write before that one is done (the same bits as each call alone). The same for
    PDL_TRIGGER (the default since the 29th session, PDL on: the next launch started early, and launches of one block
    per SM asking for half an SM's shared memory: checked on its plans)."""
    if split_kernel == "regs":
        pytest.skip("the register kernel is not persistent")
    if cp.cuda.Device().compute_capability != "90":
        pytest.skip("the persistent kernels run on cc 9.0")
    monkeypatch.setattr(DECODE_MODULE, "_PLANS", {})  # (only this test's plans below)
    for b, hq, hkv, length, d, page in PDL_PLANS:
        q, k, v, kw = ragged_inputs(rng, b, hq, hkv, length, d, page)
        out = opt_in_runs(cp, monkeypatch, setting, q, k, v, exact=True, **kw)
        np.testing.assert_array_equal(out[False][0], out[True][0])
        np.testing.assert_array_equal(out[False][1], out[True][1])
    if setting == "PDL_TRIGGER":
        sms = cp.cuda.Device().attributes["MultiProcessorCount"]
        launches = [plan.launches[0] for plan in DECODE_MODULE._PLANS.values()
                    if DECODE_MODULE.PDL_TRIGGER_OPTION in getattr(plan, "options", ())]
        assert any(launch.grid[0] <= sms for launch in launches) and any(launch.grid[0] > sms for launch in launches)
        for launch in launches:
            assert (launch.shared_mem >= DECODE_MODULE.SMEM_PER_SM // 2) == (launch.grid[0] <= sms), launch.grid
    monkeypatch.setattr(DECODE_MODULE, setting, True)
    for b, hq, hkv, length, d in PDL_QUEUED:
        sets = queued_sets(cp, rng, b, hq, hkv, length, d)
        alone = []
        for qs, ks, vs in sets:  # each alone (.get() waits for the call)
            o, lse = cuattn.decode(qs, ks, vs, alibi_slopes="default", return_lse=True)
            alone.append((o.get(), lse.get()))
        check(*alone[0], *(x.get() for x in sets[0]), alibi_slopes="default")
        queued = [cuattn.decode(*sets[i % 3], alibi_slopes="default", return_lse=True) for i in range(12)]
        for i, (o, lse) in enumerate(queued):
            np.testing.assert_array_equal(o.get(), alone[i % 3][0])
            np.testing.assert_array_equal(lse.get(), alone[i % 3][1])
    assert_counters_zero(cp)


@pytest.mark.parametrize("b, hq, hkv, length, d, page, pieces", [
    (24, 16, 16, 4096, 128, 0, 37),   # ~10 row groups a piece: both end fragments, then whole ones
    (8, 32, 32, 2048, 128, 0, 100),   # ~2.6 a piece: one whole row group between the fragments
    (3, 8, 8, 5120, 64, 256, 7),      # paged
    (2, 32, 8, 9001, 256, 0, 5),      # four query rows a block, pieces of ~1.6 row groups
    (1, 8, 8, 3000, 128, 0, 3)])      # a piece inside one row group and pieces of two
def test_gpu_piece_order(cp, rng, monkeypatch, split_kernel, b, hq, hkv, length, d, page, pieces):
    """Even pieces stream their two end fragments first and the whole row groups between them
    last: the same bits as the probe build that streams them in key order
    (-DCUATTN_DECODE_PIECE_IN_ORDER: the same partials, merged in the same order by whichever
    block completes a row group), on the reference, with ragged and zero lengths, and the counters
    zero afterwards."""
    if split_kernel == "regs":
        pytest.skip("the register kernel is not persistent")
    monkeypatch.setattr(DECODE_MODULE, "STEAL", False)
    monkeypatch.setattr(DECODE_MODULE, "EVEN_SPLIT", True)
    monkeypatch.setattr(DECODE_MODULE, "EVEN_MIN_KEYS", 128)
    monkeypatch.setattr(DECODE_MODULE, "EVEN_PIECES", pieces)
    monkeypatch.setattr(DECODE_MODULE, "_PLANS", {})  # (only this test's plans below)
    q, k, v, kw = ragged_inputs(rng, b, hq, hkv, length, d, page, zero_row=b > 2)
    ref = cuattn.reference.decode(q, k, v, return_lse=True, **kw)
    option = "-DCUATTN_DECODE_PIECE_IN_ORDER"
    default = tuple(DECODE_MODULE.TMA_OPTIONS)
    in_order = default + (option,)
    out = run_settings(cp, monkeypatch, "TMA_OPTIONS", [default, in_order, default], q, k, v, ref, **kw)
    np.testing.assert_array_equal(out[default][0], out[in_order][0])
    np.testing.assert_array_equal(out[default][1], out[in_order][1])
    used = [plan for plan in DECODE_MODULE._PLANS.values() if getattr(plan, "span", 0)]  # even pieces in use
    assert any(option in plan.options for plan in used)
    assert any(option not in plan.options for plan in used)
    assert_counters_zero(cp)


# --- work stealing (the persistent kernels) ---------------------------------------------------

STEAL_CASES = [
    # (B, Hq, Hkv, Sq, L, D, lens, paged page size or 0)
    (3, 8, 8, 1, 5000, 128, [5000, 1, 0], 0),
    (2, 32, 8, 1, 9001, 128, [9001, 4097], 0),
    (4, 12, 4, 3, 3000, 64, [3000, 129, 0, 2048], 0),
    (2, 16, 2, 1, 6000, 256, [6000, 3000], 0),
    (3, 6, 3, 2, 4100, 32, [4100, 130, 2], 0),
    (2, 32, 8, 1, 8192, 128, [8192, 5000], 64),
    (2, 8, 8, 2, 7008, 128, [7008, 6999], 16),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("owner_grains", [1, 2])
@pytest.mark.parametrize("case", STEAL_CASES, ids=str)
def test_gpu_thieves_take_the_rest(cp, rng, monkeypatch, split_kernel, dtype, owner_grains, case):
    """Owners stop after `owner_grains` grains of 128 keys (OWNER_GRAINS, a test setting), so
    thieves stream every other grain into pool partials and the row merges count them: the
    results still match the reference, twice in a row (the counts are back to zero), and the
    zero-between-launches counters are all zero afterwards."""
    if split_kernel == "regs":
        pytest.skip("the register kernel does not steal")
    b, hq, hkv, sq, length, d, lens, page = case
    force_thieves(monkeypatch, owner_grains)
    q, k, v = (draw(rng, s, dtype) for s in ((b, hq, sq, d), (b, hkv, length, d), (b, hkv, length, d)))
    kw = dict(cache_seqlens=np.array(lens, np.int32), alibi_slopes="default")
    if page:
        k, v, kw["block_table"] = to_paged(rng, k, v, page)
    ref = cuattn.reference.decode(q, k, v, return_lse=True, **kw)
    for _ in range(2):
        o, lse = run(cp, q, k, v, **kw)
        compare(o, lse, *ref, q.dtype)
    assert_counters_zero(cp)


# --- even pieces (the persistent kernels) ----------------------------------------------------------

EVEN_CASES = [
    # (B, Hq, Hkv, Sq, L, D, lens, paged page size or 0, pieces)
    (1, 8, 8, 1, 3001, 128, None, 0, 11),            # pieces cross rows at odd places
    (3, 8, 2, 1, 5000, 128, [5000, 1, 0], 0, 7),     # ragged: pieces past a row's end, an empty row
    (2, 32, 8, 1, 9001, 128, [9001, 4097], 0, 16),   # GQA groups (the tensor-core kernel's rows)
    (4, 8, 4, 2, 3000, 64, [3000, 129, 0, 2048], 0, 50),  # (4 rows: 9 would run on the register kernel)
    (2, 8, 2, 1, 6000, 256, [6000, 3000], 0, 5),
    (3, 6, 3, 2, 4100, 40, [4100, 130, 2], 0, 9),
    (2, 32, 8, 1, 8192, 128, [8192, 5000], 64, 23),  # paged
    (2, 8, 8, 2, 7008, 128, [7008, 6999], 16, 16),
    (2, 4, 4, 1, 1024, 128, None, 0, 8),             # a piece per row group, rows on piece boundaries
    (4, 8, 8, 1, 1000, 128, [1000, 999, 0, 513], 0, 3),  # pieces of many whole row groups
    (3, 8, 4, 1, 2048, 64, [2048, 100, 2000], 64, 2),    # the same, paged
]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", EVEN_CASES, ids=str)
def test_gpu_even_pieces(cp, rng, monkeypatch, split_kernel, dtype, case):
    """Even pieces (EVEN_SPLIT, opt-in; forced on small caches by EVEN_MIN_KEYS and EVEN_PIECES): the row
    groups' keys end to end in `pieces` pieces, one or two partials each, merged per row group by
    the counts: right on the reference, twice in a row (the counts back to zero), counters zero
    afterwards, and the plan did use pieces."""
    if split_kernel == "regs":
        pytest.skip("the register kernel is not persistent")
    b, hq, hkv, sq, length, d, lens, page, pieces = case
    monkeypatch.setattr(DECODE_MODULE, "STEAL", False)
    monkeypatch.setattr(DECODE_MODULE, "EVEN_SPLIT", True)
    monkeypatch.setattr(DECODE_MODULE, "EVEN_MIN_KEYS", 128)
    monkeypatch.setattr(DECODE_MODULE, "EVEN_PIECES", pieces)
    monkeypatch.setattr(DECODE_MODULE, "_PLANS", {})
    q, k, v = (draw(rng, s, dtype) for s in ((b, hq, sq, d), (b, hkv, length, d), (b, hkv, length, d)))
    kw = dict(alibi_slopes="default")
    if lens is not None:
        kw["cache_seqlens"] = np.array(lens, np.int32)
    if page:
        k, v, kw["block_table"] = to_paged(rng, k, v, page)
    ref = cuattn.reference.decode(q, k, v, return_lse=True, **kw)
    for _ in range(2):
        compare(*run(cp, q, k, v, **kw), *ref, q.dtype)
    assert any(plan.span for plan in DECODE_MODULE._PLANS.values() if hasattr(plan, "span"))
    assert_counters_zero(cp)


@pytest.mark.parametrize("b, hq, hkv, length, ragged", [(3, 8, 8, 3001, False), (8, 32, 32, 2048, True),
                                                       (3, 16, 4, 3001, False)], ids=["mha", "mha_ragged_wave", "gqa4"])
def test_gpu_even_pieces_default(cp, rng, monkeypatch, split_kernel, b, hq, hkv, length, ragged):
    """EVEN_SPLIT None (the default): on the bulk-copy kernel even pieces (even_pieces' rule: with
    one query row per block, two per SM where equal splits would leave a ragged last wave, more
    than one and fewer than EVEN_MAX_SPLITS_PER_BLOCK per block, or EVEN_MAX_SPLITS_PER_BLOCK_LONG
    with row groups of at least EVEN_LONG_ROW_KEYS keys, else equal splits; with four rows
    per block, one piece per block), equal splits on the tensor-core kernel (EVEN_MIN_KEYS lowered
    so these small caches qualify); right on the reference either way, twice in a row, counters
    zero afterwards. (The opt-in whole-rows rule, which keeps many row groups whole instead, is off
    here: test_gpu_tma_whole_rows.)"""
    if split_kernel == "regs":
        pytest.skip("the register kernel is not persistent")
    assert DECODE_MODULE.EVEN_SPLIT is None and DECODE_MODULE.EVEN_PIECES is None
    monkeypatch.setattr(DECODE_MODULE, "STEAL", False)
    monkeypatch.setattr(DECODE_MODULE, "TMA_WHOLE_ROWS", False)
    monkeypatch.setattr(DECODE_MODULE, "EVEN_MIN_KEYS", 128)
    monkeypatch.setattr(DECODE_MODULE, "_PLANS", {})
    d = 128
    q, k, v = (draw(rng, s, np.float16) for s in ((b, hq, 1, d), (b, hkv, length, d), (b, hkv, length, d)))
    lens = np.full(b, length, np.int32)
    lens[1], lens[2] = 17, length - 501
    kw = dict(alibi_slopes="default", cache_seqlens=lens)
    ref = cuattn.reference.decode(q, k, v, return_lse=True, **kw)
    for _ in range(2):
        compare(*run(cp, q, k, v, **kw), *ref, q.dtype)
    plans = [plan for plan in DECODE_MODULE._PLANS.values() if hasattr(plan, "span")]
    assert plans
    for plan in plans:
        kernel, rows, items, grid, pieces = plan.even_rule
        assert kernel == split_kernel
        if kernel == "mma":
            expected = False
        elif rows > 1:
            expected = True
        else:
            long_rows = length >= DECODE_MODULE.EVEN_LONG_ROW_KEYS  # (the cache length: every row group's span)
            cap = DECODE_MODULE.EVEN_MAX_SPLITS_PER_BLOCK_LONG if long_rows else DECODE_MODULE.EVEN_MAX_SPLITS_PER_BLOCK
            expected = grid < items < cap * grid
            if ragged and not expected:
                pytest.skip(f"{grid} resident blocks: this shape's equal splits ({items}) leave no ragged wave")
        assert bool(pieces) == expected and bool(plan.span) == expected
    assert_counters_zero(cp)


@pytest.mark.parametrize("hkv, length, d, dtype", [(32, 2048, 128, np.float16), (8, 1500, 64, BFLOAT16),
                                                (16, 777, 256, np.float16)])
def test_gpu_tma_whole_rows(cp, rng, monkeypatch, split_kernel, hkv, length, d, dtype):
    """TMA_WHOLE_ROWS (opt-in): the bulk-copy kernel with one row per block keeps every row
    group whole (one split, no even pieces: each block writes its rows' outputs) where there are at
    least TMA_WHOLE_ROWS_PER_SM row groups per SM and at most the resident blocks; with the rule off
    the same call is planned as
    before (even pieces where even_pieces cuts them, EVEN_MIN_KEYS lowered so these small caches
    qualify). Right on the reference either way (ragged lengths, a zero-length row), twice in a
    row, counters zero afterwards."""
    props = tma_case_on_sm90(split_kernel, monkeypatch, "the bulk-copy kernel's plans")
    monkeypatch.setattr(DECODE_MODULE, "EVEN_MIN_KEYS", 128)  # (pieces of these small caches, rule off)
    sms = props["num_sms"]
    b = -(-2 * sms // hkv)  # at least 2 row groups per SM
    q, k, v, kw, ref = mma_bits_case(rng, monkeypatch, b, hkv, hkv, 1, length, d, 0, dtype, None)
    for rule in (True, False):
        monkeypatch.setattr(DECODE_MODULE, "TMA_WHOLE_ROWS", rule)
        grid = DECODE_MODULE.tma_config(1, d, 2)[0] * sms
        assert DECODE_MODULE.tma_whole_rows(1, b * hkv, sms, grid) == rule
        for _ in range(2):
            compare(*run(cp, q, k, v, **kw), *ref, q.dtype)
        plan = last_persistent_plan()
        kernel, rows, items, grid, pieces = plan.even_rule
        assert kernel == "tma" and rows == 1, plan.expression
        if rule:
            assert items == b * hkv and not pieces and not plan.span, (items, pieces)
        else:
            expected = DECODE_MODULE.even_pieces("tma", 1, items, grid, sms, length)
            assert pieces == expected and bool(plan.span) == bool(
                expected and DECODE_MODULE.plan_even(b * hkv, length, expected, DECODE_MODULE.EVEN_MIN_KEYS))
    assert_counters_zero(cp)


@pytest.mark.parametrize("b, hq, hkv, sq, length, d, page, dtype, copy", [
    (3, 32, 8, 1, 9001, 128, 0, np.float16, None),    # 4 rows, ragged, a zero-length row, a tail tile
    (2, 16, 2, 1, 4160, 64, 64, BFLOAT16, None),      # 8 rows, paged, D 64
    (2, 8, 2, 2, 3001, 128, 0, np.float16, None),     # Sq 2: 8 rows of two tokens (the first token's keys end 1 early)
    (2, 12, 4, 2, 700, 96, 0, BFLOAT16, None),        # 6 rows of Sq 2, a padded head dim
    (1, 4, 1, 1, 63, 128, 0, np.float16, None),       # one tile, cut by the row's end
    (2, 32, 2, 1, 5000, 128, 0, BFLOAT16, None),      # 16 rows: P_lo not packed (the option does not act)
    (3, 32, 8, 1, 4100, 128, 0, np.float16, "tensor"),  # tensor copies at D 128 (tail tiles zeroed by the warps)
    (2, 16, 4, 1, 3008, 128, 16, np.float16, None)])  # pages of 16 keys (cp.async per row)
def test_gpu_mma_lean_mask(cp, rng, monkeypatch, split_kernel, b, hq, hkv, sq, length, d, page, dtype, copy):
    """-DCUATTN_DECODE_MMA_LEAN_MASK (opt-in: tiles every real row sees whole are scored without the
    per-score mask; acts where P_lo is packed): the same bits as the default on the tensor-core
    kernel, on the reference, with ragged and zero lengths, several query tokens, paged caches,
    both producers."""
    if split_kernel != "mma":
        pytest.skip("the tensor-core kernel's option")
    q, k, v, kw, ref = mma_bits_case(rng, monkeypatch, b, hq, hkv, sq, length, d, page, dtype, copy)
    default = tuple(DECODE_MODULE.TMA_OPTIONS)
    lean = default + ("-DCUATTN_DECODE_MMA_LEAN_MASK",)
    out = run_settings(cp, monkeypatch, "TMA_OPTIONS", [default, lean], q, k, v, ref, **kw)
    assert any(lean[-1] in getattr(plan, "options", ()) for plan in DECODE_MODULE._PLANS.values())
    np.testing.assert_array_equal(out[default][0], out[lean][0])
    np.testing.assert_array_equal(out[default][1], out[lean][1])
    assert_counters_zero(cp)


def test_gpu_mma_d64_many_items(cp, rng, monkeypatch, split_kernel):
    """The tensor-core kernel below ONE_PER_SM_MMA_MIN_DIM (D 64) plans more items than SMs where
    plan_persistent's one item per SM would apply (B 4 x Hkv 4 of 32768 keys: 16 row groups x 8
    splits = 128 items), both blocks of an SM busy; right on the reference, and the old plan (one
    item per SM) gives the same answer to the split order's rounding."""
    props = DECODE_MODULE.device_properties()
    if split_kernel != "mma" or props["cc"] < 90 or props["num_sms"] < 128:
        pytest.skip("the tensor-core kernel's plans on a full-size sm_90 GPU")
    monkeypatch.setattr(DECODE_MODULE, "_PLANS", {})
    b, hq, hkv, length, d = 4, 32, 4, 32768, 64
    q, k, v = (draw(rng, s, np.float16) for s in ((b, hq, 1, d), (b, hkv, length, d), (b, hkv, length, d)))
    kw = dict(alibi_slopes="default")
    ref = cuattn.reference.decode(q, k, v, return_lse=True, **kw)
    answers = []
    for min_dim in (DECODE_MODULE.ONE_PER_SM_MMA_MIN_DIM, d):  # the default, then one item per SM
        monkeypatch.setattr(DECODE_MODULE, "ONE_PER_SM_MMA_MIN_DIM", min_dim)
        answers.append(run(cp, q, k, v, **kw))
        compare(*answers[-1], *ref, q.dtype)
        plan = last_persistent_plan()
        kernel, rows, items, grid, pieces = plan.even_rule
        assert kernel == "mma"
        assert (items > props["num_sms"]) == (min_dim > d), (min_dim, items)
    np.testing.assert_allclose(answers[0][0], answers[1][0], rtol=0, atol=2e-3)
    assert_counters_zero(cp)


@pytest.mark.parametrize("b, hq, length", [(1, 32, 33001), (2, 8, 9000)])
def test_gpu_one_block_per_sm_ring(cp, rng, monkeypatch, split_kernel, b, hq, length):
    """A bulk-copy launch of one block per SM (plan_persistent's one item per SM) takes the deeper
    ring (one_block_stages: 6 stages, not the 4 of three blocks per SM), and is right on the
    reference, twice in a row, counters zero afterwards."""
    if split_kernel != "tma" or DECODE_MODULE.device_properties()["cc"] < 90:
        pytest.skip("the bulk-copy kernel's rings (sm_90)")
    monkeypatch.setattr(DECODE_MODULE, "_PLANS", {})
    d = 128
    q, k, v = (draw(rng, s, np.float16) for s in ((b, hq, 1, d), (b, hq, length, d), (b, hq, length, d)))
    kw = dict(alibi_slopes="default")
    ref = cuattn.reference.decode(q, k, v, return_lse=True, **kw)
    for _ in range(2):
        compare(*run(cp, q, k, v, **kw), *ref, q.dtype)
    plans = [plan for plan in DECODE_MODULE._PLANS.values() if hasattr(plan, "even_rule")]
    assert len(plans) == 1
    kernel, rows, items, grid, pieces = plans[0].even_rule
    sms = DECODE_MODULE.device_properties()["num_sms"]
    assert kernel == "tma" and rows == 1 and not pieces
    stages = DECODE_MODULE.one_block_stages(1, d, 2) if items <= sms else DECODE_MODULE.tma_config(1, d, 2)[1]
    assert stages > DECODE_MODULE.tma_config(1, d, 2)[1] or items > sms
    assert plans[0].expression == f"decode_split_tma<half_t, {d}, 1, false, {stages}>"
    assert_counters_zero(cp)


@pytest.mark.parametrize("steal", [True, False])
def test_gpu_default_stealing_matches_reference(cp, rng, monkeypatch, split_kernel, steal):
    """Rows that leave SMs idle or finishing at different times (one long row, more row groups
    than SMs, ragged lengths): right with and without stealing (STEAL, opt-in), over repeated
    calls; without it (the default) repeated calls give identical bits."""
    monkeypatch.setattr(DECODE_MODULE, "STEAL", steal)
    for b, hq, hkv, length, d in [(1, 32, 8, 65536, 128), (24, 32, 8, 4096, 128), (20, 8, 8, 3000, 64)]:
        q, k, v = (draw(rng, s, np.float16) for s in ((b, hq, 1, d), (b, hkv, length, d), (b, hkv, length, d)))
        lens = rng.integers(0, length + 1, size=b).astype(np.int32)
        lens[0] = length
        kw = dict(cache_seqlens=lens, alibi_slopes="default")
        ref = cuattn.reference.decode(q, k, v, return_lse=True, **kw)
        first = None
        for _ in range(3):
            o, lse = run(cp, q, k, v, **kw)
            compare(o, lse, *ref, q.dtype)
            if not steal and first is not None:
                assert np.array_equal(o, first)
            first = o


@pytest.mark.parametrize("dtype", [np.float16, BFLOAT16])
def test_gpu_mma_deep_ring_for_split_rows(cp, rng, monkeypatch, split_kernel, dtype):
    """MMA_DEEP_STAGES: a tensor-core launch at D 128 whose row groups are split (B 1 x Hkv 2 of
    20000 keys) runs one block per SM with the 6-stage ring; one whose row groups are whole items
    (B 3 of 100 keys: one split each) keeps two blocks per SM and mma_config's ring; with the rule
    off the split launch keeps two blocks too. Every answer right on the reference."""
    props = DECODE_MODULE.device_properties()
    if split_kernel != "mma" or props["cc"] < 90:
        pytest.skip("the tensor-core kernel's plans on sm_90")
    monkeypatch.setattr(DECODE_MODULE, "_PLANS", {})
    deep = DECODE_MODULE.mma_deep_config(128)
    assert deep == (1, 6)
    two = DECODE_MODULE.mma_config(128)
    for b, length, rule in ((1, 20000, True), (3, 100, True), (1, 20000, False)):
        monkeypatch.setattr(DECODE_MODULE, "MMA_DEEP_STAGES", ((128, 6),) if rule else ())
        q, k, v = (draw(rng, s, dtype) for s in ((b, 16, 1, 128), (b, 2, length, 128), (b, 2, length, 128)))
        kw = dict(alibi_slopes="default")
        compare(*run(cp, q, k, v, **kw), *cuattn.reference.decode(q, k, v, return_lse=True, **kw), q.dtype)
        plan = last_persistent_plan()
        kernel, rows, items, grid, pieces = plan.even_rule
        assert kernel == "mma"
        split = items > b * 2
        assert split == (length > 100), (length, items)
        resident, stages = deep if split and rule else two
        assert grid == resident * props["num_sms"], (b, length, rule, grid)
        assert f", {stages}, " in plan.expression, plan.expression
    assert_counters_zero(cp)


@pytest.mark.parametrize("b, hq, hkv, sq, length, page, dtype, copy", [
    (3, 32, 4, 1, 9001, 0, np.float16, None),      # 8 rows, ragged, a zero-length row, a tail tile
    (2, 16, 2, 1, 4160, 64, BFLOAT16, None),       # 8 rows, paged
    (2, 8, 2, 2, 3001, 0, np.float16, None),       # Sq 2
    (2, 12, 4, 2, 700, 0, BFLOAT16, None),         # 6 rows of Sq 2, padded D 48 -> 64
    (4, 32, 4, 1, 32768, 0, np.float16, None),     # decode.py's D 64 row
    (2, 32, 2, 1, 5000, 0, BFLOAT16, "tensor"),    # 16 rows, tensor copies
    (2, 16, 4, 1, 3008, 16, np.float16, None)])    # pages of 16 keys (cp.async per row)
def test_gpu_mma_two_block_stages_d64(cp, rng, monkeypatch, split_kernel, b, hq, hkv, sq, length, page, dtype, copy):
    """MMA_TWO_BLOCK_STAGES ((64, 4),) (D 64's two-block ring of 4 stages, the default since the 36th
    session) against () (the deepest that fits: 6 stages, the default before): the same
    plan, so the same bits from both rings, on the reference, with ragged and zero lengths,
    several query tokens, paged caches, both producers."""
    if split_kernel != "mma":
        pytest.skip("the tensor-core kernel's ring")
    d = 48 if hq == 12 else 64
    q, k, v, kw, ref = mma_bits_case(rng, monkeypatch, b, hq, hkv, sq, length, d, page, dtype, copy)
    four = ((64, 4),)
    out = run_settings(cp, monkeypatch, "MMA_TWO_BLOCK_STAGES", [(), four], q, k, v, ref, **kw)
    assert any(", 4, " in getattr(plan, "expression", "") for plan in DECODE_MODULE._PLANS.values())
    np.testing.assert_array_equal(out[()][0], out[four][0])
    np.testing.assert_array_equal(out[()][1], out[four][1])
    assert_counters_zero(cp)


@pytest.mark.parametrize("b, hkv, length, dtype", [
    (1, 32, 20000, np.float16),  # B 1 32/32's shape: 32 row groups, each split (the deep ring)
    (3, 16, 9001, BFLOAT16),     # 48 row groups, the second of length 0
    (64, 32, 1500, np.float16)])  # more row groups than SMs: the rule leaves it to the bulk-copy kernel
def test_gpu_one_row_mma_few(cp, rng, monkeypatch, split_kernel, b, hkv, length, dtype):
    """ONE_ROW_MMA_FEW (the default): one dense query row per block runs the tensor-core kernel where its
    plan splits every row group over one block per SM with at most half as many row groups as SMs
    (mma_splits_few_rows), else as before; right on the reference either way (ragged and zero
    lengths: split and empty row groups), the same bits as the forced tensor-core kernel. The
    whole-rows rule (ONE_ROW_MMA_WHOLE, which takes B 64 32/32 L 1500) is off here: this rule alone."""
    props = tma_case_on_sm90(split_kernel, monkeypatch, "the rule picks between the kernels itself (KERNEL None)")
    monkeypatch.setattr(DECODE_MODULE, "ONE_ROW_MMA_WHOLE", False)
    d = 128
    q, k, v, kw, ref = mma_bits_case(rng, monkeypatch, b, hkv, hkv, 1, length, d, 0, dtype, None)
    few = DECODE_MODULE.mma_splits_few_rows(b, hkv, length, d, props["num_sms"])
    assert few == (2 * b * hkv <= props["num_sms"]), (b, hkv, length)
    out = {}
    for kernel, rule in ((None, False), (None, True), ("mma", False)):
        monkeypatch.setattr(DECODE_MODULE, "ONE_ROW_MMA_FEW", rule)
        out[kernel, rule] = run_settings(cp, monkeypatch, "KERNEL", (kernel,), q, k, v, ref, **kw)[kernel]
        used = last_persistent_plan().even_rule[0]
        assert used == ("mma" if kernel == "mma" or (rule and few) else "tma"), (kernel, rule, few)
    if few:
        np.testing.assert_array_equal(out[None, True][0], out["mma", False][0])
        np.testing.assert_array_equal(out[None, True][1], out["mma", False][1])
    assert_counters_zero(cp)


@pytest.mark.parametrize("hkv, length, d, dtype, per_sm", [
    (8, 300, 128, np.float16, 2),    # two blocks an SM of 3 stages, a row group each
    (8, 129, 64, BFLOAT16, 2),       # D 64: two blocks of 4 stages; keys past a tile's end
    (4, 2048, 128, np.float16, 1)])  # B 64 32/32 L 2048's plan: one block of 6 stages (where it applies)
def test_gpu_one_row_mma_whole(cp, rng, monkeypatch, split_kernel, hkv, length, d, dtype, per_sm):
    """ONE_ROW_MMA_WHOLE (the default): one dense query row per block runs the tensor-core kernel where
    its plan keeps every row group whole (mma_keeps_rows_whole), else the bulk-copy kernel; right
    on the reference either way, with ragged and zero lengths."""
    props = tma_case_on_sm90(split_kernel, monkeypatch, "the rule picks between the kernels itself (KERNEL None)")
    monkeypatch.setattr(DECODE_MODULE, "KERNEL", None)
    b = -(-per_sm * props["num_sms"] // hkv)  # row groups for every block
    q, k, v, kw, ref = mma_bits_case(rng, monkeypatch, b, hkv, hkv, 1, length, d, 0, dtype, None)
    whole = DECODE_MODULE.mma_keeps_rows_whole(b, hkv, length, d, props["num_sms"])
    assert whole or per_sm == 1, (b, hkv, length)  # (the two-block cases always keep rows whole)
    for rule in (False, True):
        monkeypatch.setattr(DECODE_MODULE, "ONE_ROW_MMA_WHOLE", rule)
        compare(*run(cp, q, k, v, **kw), *ref, q.dtype)
        plan = last_persistent_plan()
        kernel, _, items, grid, _ = plan.even_rule
        assert kernel == ("mma" if rule and whole else "tma"), (rule, whole, plan.expression)
        if kernel == "mma":
            assert items == b * hkv and grid == per_sm * props["num_sms"], (items, grid)
    assert_counters_zero(cp)
