"""``cuattn.gla``: gated linear attention, chunk and recurrent modes (check, dispatch, GPU launch)."""

from __future__ import annotations

import functools
import math

import numpy as np

from . import _capture, _checks, _plans
from ._backend import as_cupy, require_cupy, resolve_backend, to_numpy
from ._cuda import PackedLaunch, check_arch, device_properties, get_kernel, launch, launch_packed
from .attention import _flatten_batch, _kernel_ready, _views_of_inputs, aligned_copy

MODES = ("chunk", "recurrent")
MAX_GRID_Z = 65535
# Padded key dims compiled for the GPU; the dispatcher picks the smallest one >= K.
PADDED_K = (32, 64, 128, 256)
GPU_DIM_RANGE = (16, 256)
CHUNK_STEP = 16       # tokens per chunk step (cuda/gla.cu: kC)
CHUNK_WARP_COUNTS = (4, 8)  # a chunk block has 16 value columns per warp
TILED_TILES = (32, 64, 128)  # value columns per block of gla_recurrent_tiled (4 per lane)
RECURRENT_TILE = None  # force gla_recurrent_tiled's value tile (32, 64 or 128); None: _tiled_tile
STEP_BLOCK_V = 128  # value columns per block of the one-token kernel (cuda/gla.cu: gla_step)
STEP_ROWS_CHOICES = (8, 16)  # state rows per thread of gla_step (compiled variants)
STEP_ROWS = 16  # the one used (benchmarks/gla.py times both)
SCAN_THREADS = 256
SCAN_EXPRESSION = "gla_chunk_scan"
# Chunk-mode variant switches; None picks automatically (tests set them to force each variant).
# CHUNK_WARPS: 4 or 8 warps per block (64 or 128 value columns).
# CHUNK_SEGMENT_LEN: 0 = one block walks a whole sequence (sequential); a multiple of 16 = the
# segmented 3-phase scheme with segments of that many tokens (see _chunk_plan).
CHUNK_WARPS = None
CHUNK_SEGMENT_LEN = None
# CHUNK_PREPASS: True runs phases 1-2 of every 16-token step (decays and intra-step weights:
# they depend on q, k, g alone) in a parallel prepass (gla_chunk_prep) that writes per-step
# records to a workspace (CHUNK_STEP * (4 K + 32) + 4 K bytes per step, head and sequence), and
# the sequential kernel reads them instead of recomputing; False recomputes them in the sequential
# loop; None (default) uses the prepass for padded K > 64 (H100 sweep, 2026-11-23, results/
# gla_chunk_sweep.json: K = 128 rows 0.32 vs 0.41 ms and 0.79 vs 1.24 ms; K = 64 0.65 vs
# 0.53 ms: there the workspace traffic costs more than the phases it saves). Falls back to no
# prepass when the workspace would pass PREPASS_MAX_WORKSPACE bytes.
CHUNK_PREPASS = None
PREPASS_MAX_WORKSPACE = 2 << 30
# Cost model of the automatic choice, in units of one 16-token step of one block: phase 1 of the
# segmented scheme (state only, no W and no output) costs about this fraction of a full step
# (with the prepass both passes stream the same records, so phase 1 costs a full step),
SEGMENT_PHASE1_COST = 0.35
SEGMENT_PHASE1_COST_PREPPED = 1.0
# the scan and the two extra launches about this many steps, and a split must win by this factor.
SEGMENT_FIXED_COST = 8
SEGMENT_MIN_GAIN = 1.15
SEGMENT_MAX_WORKSPACE = 256 << 20  # bytes of fp32 segment states per launch
TYPE_NAMES = {"float16": "half_t", "bfloat16": "bf16_t", "float32": "float"}


def padded_key_dim(head_dim_k: int) -> int:
    return next(p for p in PADDED_K if p >= head_dim_k)


def chunk_expression(type_name: str, padded: int, warps: int = 4, state_only: bool = False,
                     prepped: bool = False) -> str:
    flags = ", ".join("true" if f else "false" for f in (state_only, prepped))
    return f"gla_chunk_mma<{type_name}, {padded}, {warps}, {flags}>"


def prep_expression(type_name: str, padded: int) -> str:
    return f"gla_chunk_prep<{type_name}, {padded}>"


def prep_smem_bytes(padded: int) -> int:
    """Dynamic shared memory of gla_chunk_prep (mirrors its layout comment in cuda/gla.cu)."""
    stride_k = padded + 8
    halves = (6 * CHUNK_STEP + CHUNK_STEP // 2) * stride_k + CHUNK_STEP * (CHUNK_STEP + 8)
    return 2 * halves + 4 * (CHUNK_STEP * padded + padded)


def tiled_expression(type_name: str, padded: int, tile: int) -> str:
    return f"gla_recurrent_tiled<{type_name}, {padded}, {tile}>"


def tiled_threads(padded: int, tile: int) -> int:
    """Threads of gla_recurrent_tiled<., padded, tile> (mirrors RecurrentShape in cuda/gla.cu)."""
    lane_rows = 32 // (tile // 4)
    per_lane = min(16 if padded > 64 else 8, padded // lane_rows)
    return 32 * (padded // per_lane) // lane_rows


def _tiled_tile(padded: int, vdim: int, blocks_per_tile: int) -> int:
    """Value columns per block of the tiled recurrent kernel: the widest tile (<= 128; the
    shared-memory reads per state element are the same for all) that still gives every SM a
    block; 32 for K <= 64 (measured: B 16, H 32, K = V = 64 ran 1.82 ms with 32, 1.87 with 64)."""
    tile = 128 if vdim > 64 else (64 if vdim > 32 else 32)
    if padded <= 64:
        tile = 32
    while tile > 32 and -(-vdim // tile) * blocks_per_tile < device_properties()["num_sms"]:
        tile //= 2
    return tile


def step_expression(type_name: str, padded: int, rows: int) -> str:
    return f"gla_step<{type_name}, {padded}, {rows}>"


def _step_rows(padded: int, rows: int) -> int:
    """gla_step's rows per thread: at least 2 row groups, at most 16 (512 threads, no spills)."""
    return max(min(rows, padded // 2), padded // 16)


def chunk_smem_bytes(padded: int, warps: int = 4, prepped: bool = False) -> int:
    """Dynamic shared memory of gla_chunk_mma (mirrors the layout comment in cuda/gla.cu): two
    stages, then (unless prepped) the phase 1-2 buffers, then the segment's decay."""
    stride_k, stride_v, stride_w = padded + 8, 16 * warps + 8, CHUNK_STEP + 8
    stage = 3 * CHUNK_STEP * stride_k + CHUNK_STEP * stride_v
    if prepped:
        return 2 * 2 * stage + 4 * padded
    halves = 2 * stage + (3 * CHUNK_STEP + CHUNK_STEP // 2) * stride_k + CHUNK_STEP * stride_w
    return 2 * halves + 4 * (CHUNK_STEP * padded + 2 * padded)


def all_kernel_expressions() -> list[str]:
    """Every kernel variant the dispatcher can pick (compiled by the CI tests)."""
    out = [SCAN_EXPRESSION]
    for padded in PADDED_K:
        out += [chunk_expression(t, padded, w, so, pp) for t in ("half_t", "bf16_t")
                for w in CHUNK_WARP_COUNTS for so in (False, True) for pp in (False, True)]
        out += [prep_expression(t, padded) for t in ("half_t", "bf16_t")]
        out += [step_expression(t, padded, r) for t in ("half_t", "bf16_t", "float")
                for r in sorted({_step_rows(padded, c) for c in STEP_ROWS_CHOICES})]
        out += [tiled_expression(t, padded, tile) for t in ("half_t", "bf16_t", "float") for tile in TILED_TILES]
    return out


def _chunk_blocks_per_sm(padded: int, warps: int) -> int:
    """Blocks per SM guaranteed by gla_chunk_mma's __launch_bounds__ (a lower bound)."""
    if warps > 4 or padded > 128:
        return 1
    return 3 if padded > 64 else 4


def _use_prepass(padded: int, records: int) -> bool:
    """Whether chunk mode runs the prepass (CHUNK_PREPASS; None: padded K > 64) for ``records``
    16-token steps (sequences x heads x steps); never when its workspace would pass
    PREPASS_MAX_WORKSPACE."""
    want = padded > 64 if CHUNK_PREPASS is None else bool(CHUNK_PREPASS)
    record_bytes = CHUNK_STEP * (4 * padded + 2 * CHUNK_STEP) + 4 * padded
    return want and records > 0 and records * record_bytes <= PREPASS_MAX_WORKSPACE


def _chunk_plan(num_seqs: int, heads: int, kdim: int, vdim: int, max_len: int,
                prepped: bool = False) -> tuple[int, int]:
    """(warps, segment length) of the chunk mode: CHUNK_WARPS / CHUNK_SEGMENT_LEN when set.

    Automatic: without the prepass, 8 warps (one block covers 128 value columns, so the
    per-step decay and W work is not repeated per 64-column tile) when V > 64, else 4; with it
    (no such work left in the loop), 4. Sequential (segment length 0) unless too few blocks fill
    the GPU: then the segment length that minimizes waves x steps per segment x (1 + phase-1
    cost), if it wins by SEGMENT_MIN_GAIN (waves of one block per SM with the prepass, of the
    launch bound's blocks per SM without).
    """
    warps = CHUNK_WARPS if CHUNK_WARPS is not None else (8 if vdim > 64 and not prepped else 4)
    if warps not in CHUNK_WARP_COUNTS:
        raise ValueError(f"cuattn.gla.CHUNK_WARPS must be one of {CHUNK_WARP_COUNTS} or None; got {warps!r}")
    if CHUNK_SEGMENT_LEN is not None:
        seg = int(CHUNK_SEGMENT_LEN)
        if seg < 0 or seg % CHUNK_STEP:
            raise ValueError(f"cuattn.gla.CHUNK_SEGMENT_LEN must be 0 or a positive multiple of {CHUNK_STEP}; "
                             f"got {seg}")
        return warps, seg
    steps = -(-max_len // CHUNK_STEP)
    if steps < 2:
        return warps, 0
    padded = padded_key_dim(kdim)
    base = num_seqs * heads * -(-vdim // (16 * warps))
    # with the prepass the loop streams its records, and blocks sharing an SM share its bandwidth:
    # count one block per SM (H100: 64 -> 128 blocks of row 2 gained 1.14x, not 2x)
    slots = device_properties()["num_sms"] * (1 if prepped else _chunk_blocks_per_sm(padded, warps))
    best_cost, best_seg = -(-base // slots) * steps, 0
    state_bytes = 4 * heads * kdim * vdim * min(num_seqs, MAX_GRID_Z)
    phase1 = SEGMENT_PHASE1_COST_PREPPED if prepped else SEGMENT_PHASE1_COST
    for parts in range(2, min(steps, 256) + 1):
        per = -(-steps // parts)
        nseg = -(-steps // per)
        if nseg * state_bytes > SEGMENT_MAX_WORKSPACE:
            break
        cost = -(-base * nseg // slots) * per * (1 + phase1) + SEGMENT_FIXED_COST
        if cost * SEGMENT_MIN_GAIN < best_cost:
            best_cost, best_seg = cost, per * CHUNK_STEP
    return warps, best_seg


def check_cu_seqlens(cu_seqlens, seqlen: int):
    """Host int64 copy of ``cu_seqlens`` after checking it; None passes through."""
    if cu_seqlens is None:
        return None
    cu = np.asarray(to_numpy(cu_seqlens))
    if cu.ndim != 1 or cu.shape[0] < 2:
        raise ValueError(f"cu_seqlens must have shape (N + 1,) with N >= 1; got shape {tuple(cu.shape)}")
    if not np.issubdtype(cu.dtype, np.integer):
        raise TypeError(f"cu_seqlens must hold integers (int32 offsets); got dtype {cu.dtype}")
    cu = cu.astype(np.int64)
    if cu[0] != 0:
        raise ValueError(f"cu_seqlens must start at 0; got {cu[0]}")
    if np.any(np.diff(cu) < 0):
        raise ValueError("cu_seqlens must be non-decreasing (offsets of consecutive sequences)")
    if cu[-1] > seqlen:
        raise ValueError(f"cu_seqlens ends at {cu[-1]}, past the packed length T = {seqlen}")
    return cu


def check_gla_args(q, k, v, gk, initial_state, cu_seqlens, scale, output_final_state, mode) -> dict:
    """Check shapes and arguments of ``gla`` (every backend); return the sizes.

    ``cu_seqlens`` must already be a host array (or None); it is checked here.
    """
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
    _checks.check_bool(output_final_state, "output_final_state")
    for x, name, what in ((q, "q", "(..., H, T, K)"), (k, "k", "(..., H, T, K)"),
                          (v, "v", "(..., H, T, V)"), (gk, "gk", "(..., H, T, K)")):
        _checks.check_ndim(x, name, 3, what)
    h, t, kdim = q.shape[-3:]
    for x, name in ((k, "k"), (gk, "gk")):
        if tuple(x.shape[-3:]) != (h, t, kdim):
            raise ValueError(f"{name} must end in q's (H, T, K) = {(h, t, kdim)}; got shape {tuple(x.shape)}")
    if tuple(v.shape[-3:-1]) != (h, t):
        raise ValueError(f"v must have shape (..., {h}, {t}, V); got shape {tuple(v.shape)}")
    vdim = v.shape[-1]
    batch = _checks.broadcast_batch({"q": q.shape, "k": k.shape, "v": v.shape, "gk": gk.shape}, 3)
    cu = check_cu_seqlens(cu_seqlens, t)
    if cu is not None:
        if batch != (1,):
            raise ValueError(f"with cu_seqlens the inputs must be packed as (1, H, T_total, ...); "
                             f"got batch dims {batch}")
        num_seqs = cu.shape[0] - 1
        state_shape = (num_seqs, h, kdim, vdim)
    else:
        num_seqs = math.prod(batch)
        state_shape = batch + (h, kdim, vdim)
    if initial_state is not None:
        _checks.check_ndim(initial_state, "initial_state", 3, "(..., H, K, V)")
        if not np.issubdtype(np.dtype(initial_state.dtype), np.floating) and initial_state.dtype != _checks.BFLOAT16:
            raise TypeError(f"initial_state must be a float array; got dtype {initial_state.dtype}")
        ok = tuple(initial_state.shape) == state_shape
        if cu is None and not ok:
            try:
                ok = np.broadcast_shapes(tuple(initial_state.shape), state_shape) == state_shape
            except ValueError:
                ok = False
        if not ok:
            raise ValueError(f"initial_state must have shape {state_shape}; got {tuple(initial_state.shape)}")
    return dict(batch=batch, num_heads=h, seqlen=t, head_dim_k=kdim, head_dim_v=vdim, num_seqs=num_seqs,
                state_shape=state_shape, cu_seqlens=cu, scale=_checks.check_scale(scale, kdim))


def gla(q, k, v, gk, *, scale=None, initial_state=None, output_final_state=False, cu_seqlens=None,
        mode="chunk", backend=None):
    """Gated linear attention (GLA) forward.

    Per head, with a state ``S_t`` of shape (K, V) and log-space gates ``gk``::

        S_t = diag(exp(gk_t)) S_{t-1} + k_t^T v_t        o_t = scale * q_t S_t

    ``mode='chunk'`` runs 16-token steps on tensor cores (intra-step weights plus state passing;
    for K > 64 each step's decays and intra-step weights come from a parallel prepass that
    needs a temporary workspace of about 9 KB per 16 tokens per head at K = 128, at most
    ``cuattn.gla.PREPASS_MAX_WORKSPACE`` bytes; long sequences with few heads are split into
    segments processed in parallel, joined by a scan over the segments' states);
    ``mode='recurrent'`` runs one token at a time with the state kept on chip (also the way to
    generate token by token: T=1 with a state in and out). Both compute the same function and
    agree to rounding for every gate in [-inf, 0]: a gate of -inf (or anything whose exp
    underflows, such as ``-0.1 * finfo(float32).max``) resets the state exactly.

    Parameters
    ----------
    q, k : array, shape (..., H, T, K)
        Queries and keys. float16, bfloat16 or float32 on the GPU; any float on the CPU
        (computed in float32, or float64 for float64 inputs). Leading dims broadcast.
    v : array, shape (..., H, T, V)
        Values, same dtype.
    gk : array, shape (..., H, T, K)
        Log-space gates, same dtype, normally in [-inf, 0]. Positive gates are valid math
        (the state grows) and are computed as given.
    scale : float, optional
        Output scale; None means ``K ** -0.5``. Any finite value, negative included, is used
        exactly as given, in every mode.
    initial_state : array, shape (..., H, K, V) or (N, H, K, V) with ``cu_seqlens``, optional
        State before the first token (read as float32 on the GPU); None means zeros.
    output_final_state : bool, default False
        Also return the state after the last token of each sequence.
    cu_seqlens : integer array, shape (N + 1,), optional
        Offsets of N sequences packed along T in inputs of shape (1, H, T_total, ...): the
        state never crosses a border, and the results equal N separate calls. Starts at 0,
        non-decreasing, ends at most at T_total (later tokens output zeros). NumPy or CuPy.
    mode : {'chunk', 'recurrent'}
    backend : {None, 'cuda', 'cpu', 'reference'}
        None follows the array type; 'reference' runs :func:`cuattn.reference.gla`.

    Returns
    -------
    o : array, shape (..., H, T, V), the input dtype (float64 for the reference)
    final_state : array, shape (..., H, K, V) or (N, H, K, V), float32; None unless
        ``output_final_state``.

    Raises
    ------
    TypeError
        Mixed NumPy/GPU inputs, mismatched or unsupported dtypes, a non-bool flag, non-integer
        ``cu_seqlens``.
    ValueError
        Shapes that do not fit, a non-finite scale, a bad mode, ``cu_seqlens`` that does not
        start at 0, decreases or runs past T, batch dims other than (1,) with ``cu_seqlens``,
        on the GPU K or V outside 16..256 or not a multiple of 8, a last dim that is not
        contiguous.

    Notes
    -----
    The state and all accumulation are float32. On the GPU, float16/bfloat16 chunk mode rounds
    the decayed queries and keys, the intra-step weights and the state to the input dtype for
    the tensor-core products (as flash-linear-attention does); float32 inputs never use TF32:
    both modes run the exact-FFMA recurrent kernel for them. A GPU call with T = 1 (no
    ``cu_seqlens``) runs a dedicated one-token kernel in either mode (exact FFMA, the state read
    and written once), since such a call is bound by the state's bytes. Such calls remember their
    launch plan per layout (shapes, strides, dtypes, 16-byte alignment of every input and of
    ``initial_state``, the arguments, device, stream; the latest ``MAX_PLANS``): a repeated
    layout, as in token-by-token generation, skips the checks and the planning and only
    allocates the outputs and queues the launch. Layouts that need a copy (unaligned inputs, a
    state that is not contiguous aligned float32 of the full shape) take the full path each call.

    GPU calls can be captured in a CUDA graph inside :func:`cuattn.graph_memory`. The offsets
    of ``cu_seqlens`` plan the launch on the host, so under capture they must be a NumPy array
    (or list), and the graph keeps the values of capture time; ``cu_seqlens`` on the device
    raises ``RuntimeError`` there.

    Examples
    --------
    >>> import numpy as np, cuattn
    >>> rng = np.random.default_rng(0)
    >>> q, k, v = (rng.standard_normal((2, 4, 100, 64), dtype=np.float32) for _ in range(3))
    >>> gk = np.log(rng.uniform(0.9, 1.0, (2, 4, 100, 64))).astype(np.float32)
    >>> o, state = cuattn.gla(q, k, v, gk, output_final_state=True)
    >>> o.shape, state.shape, state.dtype
    ((2, 4, 100, 64), (2, 4, 64, 64), dtype('float32'))
    >>> o2, _ = cuattn.gla(q[:, :, 50:], k[:, :, 50:], v[:, :, 50:], gk[:, :, 50:],
    ...                    initial_state=cuattn.gla(q[:, :, :50], k[:, :, :50], v[:, :, :50],
    ...                                             gk[:, :, :50], output_final_state=True)[1])
    >>> bool(np.allclose(o2, o[:, :, 50:], atol=1e-4))
    True
    """
    captured = _capture.enter("gla", q, None if not hasattr(cu_seqlens, "__cuda_array_interface__") else
                              "its cu_seqlens offsets are read on the host to plan the launch; pass them as "
                              "a NumPy array (they are then fixed in the graph)")
    if captured is not None:  # inside a CUDA graph capture (cuattn.graph_memory)
        with captured:
            return gla(q, k, v, gk, scale=scale, initial_state=initial_state,
                       output_final_state=output_final_state, cu_seqlens=cu_seqlens, mode=mode, backend=backend)
    key = _plan_key(q, k, v, gk, scale, initial_state, output_final_state, cu_seqlens, mode, backend)
    if key is not None:
        cached = _PLANS.get(key)
        if cached is not None:  # a one-token call of a layout checked and planned before
            return cached(q, k, v, gk, initial_state)
    chosen = resolve_backend({"q": q, "k": k, "v": v, "gk": gk, "initial_state": initial_state}, backend)
    if chosen == "reference":
        from .reference import gla as reference_gla

        return reference_gla(q, k, v, gk, scale=scale, initial_state=initial_state,
                             output_final_state=output_final_state, cu_seqlens=cu_seqlens, mode=mode)
    if chosen == "cuda":
        q, k, v, gk = (as_cupy(x) for x in (q, k, v, gk))
        initial_state = None if initial_state is None else as_cupy(initial_state)
    cu_host = None if cu_seqlens is None else np.asarray(to_numpy(cu_seqlens))
    sizes = check_gla_args(q, k, v, gk, initial_state, cu_host, scale, output_final_state, mode)
    _checks.check_same_dtype({"q": q, "k": k, "v": v, "gk": gk})
    if chosen == "cpu":
        _checks.check_dtype(q, "q", _checks.CPU_DTYPES, "CPU")
        from ._cpu_gla import gla_cpu

        return gla_cpu(q, k, v, gk, initial_state, sizes, mode, output_final_state)
    _checks.check_dtype(q, "q", _checks.GPU_DTYPES, "CUDA")
    return _gla_cuda(q, k, v, gk, initial_state, sizes, mode, output_final_state, key)


# One-token GPU calls (generation: T = 1, a state in and out) are short (B 128 H 16 K = V = 128:
# 93 us of GPU time on an H100) against 110-200 us of Python checks and planning, so each
# layout's launch is kept as a plan (as cuattn.decode and cuattn.attention do): a call that
# matches one allocates the outputs and queues the launch (16 us of host time, 31st session).
_PLANS: dict = {}
MAX_PLANS = 64


def _plan_key(q, k, v, gk, scale, initial_state, output_final_state, cu_seqlens, mode, backend):
    """What a cached one-token plan must match, or None where the call takes the full path (not
    a T = 1 call of CuPy arrays without cu_seqlens, unusual argument types). Everything the
    checks look at is in it (shapes, strides, dtypes, 16-byte alignment of the data, the
    arguments), so a hit skips them."""
    if cu_seqlens is not None or type(output_final_state) is not bool or type(mode) is not str:
        return None
    state = () if initial_state is None else (initial_state,)
    key = _plans.gpu_key(backend, scale, q, k, v, gk, *state)
    if key is None or q.ndim < 3 or q.shape[-2] != 1:
        return None
    return tuple(key + [initial_state is None, output_final_state, mode, STEP_ROWS, STEP_BLOCK_V])


class _StepPlan:
    """A one-token call's launch as its layout fixes it: the packed arguments (input, output and
    state addresses are slots) and the output shapes. A call allocates the outputs and launches."""

    def __init__(self, packed, o_shape, dtype, state_shape, has_h0, store_ht):
        cupy = require_cupy()
        self.packed, self.o_shape, self.dtype = packed, o_shape, dtype
        self.state_shape, self.has_h0, self.store_ht = state_shape, has_h0, store_ht
        self.stream_ptr = cupy.cuda.get_current_stream().ptr

    def __call__(self, q, k, v, gk, initial_state):
        cupy = require_cupy()
        o = cupy.empty(self.o_shape, dtype=self.dtype)
        final = cupy.empty(self.state_shape, dtype=cupy.float32) if self.store_ht else None
        values = [q.data.ptr, k.data.ptr, v.data.ptr, gk.data.ptr, o.data.ptr]
        if self.has_h0:
            values.append(initial_state.data.ptr)
        if self.store_ht:
            values.append(final.data.ptr)
        launch_packed(self.packed, self.stream_ptr, values)
        return o, final


@functools.lru_cache(maxsize=None)
def _placeholder_on(device_id: int, dtype_name: str):
    cupy = require_cupy()
    with cupy.cuda.Device(device_id), _capture.eager():  # zeroed now, even inside a captured call
        out = cupy.zeros(1, dtype=dtype_name)
        cupy.cuda.get_current_stream().synchronize()
        return out


def _placeholder(dtype_name: str):
    """A one-element device array ("float32" or "int32") passed for an unused pointer argument
    (never read)."""
    cupy = require_cupy()
    return _placeholder_on(cupy.cuda.Device().id, dtype_name)


def _gla_cuda(q, k, v, gk, initial_state, sizes, mode, output_final_state, key=None):
    cupy = require_cupy()
    kdim, vdim = sizes["head_dim_k"], sizes["head_dim_v"]
    lo, hi = GPU_DIM_RANGE
    for name, dim in (("K", kdim), ("V", vdim)):
        if dim < lo or dim > hi or dim % 8:
            raise ValueError(
                f"head dim {name}={dim} is not supported on the GPU: it takes multiples of 8 in "
                f"{lo}..{hi} (use backend='cpu' on NumPy arrays for other sizes)"
            )
    batch, heads, seqlen = sizes["batch"], sizes["num_heads"], sizes["seqlen"]
    cu = sizes["cu_seqlens"]
    num_seqs = sizes["num_seqs"]
    varlen = cu is not None
    if q.dtype != _checks.FLOAT32:  # (the one-token step kernel serves chunk mode too: no tensor cores)
        check_arch("gla", _checks.dtype_name(q.dtype), device_properties()["cc"],
                   tensor_cores=mode == "chunk" and (seqlen != 1 or varlen))
    out_shape = batch + (heads, seqlen, vdim)
    leftover = varlen and int(cu[-1]) < seqlen  # tokens that belong to no sequence output zeros
    o = (cupy.zeros if leftover else cupy.empty)(out_shape, dtype=q.dtype)
    final = cupy.empty(sizes["state_shape"], dtype=cupy.float32) if output_final_state else None
    if num_seqs == 0 or heads == 0:
        return o, final
    if seqlen == 0:  # no token anywhere (every packed sequence empty too): the states pass through
        if final is not None:
            final[...] = 0 if initial_state is None else initial_state.astype(cupy.float32, copy=False)
        return o, final
    qf, kf, vf, gf = (_kernel_ready(_flatten_batch(x, batch, cupy), n)
                      for x, n in ((q, "q"), (k, "k"), (v, "v"), (gk, "gk")))
    of = o.reshape((-1, heads, seqlen, vdim))
    dummy = _placeholder("float32")
    if initial_state is None:
        h0 = dummy
    else:
        h0 = cupy.broadcast_to(initial_state.astype(cupy.float32, copy=False), sizes["state_shape"])
        if not h0.flags.c_contiguous or h0.data.ptr % 16:  # the kernels read it with 16-byte loads
            h0 = aligned_copy(h0)
    ht = final if final is not None else dummy

    padded = padded_key_dim(kdim)
    type_name = TYPE_NAMES[_checks.dtype_name(q.dtype)]
    # (batch, head, token) strides in elements of q, k, v, gk, o
    tensor_strides = [[np.int64(st // x.itemsize) for st in x.strides[:3]] for x in (qf, kf, vf, gf, of)]
    use_h0, store_ht = np.int32(initial_state is not None), np.int32(final is not None)

    if seqlen == 1 and not varlen:  # one token per sequence (generation): bound by the state's bytes
        rows = _step_rows(padded, STEP_ROWS)
        kernel = get_kernel("gla.cu", step_expression(type_name, padded, rows))
        step_strides = [st for x_strides in tensor_strides for st in x_strides[:2]]
        for s0 in range(0, num_seqs, MAX_GRID_Z):
            s1 = min(num_seqs, s0 + MAX_GRID_Z)
            args = [qf, kf, vf, gf, of, h0, ht, *step_strides, np.int32(kdim), np.int32(vdim), np.int32(s0),
                    use_h0, store_ht, np.float32(sizes["scale"])]
            grid, block = (-(-vdim // STEP_BLOCK_V), heads, s1 - s0), (32 * padded // rows,)
            launch(kernel, grid, block, args)
        inputs = (q, k, v, gk) + (() if initial_state is None else (initial_state,))
        views = (qf, kf, vf, gf) + (() if initial_state is None else (h0,))
        if key is not None and num_seqs <= MAX_GRID_Z and _views_of_inputs(views, inputs):
            # no copy was made: later calls of this layout can launch on their own arrays as they are
            slots = ["q", "k", "v", "g", "o", "h0" if initial_state is not None else h0,
                     "ht" if final is not None else ht]
            packed = PackedLaunch(kernel, grid, block, slots + args[7:])
            plan_ = _StepPlan(packed, o.shape, o.dtype, sizes["state_shape"], initial_state is not None,
                              final is not None)
            _plans.remember(_PLANS, key, plan_, MAX_PLANS)
        return o, final

    if not varlen:
        cu_dev = _placeholder("int32")
    elif _capture.recording():  # host offsets, fixed in the graph: uploaded beside the capturing stream
        cu_dev = _capture.upload(np.ascontiguousarray(cu, dtype=np.int32).tobytes()).view(cupy.int32)
    else:
        cu_dev = cupy.asarray(cu, dtype=cupy.int32)
    args_tail = [st for x_strides in tensor_strides for st in x_strides]

    def base_args(h0_arg, ht_arg, s0, use, store):  # the arguments the recurrent and chunk kernels share
        return [qf, kf, vf, gf, of, h0_arg, ht_arg, cu_dev, *args_tail,
                np.int32(seqlen), np.int32(kdim), np.int32(vdim), np.int32(s0), np.int32(use), np.int32(store),
                np.int32(varlen), np.float32(sizes["scale"])]

    if mode != "chunk" or type_name == "float":
        if RECURRENT_TILE not in (None,) + TILED_TILES:
            raise ValueError(f"cuattn.gla.RECURRENT_TILE must be one of {TILED_TILES} or None; got {RECURRENT_TILE!r}")
        tile = RECURRENT_TILE or _tiled_tile(padded, vdim, heads * num_seqs)
        kernel = get_kernel("gla.cu", tiled_expression(type_name, padded, tile))
        for s0 in range(0, num_seqs, MAX_GRID_Z):
            s1 = min(num_seqs, s0 + MAX_GRID_Z)
            launch(kernel, (-(-vdim // tile), heads, s1 - s0), (tiled_threads(padded, tile),),
                   base_args(h0, ht, s0, use_h0, store_ht))
        return o, final

    max_len = int(np.max(np.diff(cu))) if varlen else seqlen
    max_steps = -(-max_len // CHUNK_STEP)
    prepped = _use_prepass(padded, num_seqs * heads * max_steps)
    warps, seg_len = _chunk_plan(num_seqs, heads, kdim, vdim, max_len, prepped)
    if prepped:  # every step's decays and W, in parallel, before the sequential kernels
        records = (num_seqs, heads, max_steps)
        ws_qd = cupy.empty(records + (CHUNK_STEP, padded), dtype=cupy.uint16)
        ws_kd = cupy.empty(records + (CHUNK_STEP, padded), dtype=cupy.uint16)
        ws_w = cupy.empty(records + (CHUNK_STEP, CHUNK_STEP), dtype=cupy.uint16)
        ws_a = cupy.empty(records + (padded,), dtype=cupy.float32)
        prep_smem = prep_smem_bytes(padded)
        prep = get_kernel("gla.cu", prep_expression(type_name, padded), max_dynamic_smem=prep_smem)
        for s0 in range(0, num_seqs, MAX_GRID_Z):
            s1 = min(num_seqs, s0 + MAX_GRID_Z)
            launch(prep, (max_steps, heads, s1 - s0), (128,),
                   [qf, kf, gf, cu_dev, *tensor_strides[0], *tensor_strides[1], *tensor_strides[3], np.int32(seqlen),
                    np.int32(kdim), np.int32(s0), np.int32(varlen), np.int32(max_steps), ws_qd, ws_kd, ws_w, ws_a],
                   shared_mem=prep_smem)
        prep_args = [ws_qd, ws_kd, ws_w, ws_a, np.int32(max_steps)]
    else:
        prep_args = [dummy, dummy, dummy, dummy, np.int32(0)]  # no prepass records

    def kernel_args(h0_arg, ht_arg, s0, use, store, decay, nseg, seg_len):
        return base_args(h0_arg, ht_arg, s0, use, store) + [decay, np.int32(nseg), np.int32(seg_len), *prep_args]

    smem = chunk_smem_bytes(padded, warps, prepped)
    full = get_kernel("gla.cu", chunk_expression(type_name, padded, warps, prepped=prepped), max_dynamic_smem=smem)
    grid_x, threads = -(-vdim // (16 * warps)), 32 * warps
    if seg_len == 0:
        for s0 in range(0, num_seqs, MAX_GRID_Z):
            s1 = min(num_seqs, s0 + MAX_GRID_Z)
            launch(full, (grid_x, heads, s1 - s0), (threads,),
                   kernel_args(h0, ht, s0, use_h0, store_ht, dummy, 0, 0), shared_mem=smem)
        return o, final

    # Segmented: (1) every segment's state from zero and its decay, all in parallel; (2) a scan
    # over segments gives each one's starting state (and the final state); (3) every segment's
    # outputs from its starting state, all in parallel.
    states_only = get_kernel("gla.cu", chunk_expression(type_name, padded, warps, True, prepped), max_dynamic_smem=smem)
    scan = get_kernel("gla.cu", SCAN_EXPRESSION)
    min_seg = CHUNK_STEP * -(-max_len // (CHUNK_STEP * MAX_GRID_Z))  # at most MAX_GRID_Z segments
    seg_len = max(seg_len, min_seg)
    nseg = max(1, -(-max_len // seg_len))
    per_launch = max(1, MAX_GRID_Z // nseg)
    for s0 in range(0, num_seqs, per_launch):
        count = min(num_seqs, s0 + per_launch) - s0
        work = cupy.empty((count, nseg, heads, kdim, vdim), dtype=cupy.float32)
        decay = cupy.empty((count, nseg, heads, kdim), dtype=cupy.float32)
        grid = (grid_x, heads, count * nseg)
        launch(states_only, grid, (threads,), kernel_args(dummy, work, s0, 0, 1, decay, nseg, seg_len),
               shared_mem=smem)
        launch(scan, (-(-(kdim * vdim) // SCAN_THREADS), heads, count), (SCAN_THREADS,),
               [work, decay, h0, ht, np.int32(kdim), np.int32(vdim), np.int32(nseg), np.int32(s0), use_h0, store_ht])
        launch(full, grid, (threads,), kernel_args(work, dummy, s0, 1, 0, decay, nseg, seg_len), shared_mem=smem)
    return o, final
