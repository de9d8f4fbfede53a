"""cuattn.attention on the CPU backend and the float64 reference, on every DESIGN.md edge.

Tolerances: float64 work agrees with the reference to ~1e-12 (only summation order differs);
float32 work to ~1e-6 norm-wise (a few units of float32 rounding over D and Sk terms), so 1e-5.
"""

import numpy as np
import pytest

import cuattn
from cuattn import _checks
from helpers import lse_error, rel_error

TOL = {np.float32: 1e-5, np.float64: 1e-11}


def make(rng, shape_q, shape_k, dv=None, dtype=np.float64):
    dv = shape_k[-1] if dv is None else dv
    q = rng.standard_normal(shape_q).astype(dtype)
    k = rng.standard_normal(shape_k).astype(dtype)
    v = rng.standard_normal(shape_k[:-1] + (dv,)).astype(dtype)
    return q, k, v


# --- the reference against hand-made cases -------------------------------------------------

def test_reference_single_key_returns_its_value(rng):
    q, k, v = make(rng, (3, 5, 8), (3, 1, 8))
    assert np.allclose(cuattn.reference.attention(q, k, v), np.broadcast_to(v, (3, 5, 8)))


def test_reference_zero_scale_averages_values(rng):
    q, k, v = make(rng, (2, 4, 8), (2, 7, 8), dv=3)
    o, lse = cuattn.reference.attention(q, k, v, scale=0.0, return_lse=True)
    assert np.allclose(o, v.mean(axis=-2, keepdims=True).repeat(4, axis=-2))
    assert np.allclose(lse, np.log(7))


def test_reference_causal_first_row_sees_first_key(rng):
    q, k, v = make(rng, (1, 6, 4), (1, 6, 4))
    o = cuattn.reference.attention(q, k, v, causal=True)
    assert np.allclose(o[:, 0], v[:, 0])


def test_reference_matches_explicit_softmax(rng):
    q, k, v = make(rng, (2, 9, 16), (2, 13, 16), dv=5)
    s = -0.7 * q @ k.swapaxes(-1, -2)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    assert np.allclose(cuattn.reference.attention(q, k, v, scale=-0.7), p @ v)


def test_reference_fully_masked_rows_are_zero(rng):
    # Sq > Sk with causal: query i sees keys j <= i + Sk - Sq, so the first Sq - Sk rows see none.
    q, k, v = make(rng, (2, 7, 8), (2, 3, 8))
    o, lse = cuattn.reference.attention(q, k, v, causal=True, return_lse=True)
    assert np.all(o[:, :4] == 0) and np.all(np.isneginf(lse[:, :4]))
    assert np.all(np.isfinite(lse[:, 4:]))


# --- CPU backend against the reference -------------------------------------------------------

CASES = [
    # (q shape, k shape, dv, causal)
    ((2, 4, 100, 64), (2, 4, 100, 64), 64, False),
    ((2, 4, 100, 64), (2, 4, 100, 64), 64, True),
    ((1, 8, 37, 32), (1, 2, 300, 32), 32, True),     # GQA, Sq < Sk
    ((1, 8, 300, 32), (1, 2, 37, 32), 48, True),     # Sq > Sk: fully masked rows, Dv != D
    ((3, 2, 1, 16), (3, 2, 1, 16), 16, False),       # length 1
    ((3, 2, 1, 16), (3, 2, 517, 16), 16, True),      # one query against a long key range
    ((2, 5, 3, 257, 24), (1, 3, 257, 24), 8, False), # broadcast leading dims, odd D
    ((4, 129, 40), (4, 131, 40), 40, True),          # no batch dim
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape_q,shape_k,dv,causal", CASES)
def test_cpu_matches_reference(rng, dtype, shape_q, shape_k, dv, causal):
    q, k, v = make(rng, shape_q, shape_k, dv, dtype)
    scale = float(rng.uniform(-1.5, 1.5))
    o, lse = cuattn.attention(q, k, v, causal=causal, scale=scale, return_lse=True)
    ro, rl = cuattn.reference.attention(q, k, v, causal=causal, scale=scale, return_lse=True)
    assert o.dtype == dtype and lse.dtype == np.float32
    assert o.shape == ro.shape and lse.shape == rl.shape
    assert rel_error(o, ro) < TOL[dtype]
    assert lse_error(lse, rl) < 1e-5 * max(1.0, np.abs(rl[np.isfinite(rl)]).max(initial=1.0))


@pytest.mark.parametrize("scale", [None, -1.0, 0.0, 3.0])
def test_cpu_scale_values(rng, scale):
    q, k, v = make(rng, (2, 3, 65, 32), (2, 3, 70, 32), dtype=np.float32)
    o = cuattn.attention(q, k, v, scale=scale, causal=True)
    assert rel_error(o, cuattn.reference.attention(q, k, v, scale=scale, causal=True)) < 1e-5


def test_cpu_zero_lengths(rng):
    q, k, v = make(rng, (2, 3, 5, 8), (2, 3, 0, 8), dtype=np.float32)
    o, lse = cuattn.attention(q, k, v, return_lse=True)
    assert o.shape == (2, 3, 5, 8) and np.all(o == 0) and np.all(np.isneginf(lse))
    q, k, v = make(rng, (2, 3, 0, 8), (2, 3, 4, 8), dtype=np.float32)
    o, lse = cuattn.attention(q, k, v, return_lse=True)
    assert o.shape == (2, 3, 0, 8) and lse.shape == (2, 3, 0)


def test_cpu_strided_views_and_inputs_untouched(rng):
    # FlashAttention layout (B, S, H, D) passed as a transposed view
    base = [rng.standard_normal((2, 77, 4, 32)).astype(np.float32) for _ in range(3)]
    copies = [b.copy() for b in base]
    q, k, v = (b.transpose(0, 2, 1, 3) for b in base)
    o = cuattn.attention(q, k, v, causal=True)
    assert rel_error(o, cuattn.reference.attention(q, k, v, causal=True)) < 1e-5
    for b, c in zip(base, copies):
        assert np.array_equal(b, c)


def test_cpu_half_inputs_keep_their_dtype(rng):
    q, k, v = make(rng, (1, 2, 33, 16), (1, 2, 40, 16), dtype=np.float16)
    o = cuattn.attention(q, k, v)
    assert o.dtype == np.float16
    assert rel_error(o, cuattn.reference.attention(q, k, v)) < 2e-3  # output rounding to fp16


@pytest.mark.parametrize("dt", [_checks.FLOAT16, _checks.BFLOAT16], ids=["float16", "bfloat16"])
def test_cpu_half_inputs_widen_exactly(rng, dt):
    """16-bit inputs are widened and the output rounded by cuattn's own parallel kernels
    (cuattn/_bits16.py): bit for bit the call on float32 copies, cast back; a transposed view, a
    broadcast batch dimension, GQA, causal, with infinities and a NaN in the inputs."""
    q = rng.standard_normal((2, 4, 37, 16)).astype(dt)
    k = rng.standard_normal((1, 2, 45, 16)).astype(dt)  # broadcast over q's batch, GQA
    v = np.ascontiguousarray(rng.standard_normal((1, 45, 2, 24)).astype(dt)).transpose(0, 2, 1, 3)
    k[0, 1, 3, 5] = np.inf
    v[0, 0, 7, 2] = np.nan
    o = cuattn.attention(q, k, v, causal=True)
    wide = cuattn.attention(*(np.ascontiguousarray(x).astype(np.float32) for x in (q, k, v)), causal=True)
    assert o.dtype == dt
    assert np.array_equal(o, wide.astype(dt), equal_nan=True)
    assert np.isnan(o[:, :2, :, 2]).all()  # kv head 0's NaN value: every row sees key 7, column 2
    assert np.isfinite(o[:, :2, :, :2]).all()


def test_cpu_nan_stays_in_its_row(rng):
    q, k, v = make(rng, (1, 2, 20, 16), (1, 2, 30, 16), dtype=np.float32)
    q[0, 1, 7, 3] = np.nan
    o = cuattn.attention(q, k, v)
    assert np.all(np.isnan(o[0, 1, 7]))
    mask = np.ones(o.shape, bool)
    mask[0, 1, 7] = False
    assert np.all(np.isfinite(o[mask]))


def test_backend_reference_and_cpu_agree(rng):
    q, k, v = make(rng, (1, 2, 10, 8), (1, 2, 12, 8), dtype=np.float32)
    ref = cuattn.attention(q, k, v, backend="reference")
    assert ref.dtype == np.float64
    assert rel_error(cuattn.attention(q, k, v, backend="cpu"), ref) < 1e-5


# --- errors -----------------------------------------------------------------------------

def test_errors_name_the_argument(rng):
    q, k, v = make(rng, (1, 4, 8, 16), (1, 2, 8, 16), dtype=np.float32)
    with pytest.raises(ValueError, match="k's last dim"):
        cuattn.attention(q, k[..., :8], v)
    with pytest.raises(ValueError, match="multiple"):
        cuattn.attention(q[:, :3], k, v)
    with pytest.raises(ValueError, match="v must have"):
        cuattn.attention(q, k, v[:, :, :5])
    with pytest.raises(ValueError, match="scale must be finite"):
        cuattn.attention(q, k, v, scale=float("nan"))
    with pytest.raises(TypeError, match="scale must be a real"):
        cuattn.attention(q, k, v, scale="1")
    with pytest.raises(TypeError, match="share one dtype"):
        cuattn.attention(q, k.astype(np.float64), v)
    with pytest.raises(TypeError, match="dtype int32"):
        cuattn.attention(*(x.astype(np.int32) for x in (q, k, v)))
    with pytest.raises(ValueError, match="q must have shape"):
        cuattn.attention(q[0, 0], k, v)
    with pytest.raises(ValueError, match="broadcast"):
        cuattn.attention(q, np.concatenate([k, k]), np.concatenate([v, v]).repeat(2, 0))
    with pytest.raises(TypeError, match="causal must be"):
        cuattn.attention(q, k, v, causal=1)
    with pytest.raises(ValueError, match="backend must be"):
        cuattn.attention(q, k, v, backend="gpu")
    with pytest.raises(TypeError, match="backend='cuda' needs"):
        cuattn.attention(q, k, v, backend="cuda")
    with pytest.raises(TypeError, match="must be a NumPy array"):
        cuattn.attention(q.tolist(), k, v)


# --- CPU kernel edges: diagonal blocks, extreme scales, BLAS threads ------------------------

def test_cpu_nan_on_the_causal_diagonal(rng):
    q, k, v = make(rng, (1, 2, 300, 32), (1, 2, 300, 32), dtype=np.float32)
    k[0, 0, 200, 4] = np.nan  # key 200: every query row >= 200 sees it, rows < 200 do not
    o = cuattn.attention(q, k, v, causal=True)
    assert np.all(np.isnan(o[0, 0, 200:])) and np.all(np.isfinite(o[0, 0, :200])) and np.all(np.isfinite(o[0, 1]))


@pytest.mark.parametrize("scale", [1e-30, 1e4, -1e4])
def test_cpu_extreme_scales(rng, scale):
    # huge |scale|: softmax becomes a hard max and exp2 underflows to exact zeros elsewhere
    q, k, v = make(rng, (1, 2, 129, 16), (1, 2, 517, 16), dtype=np.float64)
    o, lse = cuattn.attention(q, k, v, scale=scale, causal=True, return_lse=True)
    ro, rl = cuattn.reference.attention(q, k, v, scale=scale, causal=True, return_lse=True)
    assert rel_error(o, ro) < 1e-10
    assert lse_error(lse, rl) < 1e-5 * max(1.0, np.abs(rl).max())


def test_cpu_restores_blas_threads(rng):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = [info["num_threads"] for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas"]
    q, k, v = make(rng, (1, 2, 64, 16), (1, 2, 64, 16), dtype=np.float32)
    cuattn.attention(q, k, v)
    after = [info["num_threads"] for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas"]
    assert before == after


def test_misaligned_gpu_inputs_get_a_fresh_copy():
    """The GPU paths' _kernel_ready (attention, decode, gla) gives an input whose data starts off
    a 16-byte boundary a copy in fresh memory even when it is C-contiguous (cupy.ascontiguousarray
    would hand such an array back as it is), and leaves aligned ones alone. A stand-in array: no
    GPU needed."""
    import sys
    from types import SimpleNamespace

    mod = sys.modules["cuattn.attention"]

    class Stand:
        shape, strides, itemsize, size = (2, 3, 4, 8), (192, 64, 16, 2), 2, 192

        def __init__(self, ptr):
            self.data = SimpleNamespace(ptr=ptr)

        def copy(self, order="K"):
            assert order == "C"
            return Stand(4096)

    for ptr in (1026, 4098, 4104):  # 2 and 8 bytes past a 16-byte boundary
        x = Stand(ptr)
        ready = mod._kernel_ready(x, "q")
        assert ready is not x and ready.data.ptr % 16 == 0
    x = Stand(4096)
    assert mod._kernel_ready(x, "q") is x


def test_launch_plans_only_for_gpu_arrays_and_follow_the_settings(rng, monkeypatch):
    """NumPy calls never take (or make) a GPU launch plan; a plan's key carries every module
    setting the planning reads, so a test or the tile sweep that changes one gets a new plan."""
    import sys

    mod = sys.modules["cuattn.attention"]
    q = rng.standard_normal((1, 2, 16, 32)).astype(np.float32)
    assert mod._plan_key(q, q, q, False, None, False, None) is None
    plans = dict(mod._PLANS)
    cuattn.attention(q, q, q)
    assert mod._PLANS == plans
    base = mod._settings()
    for name, value in (("USE_WGMMA", not mod.USE_WGMMA), ("SHORT_KV", mod.SHORT_KV + 1)):
        with monkeypatch.context() as m:
            m.setattr(mod, name, value)
            assert mod._settings() != base, name
    for table in ("MMA_TILES", "WGMMA_TILES", "WGMMA_TILES_SHORT_KV"):
        with monkeypatch.context() as m:
            changed = dict(getattr(mod, table))
            changed[128] = (1, 1, 1, 1)
            m.setattr(mod, table, changed)
            assert mod._settings() != base, table
    assert mod._settings() == base
