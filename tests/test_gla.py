"""cuattn.gla on the CPU backend (both modes) and the float64 reference, on every DESIGN.md edge.

Tolerances: float64 work agrees with the reference to ~1e-13 (only association order differs),
so 1e-11. float32 work: each output is a sum of K * (tokens still visible) rounded products and
each decay a product of <= T rounded factors, a few units of 2^-24 times sqrt(T) norm-wise at
the lengths used here (<= 130): 2e-5. Chunk and recurrent are also compared to each other,
at the same tolerance, since both are held to the same reference.
"""

import importlib

import numpy as np
import pytest

import cuattn
from cuattn._checks import dtype_name
from helpers import UNIT_ROUNDOFF, gla_inputs, rel_error

TOL = {np.float32: 2e-5, np.float64: 1e-11}
GATES = ["logsigmoid", "masked_-20", "masked_-0.1max", "masked_-inf"]
SCALES = [None, -1.0, -0.3]


# --- the reference against hand-made cases -------------------------------------------------

def test_reference_zero_gates_is_causal_linear_attention(rng):
    q, k, v = (rng.standard_normal((2, 9, d)) for d in (4, 4, 3))
    o, _ = cuattn.reference.gla(q, k, v, np.zeros((2, 9, 4)), scale=0.7)
    scores = np.tril(q @ k.swapaxes(-1, -2))
    assert np.allclose(o, 0.7 * scores @ v)


def test_reference_minus_inf_gate_resets_state(rng):
    q, k, v = (rng.standard_normal((1, 6, d)) for d in (4, 4, 5))
    g = np.log(rng.uniform(0.5, 1.0, (1, 6, 4)))
    g[:, 3] = -np.inf
    h0 = rng.standard_normal((1, 4, 5))
    o, s = cuattn.reference.gla(q, k, v, g, initial_state=h0, output_final_state=True)
    g2 = g[:, 3:].copy()
    g2[:, 0] = 0.0  # a fresh start at token 3: zero state, no decay
    o2, s2 = cuattn.reference.gla(q[:, 3:], k[:, 3:], v[:, 3:], g2, output_final_state=True)
    assert np.allclose(o[:, 3:], o2) and np.allclose(s, s2)


def test_reference_state_carries_across_calls(rng):
    q, k, v, g = gla_inputs(rng, (2, 3, 20), 8, 6, "logsigmoid", np.float64)
    o, s = cuattn.reference.gla(q, k, v, g, output_final_state=True)
    o1, s1 = cuattn.reference.gla(q[..., :7, :], k[..., :7, :], v[..., :7, :], g[..., :7, :], output_final_state=True)
    o2, s2 = cuattn.reference.gla(q[..., 7:, :], k[..., 7:, :], v[..., 7:, :], g[..., 7:, :],
                                  initial_state=s1, output_final_state=True)
    assert np.allclose(np.concatenate([o1, o2], axis=-2), o) and np.allclose(s2, s)


# --- CPU backend against the reference -------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", ["chunk", "recurrent"])
@pytest.mark.parametrize("gates", GATES)
@pytest.mark.parametrize("scale", SCALES)
def test_cpu_matches_reference(rng, dtype, mode, gates, scale):
    q, k, v, g = gla_inputs(rng, (2, 3, 45), 16, 24, gates, dtype)
    h0 = rng.standard_normal((2, 3, 16, 24)).astype(dtype)
    o, s = cuattn.gla(q, k, v, g, scale=scale, initial_state=h0, output_final_state=True, mode=mode)
    assert o.dtype == dtype and s.dtype == np.float32 and s.shape == (2, 3, 16, 24)
    ro, rs = cuattn.reference.gla(q, k, v, g, scale=scale, initial_state=h0, output_final_state=True)
    assert rel_error(o, ro) < TOL[dtype], rel_error(o, ro)
    assert rel_error(s, rs) < max(TOL[dtype], 1e-6), rel_error(s, rs)  # the state is returned as float32


@pytest.mark.parametrize("gates", GATES)
@pytest.mark.parametrize("scale", SCALES)
def test_cpu_chunk_equals_recurrent(rng, gates, scale):
    q, k, v, g = gla_inputs(rng, (1, 2, 130), 32, 16, gates, np.float32)
    oc, sc = cuattn.gla(q, k, v, g, scale=scale, output_final_state=True, mode="chunk")
    orec, srec = cuattn.gla(q, k, v, g, scale=scale, output_final_state=True, mode="recurrent")
    assert rel_error(oc, orec) < TOL[np.float32] and rel_error(sc, srec) < TOL[np.float32]
    assert np.all(np.isfinite(oc)) and np.all(np.isfinite(sc))


@pytest.mark.parametrize("mode", ["chunk", "recurrent"])
def test_cpu_cu_seqlens_equals_separate_calls(rng, mode):
    lengths = [1, 18, 0, 33, 1, 16, 7]  # length 1, empty, and not multiples of the 16-token chunk
    cu = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    total = int(cu[-1])
    q, k, v, g = gla_inputs(rng, (1, 2, total), 16, 8, "masked_-inf", np.float32)
    h0 = rng.standard_normal((len(lengths), 2, 16, 8)).astype(np.float32)
    o, s = cuattn.gla(q, k, v, g, initial_state=h0, output_final_state=True, cu_seqlens=cu, mode=mode, scale=-0.3)
    assert s.shape == (len(lengths), 2, 16, 8)
    for n, (a, b) in enumerate(zip(cu[:-1], cu[1:])):
        sl = (slice(None), slice(None), slice(a, b))
        on, sn = cuattn.gla(q[sl], k[sl], v[sl], g[sl], initial_state=h0[n:n + 1], output_final_state=True,
                            mode=mode, scale=-0.3)
        assert rel_error(o[sl], on) < 1e-6 and rel_error(s[n:n + 1], sn) < 1e-6
    ro, rs = cuattn.reference.gla(q, k, v, g, initial_state=h0, output_final_state=True, cu_seqlens=cu, scale=-0.3)
    assert rel_error(o, ro) < TOL[np.float32] and rel_error(s, rs) < TOL[np.float32]


def test_cpu_cu_seqlens_short_of_total_outputs_zeros(rng):
    q, k, v, g = gla_inputs(rng, (1, 2, 40), 16, 16, "logsigmoid", np.float32)
    o, _ = cuattn.gla(q, k, v, g, cu_seqlens=np.array([0, 10, 30], np.int32))
    assert np.all(o[:, :, 30:] == 0)


@pytest.mark.parametrize("mode", ["chunk", "recurrent"])
def test_cpu_generation_one_token_at_a_time(rng, mode):
    q, k, v, g = gla_inputs(rng, (2, 2, 21), 16, 16, "masked_-20", np.float32)
    full, s_full = cuattn.gla(q, k, v, g, output_final_state=True, mode=mode)
    state = None
    for t in range(21):
        sl = (Ellipsis, slice(t, t + 1), slice(None))
        o_t, state = cuattn.gla(q[sl], k[sl], v[sl], g[sl], initial_state=state, output_final_state=True, mode=mode)
        assert rel_error(o_t, full[sl]) < TOL[np.float32]
    assert rel_error(state, s_full) < TOL[np.float32]


def test_cpu_half_inputs_and_broadcast(rng):
    q, k, v, g = gla_inputs(rng, (2, 1, 2, 33), 16, 8, "logsigmoid", np.float16)
    k = k[0]  # (1, 2, 33, 16) broadcasts against (2, 1, 2, 33, 16)
    o, _ = cuattn.gla(q, k, v, g)
    assert o.dtype == np.float16 and o.shape == (2, 1, 2, 33, 8)
    ro, _ = cuattn.reference.gla(q, k, v, g)
    assert rel_error(o, ro) < 2e-3  # fp16 output rounding, 2^-11 per element


HALF = [np.float16] + ([cuattn._checks.BFLOAT16] if cuattn._checks.BFLOAT16 is not None else [])


@pytest.mark.parametrize("mode", ["chunk", "recurrent"])
@pytest.mark.parametrize("dtype", HALF, ids=lambda d: np.dtype(d).name)
def test_cpu_half_inputs_read_in_place(rng, dtype, mode):
    """16-bit inputs are widened in the kernels and outputs rounded there (cuattn/_bits16.py), not
    copied to float32 first and cast after: bit for bit the result of a float32 copy, rounded to
    the input dtype, with -inf gates, a strided v, a broadcast k and an initial state."""
    q, k, v, g = gla_inputs(rng, (2, 3, 37), 16, 24, "masked_-inf", dtype)
    k = k[:1]
    v = np.ascontiguousarray(v.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)  # (B, T, H, V) as a view
    h0 = rng.standard_normal((2, 3, 16, 24)).astype(np.float32)
    o, s = cuattn.gla(q, k, v, g, initial_state=h0, output_final_state=True, mode=mode)
    wide = [np.ascontiguousarray(x).astype(np.float32) for x in (q, k, v, g)]
    ow, sw = cuattn.gla(*wide, initial_state=h0, output_final_state=True, mode=mode)
    assert o.dtype == dtype and np.array_equal(o, ow.astype(dtype), equal_nan=True)
    assert np.array_equal(s, sw, equal_nan=True)
    ro, _ = cuattn.reference.gla(q, k, v, g, initial_state=h0)
    assert rel_error(o, ro) < 2 * UNIT_ROUNDOFF[dtype_name(dtype)]


def test_cpu_positive_gates_are_valid_math(rng):
    q, k, v, _ = gla_inputs(rng, (1, 2, 30), 16, 8, "logsigmoid", np.float64)
    g = np.full(q.shape, 0.05)
    o, _ = cuattn.gla(q, k, v, g, mode="chunk")
    assert rel_error(o, cuattn.reference.gla(q, k, v, g)[0]) < TOL[np.float64]


def test_cpu_nan_stays_in_its_head(rng):
    q, k, v, g = gla_inputs(rng, (1, 2, 40), 16, 8, "logsigmoid", np.float32)
    k[0, 1, 5, 3] = np.nan
    for mode in ("chunk", "recurrent"):
        o, _ = cuattn.gla(q, k, v, g, mode=mode)
        assert np.all(np.isfinite(o[0, 0])) and np.all(np.isfinite(o[0, 1, :5])) and np.all(np.isnan(o[0, 1, 5:]))


def test_inputs_not_modified(rng):
    arrays = gla_inputs(rng, (1, 2, 20), 16, 8, "masked_-inf", np.float32)
    before = [x.copy() for x in arrays]
    cuattn.gla(*arrays)
    assert all(np.array_equal(a, b) for a, b in zip(arrays, before))


# --- errors -----------------------------------------------------------------------------

def test_errors(rng):
    q, k, v, g = gla_inputs(rng, (1, 2, 10), 16, 8, "logsigmoid", np.float32)
    with pytest.raises(ValueError, match="cu_seqlens must start at 0"):
        cuattn.gla(q, k, v, g, cu_seqlens=np.array([1, 10], np.int32))
    with pytest.raises(ValueError, match="non-decreasing"):
        cuattn.gla(q, k, v, g, cu_seqlens=np.array([0, 6, 4, 10], np.int32))
    with pytest.raises(ValueError, match="past the packed length"):
        cuattn.gla(q, k, v, g, cu_seqlens=np.array([0, 11], np.int32))
    with pytest.raises(TypeError, match="integers"):
        cuattn.gla(q, k, v, g, cu_seqlens=np.array([0.0, 10.0]))
    with pytest.raises(ValueError, match="finite"):
        cuattn.gla(q, k, v, g, scale=float("nan"))
    with pytest.raises(ValueError, match="mode"):
        cuattn.gla(q, k, v, g, mode="fused_chunk")
    with pytest.raises(ValueError, match="gk must end"):
        cuattn.gla(q, k, v, g[..., :8])
    with pytest.raises(ValueError, match="v must have shape"):
        cuattn.gla(q, k, v[..., :5, :], g)
    with pytest.raises(TypeError, match="share one dtype"):
        cuattn.gla(q, k, v, g.astype(np.float64))
    with pytest.raises(ValueError, match="initial_state must have shape"):
        cuattn.gla(q, k, v, g, initial_state=np.zeros((1, 2, 8, 16), np.float32))
    with pytest.raises(ValueError, match=r"initial_state must have shape \(2, 2, 16, 8\)"):
        cuattn.gla(q, k, v, g, cu_seqlens=np.array([0, 4, 10]), initial_state=np.zeros((1, 2, 16, 8)))
    with pytest.raises(ValueError, match="packed"):
        q2, k2, v2, g2 = gla_inputs(rng, (2, 2, 10), 16, 8, "logsigmoid", np.float32)
        cuattn.gla(q2, k2, v2, g2, cu_seqlens=np.array([0, 10]))
    with pytest.raises(TypeError, match="True or False"):
        cuattn.gla(q, k, v, g, output_final_state=1)


def test_reference_backend_dispatch(rng):
    q, k, v, g = gla_inputs(rng, (1, 2, 10), 16, 8, "masked_-inf", np.float32)
    o, s = cuattn.gla(q, k, v, g, backend="reference", output_final_state=True)
    assert o.dtype == np.float64 and s.shape == (1, 2, 16, 8)


def test_chunk_plan(monkeypatch):
    """The GPU chunk mode's variant choice (pure Python, no device needed)."""
    gla_module = importlib.import_module("cuattn.gla")
    monkeypatch.setattr(gla_module, "device_properties", lambda: {"num_sms": 132})
    plan = gla_module._chunk_plan
    # (sequences, heads, K, V, length): ANCHORS rows. Enough blocks: sequential; 4 x 16 heads at
    # T = 8192 (64 blocks of 128 value columns for 132 SMs): segmented.
    assert plan(8, 16, 128, 128, 2048) == (8, 0)
    assert plan(16, 32, 64, 64, 2048) == (4, 0)
    warps, seg = plan(4, 16, 128, 128, 8192)
    assert warps == 8 and seg > 0 and seg % 16 == 0 and seg < 8192
    assert plan(4, 16, 128, 128, 1) == (8, 0)
    # With the prepass (K > 64 by default): 4 warps and no segments for the ANCHORS rows (both
    # passes of the segmented scheme stream the records: H100 sweep 0.79 ms sequential vs
    # 0.88 ms at best segmented on row 2), segments still for a few heads of a long sequence.
    assert plan(8, 16, 128, 128, 2048, True) == (4, 0)
    assert plan(4, 16, 128, 128, 8192, True) == (4, 0)
    warps, seg = plan(1, 4, 128, 128, 65536, True)
    assert warps == 4 and 0 < seg < 65536
    assert gla_module._use_prepass(128, 10) and not gla_module._use_prepass(64, 10)
    assert not gla_module._use_prepass(128, 0)
    assert not gla_module._use_prepass(128, gla_module.PREPASS_MAX_WORKSPACE // 1000)
    monkeypatch.setattr(gla_module, "CHUNK_PREPASS", True)
    assert gla_module._use_prepass(64, 10)
    monkeypatch.setattr(gla_module, "CHUNK_PREPASS", False)
    assert not gla_module._use_prepass(128, 10)
    monkeypatch.setattr(gla_module, "CHUNK_WARPS", 4)
    monkeypatch.setattr(gla_module, "CHUNK_SEGMENT_LEN", 48)
    assert plan(8, 16, 128, 128, 2048) == (4, 48)
    monkeypatch.setattr(gla_module, "CHUNK_SEGMENT_LEN", 40)
    with pytest.raises(ValueError, match="CHUNK_SEGMENT_LEN"):
        plan(8, 16, 128, 128, 2048)
    monkeypatch.setattr(gla_module, "CHUNK_WARPS", 6)
    with pytest.raises(ValueError, match="CHUNK_WARPS"):
        plan(8, 16, 128, 128, 2048)


def test_one_token_plans_only_for_gpu_arrays(rng):
    """NumPy calls never take (or make) a GPU launch plan, T = 1 or not; the key is only for
    one-token calls without cu_seqlens."""
    mod = importlib.import_module("cuattn.gla")
    q, k, v, g = gla_inputs(rng, (2, 3, 1), 32, 16, "logsigmoid", np.float32)
    assert mod._plan_key(q, k, v, g, None, None, True, None, "recurrent", None) is None
    plans = dict(mod._PLANS)
    for mode in ("chunk", "recurrent"):
        o, s = cuattn.gla(q, k, v, g, output_final_state=True, mode=mode)
        ro, rs = cuattn.reference.gla(q, k, v, g, output_final_state=True)
        assert rel_error(o, ro) < 1e-5 and rel_error(s, rs) < 1e-5
    assert mod._PLANS == plans
