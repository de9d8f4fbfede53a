"""``cuattn.attention``: exact fused softmax attention (check, dispatch, GPU launch)."""

from __future__ import annotations

import math

import numpy as np

from . import _capture, _checks, _plans, _tma
from ._backend import as_cupy, require_cupy, resolve_backend
from ._cuda import PackedLaunch, check_arch, device_properties, get_kernel, launch, launch_packed

LOG2E = 1.4426950408889634
MAX_GRID_Z = 65535

# Tensor-core variants: padded head dim -> (kBlockN, kNWarps, kMTiles); kBlockM = 16 * kMTiles * kNWarps.
# Chosen on an H100 with benchmarks/attention.py --sweep (before the wgmma kernel existed).
MMA_TILES = {
    32: (64, 4, 2),
    64: (64, 4, 2),
    96: (64, 4, 2),
    128: (32, 4, 2),
    160: (64, 4, 1),
    192: (64, 4, 1),
    224: (64, 4, 1),
    256: (64, 4, 1),
}
# Hopper (sm_90a) wgmma variants: head dim padded to a multiple of 64 -> (kBlockN, kWarpGroups,
# kStages, kQStages); shared memory 2 (64 kWarpGroups kQStages + 2 kStages kBlockN) D <= 227 KB.
# Best of benchmarks/attention.py --sweep on an H100 (benchmarks/results/attention_sweep.json).
WGMMA_TILES = {
    64: (64, 3, 4, 2),
    128: (128, 2, 3, 1),
    192: (64, 2, 2, 1),
    256: (64, 2, 2, 1),
}
# Key ranges up to SHORT_KV keys fill the GPU better with smaller key blocks and more query rows
# per tile (H100 sweep: D 128, S 2048: 413 vs 338 TFLOP/s; S 8192: 455 vs 501).
SHORT_KV = 4096
WGMMA_TILES_SHORT_KV = {128: (64, 3, 3, 2)}
WGMMA_OPTIONS = ("-arch=sm_90a",)
USE_WGMMA = True  # tests switch it off to exercise the mma.sync kernel on Hopper too
MAX_HEAD_DIM = 256
F32_BLOCK_M = 16
F32_BLOCK_N = 32


def padded_head_dim(head_dim: int, head_dim_v: int) -> int:
    return max(32, -(-max(head_dim, head_dim_v) // 32) * 32)


def mma_expression(type_name: str, padded: int, causal: bool) -> str:
    block_n, warps, m_tiles = MMA_TILES[padded]
    return f"attention_fwd_mma<{type_name}, {padded}, {block_n}, {warps}, {m_tiles}, {'true' if causal else 'false'}>"


def wgmma_padded_head_dim(head_dim: int, head_dim_v: int) -> int:
    return min(p for p in WGMMA_TILES if p >= max(head_dim, head_dim_v))


def wgmma_tiles(padded: int, seqlen_k: int) -> tuple:
    if seqlen_k <= SHORT_KV and padded in WGMMA_TILES_SHORT_KV:
        return WGMMA_TILES_SHORT_KV[padded]
    return WGMMA_TILES[padded]


def wgmma_expression(type_name: str, tiles: tuple, padded: int, causal: bool) -> str:
    block_n, groups, stages, q_stages = tiles
    return (f"attention_fwd_wgmma<{type_name}, {padded}, {block_n}, {groups}, {stages}, {q_stages}, "
            f"{'true' if causal else 'false'}>")


def f32_expression(padded: int, causal: bool) -> str:
    return f"attention_fwd_f32<{padded}, {'true' if causal else 'false'}>"


def all_kernel_expressions(arch: str = "sm_80") -> list[str]:
    """Every kernel variant the dispatcher can pick on ``arch`` (compiled by the CI tests)."""
    out = []
    for causal in (False, True):
        for padded in MMA_TILES:
            out += [mma_expression(t, padded, causal) for t in ("half_t", "bf16_t")]
            out.append(f32_expression(padded, causal))
        if arch == "sm_90a":
            for tiles_of in (WGMMA_TILES, WGMMA_TILES_SHORT_KV):
                for padded, tiles in tiles_of.items():
                    out += [wgmma_expression(t, tiles, padded, causal) for t in ("half_t", "bf16_t")]
    return out


def attention(q, k, v, *, causal=False, scale=None, return_lse=False, backend=None):
    """Exact softmax attention, fused and tiled (online softmax, O(N) memory).

    ``o = softmax(scale * q @ k^T + mask) @ v`` computed without materializing the score
    matrix. The backend follows the arrays: CuPy (GPU) arrays run the CUDA kernel, NumPy
    arrays the Numba CPU kernel.

    Parameters
    ----------
    q : array, shape (..., Hq, Sq, D)
        Queries. float16, bfloat16 or float32 on the GPU; float32 or float64 on the CPU
        (float16/bfloat16 are computed in float32 there and returned in their own dtype).
    k : array, shape (..., Hkv, Sk, D)
        Keys. ``Hq`` must be a multiple of ``Hkv`` (GQA/MQA: query head ``h`` reads kv head
        ``h // (Hq // Hkv)``). Leading dims broadcast as in ``numpy.matmul``.
    v : array, shape (..., Hkv, Sk, Dv)
        Values, same dtype as ``q`` and ``k``.
    causal : bool, default False
        Causal mask aligned bottom-right: query ``i`` sees keys ``j <= i + Sk - Sq``.
    scale : float, optional
        Score scale; None means ``D ** -0.5``. Any finite value, negative or zero included,
        is used exactly as given.
    return_lse : bool, default False
        Also return the natural-log log-sum-exp of the scaled (masked) scores.
    backend : {None, 'cuda', 'cpu', 'reference'}
        None follows the array type; 'reference' runs :func:`cuattn.reference.attention`.

    Returns
    -------
    o : array, shape (..., Hq, Sq, Dv), the input dtype (float64 for the reference)
    lse : array, shape (..., Hq, Sq), float32 (only with ``return_lse``)
        ``-inf`` for a row that sees no key (whose output is zeros).

    Raises
    ------
    TypeError
        Mixed NumPy/GPU inputs, mismatched or unsupported dtypes, non-bool flags.
    ValueError
        Shapes that do not fit, a non-finite scale, a head dim the GPU kernels do not cover
        (they take D, Dv <= 256, multiples of 8), a last dim that is not contiguous on the GPU.

    Notes
    -----
    On the GPU the kernel reads inputs through their strides (the last dim must be
    contiguous), so ``x.transpose(0, 2, 1, 3)`` of a ``(B, S, H, D)`` array needs no copy.
    Inputs whose rows are not 16-byte aligned are copied once. Accumulation is float32.

    Short GPU calls (up to ``PLAN_MAX_WORK``, about 100 us of GPU work on an H100) remember
    their launch plan (kernel, launch shape, packed kernel arguments) per layout: shapes,
    strides, dtypes, 16-byte alignment, ``causal``, ``scale``, ``return_lse``, device, current
    stream and the module's tile settings (the latest ``MAX_PLANS``). A call that matches one
    skips the argument checks and the planning: it allocates the outputs and queues the launch
    (on Hopper new input addresses also need new tensor maps). Larger calls, layouts that need a
    copy (unaligned rows, broadcast batches the kernel cannot stride over) and calls of more than
    one launch always take the full path.

    GPU calls can be captured in a CUDA graph inside :func:`cuattn.graph_memory`, which holds
    their buffers (the log-sum-exp too when not returned) as long as the graph lives.

    Examples
    --------
    >>> import numpy as np, cuattn
    >>> rng = np.random.default_rng(0)
    >>> q = rng.standard_normal((1, 8, 128, 64), dtype=np.float32)
    >>> k = rng.standard_normal((1, 2, 128, 64), dtype=np.float32)
    >>> v = rng.standard_normal((1, 2, 128, 64), dtype=np.float32)
    >>> o, lse = cuattn.attention(q, k, v, causal=True, return_lse=True)
    >>> o.shape, lse.shape
    ((1, 8, 128, 64), (1, 8, 128))
    """
    captured = _capture.enter("attention", q)
    if captured is not None:  # inside a CUDA graph capture (cuattn.graph_memory)
        with captured:
            return attention(q, k, v, causal=causal, scale=scale, return_lse=return_lse, backend=backend)
    key = _plan_key(q, k, v, causal, scale, return_lse, backend)
    if key is not None:
        cached = _PLANS.get(key)
        if cached is not None:  # checked and planned before: only the launch
            o, lse = cached(q, k, v)
            return (o, lse) if return_lse else o
    chosen = resolve_backend({"q": q, "k": k, "v": v}, backend)
    causal = _checks.check_bool(causal, "causal")
    return_lse = _checks.check_bool(return_lse, "return_lse")
    if chosen == "reference":
        from .reference import attention as reference_attention

        return reference_attention(q, k, v, causal=causal, scale=scale, return_lse=return_lse)
    if chosen == "cuda":
        q, k, v = as_cupy(q), as_cupy(k), as_cupy(v)
    sizes = _checks.attention_shapes(q, k, v)
    scale = _checks.check_scale(scale, sizes["head_dim"])
    _checks.check_same_dtype({"q": q, "k": k, "v": v})
    if chosen == "cpu":
        _checks.check_dtype(q, "q", _checks.CPU_DTYPES, "CPU")
        from ._cpu_attention import attention_cpu

        o, lse = attention_cpu(q, k, v, sizes, causal, scale)
    else:
        _checks.check_dtype(q, "q", _checks.GPU_DTYPES, "CUDA")
        check_arch("attention", _checks.dtype_name(q.dtype), device_properties()["cc"], tensor_cores=True)
        o, lse = _attention_cuda(q, k, v, sizes, causal, scale, key)
    return (o, lse) if return_lse else o


def _flatten_batch(x, batch: tuple, cupy):
    """View x broadcast to ``batch + x.shape[-3:]`` as (B, H, S, D) without a copy when the
    strides allow; otherwise one contiguous copy."""
    x = cupy.broadcast_to(x, batch + x.shape[-3:])
    if len(batch) == 1:
        return x
    if len(batch) == 0:
        return x[None]
    nbatch = math.prod(batch)
    strides = [s for n, s in zip(batch, x.strides[: len(batch)]) if n != 1]
    sizes = [n for n in batch if n != 1]
    mergeable = all(strides[i] == strides[i + 1] * sizes[i + 1] for i in range(len(sizes) - 1))
    if mergeable:
        stride = strides[-1] if strides else 0
        return cupy.lib.stride_tricks.as_strided(x, (nbatch,) + x.shape[-3:], (stride,) + x.strides[-3:])
    return cupy.ascontiguousarray(x).reshape((nbatch,) + x.shape[-3:])


def _kernel_ready(x, name: str):
    """Check the last dim is contiguous; copy when rows are not 16-byte aligned."""
    if x.size == 0:
        return x
    if x.shape[-1] > 1 and x.strides[-1] != x.itemsize:
        raise ValueError(
            f"{name}'s last dim must be contiguous (stride {x.itemsize} bytes); got stride "
            f"{x.strides[-1]}: pass cupy.ascontiguousarray({name})"
        )
    aligned = x.data.ptr % 16 == 0 and all(s % 16 == 0 for s, n in zip(x.strides[:-1], x.shape[:-1]) if n > 1)
    return x if aligned else aligned_copy(x)


def aligned_copy(x):
    """A C-contiguous copy of x in a fresh allocation (which starts on a 256-byte boundary).
    Not cupy.ascontiguousarray: it returns a C-contiguous x itself, wherever its data starts
    (a view one element into a buffer would reach the kernels' 16-byte loads misaligned)."""
    return x.copy(order="C")


def _tma_ready(x, cupy):
    """The copy engine takes strides that are non-zero multiples of 16 bytes: copy otherwise."""
    if any(st == 0 or st % 16 for st, n in zip(x.strides[:3], x.shape[:3]) if n > 1):
        return cupy.ascontiguousarray(x)
    return x


_PLANS: dict = {}
MAX_PLANS = 64
# Plans only for calls of at most this much work (batch x heads x Sq x Sk x (D + Dv), causal or
# not: 2**34 is about 100 us on an H100), where the host's 100-200 us of checks and planning a call
# would leave the GPU waiting. Larger calls keep the full path: its host time hides behind their GPU
# time, and with plans bench-attention's large rows ran about 1% slower on an H100 (31st session,
# benchmarks/NOTES.md; unexplained: the same kernel, grid and arguments).
PLAN_MAX_WORK = 1 << 34


def _settings():
    """The module settings a plan depends on (tests and the tile sweep change them)."""
    return (USE_WGMMA, SHORT_KV, tuple(MMA_TILES.items()), tuple(WGMMA_TILES.items()),
            tuple(WGMMA_TILES_SHORT_KV.items()), _tma.L2_PROMOTION)


def _plan_key(q, k, v, causal, scale, return_lse, backend):
    """What a cached _AttentionPlan must match, or None where the call takes the full path
    (inputs other than CuPy arrays, unusual argument types). Everything the argument checks
    look at is in it (shapes, strides, dtypes, 16-byte alignment of the data), so a hit skips
    them."""
    if type(causal) is not bool or type(return_lse) is not bool:
        return None
    key = _plans.gpu_key(backend, scale, q, k, v)
    return None if key is None else tuple(key + [causal, return_lse, _settings()])


class _AttentionPlan:
    """A GPU attention call's launch as its layout fixes it: the kernel, its launch shape and
    packed arguments, the output shapes, and on Hopper the flattened views' shapes and strides
    for the tensor maps (made once per input addresses). A call allocates the outputs, writes
    the arrays' addresses into the packed arguments and launches."""

    def __init__(self, packed, o_shape, lse_shape, dtype, maps_spec):
        cupy = require_cupy()
        self.packed = packed
        self.o_shape, self.lse_shape, self.dtype = o_shape, lse_shape, dtype
        self.maps_spec = maps_spec  # None, or (dtype name, [(shape, strides, box rows)] of q, k, v)
        self.stream_ptr = cupy.cuda.get_current_stream().ptr
        self._maps = (None, None)  # (q, k, v addresses, their tensor maps)

    def __call__(self, q, k, v):
        cupy = require_cupy()
        o = cupy.empty(self.o_shape, dtype=self.dtype)
        lse = cupy.empty(self.lse_shape, dtype=cupy.float32)
        values = [q.data.ptr, k.data.ptr, v.data.ptr, o.data.ptr, lse.data.ptr]
        maps = None
        if self.maps_spec is not None:
            maps = self._tensor_maps(q, k, v, cupy)  # alive until the launch is queued
            values.append(maps.data.ptr)
        launch_packed(self.packed, self.stream_ptr, values)
        return o, lse

    def _tensor_maps(self, q, k, v, cupy):
        ptrs = (q.data.ptr, k.data.ptr, v.data.ptr)
        cached, maps = self._maps
        if cached != ptrs:
            name, specs = self.maps_spec
            views = [(cupy.lib.stride_tricks.as_strided(x, shape, strides), name, rows)
                     for x, (shape, strides, rows) in zip((q, k, v), specs)]
            maps = _tma.tensor_maps(views)
            self._maps = (ptrs, maps)
        return maps


def _attention_cuda(q, k, v, sizes, causal, scale, key=None):
    cupy = require_cupy()
    d, dv = sizes["head_dim"], sizes["head_dim_v"]
    for name, dim in (("D", d), ("Dv", dv)):
        if dim < 1 or dim > MAX_HEAD_DIM or dim % 8:
            raise ValueError(
                f"head dim {name}={dim} is not supported on the GPU: it takes multiples of 8 up to "
                f"{MAX_HEAD_DIM} (use backend='cpu' on NumPy arrays for other sizes)"
            )
    batch, hq, sq, sk = sizes["batch"], sizes["num_q_heads"], sizes["seqlen_q"], sizes["seqlen_k"]
    o = cupy.empty(batch + (hq, sq, dv), dtype=q.dtype)
    lse = cupy.empty(batch + (hq, sq), dtype=cupy.float32)
    if lse.size == 0:  # no query row anywhere: nothing to launch
        return o, lse
    qf, kf, vf = (_kernel_ready(_flatten_batch(x, batch, cupy), n) for x, n in ((q, "q"), (k, "k"), (v, "v")))
    of = o.reshape((-1, hq, sq, dv))
    lsef = lse.reshape((-1, hq, sq))
    padded = padded_head_dim(d, dv)
    options, use_wgmma = (), False
    if q.dtype == _checks.FLOAT32:
        expr = f32_expression(padded, causal)
        block_m, threads = F32_BLOCK_M, 128
        smem = 4 * (F32_BLOCK_M * padded + F32_BLOCK_N * (padded + 1) + F32_BLOCK_N * padded)
    else:
        type_name = "half_t" if q.dtype == _checks.FLOAT16 else "bf16_t"
        use_wgmma = USE_WGMMA and device_properties()["cc"] == 90 and sk > 0  # TMA maps need a non-empty K
        if use_wgmma:
            padded = wgmma_padded_head_dim(d, dv)
            tiles = wgmma_tiles(padded, sk)
            expr, options = wgmma_expression(type_name, tiles, padded, causal), WGMMA_OPTIONS
            block_n, groups, stages, q_stages = tiles
            block_m, threads = 64 * groups, 128 * (groups + 1)  # consumer warpgroups + a producer warpgroup
            smem = 2 * (q_stages * block_m + 2 * stages * block_n) * padded + 16 * (q_stages + stages)
        else:
            expr = mma_expression(type_name, padded, causal)
            block_n, warps, m_tiles = MMA_TILES[padded]
            block_m, threads = 16 * m_tiles * warps, 32 * warps
            smem = 2 * (block_m + 2 * block_n) * (padded + 8)
    kernel = get_kernel("attention.cu", expr, options, max_dynamic_smem=smem)
    num_m_blocks = -(-sq // block_m)
    group = hq // sizes["num_kv_heads"]

    def strides(x):
        return [np.int64(s // x.itemsize) for s in x.strides[:3]]

    def arguments(views, lse_view):
        args = [*views, lse_view]
        for x in views:
            args += strides(x)
        return args + [np.int32(sq), np.int32(sk), np.int32(d), np.int32(dv), np.int32(group),
                       np.float32(scale * LOG2E)]

    nb = of.shape[0]
    if key is not None and nb * hq * sq * sk * (d + dv) > PLAN_MAX_WORK:
        key = None  # a large call: no plan (PLAN_MAX_WORK)
    if use_wgmma:  # persistent: one block per SM walks the tiles
        num_tiles = num_m_blocks * hq * nb
        name = _checks.dtype_name(q.dtype)
        qt, kt, vt = (_tma_ready(x, cupy) for x in (qf, kf, vf))  # alive until the launch is queued
        maps = _tma.tensor_maps([(qt, name, block_m), (kt, name, block_n), (vt, name, block_n)])
        args = arguments((qf, kf, vf, of), lsef) + [np.int32(num_m_blocks), np.int32(hq), np.int32(nb), maps]
        grid = (min(num_tiles, device_properties()["num_sms"]),)
        launch(kernel, grid, (threads,), args, shared_mem=smem)
        if key is not None and _views_of_inputs((qt, kt, vt), (q, k, v)):
            specs = [(x.shape, x.strides, rows) for x, rows in ((qt, block_m), (kt, block_n), (vt, block_n))]
            _remember_launch(key, kernel, grid, threads, args[:-1] + ["maps"], smem, o, lse, (name, specs))
        return o, lse
    if key is not None and nb <= MAX_GRID_Z and _views_of_inputs((qf, kf, vf), (q, k, v)):
        args = arguments((qf, kf, vf, of), lsef)
        launch(kernel, (num_m_blocks, hq, nb), (threads,), args, shared_mem=smem)
        _remember_launch(key, kernel, (num_m_blocks, hq, nb), threads, args, smem, o, lse, None)
        return o, lse
    for b0 in range(0, nb, MAX_GRID_Z):
        b1 = min(nb, b0 + MAX_GRID_Z)
        args = arguments([x[b0:b1] for x in (qf, kf, vf, of)], lsef[b0:b1])
        launch(kernel, (num_m_blocks, hq, b1 - b0), (threads,), args, shared_mem=smem)
    return o, lse


def _views_of_inputs(views, inputs):
    """Whether the kernel's views start at the inputs' own data (no copy was made), so a plan
    can take the addresses of later calls' inputs as they are."""
    return all(x.data.ptr == y.data.ptr for x, y in zip(views, inputs))


def _remember_launch(key, kernel, grid, threads, args, smem, o, lse, maps_spec):
    """Keep this call's launch as the plan of its layout: the arrays of ``args`` (q, k, v, o and
    lse views, first) become slots that each call fills."""
    slots = ["q", "k", "v", "o", "lse"] + list(args[5:])
    packed = PackedLaunch(kernel, grid, (threads,), slots, shared_mem=smem)
    _plans.remember(_PLANS, key, _AttentionPlan(packed, o.shape, lse.shape, o.dtype, maps_spec), MAX_PLANS)
