"""cuattn.gla on the GPU against the float64 reference (marked gpu; skipped without one).

Inputs are drawn in the tested dtype, so the reference sees exactly the GPU's inputs and the
error is the kernels' own. Tolerances (norm-wise, relative):
- float32 (exact FFMA, fp32 state): a few units of 2^-24 times sqrt(T) at T <= 300: 2e-5.
- float16/bfloat16: rounding the output alone gives ~2^-(p+1)/sqrt(3) rms (bf16 1.1e-3,
  fp16 1.4e-4). Chunk mode also rounds four tensor-core operands to the dtype (decayed q,
  decayed k, the intra-step weights, the state in the inter-step product), each of the same
  size, so <= sqrt(5) times that. A NumPy emulation of exactly those roundings gives 2.4e-3
  (bf16) and 3.0e-4 (fp16) on test_gpu_matches_reference's inputs, for every gate kind; the
  tolerances leave a 4x (bf16) and 6x (fp16) margin: bf16 1e-2, fp16 2e-3.
Chunk and recurrent are also held to each other at the same tolerance.
Outputs are poisoned (the memory pool handed NaN-filled blocks) so an unwritten element fails.
"""

import importlib

import numpy as np
import pytest

import cuattn
from cuattn._checks import BFLOAT16
from helpers import gla_inputs, misaligned, rel_error

pytestmark = pytest.mark.gpu
gla_module = importlib.import_module("cuattn.gla")  # the module (cuattn.gla is the function)

DTYPES = [np.float16, BFLOAT16, np.float32]
TOL = {np.dtype(np.float16): 2e-3, np.dtype(BFLOAT16): 1e-2, np.dtype(np.float32): 2e-5}
GATES = ["logsigmoid", "masked_-20", "masked_-0.1max", "masked_-inf"]
MODES = ["chunk", "recurrent"]


def poison(cp, *shapes):
    """Fill pool blocks of these sizes with NaN and free them: the next allocations reuse them."""
    blocks = [cp.full(s, cp.nan, dtype=cp.float32) for s in shapes]
    for b, s in zip(blocks, shapes):  # also the 16-bit sizes (half the bytes)
        blocks.append(cp.full(s, cp.nan, dtype=cp.float16))
    del blocks


def run(cp, q, k, v, g, *, mode, scale=None, h0=None, cu=None, final=True, layout="bhtd"):
    """Run cuattn.gla on device copies (poisoned outputs); return host (o, state)."""
    def dev(x):
        if layout == "bthd":  # (B, T, H, D) memory passed as a transposed view
            return cp.asarray(np.ascontiguousarray(x.swapaxes(-2, -3))).swapaxes(-2, -3)
        if layout.startswith("unaligned"):  # data (and rows) off 16-byte boundaries
            return misaligned(cp, x, rows=layout == "unaligned_rows")
        return cp.asarray(x)

    o_shape = q.shape[:-1] + (v.shape[-1],)
    s_shape = (h0.shape if h0 is not None else q.shape[:-2] + (q.shape[-1], v.shape[-1]))
    poison(cp, o_shape, s_shape)
    o, s = cuattn.gla(dev(q), dev(k), dev(v), dev(g), scale=scale, mode=mode,
                      initial_state=None if h0 is None else dev(h0), output_final_state=final,
                      cu_seqlens=None if cu is None else cp.asarray(cu))
    assert o.dtype == q.dtype and o.shape == o_shape
    if final:
        assert s.dtype == cp.float32
        return o.get(), s.get()
    assert s is None
    return o.get(), None


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("gates", GATES)
@pytest.mark.parametrize("scale", [None, -1.0, -0.3])
def test_gpu_matches_reference(cp, rng, dtype, mode, gates, scale):
    q, k, v, g = gla_inputs(rng, (2, 3, 150), 64, 64, gates, dtype)
    h0 = rng.standard_normal((2, 3, 64, 64)).astype(np.float32)
    o, s = run(cp, q, k, v, g, mode=mode, scale=scale, h0=h0)
    ro, rs = cuattn.reference.gla(q, k, v, g, scale=scale, initial_state=h0, output_final_state=True)
    tol = TOL[np.dtype(dtype)]
    assert rel_error(o, ro) < tol, rel_error(o, ro)
    assert rel_error(s, rs) < tol, rel_error(s, rs)


SHAPES = [  # (lead, K, V)
    ((1, 2, 300), 16, 16),
    ((2, 2, 77), 24, 40),      # K padded to 32, V a partial value tile
    ((1, 4, 129), 128, 128),
    ((1, 2, 65), 256, 256),
    ((1, 2, 50), 136, 72),     # K padded to 256
    ((2, 1, 2, 33), 64, 200),  # two batch dims
    ((1, 1, 1), 64, 64),       # one token
]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("lead,kdim,vdim", SHAPES)
def test_gpu_shapes(cp, rng, dtype, mode, lead, kdim, vdim):
    q, k, v, g = gla_inputs(rng, lead, kdim, vdim, "masked_-inf", dtype)
    o, s = run(cp, q, k, v, g, mode=mode)
    ro, rs = cuattn.reference.gla(q, k, v, g, output_final_state=True)
    tol = TOL[np.dtype(dtype)]
    assert rel_error(o, ro) < tol and rel_error(s, rs) < tol, (rel_error(o, ro), rel_error(s, rs))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("gates", GATES)
def test_gpu_chunk_equals_recurrent(cp, rng, dtype, gates):
    q, k, v, g = gla_inputs(rng, (2, 2, 200), 128, 64, gates, dtype)
    oc, sc = run(cp, q, k, v, g, mode="chunk", scale=-0.3)
    orec, srec = run(cp, q, k, v, g, mode="recurrent", scale=-0.3)
    tol = TOL[np.dtype(dtype)]
    assert np.all(np.isfinite(oc)) and np.all(np.isfinite(sc))
    assert rel_error(oc, orec) < tol and rel_error(sc, srec) < tol, (rel_error(oc, orec), rel_error(sc, srec))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("mode", MODES)
def test_gpu_cu_seqlens(cp, rng, dtype, mode):
    lengths = [1, 17, 0, 33, 16, 5, 1]  # length 1, empty, not multiples of the 16-token step
    cu = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    total = int(cu[-1]) + 3  # 3 trailing tokens belong to no sequence: zeros
    q, k, v, g = gla_inputs(rng, (1, 2, total), 64, 32, "masked_-0.1max", dtype)
    h0 = rng.standard_normal((len(lengths), 2, 64, 32)).astype(np.float32)
    o, s = run(cp, q, k, v, g, mode=mode, h0=h0, cu=cu, scale=-1.0)
    ro, rs = cuattn.reference.gla(q, k, v, g, initial_state=h0, output_final_state=True, cu_seqlens=cu, scale=-1.0)
    tol = TOL[np.dtype(dtype)]
    assert np.all(o[:, :, cu[-1]:].astype(np.float32) == 0)
    assert rel_error(o, ro) < tol and rel_error(s, rs) < tol, (rel_error(o, ro), rel_error(s, rs))
    for n, (a, b) in enumerate(zip(cu[:-1], cu[1:])):  # N separate calls give the same
        sl = (slice(None), slice(None), slice(a, b))
        if a == b:
            continue
        on, sn = run(cp, q[sl], k[sl], v[sl], g[sl], mode=mode, h0=h0[n:n + 1], scale=-1.0)
        assert rel_error(o[sl], on) < tol and rel_error(s[n:n + 1], sn) < tol


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_gpu_generation_step(cp, rng, dtype):
    """Token-by-token generation: T=1 recurrent calls carrying the state match one long call."""
    q, k, v, g = gla_inputs(rng, (2, 4, 20), 128, 128, "logsigmoid", dtype)
    full, s_full = run(cp, q, k, v, g, mode="chunk")
    state = None
    outs = []
    for t in range(20):
        sl = (Ellipsis, slice(t, t + 1), slice(None))
        o_t, state = run(cp, q[sl], k[sl], v[sl], g[sl], mode="recurrent", h0=state)
        outs.append(o_t)
    ro, rs = cuattn.reference.gla(q, k, v, g, output_final_state=True)
    tol = TOL[np.dtype(dtype)]
    assert rel_error(np.concatenate(outs, axis=-2), ro) < tol and rel_error(state, rs) < tol
    assert rel_error(full, ro) < tol and rel_error(s_full, rs) < tol


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("tile", gla_module.TILED_TILES)
def test_gpu_recurrent_tiles(cp, rng, monkeypatch, dtype, tile):
    """The recurrent kernel with each value tile forced (the automatic choice takes 32 on small
    inputs): every padded K, partial value tiles and lane rows, rounds of tokens cut short,
    packed sequences with empty and length-1 members, a state in and out."""
    monkeypatch.setattr(gla_module, "RECURRENT_TILE", tile)
    tol = TOL[np.dtype(dtype)]
    for lead, kdim, vdim in [((2, 3, 37), 16, 24), ((1, 2, 50), 40, 136), ((1, 1, 21), 128, 128),
                             ((1, 1, 19), 200, 256), ((2, 1, 9), 256, 16), ((1, 2, 33), 64, 64)]:
        q, k, v, g = gla_inputs(rng, lead, kdim, vdim, "masked_-inf", dtype)
        h0 = rng.standard_normal(lead[:-1] + (kdim, vdim)).astype(np.float32)
        o, s = run(cp, q, k, v, g, mode="recurrent", h0=h0, scale=-0.3)
        ro, rs = cuattn.reference.gla(q, k, v, g, initial_state=h0, output_final_state=True, scale=-0.3)
        assert rel_error(o, ro) < tol and rel_error(s, rs) < tol, (lead, kdim, vdim, rel_error(o, ro), rel_error(s, rs))
    lengths = [1, 17, 0, 9, 1]
    cu = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    q, k, v, g = gla_inputs(rng, (1, 2, int(cu[-1])), 128, 72, "masked_-0.1max", dtype)
    h0 = rng.standard_normal((len(lengths), 2, 128, 72)).astype(np.float32)
    o, s = run(cp, q, k, v, g, mode="recurrent", h0=h0, cu=cu, scale=-1.0)
    ro, rs = cuattn.reference.gla(q, k, v, g, initial_state=h0, output_final_state=True, cu_seqlens=cu, scale=-1.0)
    assert rel_error(o, ro) < tol and rel_error(s, rs) < tol, (rel_error(o, ro), rel_error(s, rs))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kdim,vdim", [(16, 24), (40, 136), (64, 64), (128, 128), (200, 256), (256, 16)])
@pytest.mark.parametrize("rows", gla_module.STEP_ROWS_CHOICES)
def test_gpu_one_token_kernel(cp, rng, monkeypatch, dtype, kdim, vdim, rows):
    """T=1 calls (the one-token kernel, each rows-per-thread variant) in both modes: every padded
    K, partial value tiles, with a state in and out, and without a state, strided, with no final
    state."""
    monkeypatch.setattr(gla_module, "STEP_ROWS", rows)
    q, k, v, g = gla_inputs(rng, (3, 2, 1), kdim, vdim, "masked_-inf", dtype)
    h0 = rng.standard_normal((3, 2, kdim, vdim)).astype(np.float32)
    ro, rs = cuattn.reference.gla(q, k, v, g, initial_state=h0, output_final_state=True, scale=-0.3)
    ro0, _ = cuattn.reference.gla(q, k, v, g)
    tol = TOL[np.dtype(dtype)]
    for mode in MODES:
        o, s = run(cp, q, k, v, g, mode=mode, h0=h0, scale=-0.3)
        assert rel_error(o, ro) < tol and rel_error(s, rs) < tol
        o, s = run(cp, q, k, v, g, mode=mode, final=False, layout="bthd")
        assert s is None and rel_error(o, ro0) < tol


@pytest.mark.parametrize("mode", MODES)
def test_gpu_strided_layout_and_no_final_state(cp, rng, mode):
    q, k, v, g = gla_inputs(rng, (2, 3, 90), 64, 64, "masked_-20", BFLOAT16)
    o, s = run(cp, q, k, v, g, mode=mode, final=False, layout="bthd")
    ro, _ = cuattn.reference.gla(q, k, v, g)
    assert s is None and rel_error(o, ro) < TOL[np.dtype(BFLOAT16)]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("layout", ["unaligned", "unaligned_rows"])
def test_gpu_unaligned_inputs(cp, rng, dtype, mode, layout):
    """Inputs whose data starts off a 16-byte boundary, contiguous or not, are copied to aligned
    memory (cupy.ascontiguousarray alone keeps a contiguous one where it lies); the initial state
    as well (the recurrent and one-token kernels read it with 16-byte loads)."""
    for t in (90, 1):  # (T = 1: the one-token kernel)
        q, k, v, g = gla_inputs(rng, (2, 3, t), 64, 64, "logsigmoid", dtype)
        h0 = rng.standard_normal((2, 3, 64, 64)).astype(np.float32)  # the initial state too
        o, s = run(cp, q, k, v, g, mode=mode, h0=h0, layout=layout)
        ro, rs = cuattn.reference.gla(q, k, v, g, initial_state=h0, output_final_state=True)
        assert rel_error(o, ro) < TOL[np.dtype(dtype)] and rel_error(s, rs) < TOL[np.dtype(dtype)]


@pytest.mark.parametrize("layout", ["bhtd", "bthd", "unaligned", "state_fp16"])
@pytest.mark.parametrize("state", ["in_out", "in", "out", "none"])
def test_gpu_one_token_calls_reuse_their_plan(cp, rng, layout, state):
    """One-token calls of one layout share one launch plan (checked and planned once), yet each
    gets its own data right: new inputs at new addresses queued back to back without a sync (each
    step's state the previous step's output, as in generation), then the same arrays again with
    new contents. Layouts that need a copy (unaligned inputs, a float16 state) make no plan and
    stay right."""
    dtype, lead, kdim, vdim = BFLOAT16, (3, 4, 1), 128, 96
    use_h0, final = state in ("in_out", "in"), state in ("in_out", "out")

    def dev(x):
        if layout == "bthd":
            return cp.asarray(np.ascontiguousarray(x.swapaxes(-2, -3))).swapaxes(-2, -3)
        if layout == "unaligned":
            return misaligned(cp, x)
        return cp.asarray(x)

    def step_inputs():
        host = gla_inputs(rng, lead, kdim, vdim, "masked_-inf", dtype)
        return host, tuple(dev(x) for x in host)

    def state_dev(h):  # states are (N, H, K, V) in every layout
        if layout == "state_fp16":
            return cp.asarray(h.astype(np.float16))
        return misaligned(cp, h) if layout == "unaligned" else cp.asarray(h)

    h_host = rng.standard_normal((3, 4, kdim, vdim)).astype(np.float32)
    if layout == "state_fp16":
        h_host = h_host.astype(np.float16).astype(np.float32)
    h_dev = state_dev(h_host) if use_h0 else None
    steps = [step_inputs() for _ in range(4)]
    key = gla_module._plan_key(*steps[0][1], None, h_dev, final, None, "recurrent", None)
    copied = layout == "unaligned" or (layout == "state_fp16" and use_h0)
    results, states = [], [h_dev]
    for i, (_, x) in enumerate(steps):
        poison(cp, lead[:2] + (1, vdim), (3, 4, kdim, vdim))
        o, s = cuattn.gla(*x, initial_state=states[-1] if use_h0 else None, output_final_state=final,
                          mode="recurrent")
        assert (s is not None) == final
        results.append(o)
        states.append(s if (final and use_h0 and layout != "state_fp16") else h_dev)
        if i == 0:
            plans = dict(gla_module._PLANS)
            assert key is not None and (key in plans) == (not copied)
    assert gla_module._PLANS == plans  # no new plan: the same objects under the same keys
    h = h_host if use_h0 else None
    for i, ((host, _), o) in enumerate(zip(steps, results)):
        ro, rs = cuattn.reference.gla(*host, initial_state=h, output_final_state=True)
        assert rel_error(o.get(), ro) < TOL[np.dtype(dtype)], i
        if final and use_h0 and layout != "state_fp16":
            assert rel_error(states[i + 1].get(), rs) < TOL[np.dtype(dtype)], i
            h = states[i + 1].get()  # the next step starts from the GPU's state, as it did
    host, x = steps[0]
    new = gla_inputs(rng, lead, kdim, vdim, "logsigmoid", dtype)
    for a, b in zip(x, new):  # the same addresses, new contents
        a[...] = cp.asarray(b)
    o, s = cuattn.gla(*x, initial_state=h_dev, output_final_state=final, mode="recurrent")
    ro, rs = cuattn.reference.gla(*new, initial_state=h_host if use_h0 else None, output_final_state=True)
    assert rel_error(o.get(), ro) < TOL[np.dtype(dtype)]
    if final:
        assert rel_error(s.get(), rs) < TOL[np.dtype(dtype)]
    assert gla_module._PLANS == plans


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("state", ["none", "full", "broadcast"])
def test_gpu_no_tokens(cp, rng, dtype, mode, state):
    """T = 0, dense (batch 2) and packed (three empty sequences): an empty output, and each final
    state is its initial state (zeros without one), as the reference gives. (The GPU fuzz found
    these raising a ValueError from a reshape of the empty output, 24th session.) A broadcast
    initial state is the dense call's alone (packed calls take one state per sequence)."""
    for lead, cu in (((2, 3, 0), None), ((1, 3, 0), np.zeros(4, np.int32))):
        q, k, v, g = gla_inputs(rng, lead, 32, 16, "logsigmoid", dtype)
        states = (3 if cu is not None else 2, 3, 32, 16)
        h0_shape = (1,) + states[1:] if state == "broadcast" and cu is None else states
        h0 = None if state == "none" else rng.standard_normal(h0_shape).astype(np.float32)
        o, s = run(cp, q, k, v, g, mode=mode, h0=h0, cu=cu)
        ro, rs = cuattn.reference.gla(q, k, v, g, initial_state=h0, output_final_state=True, cu_seqlens=cu)
        assert o.shape == ro.shape == lead + (16,)
        assert s.shape == rs.shape == states and np.array_equal(s, rs.astype(np.float32))


def test_gpu_positive_gates(cp, rng):
    q, k, v, _ = gla_inputs(rng, (1, 2, 40), 64, 64, "logsigmoid", np.float32)
    g = np.full(q.shape, 0.02, np.float32)
    ro, _ = cuattn.reference.gla(q, k, v, g)
    for mode in MODES:
        o, _ = run(cp, q, k, v, g, mode=mode, final=False)
        assert rel_error(o, ro) < TOL[np.dtype(np.float32)]


def test_gpu_nan_stays_in_its_head(cp, rng):
    q, k, v, g = gla_inputs(rng, (1, 2, 40), 64, 64, "logsigmoid", np.float16)
    k[0, 1, 20, 3] = np.nan
    for mode in MODES:
        o, _ = run(cp, q, k, v, g, mode=mode, final=False)
        o = o.astype(np.float32)
        assert np.all(np.isfinite(o[0, 0])) and np.all(np.isfinite(o[0, 1, :20])) and np.all(np.isnan(o[0, 1, 20:]))


def test_gpu_inputs_not_modified(cp, rng):
    arrays = [cp.asarray(x) for x in gla_inputs(rng, (1, 2, 40), 64, 64, "masked_-inf", np.float16)]
    h0 = cp.asarray(rng.standard_normal((1, 2, 64, 64)).astype(np.float32))
    before = [x.copy() for x in arrays + [h0]]
    for mode in MODES:
        cuattn.gla(*arrays, initial_state=h0, output_final_state=True, mode=mode)
    assert all(bool(cp.array_equal(a, b, equal_nan=True)) for a, b in zip(arrays + [h0], before))


def test_gpu_errors(cp):
    x = cp.ones((1, 2, 8, 20), cp.float16)
    with pytest.raises(ValueError, match="head dim K=20"):
        cuattn.gla(x, x, x, x)
    x = cp.ones((1, 2, 8, 64), cp.float64)
    with pytest.raises(TypeError, match="float64"):
        cuattn.gla(x, x, x, x)
    x = cp.ones((1, 2, 8, 128), cp.float16)[..., ::2]
    with pytest.raises(ValueError, match="contiguous"):
        cuattn.gla(x, x, x, x)
    x = cp.ones((1, 2, 8, 64), cp.float16)
    with pytest.raises(TypeError, match="mix"):
        cuattn.gla(x, np.ones((1, 2, 8, 64), np.float16), x, x)
    with pytest.raises(ValueError, match="past the packed length"):
        cuattn.gla(x, x, x, x, cu_seqlens=cp.asarray([0, 9], cp.int32))


CHUNK_VARIANTS = [  # (warps, segment length, prepass) forced through cuattn.gla's switches; 0 = sequential
    (4, 0, False), (8, 0, False), (4, 16, False), (8, 16, False), (4, 48, False), (8, 64, False), (8, 4096, False),
    (4, 0, True), (8, 0, True), (4, 48, True), (8, 64, True),
]


def force_chunk_variant(monkeypatch, warps, segment_len, prepass=False):
    monkeypatch.setattr(gla_module, "CHUNK_WARPS", warps)
    monkeypatch.setattr(gla_module, "CHUNK_SEGMENT_LEN", segment_len)
    monkeypatch.setattr(gla_module, "CHUNK_PREPASS", prepass)


@pytest.mark.parametrize("segment_len", [0, 32])
@pytest.mark.parametrize("varlen", [False, True])
def test_gpu_chunk_prepass_bit_identical(cp, rng, monkeypatch, segment_len, varlen):
    """With 4 warps the prepass runs the sequential kernel's phases 1-2 with the same thread
    layout, so chunk mode with and without it agree bit for bit (sequential and segmented,
    packed sequences with empty and short members, K and V not multiples of the tiles)."""
    if varlen:
        cu = np.array([0, 1, 18, 18, 95, 130], np.int32)
        q, k, v, g = gla_inputs(rng, (1, 2, 133), 40, 72, "masked_-inf", BFLOAT16)
        h0 = rng.standard_normal((5, 2, 40, 72)).astype(np.float32)
    else:
        cu = None
        q, k, v, g = gla_inputs(rng, (2, 3, 150), 40, 72, "masked_-inf", BFLOAT16)
        h0 = rng.standard_normal((2, 3, 40, 72)).astype(np.float32)
    results = []
    for prepass in (False, True):
        force_chunk_variant(monkeypatch, 4, segment_len, prepass)
        results.append(run(cp, q, k, v, g, mode="chunk", h0=h0, cu=cu, scale=-0.3))
    (o1, s1), (o2, s2) = results
    assert np.array_equal(o1, o2) and np.array_equal(s1, s2)
    ro, rs = cuattn.reference.gla(q, k, v, g, scale=-0.3, initial_state=h0, output_final_state=True, cu_seqlens=cu)
    tol = TOL[np.dtype(BFLOAT16)]
    assert rel_error(o2, ro) < tol and rel_error(s2, rs) < tol


@pytest.mark.parametrize("dtype", [np.float16, BFLOAT16], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("warps,segment_len,prepass", CHUNK_VARIANTS)
@pytest.mark.parametrize("gates", GATES)
def test_gpu_chunk_variants_match_reference(cp, rng, monkeypatch, dtype, warps, segment_len, prepass, gates):
    """Every chunk variant (4/8 warps, sequential or segmented, with or without the prepass)
    against float64 and recurrent."""
    q, k, v, g = gla_inputs(rng, (2, 3, 150), 64, 64, gates, dtype)
    h0 = rng.standard_normal((2, 3, 64, 64)).astype(np.float32)
    orec, srec = run(cp, q, k, v, g, mode="recurrent", scale=-0.3, h0=h0)
    force_chunk_variant(monkeypatch, warps, segment_len, prepass)
    o, s = run(cp, q, k, v, g, mode="chunk", scale=-0.3, h0=h0)
    ro, rs = cuattn.reference.gla(q, k, v, g, scale=-0.3, initial_state=h0, output_final_state=True)
    tol = TOL[np.dtype(dtype)]
    assert np.all(np.isfinite(o)) and np.all(np.isfinite(s))
    assert rel_error(o, ro) < tol and rel_error(s, rs) < tol, (rel_error(o, ro), rel_error(s, rs))
    assert rel_error(o, orec) < tol and rel_error(s, srec) < tol, (rel_error(o, orec), rel_error(s, srec))


VARIANT_SHAPES = [  # (lead, K, V): padded K 32..256, partial value tiles for 64 and 128 columns
    ((1, 2, 300), 16, 16),
    ((2, 2, 77), 24, 40),
    ((1, 2, 129), 128, 128),
    ((1, 2, 200), 128, 200),
    ((1, 1, 65), 256, 256),
    ((1, 2, 50), 136, 72),
    ((2, 1, 2, 33), 64, 200),
    ((1, 1, 1), 64, 64),
]


@pytest.mark.parametrize("dtype", [np.float16, BFLOAT16], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("warps,segment_len,prepass", CHUNK_VARIANTS)
@pytest.mark.parametrize("lead,kdim,vdim", VARIANT_SHAPES)
def test_gpu_chunk_variants_shapes(cp, rng, monkeypatch, dtype, warps, segment_len, prepass, lead, kdim, vdim):
    q, k, v, g = gla_inputs(rng, lead, kdim, vdim, "masked_-inf", dtype)
    h0 = rng.standard_normal(lead[:-1] + (kdim, vdim)).astype(np.float32)
    force_chunk_variant(monkeypatch, warps, segment_len, prepass)
    o, s = run(cp, q, k, v, g, mode="chunk", h0=h0)
    ro, rs = cuattn.reference.gla(q, k, v, g, initial_state=h0, output_final_state=True)
    tol = TOL[np.dtype(dtype)]
    assert rel_error(o, ro) < tol and rel_error(s, rs) < tol, (rel_error(o, ro), rel_error(s, rs))
    _, s_only = run(cp, q, k, v, g, mode="chunk", h0=h0, final=False)  # no final state asked
    assert s_only is None


@pytest.mark.parametrize("dtype", [np.float16, BFLOAT16], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("warps,segment_len,prepass", CHUNK_VARIANTS)
def test_gpu_chunk_variants_cu_seqlens(cp, rng, monkeypatch, dtype, warps, segment_len, prepass):
    lengths = [1, 17, 0, 33, 16, 5, 1, 70]  # empty and short members: empty segments in the scan
    cu = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    total = int(cu[-1]) + 3
    q, k, v, g = gla_inputs(rng, (1, 2, total), 64, 96, "masked_-0.1max", dtype)
    h0 = rng.standard_normal((len(lengths), 2, 64, 96)).astype(np.float32)
    force_chunk_variant(monkeypatch, warps, segment_len, prepass)
    o, s = run(cp, q, k, v, g, mode="chunk", h0=h0, cu=cu, scale=-1.0)
    ro, rs = cuattn.reference.gla(q, k, v, g, initial_state=h0, output_final_state=True, cu_seqlens=cu, scale=-1.0)
    tol = TOL[np.dtype(dtype)]
    assert np.all(o[:, :, cu[-1]:].astype(np.float32) == 0)
    assert rel_error(o, ro) < tol and rel_error(s, rs) < tol, (rel_error(o, ro), rel_error(s, rs))


@pytest.mark.parametrize("warps,segment_len,prepass", CHUNK_VARIANTS)
def test_gpu_chunk_variants_reset_exact(cp, rng, monkeypatch, warps, segment_len, prepass):
    """A -inf gate on every channel at token 100 cuts off the past exactly, in every variant:
    tokens from 100 on equal a fresh call (zero state) on them alone."""
    q, k, v, g = gla_inputs(rng, (1, 2, 260), 128, 128, "logsigmoid", BFLOAT16)
    g[..., 100, :] = -np.inf
    h0 = rng.standard_normal((1, 2, 128, 128)).astype(np.float32)
    force_chunk_variant(monkeypatch, warps, segment_len, prepass)
    o, s = run(cp, q, k, v, g, mode="chunk", h0=h0)
    tail = (Ellipsis, slice(100, None), slice(None))
    o_tail, s_tail = run(cp, q[tail], k[tail], v[tail], g[tail], mode="recurrent")
    ro, rs = cuattn.reference.gla(q, k, v, g, initial_state=h0, output_final_state=True)
    tol = TOL[np.dtype(BFLOAT16)]
    assert np.all(np.isfinite(o.astype(np.float32)))
    assert rel_error(o, ro) < tol and rel_error(s, rs) < tol
    assert rel_error(o[tail], o_tail) < tol and rel_error(s, s_tail) < tol


def test_gpu_chunk_variant_nan_stays_in_its_head(cp, rng, monkeypatch):
    q, k, v, g = gla_inputs(rng, (1, 2, 40), 64, 64, "logsigmoid", np.float16)
    k[0, 1, 20, 3] = np.nan
    for warps, segment_len, prepass in CHUNK_VARIANTS:
        force_chunk_variant(monkeypatch, warps, segment_len, prepass)
        o, _ = run(cp, q, k, v, g, mode="chunk", final=False)
        o = o.astype(np.float32)
        assert np.all(np.isfinite(o[0, 0])) and np.all(np.isfinite(o[0, 1, :20])) and np.all(np.isnan(o[0, 1, 20:]))
