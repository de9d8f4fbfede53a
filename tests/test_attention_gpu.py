"""cuattn.attention on the GPU against the float64 reference (marked gpu; skipped without one).

fp16/bf16: our norm-wise error must not exceed that of plain same-dtype attention (scores,
probabilities and output each rounded to the dtype, fp32 inside: what a materialized
implementation does), with 5% slack for rounding luck. float32 (exact FFMA): under 1e-5.
Outputs are poisoned (the memory pool handed NaN-filled blocks) so an unwritten element fails.
"""

import sys

import numpy as np
import pytest

import cuattn
from cuattn._checks import BFLOAT16
from cuattn.precision import plain_attention
from helpers import lse_error, misaligned, poison, rel_error

pytestmark = pytest.mark.gpu

DTYPES = [np.float16, BFLOAT16, np.float32]


@pytest.fixture(params=["default", "long_kv_tiles", "mma_sync"])
def kernel_path(request, monkeypatch):
    """Run on the default path (wgmma on Hopper), with the long-key-range wgmma tiles at every
    length (the tests' lengths are short), and on the mma.sync kernel."""
    if request.param == "mma_sync":
        monkeypatch.setattr(sys.modules["cuattn.attention"], "USE_WGMMA", False)
    if request.param == "long_kv_tiles":
        monkeypatch.setattr(sys.modules["cuattn.attention"], "SHORT_KV", -1)
    return request.param


def run_case(cp, rng, dtype, shape_q, shape_k, dv, causal, scale, layout="bhsd"):
    def draw(shape):
        x = rng.standard_normal(shape).astype(np.float32).astype(dtype)
        return x

    q, k, v = draw(shape_q), draw(shape_k), draw(shape_k[:-1] + (dv,))
    if layout == "bshd":  # FlashAttention layout, passed as a transposed view
        dq, dk, dv_ = (cp.asarray(np.ascontiguousarray(x.swapaxes(-2, -3))).swapaxes(-2, -3) for x in (q, k, v))
    elif layout.startswith("unaligned"):  # data (and rows) off 16-byte boundaries
        dq, dk, dv_ = (misaligned(cp, x, rows=layout == "unaligned_rows") for x in (q, k, v))
    else:
        dq, dk, dv_ = (cp.asarray(x) for x in (q, k, v))
    out_shape = np.broadcast_shapes(shape_q[:-3], shape_k[:-3]) + (shape_q[-3], shape_q[-2], dv)
    poison(cp, out_shape, out_shape[:-1])
    o, lse = cuattn.attention(dq, dk, dv_, causal=causal, scale=scale, return_lse=True)
    assert o.dtype == dq.dtype and o.shape == out_shape and lse.dtype == cp.float32
    return check_result(o, lse, q, k, v, causal, scale)


def check_result(o, lse, q, k, v, causal, scale):
    """Norm-wise error of (o, lse) from the GPU against the float64 reference (see the top)."""
    dtype = q.dtype
    ro, rl = cuattn.reference.attention(q, k, v, causal=causal, scale=scale, return_lse=True)
    err = rel_error(o, ro)
    if dtype == np.float32:
        assert err < 1e-5, err
    else:
        s = q.shape[-1] ** -0.5 if scale is None else scale
        plain = rel_error(plain_attention(q, k, v, causal=causal, scale=s, dtype=dtype), ro)
        assert err <= 1.05 * plain + 1e-6, (err, plain)
    assert lse_error(lse, rl) < 2e-3 * max(1.0, np.abs(rl[np.isfinite(rl)]).max(initial=1.0))
    return err


SHAPES = [
    # (q shape, k shape, dv)
    ((2, 4, 256, 64), (2, 4, 256, 64), 64),
    ((1, 8, 333, 128), (1, 2, 333, 128), 128),   # GQA, odd length
    ((2, 2, 77, 32), (2, 2, 1000, 32), 32),      # Sq < Sk
    ((1, 4, 200, 96), (1, 4, 63, 96), 96),       # Sq > Sk: causal rows that see nothing
    ((1, 2, 1, 128), (1, 2, 517, 128), 128),     # one query
    ((3, 1, 1, 64), (3, 1, 1, 64), 64),          # length 1
    ((1, 2, 130, 256), (1, 1, 257, 256), 256),   # MQA, D 256
    ((2, 2, 100, 40), (2, 2, 90, 40), 40),       # D 40 (padded to 64)
    ((1, 2, 65, 200), (1, 2, 65, 200), 72),      # D 200, Dv 72
    ((2, 3, 2, 50, 64), (3, 2, 50, 64), 64),     # broadcast leading dims
]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shape_q,shape_k,dv", SHAPES)
def test_gpu_matches_reference(cp, rng, dtype, causal, shape_q, shape_k, dv, kernel_path):
    run_case(cp, rng, dtype, shape_q, shape_k, dv, causal, None)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("scale", [-1.0, 0.0, 0.3, -0.05])
def test_gpu_scales(cp, rng, dtype, scale, kernel_path):
    run_case(cp, rng, dtype, (1, 4, 150, 64), (1, 4, 170, 64), 64, True, scale)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_gpu_flash_layout_view(cp, rng, dtype, kernel_path):
    run_case(cp, rng, dtype, (2, 4, 300, 128), (2, 4, 300, 128), 128, True, None, layout="bshd")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("layout", ["unaligned", "unaligned_rows"])
def test_gpu_unaligned_inputs(cp, rng, dtype, layout, kernel_path):
    """Inputs whose data starts off a 16-byte boundary, contiguous or not, are copied to aligned
    memory (cupy.ascontiguousarray alone keeps a contiguous one where it lies)."""
    run_case(cp, rng, dtype, (2, 4, 130, 128), (2, 2, 200, 128), 128, True, None, layout=layout)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_gpu_input_scale_ten(cp, rng, dtype):
    """Lesson 1: larger input scale; still no worse than plain same-dtype math."""
    q, k, v = (10 * rng.standard_normal((2, 8, 512, 64)).astype(np.float32) for _ in range(3))
    q, k, v = (x.astype(dtype) for x in (q, k, v))
    o = cuattn.attention(*(cp.asarray(x) for x in (q, k, v)))
    ro = cuattn.reference.attention(q, k, v)
    err = rel_error(o, ro)
    if dtype != np.float32:
        assert err <= 1.05 * rel_error(plain_attention(q, k, v, dtype=dtype), ro)
    else:
        assert err < 1e-4


ATTENTION_MODULE = sys.modules["cuattn.attention"]


@pytest.mark.parametrize("layout", ["bhsd", "bshd", "broadcast", "unaligned"])
def test_gpu_repeated_layout_reuses_its_plan(cp, rng, kernel_path, layout):
    """Calls with one layout share one launch plan (checked and planned once), yet each gets its
    own data right: new inputs at new addresses (new tensor maps on Hopper) queued back to back
    without a sync, then the same arrays again with new contents. Layouts the kernel cannot take
    as they are (unaligned rows; on Hopper a broadcast batch, stride 0) make no plan and stay
    right."""
    dtype = np.float16
    shape_q, shape_k = ((3, 4, 50, 64), (1, 2, 50, 64)) if layout == "broadcast" else \
        ((2, 4, 300, 128), (2, 2, 260, 128))

    def draw(shape):
        return rng.standard_normal(shape).astype(np.float32).astype(dtype)

    def to_device(x):
        if layout == "bshd":  # FlashAttention layout, passed as a transposed view
            return cp.asarray(np.ascontiguousarray(x.swapaxes(-2, -3))).swapaxes(-2, -3)
        if layout == "unaligned":  # rows 2 bytes off 16-byte boundaries: copied by the full path
            return misaligned(cp, x)
        return cp.asarray(x)

    def inputs():
        host = (draw(shape_q), draw(shape_k), draw(shape_k))
        return host, tuple(to_device(x) for x in host)

    calls = [inputs() for _ in range(4)]
    results = [cuattn.attention(*dev, causal=True, return_lse=True) for _, dev in calls[:1]]
    plans = dict(ATTENTION_MODULE._PLANS)
    key = ATTENTION_MODULE._plan_key(*calls[0][1], True, None, True, None)
    wgmma = kernel_path != "mma_sync" and cuattn._cuda.device_properties()["cc"] == 90
    copied = layout == "unaligned" or (layout == "broadcast" and wgmma)  # (the copy engine takes no stride 0)
    assert key is not None and (key in plans) == (not copied)
    results += [cuattn.attention(*dev, causal=True, return_lse=True) for _, dev in calls[1:]]
    assert ATTENTION_MODULE._PLANS == plans  # no new plan: the same objects under the same keys
    for (host, _), (o, lse) in zip(calls, results):
        check_result(o, lse, *host, True, None)
    host, dev = calls[0]
    new = (draw(shape_q), draw(shape_k), draw(shape_k))
    for x, y in zip(dev, new):  # the same addresses, new contents
        x[...] = cp.asarray(y)
    o, lse = cuattn.attention(*dev, causal=True, return_lse=True)
    check_result(o, lse, *new, True, None)
    assert ATTENTION_MODULE._PLANS == plans


def test_gpu_large_calls_make_no_plan(cp, rng, monkeypatch):
    """Calls of more work than PLAN_MAX_WORK take the full path every time (no plan kept) and
    stay right; at the threshold a plan is kept."""
    q, k, v = (rng.standard_normal((1, 2, 40, 64)).astype(np.float32).astype(np.float16) for _ in range(3))
    work = 2 * 40 * 40 * 128
    dev = [cp.asarray(x) for x in (q, k, v)]
    key = ATTENTION_MODULE._plan_key(*dev, False, None, True, None)
    for limit, planned in ((work - 1, False), (work, True)):
        monkeypatch.setattr(ATTENTION_MODULE, "PLAN_MAX_WORK", limit)
        ATTENTION_MODULE._PLANS.pop(key, None)
        for _ in range(2):
            poison(cp, (1, 2, 40, 64), (1, 2, 40))
            o, lse = cuattn.attention(*dev, return_lse=True)
            check_result(o, lse, q, k, v, False, None)
        assert (key in ATTENTION_MODULE._PLANS) == planned
    ATTENTION_MODULE._PLANS.pop(key, None)


def test_gpu_zero_lengths(cp):
    q = cp.ones((2, 3, 5, 64), cp.float16)
    k = cp.ones((2, 3, 0, 64), cp.float16)
    poison(cp, (2, 3, 5, 64), (2, 3, 5))
    o, lse = cuattn.attention(q, k, k, return_lse=True)
    assert bool(cp.all(o == 0)) and bool(cp.all(cp.isneginf(lse)))
    o, lse = cuattn.attention(q[:, :, :0], q, q, return_lse=True)
    assert o.shape == (2, 3, 0, 64)


def test_gpu_nan_stays_in_its_row(cp, rng):
    q, k, v = (cp.asarray(rng.standard_normal((1, 2, 100, 64)).astype(np.float16)) for _ in range(3))
    q[0, 1, 42, 5] = cp.nan
    o = cuattn.attention(q, k, v, causal=True).get().astype(np.float32)
    assert np.all(np.isnan(o[0, 1, 42]))
    o[0, 1, 42] = 0
    assert np.all(np.isfinite(o))


def test_gpu_inputs_not_modified(cp, rng):
    q, k, v = (cp.asarray(rng.standard_normal((1, 2, 64, 64)).astype(np.float16)) for _ in range(3))
    before = [x.copy() for x in (q, k, v)]
    cuattn.attention(q, k, v)
    assert all(bool(cp.array_equal(a, b)) for a, b in zip((q, k, v), before))


def test_gpu_errors(cp):
    q = cp.ones((1, 2, 8, 20), cp.float16)
    with pytest.raises(ValueError, match="head dim D=20"):
        cuattn.attention(q, q, q)
    q = cp.ones((1, 2, 8, 64), cp.float64)
    with pytest.raises(TypeError, match="float64"):
        cuattn.attention(q, q, q)
    q = cp.ones((1, 2, 8, 128), cp.float16)[..., ::2]
    with pytest.raises(ValueError, match="contiguous"):
        cuattn.attention(q, q, q)
    with pytest.raises(TypeError, match="mix"):
        cuattn.attention(q, np.ones((1, 2, 8, 64), np.float16), q)
