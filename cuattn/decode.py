"""``cuattn.decode``: a few query tokens against a long KV cache, ALiBi bias (check, dispatch, launch)."""

from __future__ import annotations

import ctypes
import functools
import itertools
import math
import numbers
import sys

import numpy as np

from . import _capture, _checks, _plans, _tma
from ._backend import as_cupy, require_cupy, resolve_backend
from ._cuda import PackedLaunch, check_arch, device_properties, get_kernel, launch_packed
from .attention import _kernel_ready, _tma_ready, aligned_copy

LOG2E = 1.4426950408889634
MAX_HEAD_DIM = 256
# Padded head dims of the split kernel, and the row counts (GQA group x Sq) one block can hold;
# more rows run in chunks of the largest.
HEAD_DIMS = (32, 64, 128, 256)
ROWS = (1, 4, 8)
TYPE_NAMES = {"float16": "half_t", "bfloat16": "bf16_t", "float32": "float"}
BLOCKS_PER_SM = 16     # split the KV range until the grid holds this many blocks per SM (small
                       # blocks balance the SMs; benchmarks/decode.py --sweep times alternatives)
MIN_CHUNK = 256        # ... but never fewer keys than this per block
WAVE_AWARE = True      # ... and up to twice that when it fills the last wave of resident blocks
                       # (4 per SM for <= 4 rows, else 2) better; False: the plain target
CHUNK_ALIGN = 128      # splits start on whole bulk-copy tiles (at most 128 keys)
MAX_GRID_Z = 65535
# Split kernel: "tma" (sm_90) streams K/V with the bulk copy engine through a TMA_STAGES-deep
# shared-memory ring filled by a producer warp; "regs" (any GPU, and the fallback where "tma"
# cannot run) loads K/V straight into registers. Same math, key order and bit-identical results.
# "mma" (sm_90, fp16/bf16, padded D 64 or 128, pages of a multiple of 64 keys) is
# "tma" with the scores and value sums on tensor cores for up to 16 rows per block, its tiles
# copied by tensor maps into 128-byte-swizzled shared memory; elsewhere it falls back to "tma".
# KERNEL None picks per call: "mma" where a block serves several rows (GQA groups, Sq > 1), "tma"
# for one row per block (H100, 2026-11-23, benchmarks/results/decode.json: B 16 32/8 L 33001
# 3.02 vs 2.88 TB/s, paged 2.77 vs 2.63; one row per block 2.86-3.06 vs 2.87-3.07), except one row
# per block on a dense cache whose row groups the tensor-core plan keeps whole: "mma"
# (ONE_ROW_MMA_WHOLE).
KERNEL = None
KERNELS = ("tma", "regs", "mma")
MMA_HEAD_DIMS = (64, 128)
MMA_TYPES = ("half_t", "bf16_t")
MMA_ROWS = 16
MMA_TILE_KEYS = 64
MMA_STAGES = None       # ring depth of "mma"; None: by the rules of mma_config and mma_deep_config
# Ring depth of "mma" with two blocks per SM, by padded head dim, where not the deepest that fits
# (() for every head dim: the deepest). At D 64, 4 stages, not the 6 that fit: measured faster
# (35th session, side by side, B 4 32/4 L 32768: H100 decode.py 2.527 vs 2.505 TB/s; H200 probe
# 3.336 vs 3.326, L 131072 4.177 vs 4.170; 34th session's H100 probe +1.1%).
MMA_TWO_BLOCK_STAGES = ((64, 4),)
# Ring depth of "mma" with one block per SM, by padded head dim, for launches whose row groups are
# split (the plan's splits > 1, partials merged): at D 128, 6 stages (192 KB) instead of two blocks
# of 3. Measured side by side in decode.py (35th session): B 1 32/8 L 131072 H100 2.913 vs 2.901,
# H200 4.186 vs 4.162; B 8 32/8 L 8192 H100 2.778 vs 2.756, H200 3.862 vs 3.836; the rows of one
# whole row group an item (B 16 32/8, paged) level on the H100 but 0.2-0.5% slower on the H200, so
# they keep two blocks. At D 64, one block of 8 stages gained 1.3% on the H100 and lost 2.4-3.7% on
# the H200: not used. () turns the rule off.
MMA_DEEP_STAGES = ((128, 6),)
# One query row per block on a dense cache (MHA, Sq 1) runs the tensor-core kernel, not the
# bulk-copy one, where the tensor-core plan (mma_plan) keeps every row group whole (no splits, no
# even pieces: e.g. B 64 32/32 L 2048, one block per SM with the 6-stage ring). decode.py's column
# for this rule against the bulk-copy kernel on that row (H100): 3.107 vs 3.051 and 3.105 vs 3.053
# TB/s (35th, 36th sessions; cuDNN 3.069, 3.070), 3.101 vs 3.037 (38th, cuDNN 3.085); on the rows
# it does not take (split row groups) the tensor-core kernel was -0.3% (B 16 32/32 L 4096) to +0.3%
# (B 1 32/32). On an H200 (38th session, 7 rounds): 4.383 vs 4.349 (cuDNN 4.446). The default since
# the 38th session (opt-in before).
# False: the bulk-copy kernel for every one-row launch, as before.
ONE_ROW_MMA_WHOLE = True
# One query row per block on a dense cache runs the tensor-core kernel also where its plan splits
# every row group over one block per SM (the deep ring) and there are at most half as many row groups
# as SMs (mma_splits_few_rows: B 1 32/32 L 33001, 32 row groups of 33001 keys). On that row decode.py's
# tensor-core column led the bulk-copy kernel by 0.3-1.0% in every H100 run since the 35th session
# (42nd: 3.031 vs 3.003 TB/s twice, cuDNN 3.035) and by 0.1% on an H200 in the 43rd session (7
# rounds: 4.247 vs 4.241, ahead in 6 of 7 rounds, level in the seventh; cuDNN 4.28; the 38th
# session's H200, before slabs and the barrier-free store phase, had it 0.7% behind). Opt-in in the
# 42nd session, the default since the 43rd. Its scope on an H100 (44th session,
# benchmarks/decode_one_row_scope.py, 5 rounds, tensor-core / bulk-copy kernel): 8-64 row groups
# 1.004-1.128x (B 1 8/8 L 33001 2.619 vs 2.323 TB/s; B 1 32/32 L 4096 1.043; B 2 32/32 L 8192
# 1.004), but 96 (B 3 32/32 L 33001, 20 splits of 1664 keys) 0.986x: so at most half as many row
# groups as SMs (it was fewer than the SMs until then). False: only the whole-rows rule above.
ONE_ROW_MMA_FEW = True
# How "mma" fills its ring: "tensor" (tensor copies through two tensor maps, one per 64-column half)
# or "cp.async" (16-byte cp.async by the producer warp into the same swizzled tiles: no tensor maps,
# any 16-byte strides). Same tiles, bit-identical results. None picks per head dim: "cp.async" for
# padded D 128, "tensor" for 64. On an H200 the tensor copies stream at most ~4.2 TB/s (1-d bulk
# copies 4.60 and a cp.async ring 4.55 on the same bytes: benchmarks/NOTES.md, 9th session); in
# the kernel (10th session, H200, fp16, TB/s tensor -> cp.async): B 16 32/8 L 33001 4.12 -> 4.43,
# B 1 32/8 L 131072 3.80 -> 4.07, paged B 16 32/8 4.12 -> 4.33, B 16 32/4 3.96 -> 4.26, but D 64
# B 4 32/4 L 131072 3.93 -> 3.58 (and L 32768 3.05 -> 2.89). With P_lo packed (MMA_PACK_LO, row
# groups of <= 8 rows) cp.async wins at D 64 too, where packing with tensor copies loses (16th
# session, stream probe, tensor unpacked / tensor packed / cp.async unpacked / cp.async packed):
# B 4 32/4 L 131072 3.93 / 3.73 / 3.48 / 4.11, L 32768 3.03 / 3.04 / 2.80 / 3.21, B 16 32/4 L
# 8192 3.03 / 3.03 / 2.80 / 3.20, B 1 32/8 L 131072 3.59 / 3.46 / 3.22 / 3.76, B 8 32/8 L 16384
# 3.59 / 3.45 / 3.22 / 3.75. So None: cp.async at D 128, and at D 64 where P_lo is packed.
MMA_COPY = None
# Opt-in: the cp.async producer of a paged cache loads each page's block-table entry one page
# ahead (decode.cu, CUATTN_DECODE_PAGE_PREFETCH) instead of before the page's first tile. Same
# tiles, same bits. Measured level with the default (H200, 11th session: paged B 16 32/8 4.402 vs
# 4.398 TB/s).
PAGE_PREFETCH = False
PAGE_PREFETCH_OPTION = "-DCUATTN_DECODE_PAGE_PREFETCH"
# Where a row group has at most 8 query rows (GQA groups of up to 8 heads x tokens), the
# tensor-core kernel's P V product carries P_lo of rows g in the 8 rows g + 8 it would leave empty
# (decode.cu, CUATTN_DECODE_MMA_PACK_LO): one mma a tile for P_hi and P_lo instead of two, the same
# precision (other bits: the two sums added at the end). Default since the 16th session (H200,
# stream probe: B 1 32/8 L 131072 4.049 -> 4.092 TB/s, B 16 32/8 4.466 -> 4.480, B 8 32/8 L 8192
# 3.654 -> 3.711); False: two products a tile, as before.
MMA_PACK_LO = True
MMA_PACK_LO_OPTION = "-DCUATTN_DECODE_MMA_PACK_LO"
# With P_lo packed (row groups of at most 8 query rows), the tensor-core kernel's item end lets every
# warp write its rows into a slab of its own at once and adds the slabs warp by warp as it writes the
# rows (decode.cu, CUATTN_DECODE_MMA_SLABS: the same sums in the same order as the four serial
# steps, so the same bits; one barrier, not four), where the larger merge buffer (4 slabs of 8 rows,
# _mma_merge_bytes) leaves the launch's blocks per SM as they are: one block per SM (the deep ring of
# split row groups), and D 64's two; not D 128's two blocks of 3 stages (no room). The serial steps
# cost 0.7% of a call on B 8 32/8 L 8192 and 1.1% on B 4 32/4 D 64 (H100, 40th session's stream
# probe, "warps at once"). False: the serial steps everywhere.
MMA_SLABS = True
MMA_SLABS_OPTION = "-DCUATTN_DECODE_MMA_SLABS"
# Opt-in: the persistent kernels' block i takes item i without the counter's atomic (decode.cu,
# CUATTN_DECODE_STATIC_FIRST; one round trip less before its first copy); the counter hands out
# the rest. A block that is not resident yet (another kernel holding its SM) then holds its first
# item back until it runs. Measured level with the default (H200, 11th session: -0.3 to +0.6%).
STATIC_FIRST = False
STATIC_FIRST_OPTION = "-DCUATTN_DECODE_STATIC_FIRST"
# Programmatic dependent launch of the persistent kernels (cc 9.0; decode.cu, CUATTN_DECODE_PDL):
# the split kernel is launched with programmatic stream serialization, so its blocks may be placed
# and set up (ring barriers) while the kernel before it in the stream ends; each thread then waits
# for that kernel's completion and memory (griddepcontrol.wait) before it reads or writes global
# memory: the same inputs and bits as a plain launch. Measured on an H100 (25th session, stream
# probe, TB/s plain -> PDL): B 1 32/32 2.976 -> 3.001, B 1 32/8 2.953 -> 2.976, B 16 32/32 L 4096
# 3.108 -> 3.117, B 16 32/8 3.134 -> 3.140, B 64 3.138 -> 3.144, D 256 3.147 -> 3.150, B 4 32/4 D 64
# 2.463 -> 2.552 (+3.6%), B 8 L 8192 2.767 -> 2.816 (+1.8%). False: plain launches.
PDL = True
PDL_OPTION = "-DCUATTN_DECODE_PDL"
# The default since the 29th session (built in the 26th; H100, 28th session: +0.0 to +0.9% on every
# decode.py row of the stream probe, README; the decode GPU suite, a decode fuzz and the sanitizer
# sweep pass with it on; False: PDL without the trigger): with
# PDL, each block's producer starts the next launch once it has no more tiles to copy
# (-DCUATTN_DECODE_PDL_TRIGGER), so the next launch's blocks
# are placed and set up while this one's consumers finish, and a launch of at most one block per SM
# asks for SMEM_PER_SM // 2 bytes of shared memory (not its ~100 KB), so that no second block fits
# beside it. The trigger alone (25th session, H100) lost 5-6% on the one-block-per-SM rows: the next
# launch's blocks took the free second slots of SMs that were still streaming, and landed two to an
# SM on those that had finished. With the padding each of them waits for an SM of its own.
PDL_TRIGGER = True
PDL_TRIGGER_OPTION = "-DCUATTN_DECODE_PDL_TRIGGER"
MMA_COPIES = ("tensor", "cp.async")
# (A third producer, one 1-d bulk copy per key row into rows padded by 16 bytes, was built in the
# 16th session and removed in the 17th: 0.95 TB/s on B 1 32/8 where cp.async gives 4.09, the same
# copies without the math 4.2; benchmarks/NOTES.md.)
TMA_STAGES = None       # ring depth; None: as deep as the blocks of one SM leave room for (<= 8)
# A launch of the bulk-copy kernel with one block per SM (plan_persistent's one item per SM; no
# even pieces) gets the ring of one block per SM, ONE_BLOCK_TMA_STAGES deep, not the ring of the
# kMinBlocks blocks an SM could hold (4 stages at D 128). Measured on an H200 (14th session,
# decode_stream_probe.py, B 1 32/32 L 33001 fp16: 128 blocks): 4 stages 4.05 TB/s, 6 stages
# 4.13-4.14 (+2.2%), 8 stages 4.13; two blocks that land on one SM still fit at 6.
ONE_BLOCK_TMA_STAGES = 6
TMA_TILE_BYTES = 8192  # bytes of K (and of V) per ring stage
TMA_ROWS = (1, 4)      # row-block sizes the bulk-copy kernel takes (8 rows run on "regs": registers)
TMA_OPTIONS = ("-arch=sm_90a",)
# Work stealing in the persistent kernels ("tma", "mma"), opt-in: blocks that run out of items
# take the rest of unfinished ones, GRAIN_BYTES of K and V at a time (decode.cu, walk_work).
# Results then depend on which block took which keys: they can differ in the last bits from call
# to call. Off (the default), every item is streamed by the block that took it and results are
# bit-reproducible. Measured on an H100 (benchmarks/decode_steal_probe.py, results/
# decode_steal_probe.json, 2026-11-23): +0.2-0.6% on rows of one item per SM (B1 32/32, B16 32/8,
# D 256, paged), -0.3 to -2% on rows of many items per block (B16 32/32 L4096, B64 L2048, the
# short calls): the slow SMs' lag at the end of a call is mostly made up by the remaining blocks
# streaming faster once the others are done, so there is little left to balance.
STEAL = False
GRAIN_BYTES = 65536
OWNER_GRAINS = 0        # tests: owners stop after this many grains (0: never), thieves take the rest
MAX_GRAINS = 16384      # grains per item (the claim words count them in 16 bits)
SMEM_PER_SM = 228 * 1024  # H100 shared memory per SM (blocks also reserve 1 KB each)
SMEM_PER_BLOCK = 227 * 1024  # the most dynamic shared memory one block may ask for (sm_90)
RING_STAGE_EXTRA = 24     # bytes per ring stage besides its tiles: full and empty barriers, item header


def alibi_slopes(num_heads):
    """Default ALiBi slopes of Press et al. for ``num_heads`` heads, float32 ``(num_heads,)``.

    For a power of two ``n``, ``slope[h] = 2 ** (-8 (h + 1) / n)``. Otherwise the slopes of the
    nearest lower power of two ``n`` are followed by every other slope (indices 0, 2, 4, ...) of
    the ``2 n`` list, ``num_heads - n`` of them.

    Examples
    --------
    >>> import cuattn
    >>> cuattn.alibi_slopes(4)
    array([0.25      , 0.0625    , 0.015625  , 0.00390625], dtype=float32)
    """
    if isinstance(num_heads, bool) or not isinstance(num_heads, numbers.Integral) or num_heads < 1:
        raise ValueError(f"num_heads must be a positive integer; got {num_heads!r}")
    num_heads = int(num_heads)

    def power_of_two(n):
        return [2.0 ** (-8.0 * (h + 1) / n) for h in range(n)]

    n = 2 ** int(math.floor(math.log2(num_heads)))
    slopes = power_of_two(n)
    if n < num_heads:
        slopes += power_of_two(2 * n)[0::2][: num_heads - n]
    return np.asarray(slopes, dtype=np.float32)


def _kernel_choice(rows: int, dense: bool = True) -> str:
    """cuattn.decode.KERNEL after checking it; None picks "mma" for several rows per block, and
    for one row where the cache is strided or paged (not `dense`), else "tma" (before the
    per-launch fallbacks of pick_kernel). One row, H200, B 1 32/32 D 128, TB/s "tma" -> "mma":
    rows 32 x 128 apart 0.95 -> 3.67 (cp.async takes any stride, the bulk copies go row by row);
    pages of 16, 32, 64, 256 keys 2.47, 3.64, 3.70, 3.76 -> 3.44, 3.73, 4.12, 4.12; dense 4.26 ->
    4.19, so dense one-row caches stay on "tma" (but where the launch keeps row groups whole:
    ONE_ROW_MMA_WHOLE, decided per launch plan)."""
    if KERNEL is not None and KERNEL not in KERNELS:
        raise ValueError(f"cuattn.decode.KERNEL must be one of {KERNELS} or None; got {KERNEL!r}")
    if MMA_COPY is not None and MMA_COPY not in MMA_COPIES:
        raise ValueError(f"cuattn.decode.MMA_COPY must be one of {MMA_COPIES} or None; got {MMA_COPY!r}")
    return KERNEL or ("mma" if rows > 1 or not dense else "tma")


PERSISTENT_MAX_KEYS = 1 << 29  # the persistent kernels' ring headers hold a tile's first key << 2


def pick_kernel(kernel: str, cc: int, type_name: str, padded: int, sizes: dict) -> str:
    """The split kernel a launch runs: `kernel` (_kernel_choice) where it can take the call, else
    the next one down ("mma" -> "tma" -> "regs")."""
    if sizes["cache_len"] >= PERSISTENT_MAX_KEYS:
        return "regs"  # both persistent kernels' ring headers take keys below PERSISTENT_MAX_KEYS
    if kernel == "mma" and (cc != 90 or type_name not in MMA_TYPES or padded not in MMA_HEAD_DIMS
                            or sizes["cache_len"] == 0 or not mma_pages_ok(sizes)):
        kernel = "tma"  # tensor cores take 16-bit inputs; whole swizzle atoms; pages of >= 4 keys
    if kernel == "tma" and (cc != 90 or rows_per_block(sizes) not in TMA_ROWS):
        kernel = "regs"  # the bulk copy engine is Hopper's; 8 rows do not fit its registers
    # (cc 90 only, as attention's wgmma path: both persistent kernels are built with -arch=sm_90a,
    # whose cubin no later GPU loads; Blackwell (cc 100, 120) runs the register kernel)
    return kernel


SHORT_PAGE_MIN = 4  # the tensor-core kernel's cp.async producer looks pages shorter than a tile up per
# row, the tile's pages one a lane (at most 32: pages of at least 4 keys)


def mma_pages_ok(sizes: dict) -> bool:
    """Whether decode_split_mma takes the cache's pages: whole tiles (a multiple of 64 keys) for
    every producer, any page of at least SHORT_PAGE_MIN keys for cp.async (which mma_copy then
    picks)."""
    return not sizes["paged"] or sizes["page_size"] % MMA_TILE_KEYS == 0 or sizes["page_size"] >= SHORT_PAGE_MIN


def mma_copy(padded: int, packed: bool = False, page_size: int = 0) -> str:
    """How decode_split_mma fills its ring at padded head dim `padded`, `packed` where its P V
    product packs P_lo into the empty rows (MMA_PACK_LO, row groups of at most 8 rows), pages of
    `page_size` keys (0: not paged): cuattn.decode.MMA_COPY, or where that is None, "cp.async" for
    128 and for packed 64, "tensor" for unpacked 64 (measured: see MMA_COPY); "cp.async" whatever
    MMA_COPY says where pages are not whole tiles (a tensor copy's box lies in one page)."""
    if page_size % MMA_TILE_KEYS:
        return "cp.async"
    if MMA_COPY is not None:
        return MMA_COPY
    return "cp.async" if padded == 128 or packed else "tensor"


def split_expression(type_name: str, padded: int, rows: int, paged: bool, kernel: str | None = None,
                     stages: int | None = None, copy: str | None = None) -> str:
    kernel = kernel or _kernel_choice(rows)
    p = "true" if paged else "false"
    if kernel == "tma":
        if stages is None:
            stages = tma_config(rows, padded, 2 if type_name != "float" else 4)[1]
        return f"decode_split_tma<{type_name}, {padded}, {rows}, {p}, {stages}>"
    if kernel == "mma":
        copy = copy or mma_copy(padded)
        cp_async = "true" if copy == "cp.async" else "false"
        stages = mma_config(padded)[1] if stages is None else stages
        return f"decode_split_mma<{type_name}, {padded}, {p}, {stages}, {cp_async}>"
    return f"decode_split<{type_name}, {padded}, {rows}, {p}>"


def mma_shared_bytes(stages: int, padded: int, slabs: bool = False) -> int:
    """Dynamic shared memory of decode_split_mma: ring of swizzled tiles, Q/merge buffer (slabs:
    MMA_SLABS's), barriers."""
    return 2 * MMA_TILE_KEYS * padded * 2 * stages + _mma_merge_bytes(padded, slabs) + RING_STAGE_EXTRA * stages


def _mma_merge_bytes(padded: int, slabs: bool = False) -> int:
    """DecodeMmaShape::kSharedBytes: the larger of Q (16 rows of padded + 8 halves) and the merge
    (16 rows of padded + 8 floats, or with slabs (MMA_SLABS) 4 slabs of 8 such rows, then a max and a
    sum per warp and row)."""
    merge_rows = 4 * 8 if slabs else MMA_ROWS
    return max(MMA_ROWS * (padded + 8) * 2, (merge_rows * (padded + 8) + 2 * 4 * MMA_ROWS) * 4)


def mma_slabs_fit(stages: int, padded: int, resident: int) -> bool:
    """Whether decode_split_mma's merge in slabs (MMA_SLABS) leaves room for `resident` blocks per SM
    with a ring of `stages` (within one block's most shared memory, 227 KB on sm_90)."""
    return (mma_shared_bytes(stages, padded, slabs=True) <= SMEM_PER_BLOCK
            and _mma_resident(stages, padded, slabs=True) >= resident)


def mma_config(padded: int) -> tuple[int, int]:
    """(blocks per SM, ring stages) of decode_split_mma: 2 blocks (its launch bound) and
    MMA_TWO_BLOCK_STAGES's depth, or as many stages (up to 8) as leave the shared memory for both;
    MMA_STAGES, where set, fixes the depth, and the blocks per SM are as many as its shared memory
    leaves room for, at most 2. (Launches of split row groups may take mma_deep_config instead: mma_plan.)"""
    if MMA_STAGES is not None:
        return _mma_resident(MMA_STAGES, padded), MMA_STAGES
    return 2, dict(MMA_TWO_BLOCK_STAGES).get(padded) or mma_two_block_stages(padded)


def _mma_resident(stages: int, padded: int, slabs: bool = False) -> int:
    """Blocks of decode_split_mma (at most 2, its launch bound) that a ring of `stages` leaves room
    for on one SM (slabs: with MMA_SLABS's merge buffer)."""
    return min(2, SMEM_PER_SM // (mma_shared_bytes(stages, padded, slabs) + 1024))


def mma_deep_config(padded: int) -> tuple[int, int] | None:
    """(blocks per SM, ring stages) of decode_split_mma for a launch whose row groups are split:
    MMA_DEEP_STAGES's depth (one block per SM) where it names the head dim and MMA_STAGES is not set;
    else None (mma_config's)."""
    deep = dict(MMA_DEEP_STAGES).get(padded)
    if MMA_STAGES is not None or deep is None:
        return None
    return _mma_resident(deep, padded), deep


def mma_two_block_stages(padded: int) -> int:
    """The deepest ring of decode_split_mma (up to 8 stages) that leaves room for two blocks per SM."""
    return min(8, (SMEM_PER_SM // 2 - 1024 - _mma_merge_bytes(padded)) // (2 * MMA_TILE_KEYS * padded * 2
                                                                         + RING_STAGE_EXTRA))


def tma_tile_keys(padded: int, itemsize: int) -> int:
    """Keys per ring stage of decode_split_tma (DecodeTmaShape::kTile)."""
    return TMA_TILE_BYTES // (padded * itemsize)


def tma_shared_bytes(stages: int, rows: int, padded: int) -> int:
    """Dynamic shared memory of decode_split_tma: ring, merge buffer, barriers and stage headers."""
    merge = ((4 if rows == 1 else rows) * padded + 8 * rows) * 4  # DecodeShape::kMergeFloats (4 warps)
    return 2 * TMA_TILE_BYTES * stages + merge + RING_STAGE_EXTRA * stages


def merge_expression(type_name: str) -> str:
    return f"decode_merge<{type_name}>"


VALIDATE_EXPRESSION = "decode_validate<int>"


def all_kernel_expressions(arch: str = "sm_80") -> list[str]:
    """Every kernel variant the dispatcher can pick on ``arch`` (compiled by the CI tests)."""
    kernels = KERNELS if arch == "sm_90a" else ("regs",)
    out = []
    for type_name in TYPE_NAMES.values():
        out += [split_expression(type_name, d, r, p, kern) for kern in kernels if kern != "mma" for d in HEAD_DIMS
                for r in (TMA_ROWS if kern == "tma" else ROWS) for p in (False, True)]
        if "tma" in kernels:  # the deeper rings of one block per SM
            itemsize = 4 if type_name == "float" else 2
            out += [split_expression(type_name, d, r, p, "tma", one_block_stages(r, d, itemsize)) for d in HEAD_DIMS
                    for r in TMA_ROWS for p in (False, True)
                    if one_block_stages(r, d, itemsize) != tma_config(r, d, itemsize)[1]]
        if "mma" in kernels and type_name in MMA_TYPES:
            # the two-block ring (mma_config) and, where MMA_DEEP_STAGES names the head dim, the deep one
            out += [split_expression(type_name, d, MMA_ROWS, p, "mma", s, c) for d in MMA_HEAD_DIMS
                    for s in sorted({mma_config(d)[1], (mma_deep_config(d) or mma_config(d))[1]})
                    for p in (False, True) for c in MMA_COPIES]
        out.append(merge_expression(type_name))
    out.append(VALIDATE_EXPRESSION)
    return out


def decode_shapes(q, k_cache, v_cache, block_table):
    """Check the shapes of q (B, Hq, Sq, D) and the cache; return the sizes."""
    for x, name in ((q, "q"), (k_cache, "k_cache"), (v_cache, "v_cache")):
        if x.ndim != 4:
            what = "(num_pages, Hkv, page_size, D)" if block_table is not None and name != "q" else \
                ("(B, Hq, Sq, D)" if name == "q" else "(B, Hkv, L, D)")
            raise ValueError(f"{name} must have shape {what}; got shape {tuple(x.shape)}")
    batch, hq, sq, d = q.shape
    if tuple(k_cache.shape) != tuple(v_cache.shape):
        raise ValueError(f"v_cache must have k_cache's shape {tuple(k_cache.shape)}; got {tuple(v_cache.shape)}")
    n0, hkv, length, dk = k_cache.shape
    if dk != d:
        raise ValueError(f"k_cache's head dim ({dk}) must equal q's ({d})")
    _checks.check_heads(hq, hkv, "q", "k_cache")
    sizes = dict(batch=batch, num_q_heads=hq, num_kv_heads=hkv, seqlen_q=sq, head_dim=d)
    if block_table is None:
        if n0 != batch:
            raise ValueError(f"k_cache's batch ({n0}) must equal q's ({batch})")
        sizes.update(cache_len=length, paged=False, page_size=length, num_pages=0)
    else:
        if block_table.ndim != 2 or block_table.shape[0] != batch:
            raise ValueError(f"block_table must have shape (B={batch}, max_pages); got {tuple(block_table.shape)}")
        if block_table.dtype != np.int32:
            raise TypeError(f"block_table must be int32; got {block_table.dtype}")
        sizes.update(cache_len=block_table.shape[1] * length, paged=True, page_size=length, num_pages=n0)
    return sizes


def check_seqlens(cache_seqlens, sizes):
    if cache_seqlens is None:
        return
    if cache_seqlens.dtype != np.int32:
        raise TypeError(f"cache_seqlens must be int32; got {cache_seqlens.dtype}")
    if tuple(cache_seqlens.shape) != (sizes["batch"],):
        raise ValueError(f"cache_seqlens must have shape (B={sizes['batch']},); got {tuple(cache_seqlens.shape)}")


def validate_values(xp, cache_seqlens, block_table, sizes):
    """Range checks of cache_seqlens and the used block_table entries, with NumPy (the CPU and
    reference paths; the GPU path runs the decode_validate kernel)."""
    if cache_seqlens is None and block_table is None:
        return
    length = sizes["cache_len"]
    lens = xp.full((sizes["batch"],), length, dtype=xp.int32) if cache_seqlens is None else cache_seqlens
    bad_len = xp.any((lens < 0) | (lens > length))
    bad_page = xp.zeros((), dtype=bool)
    if block_table is not None:
        ps = sizes["page_size"]
        used = xp.arange(block_table.shape[1])[None, :] < ((lens.astype(xp.int64) + ps - 1) // ps)[:, None]
        bad_page = xp.any(used & ((block_table < 0) | (block_table >= sizes["num_pages"])))
    flags = xp.stack([bad_len, bad_page])
    raise_for_flags(flags.get() if hasattr(flags, "get") else flags, sizes)


def raise_for_flags(flags, sizes):
    """Raise for the flags (bad length, bad page) of validate_values or decode_validate."""
    length = sizes["cache_len"]
    if flags[0]:
        raise ValueError(f"cache_seqlens must lie in [0, {length}] (the cache length)")
    if flags[1]:
        raise ValueError(f"block_table holds pages outside [0, {sizes['num_pages']}) among the pages "
                         "that cache_seqlens uses")


def resolve_slopes(alibi_slopes_arg, num_q_heads):
    """None -> None; 'default' -> alibi_slopes(Hq) (NumPy); an array (Hq,) float32 as given."""
    if alibi_slopes_arg is None:
        return None
    if isinstance(alibi_slopes_arg, str):
        if alibi_slopes_arg != "default":
            raise ValueError(f"alibi_slopes must be None, 'default' or an array (Hq,); got {alibi_slopes_arg!r}")
        return alibi_slopes(num_q_heads)
    if not hasattr(alibi_slopes_arg, "shape") or tuple(alibi_slopes_arg.shape) != (num_q_heads,):
        raise ValueError(f"alibi_slopes must have shape (Hq={num_q_heads},); got "
                         f"{getattr(alibi_slopes_arg, 'shape', type(alibi_slopes_arg).__name__)}")
    if alibi_slopes_arg.dtype != np.float32:
        raise TypeError(f"alibi_slopes must be float32; got {alibi_slopes_arg.dtype}")
    return alibi_slopes_arg


def decode(q, k_cache, v_cache, *, cache_seqlens=None, alibi_slopes=None, scale=None, block_table=None,
           return_lse=False, backend=None):
    """Attention of a few new query tokens against a (paged) KV cache, with optional ALiBi bias.

    Token ``t`` of batch row ``b`` sits at position ``i = cache_seqlens[b] - Sq + t`` (the new
    tokens are the last ``Sq`` entries of the cache) and sees keys ``j <= i``. The logit of key
    ``j`` is ``scale * q . k_j + slope[h] * (j - i)``; masked keys are excluded exactly. On the
    GPU the KV range is split over enough blocks to fill the device (flash-decoding) and the
    partial results are merged by log-sum-exp; all query heads of a GQA group share one pass
    over their kv head.

    Parameters
    ----------
    q : array, shape (B, Hq, Sq, D)
        New queries. float16, bfloat16 or float32 on the GPU; float32 or float64 on the CPU
        (float16/bfloat16 run in float32 there and return in their own dtype).
    k_cache, v_cache : array, shape (B, Hkv, L, D), or (num_pages, Hkv, page_size, D) with ``block_table``
        Key and value caches, ``q``'s dtype. ``Hq`` must be a multiple of ``Hkv``.
    cache_seqlens : int32 array, shape (B,), optional
        Valid cache length of each batch row (the new tokens included), in ``[0, L]``;
        None means ``L`` for every row (``max_pages * page_size`` when paged).
    alibi_slopes : None, 'default' or float32 array (Hq,)
        None: no bias. 'default': :func:`cuattn.alibi_slopes` ``(Hq)`` (Press et al.).
        Slopes >= 0 keep every visible logit's bias <= 0 and small near the query, so precision
        does not fall with the cache length. Negative slopes are accepted, but their bias grows
        with the distance ``i - j`` (``|slope| * L`` at the first key), and float32 logits of that
        size carry absolute errors of about ``2**-24 * |slope| * L``, as in any implementation.
    scale : float, optional
        Score scale; None means ``D ** -0.5``. Any finite value is used exactly as given.
    block_table : int32 array, shape (B, max_pages), optional
        Paged cache: key ``j`` of row ``b`` is entry ``j % page_size`` of page
        ``block_table[b, j // page_size]``. Entries past a row's length are never read.
    return_lse : bool, default False
        Also return the natural-log log-sum-exp of the biased scaled logits.
    backend : {None, 'cuda', 'cpu', 'reference'}
        None follows the array type; 'reference' runs :func:`cuattn.reference.decode`.

    Returns
    -------
    o : array, shape (B, Hq, Sq, D), the input dtype (float64 for the reference)
    lse : array, shape (B, Hq, Sq), float32 (only with ``return_lse``)
        ``-inf`` for a row that sees no key (a length-0 row); its output is zeros.

    Raises
    ------
    TypeError
        Mixed NumPy/GPU inputs; unsupported or mismatched dtypes; ``cache_seqlens`` or
        ``block_table`` not int32; ``alibi_slopes`` not float32.
    ValueError
        Shapes that do not fit, ``Hq`` not a multiple of ``Hkv``, ``cache_seqlens`` negative or
        past the cache, used pages outside ``[0, num_pages)``, a non-finite scale, a head dim
        the GPU kernel does not take (multiples of 8 up to 256). (Under CUDA graph capture the
        value checks run at each replay instead: ``GraphMemory.check()`` raises them.)
    RuntimeError
        Under CUDA graph capture: outside :func:`cuattn.graph_memory`, or with ``STEAL``.

    Notes
    -----
    With ``cache_seqlens`` or ``block_table`` given, the GPU path checks their values with one
    small kernel, which writes its two flags straight into pinned host memory, and waits for it
    before returning (or raising). The attention kernels are queued before that wait and skip
    all work when the check fails (they read the flags before any length or page), so the GPU
    does not idle while the host waits.

    GPU calls remember their launch plan (kernel choice, split, packed kernel arguments, scratch)
    per layout: shapes, strides, dtypes, 16-byte alignment, scale, return_lse, device and current
    stream (the latest ``MAX_PLANS``). A call that matches one skips the argument checks and the
    planning: it allocates the output and queues the launches (measured on the benchmark
    machine's host: 17-28 us a call instead of 93-185 us). Module settings (``KERNEL``,
    ``TMA_STAGES``, ...) are part of the match.

    On Hopper the attention kernel is a programmatic dependent launch (``cuattn.decode.PDL``,
    True by default): it may be placed on the GPU while the kernel before it in the stream ends,
    and waits for that kernel's completion and memory before it reads or writes anything, so its
    inputs and results are those of a plain launch (0.2-3.6% faster back to back on an H100).

    Cache layouts (Hopper, fp16, measured on an H200 with ``benchmarks/decode_layouts.py``,
    2026-12): a FlashAttention-layout ``(B, L, Hkv, D)`` cache passed as its transpose (key rows
    ``Hkv * D`` elements apart) streams at the dense ``(B, Hkv, L, D)`` rate (4.15 vs 4.17 TB/s
    on B 1 32/32, 4.50 vs 4.48 on B 16 32/8, 3.15 vs 3.16 at D 64); paged caches of 256 keys a
    page run within 2-3% of dense at D 128 (5% at D 64), 64-key pages within 3-6%, 16-key pages
    at ~0.8x; vLLM's ``(pages, page_size, Hkv, D)`` passed as its transpose runs as the other
    pages do. Short calls with ``cache_seqlens`` or a block table also wait for the value check
    (see above). A copy to a dense layout on every call costs more than those differences.

    GPU results are bit-reproducible: the same inputs and layout give the same bits on every
    call. Setting ``cuattn.decode.STEAL = True`` lets blocks that run out of work take the rest
    of unfinished ones on Hopper (work stealing); results then vary in the last bits from call
    to call, for at most a few tenths of a percent of speed (see the comment at ``STEAL``).

    GPU calls (without ``STEAL``) can be captured in a CUDA graph inside
    :func:`cuattn.graph_memory` (a captured call has work counters of its own, so its graph
    may be replayed on any stream, beside eager calls and other graphs).
    Each replay reads the ``cache_seqlens`` and ``block_table`` contents of its time and checks
    them on the device: where the check fails the call computes nothing and leaves its outputs
    NaN, and ``memory.check()`` raises the ValueError above.

    Examples
    --------
    >>> import numpy as np, cuattn
    >>> rng = np.random.default_rng(0)
    >>> q = rng.standard_normal((2, 8, 1, 64), dtype=np.float32)
    >>> k = rng.standard_normal((2, 2, 100, 64), dtype=np.float32)
    >>> v = rng.standard_normal((2, 2, 100, 64), dtype=np.float32)
    >>> lens = np.array([100, 37], dtype=np.int32)
    >>> o, lse = cuattn.decode(q, k, v, cache_seqlens=lens, alibi_slopes="default", return_lse=True)
    >>> o.shape, lse.shape
    ((2, 8, 1, 64), (2, 8, 1))
    """
    captured = _capture.enter("decode", q, _capture_refusal())
    if captured is not None:  # inside a CUDA graph capture (cuattn.graph_memory)
        with captured:
            return decode(q, k_cache, v_cache, cache_seqlens=cache_seqlens, alibi_slopes=alibi_slopes, scale=scale,
                          block_table=block_table, return_lse=return_lse, backend=backend)
    key = _plan_key(q, k_cache, v_cache, cache_seqlens, alibi_slopes, scale, block_table, return_lse, backend)
    if key is not None:
        cached = _PLANS.get(key)
        if cached is not None:  # checked and planned before: only the launches
            o, lse = cached(q, k_cache, v_cache, cache_seqlens, block_table, alibi_slopes)
            return (o, lse) if return_lse else o
    arrays = {"q": q, "k_cache": k_cache, "v_cache": v_cache, "cache_seqlens": cache_seqlens,
              "block_table": block_table}
    if alibi_slopes is not None and not isinstance(alibi_slopes, str):
        arrays["alibi_slopes"] = alibi_slopes
    chosen = resolve_backend(arrays, backend)
    return_lse = _checks.check_bool(return_lse, "return_lse")
    if chosen == "reference":
        from .reference import decode as reference_decode

        return reference_decode(q, k_cache, v_cache, cache_seqlens=cache_seqlens, alibi_slopes=alibi_slopes,
                                scale=scale, block_table=block_table, return_lse=return_lse)
    if chosen == "cuda":
        q, k_cache, v_cache = as_cupy(q), as_cupy(k_cache), as_cupy(v_cache)
        cache_seqlens = None if cache_seqlens is None else as_cupy(cache_seqlens)
        block_table = None if block_table is None else as_cupy(block_table)
        if alibi_slopes is not None and not isinstance(alibi_slopes, str):
            alibi_slopes = as_cupy(alibi_slopes)
    sizes = decode_shapes(q, k_cache, v_cache, block_table)
    check_seqlens(cache_seqlens, sizes)
    _checks.check_same_dtype({"q": q, "k_cache": k_cache, "v_cache": v_cache})
    scale = _checks.check_scale(scale, sizes["head_dim"])
    slopes = resolve_slopes(alibi_slopes, sizes["num_q_heads"])
    if chosen == "cpu":
        _checks.check_dtype(q, "q", _checks.CPU_DTYPES, "CPU")
        validate_values(np, cache_seqlens, block_table, sizes)
        from ._cpu_decode import decode_cpu

        o, lse = decode_cpu(q, k_cache, v_cache, cache_seqlens, slopes, scale, block_table, sizes)
    else:
        _checks.check_dtype(q, "q", _checks.GPU_DTYPES, "CUDA")
        check_arch("decode", _checks.dtype_name(q.dtype), device_properties()["cc"], tensor_cores=False)
        o, lse = _decode_cuda(q, k_cache, v_cache, cache_seqlens, slopes, scale, block_table, sizes, return_lse,
                              key)
    return (o, lse) if return_lse else o


def split_chunk(length: int, splits: int) -> int:
    """Keys per split when `length` keys are cut into `splits` pieces of whole CHUNK_ALIGN keys
    (the last piece may be shorter, and rounding can leave fewer pieces than asked for)."""
    return -(-(-(-length // splits)) // CHUNK_ALIGN) * CHUNK_ALIGN


def plan(sizes, num_sms):
    """(rows per block, row chunks, number of splits, keys per split) for a launch of the
    register kernel."""
    num_rows = sizes["num_q_heads"] // sizes["num_kv_heads"] * sizes["seqlen_q"]
    rows = rows_per_block(sizes)
    row_chunks = -(-num_rows // rows)
    length = max(1, sizes["cache_len"])
    base = sizes["batch"] * sizes["num_kv_heads"] * row_chunks
    max_splits = max(1, -(-length // MIN_CHUNK))
    splits = max(1, min(-(-BLOCKS_PER_SM * num_sms // base), max_splits))

    chunk = split_chunk(length, splits)
    if WAVE_AWARE:
        # up to twice the splits, when that fills the last wave of resident blocks >= 2% better
        cap = num_sms * (4 if rows <= 4 else 2)

        def fill(c):
            total = base * -(-length // c)
            return total / (-(-total // cap) * cap)

        best = fill(chunk)
        for s in range(splits + 1, min(2 * splits, max_splits) + 1):
            c = split_chunk(length, s)
            if fill(c) > best + 0.02:
                chunk, best = c, fill(c)
    return rows, row_chunks, -(-length // chunk), chunk


def rows_per_block(sizes):
    """Query rows one block holds (a size of ROWS) for this launch."""
    num_rows = sizes["num_q_heads"] // sizes["num_kv_heads"] * sizes["seqlen_q"]
    return min(r for r in ROWS if r >= min(num_rows, ROWS[-1]))


def tma_config(rows: int, padded: int, itemsize: int) -> tuple[int, int]:
    """(blocks per SM, ring stages) of decode_split_tma: its launch bound on registers
    (DecodeTmaShape::kMinBlocks: 3, 2 or 1 as rows x columns per lane <= 8, <= 32, more), and
    as many stages (up to 8) as leave the shared memory for that many blocks. (A launch of one
    block per SM deepens the ring: one_block_stages.)"""
    elems = 16 // itemsize
    per_lane = max(1, padded // elems // 32) * elems
    n = rows * per_lane
    resident = 3 if n <= 8 else 2 if n <= 32 else 1
    if TMA_STAGES is not None:
        return min(resident, SMEM_PER_SM // (tma_shared_bytes(TMA_STAGES, rows, padded) + 1024)), TMA_STAGES
    stages = min(8, (SMEM_PER_SM // resident - 1024 - tma_shared_bytes(0, rows, padded))
                 // (2 * TMA_TILE_BYTES + RING_STAGE_EXTRA))
    return resident, stages


def one_block_stages(rows: int, padded: int, itemsize: int) -> int:
    """Ring stages of decode_split_tma in a launch of one block per SM: ONE_BLOCK_TMA_STAGES,
    or tma_config's depth where that is deeper (or TMA_STAGES is set)."""
    stages = tma_config(rows, padded, itemsize)[1]
    if TMA_STAGES is not None:
        return stages
    return max(stages, ONE_BLOCK_TMA_STAGES)


# Even pieces (the persistent kernels, stealing off): where a piece holds at least EVEN_MIN_KEYS
# keys, the row groups' (B x Hkv x row chunks) keys are laid end to end and cut into equal pieces,
# taken from the counter like items (decode.cu, split_key), instead of whole splits per row group;
# a piece may cover several short row groups. EVEN_SPLIT None (the default): on for the bulk-copy
# kernel ("tma") only (even_pieces says how many); True: on for both kernels, EVEN_PIECES pieces
# (None: one per SM); False: off. Equal pieces end together only where the SMs stream alike; on an
# H200 they do not (one call's per-item timeline, 12th session: with three blocks per SM the SMs'
# streaming times spread by +-12%), and a counter handing out many equal splits balances that
# (faster SMs take more items), so pieces win only where equal splits leave a ragged last wave.
# Measured on an H200 (12th session, benchmarks/decode_pieces_sweep.py, fp16, TB/s, equal splits ->
# 2 pieces per SM -> 1 piece per resident block): one query row per block, B 8 32/32 L 8192 and
# B 16 L 4096 (5.2 equal splits per block) 4.13 -> 4.25 -> 4.21 and 4.17 -> 4.22 -> 4.18; B 32 L
# 4096, B 64 L 2048, B 128 L 1024 (10.3 per block) 4.35 -> 4.30 -> 4.32, 4.35 -> 4.26 -> 4.27,
# 4.19 -> 4.17 -> 4.17; B 2 and B 4 (one split per SM) 4.27 -> 4.24 -> 4.22 and 4.27 -> 4.24 ->
# 4.20; D 256 B 8 and B 4 level. Four query rows per block at D 256 (GQA: two blocks per SM):
# B 8 32/8 L 16384 2.82 (one split per SM: each SM's one block short of math) -> 3.56 (pieces).
# The tensor-core kernel (two blocks per SM; 11th session) slower or level with pieces.
EVEN_SPLIT = None
EVEN_MIN_KEYS = 4096
EVEN_PIECES = None
EVEN_MAX_SPLITS_PER_BLOCK = 8  # the default's one-row rule: pieces below this many equal splits per block
# ... or below EVEN_MAX_SPLITS_PER_BLOCK_LONG where each row group holds at least EVEN_LONG_ROW_KEYS
# keys. Measured on an H200 (16th session, decode_pieces_sweep.py, 10.3 equal splits per block,
# equal splits -> 2 -> 3 pieces per SM): B 32 32/32 L 4096 4.378 -> 4.425 -> 4.444, B 64 L 2048
# 4.381 -> 4.415 -> 4.420 (and +1.0-1.5% in two runs of the 15th session's stream probe), but
# B 128 L 1024 4.438 -> 4.387 -> 4.400 (a piece holds ~10 short row groups).
EVEN_MAX_SPLITS_PER_BLOCK_LONG = 16
EVEN_LONG_ROW_KEYS = 2048


def even_pieces(kernel: str, rows: int, items: int, grid: int, sms: int, length: int = 0) -> int | None:
    """How many even pieces to cut the row groups' keys into (plan_even), or None for equal splits:
    `items` the equal splits' count (B x Hkv x row chunks x splits), `grid` the resident blocks,
    `length` the keys of a row group (the cache length).
    The default (EVEN_SPLIT None), bulk-copy kernel: with one query row per block, two pieces per
    SM where the equal splits would be more than one and fewer than EVEN_MAX_SPLITS_PER_BLOCK per
    block (a ragged last wave), or fewer than EVEN_MAX_SPLITS_PER_BLOCK_LONG where row groups hold
    at least EVEN_LONG_ROW_KEYS keys, else equal splits; with more rows per block, one piece per
    block."""
    if STEAL or EVEN_SPLIT is False:
        return None
    if EVEN_SPLIT:
        return EVEN_PIECES or sms
    if kernel != "tma":
        return None
    if EVEN_PIECES:
        return EVEN_PIECES
    if rows > 1:
        return grid
    cap = EVEN_MAX_SPLITS_PER_BLOCK_LONG if length >= EVEN_LONG_ROW_KEYS else EVEN_MAX_SPLITS_PER_BLOCK
    return 2 * sms if grid < items < cap * grid else None


# Whole row groups (opt-in; the bulk-copy kernel, one query row per block, the default pieces rule
# in force): where the row groups (B x Hkv x row chunks) number at least TMA_WHOLE_ROWS_PER_SM per
# SM and at most the resident blocks (all of them streaming from the start, none waiting for a
# second round), one split each and no even pieces: no partials, no counts, no merges (each block
# writes its rows' outputs). Measured on an H100 (44th session), TB/s even pieces -> whole rows:
# 256 row groups (one round on 396 blocks): stream probe (best of 3) B 8 32/32 L 8192 3.006-3.012
# -> 3.153-3.155 (cuDNN 3.163), B 16 16/16 D 256 L 8192 3.030 -> 3.183, B 32 8/8 D 64 L 32768
# 3.091 -> 3.189; B 8 32/32 L 8192 with K and V at five placements
# (benchmarks/results/logs/whole_rows_placement_s44.py) 2.922-3.038 -> 2.994-3.150, ahead at each.
# 512 row groups (B 16 32/32 L 4096: 1.3 rounds, the last 116 row groups on as many blocks) slower
# at every placement, 3.044-3.110 -> 2.879-2.935, and in the full decode.py 3.113 -> 2.959 (the
# probe alone had read 3.129): hence the upper bound. 1024 (B 32 L 4096) 3.147 -> 3.155 (probe).
# Opt-in until an H200 agrees (the 12th session's pieces rule came from H200 runs).
TMA_WHOLE_ROWS = False
TMA_WHOLE_ROWS_PER_SM = 1.9


def tma_whole_rows(rows: int, groups: int, sms: int, grid: int) -> bool:
    """Does a bulk-copy launch of `rows` query rows per block over `groups` row groups, `grid`
    resident blocks, keep every row group whole (one split, no even pieces)? With TMA_WHOLE_ROWS on
    (opt-in), the default pieces rule in force (EVEN_SPLIT None, EVEN_PIECES None, stealing off),
    one row per block, at least TMA_WHOLE_ROWS_PER_SM row groups per SM and at most `grid`."""
    return (TMA_WHOLE_ROWS and EVEN_SPLIT is None and not EVEN_PIECES and not STEAL and rows == 1
            and TMA_WHOLE_ROWS_PER_SM * sms <= groups <= grid)


@functools.lru_cache(maxsize=256)
def plan_even(groups: int, length: int, pieces: int, min_keys: int) -> tuple[int, int, int, int] | None:
    """(split slots per row group, keys per piece, span, pieces) of even pieces for `groups` row
    groups of `length` keys cut into at most `pieces`, or None where pieces would be shorter than
    min_keys. Each row group takes span keys (length rounded up to CHUNK_ALIGN) of the order,
    pieces are whole CHUNK_ALIGN keys, and a row group's split slots are the pieces it meets
    (num_splits: the most of any row group; a piece may hold several whole row groups)."""
    span = -(-max(1, length) // CHUNK_ALIGN) * CHUNK_ALIGN
    if groups * (span // CHUNK_ALIGN) >= 1 << 31:  # (the kernels count in 32 bits)
        return None
    piece = -(-(-(-groups * span // pieces)) // CHUNK_ALIGN) * CHUNK_ALIGN
    if piece < min_keys:
        return None
    start = np.arange(groups, dtype=np.int64) * span
    slots = int(((start + span - 1) // piece - start // piece + 1).max())
    return slots, piece, span, -(-groups * span // piece)


TMA_ITEM_OVERHEAD = 64  # per work item, in keys' worth of time (prologue, merge, writes)
ONE_PER_SM_MIN_KEYS = 4096  # items at least this long may run one per SM (plan_persistent)
# the tensor-core kernel takes one item per SM only from this padded head dim up: at D 64 its two
# blocks per SM on more, shorter items stream faster (20th session, H200, stream probe's "many
# items": B 4 32/4 L 32768 3.080 -> 3.163 TB/s, L 131072 3.919 -> 4.137; D 128 level or slower)
ONE_PER_SM_MMA_MIN_DIM = 128


@functools.lru_cache(maxsize=256)
def plan_persistent(batch: int, num_kv_heads: int, row_chunks: int, length: int, grid: int,
                    sms: int = 0, allow_one: bool = True) -> tuple[int, int]:
    """(number of splits, keys per split) for the persistent kernels' `grid` blocks, which take
    their items (B x Hkv x row chunks x splits) one by one from a shared counter.

    When split counts give one item of at least ONE_PER_SM_MIN_KEYS keys to each of 90-100% of
    the `sms` SMs, the largest of them (the launch then has a block per item, one per SM:
    measured on an H100, 1-2% faster than three blocks per SM with a third of the keys each,
    e.g. B 8 x Hkv 16 at D 256, L 33001, and no slower elsewhere); else the split count with the shortest expected
    time, an item taking (keys + TMA_ITEM_OVERHEAD) and the blocks ending on average half an
    item apart once there are more items than blocks. Chunks are whole CHUNK_ALIGN keys.
    allow_one False: the cost model's split count always."""
    length = max(1, length)
    base = batch * num_kv_heads * row_chunks
    max_splits = max(1, -(-length // MIN_CHUNK))
    best = None
    one_per_sm = None
    for s in range(1, max_splits + 1):
        chunk = split_chunk(length, s)
        splits = -(-length // chunk)
        if splits != s:
            continue
        if allow_one and 0.9 * sms < base * splits <= sms and chunk >= ONE_PER_SM_MIN_KEYS:
            one_per_sm = (splits, chunk)  # the most items that still fit
        rounds = base * splits / grid
        cost = (chunk + TMA_ITEM_OVERHEAD) * (rounds + 0.5 if rounds > 1 else 1.0)
        if best is None or cost < best[0]:
            best = (cost, splits, chunk)
    return one_per_sm or best[1:]


def mma_plan(batch: int, num_kv_heads: int, row_chunks: int, length: int, padded: int,
             num_sms: int) -> tuple[int, int, int, int]:
    """(blocks per SM, ring stages, splits, chunk) of a decode_split_mma launch: mma_config's blocks
    and ring, planned by plan_persistent; where that splits row groups and mma_deep_config gives a
    deeper ring (one block per SM), that ring, planned again for its grid."""
    resident, stages = mma_config(padded)
    allow_one = padded >= ONE_PER_SM_MMA_MIN_DIM
    splits, chunk = plan_persistent(batch, num_kv_heads, row_chunks, length, resident * num_sms, num_sms, allow_one)
    deep = mma_deep_config(padded) if splits > 1 else None
    if deep:  # split row groups: one block per SM with a deeper ring, planned for that grid
        resident, stages = deep
        splits, chunk = plan_persistent(batch, num_kv_heads, row_chunks, length, resident * num_sms, num_sms,
                                        allow_one)
    return resident, stages, splits, chunk


def _one_row_mma_rules(batch: int, num_kv_heads: int, length: int, padded: int, num_sms: int):
    """(whole, few) for decode_split_mma's plan of one query row per row group (mma_plan, then
    even_pieces on its equal splits): whether it keeps every row group whole, one item each, no
    partials to merge, with at least as many row groups as blocks (mma_keeps_rows_whole), and whether
    it splits every row group over one block per SM (the deep ring) in equal pieces, with at most
    half as many row groups as SMs (mma_splits_few_rows). One plan for both one-row rules."""
    resident, _, splits, _ = mma_plan(batch, num_kv_heads, 1, length, padded, num_sms)
    items = batch * num_kv_heads
    equal = even_pieces("mma", MMA_ROWS, splits * items, resident * num_sms, num_sms, length) is None
    whole = splits == 1 and items >= resident * num_sms and equal
    few = resident == 1 and splits > 1 and 2 * items <= num_sms and equal
    return whole, few


def mma_keeps_rows_whole(batch: int, num_kv_heads: int, length: int, padded: int, num_sms: int) -> bool:
    """Whether decode_split_mma's plan for one query row per row group (mma_plan, then even_pieces)
    keeps every row group whole, one item each, no partials to merge, with at least as many row
    groups as blocks (the measured case: ONE_ROW_MMA_WHOLE)."""
    return _one_row_mma_rules(batch, num_kv_heads, length, padded, num_sms)[0]


def mma_splits_few_rows(batch: int, num_kv_heads: int, length: int, padded: int, num_sms: int) -> bool:
    """Whether decode_split_mma's plan for one query row per row group splits every row group over
    one block per SM (mma_plan: the deep ring) in equal pieces (no even pieces), with at most half as
    many row groups as SMs (the case ONE_ROW_MMA_FEW, the default, takes: B 1 32/32 L 33001)."""
    return _one_row_mma_rules(batch, num_kv_heads, length, padded, num_sms)[1]


def one_row_takes_mma(batch: int, num_kv_heads: int, length: int, padded: int, num_sms: int) -> bool:
    """Whether the automatic choice gives a dense cache's launch of one query row per block to the
    tensor-core kernel (where it takes the head dim): a one-row rule that is on holds for the shape
    (ONE_ROW_MMA_WHOLE and mma_keeps_rows_whole, ONE_ROW_MMA_FEW and mma_splits_few_rows)."""
    whole, few = _one_row_mma_rules(batch, num_kv_heads, length, padded, num_sms)
    return bool((ONE_ROW_MMA_WHOLE and whole) or (ONE_ROW_MMA_FEW and few))


def _filled_now(device_id: int, n: int, value: int):
    """An int32 vector of n copies of value on a device, filled now (on the side stream inside a
    captured call, not at replay) and waited for: ready for calls on any stream."""
    cupy = require_cupy()
    with cupy.cuda.Device(device_id), _capture.eager():
        out = cupy.full((n,), value, dtype=cupy.int32)
        cupy.cuda.get_current_stream().synchronize()
        return out


@functools.lru_cache(maxsize=64)
def _constant_int32(device_id: int, n: int, value: int):
    """A read-only int32 vector of n copies of value on a device (default lengths, the dummy block
    table), made once instead of a fill per call."""
    return _filled_now(device_id, n, value)


_COUNTERS: dict = {}


def _split_counters(device_id: int, stream_ptr: int, n: int):
    """Zeroed int32 counters for the persistent kernels, one buffer per (device, stream): per row
    group a 64-bit count of its partials (thieves << 48 | owners << 32 | keys) and the number of
    thieves' partials listed so far, then the work counter, the pool's count and the blocks out, then
    per row group and split a flag (the split's partial is written: tickets, a probe option; decode.cu, Work). Each
    launch leaves them zero again (the merging block resets its group's counts and flags, the launch's last
    take the work counter, the last block out the pool's), and launches on one stream run in
    order, so the buffer needs no memset per call. A plan keeps the buffer it got."""
    buf = _COUNTERS.get((device_id, stream_ptr))
    if buf is None or buf.size < n:
        buf = _COUNTERS[(device_id, stream_ptr)] = _filled_now(device_id, max(n, 1024), 0)
    return buf


class _StealState:
    """Work stealing's buffers of one (device, stream) (decode.cu, walk_work): a 64-bit claim word
    per item (tagged with the launch number, so they need no reset), the row groups' lists of
    thieves' partials, the pool those partials go to; and the launch counter. They grow as plans
    need (a plan keeps the buffers it got: launches on one stream run in order)."""

    def __init__(self):
        self.words = self.lists = self.pool = None
        self._count = itertools.count(1)

    def next_launch(self) -> int:
        return next(self._count) % 0xFFFFFFFF + 1  # 1 .. 2**32 - 1 (0: a word never claimed)

    def buffers(self, device_id: int, items: int, list_entries: int, pool_floats: int):
        cupy = require_cupy()
        with cupy.cuda.Device(device_id), _capture.eager():
            if self.words is None or self.words.size < items:
                self.words = cupy.zeros(max(items, 1024), dtype=cupy.uint64)
                cupy.cuda.get_current_stream().synchronize()
            if self.lists is None or self.lists.size < list_entries:
                self.lists = cupy.empty(max(list_entries, 1024), dtype=cupy.int32)
            if self.pool is None or self.pool.size < pool_floats:
                self.pool = cupy.empty(max(pool_floats, 1024), dtype=cupy.float32)
        return self.words, self.lists, self.pool


_STEAL: dict = {}


def _steal_state(device_id: int, stream_ptr: int) -> _StealState:
    state = _STEAL.get((device_id, stream_ptr))
    if state is None:
        state = _STEAL.setdefault((device_id, stream_ptr), _StealState())
    return state


def steal_plan(chunk: int, padded: int, itemsize: int, items: int, grid: int) -> tuple[int, int, int]:
    """(keys per grain, pool slots, scan window) of work stealing for a persistent launch; a grain
    of `chunk` keys or more means no stealing. Grains are whole CHUNK_ALIGN keys (whole ring tiles
    of both kernels), about GRAIN_BYTES of K and V, at most MAX_GRAINS per item. The pool has
    room for 2 grid thieves' partials beyond the grid (a thief takes a slot only while grid are
    left); OWNER_GRAINS (tests) makes it hold every grain, and thieves look at every item."""
    if not STEAL:
        return chunk, 1, 1
    align = CHUNK_ALIGN
    grain = max(align, -(-GRAIN_BYTES // (2 * padded * itemsize) // align) * align,
                split_chunk(chunk, MAX_GRAINS))
    if OWNER_GRAINS:
        pool = grid + items * -(-chunk // grain) + 64
        if pool > 32767:
            raise ValueError(f"cuattn.decode.OWNER_GRAINS={OWNER_GRAINS} needs a pool of {pool} partials here "
                             "(at most 32767; it is a test setting: use smaller shapes)")
        return grain, pool, items
    return grain, min(32767, 3 * grid), 2 * grid


@functools.lru_cache(maxsize=64)
def _device_slopes(device_id: int, num_heads: int, default: bool):
    """Zeros (no bias) or the default slopes on a device, copied once (no host copy per call)."""
    cupy = require_cupy()
    with cupy.cuda.Device(device_id), _capture.eager():
        out = cupy.asarray(alibi_slopes(num_heads) if default else np.zeros(num_heads, np.float32))
        cupy.cuda.get_current_stream().synchronize()  # ready for calls on any stream
        return out


class _CheckFlags:
    """The value check's flags of one (device, stream): two int32 in device memory that
    decode_validate sets to the failing call's generation (so they need no zeroing between
    calls), and the generation counter of the calls on that stream."""

    def __init__(self, device_id: int):
        cupy = require_cupy()
        with cupy.cuda.Device(device_id):
            self.flags = cupy.zeros(2, dtype=cupy.int32)
            cupy.cuda.get_current_stream().synchronize()
        self._count = itertools.count(1)

    def next_generation(self) -> int:
        return next(self._count) % 0x7FFFFFFF + 1  # 1 .. 2**31 - 1 (0 is a clean flag)


_CHECK_FLAGS: dict = {}
_HOST_FLAGS: dict = {}  # device id -> free (pinned host flags, their NumPy view, event) triples


def _check_flags(device_id: int, stream_ptr: int) -> _CheckFlags:
    flags = _CHECK_FLAGS.get((device_id, stream_ptr))
    if flags is None:
        flags = _CHECK_FLAGS.setdefault((device_id, stream_ptr), _CheckFlags(device_id))
    return flags


def _take_host_flags(device_id: int):
    """Two int32 of mapped pinned host memory (the kernel writes them through the same address:
    unified addressing) and an event, from a pool (one per call in flight)."""
    cupy = require_cupy()
    free = _HOST_FLAGS.setdefault(device_id, [])
    try:
        return free.pop()
    except IndexError:
        runtime = cupy.cuda.runtime
        ptr = runtime.hostAlloc(8, runtime.hostAllocMapped | runtime.hostAllocPortable)
        view = np.ctypeslib.as_array((ctypes.c_int32 * 2).from_address(ptr))
        return ptr, view, cupy.cuda.Event(block=False, disable_timing=True)


def _settings() -> tuple:
    """The module settings a launch plan depends on (tests and benchmarks change them)."""
    return (KERNEL, TMA_STAGES, ONE_BLOCK_TMA_STAGES, MMA_STAGES, MMA_TWO_BLOCK_STAGES, MMA_DEEP_STAGES, MMA_COPY,
            ONE_ROW_MMA_WHOLE, ONE_ROW_MMA_FEW, PAGE_PREFETCH, MMA_PACK_LO, MMA_SLABS, STATIC_FIRST,
            PDL, PDL_TRIGGER,
            EVEN_SPLIT, EVEN_MIN_KEYS, EVEN_PIECES, EVEN_MAX_SPLITS_PER_BLOCK, EVEN_MAX_SPLITS_PER_BLOCK_LONG,
            EVEN_LONG_ROW_KEYS, TMA_WHOLE_ROWS, TMA_WHOLE_ROWS_PER_SM, TMA_OPTIONS, BLOCKS_PER_SM, MIN_CHUNK,
            WAVE_AWARE, CHUNK_ALIGN, TMA_ROWS,
            _tma.L2_PROMOTION, STEAL, GRAIN_BYTES, OWNER_GRAINS, ONE_PER_SM_MIN_KEYS, ONE_PER_SM_MMA_MIN_DIM,
            TMA_ITEM_OVERHEAD, MAX_GRAINS,
            SHORT_PAGE_MIN, plan, plan_persistent, get_kernel)


_PLANS: dict = {}
MAX_PLANS = 64


def _plan_key(q, k_cache, v_cache, cache_seqlens, alibi_slopes, scale, block_table, return_lse, backend):
    """What a cached _DecodePlan must match, or None where the call takes the full path (inputs
    other than CuPy arrays, unusual argument types). Everything the argument checks look at is
    in it (shapes, strides, dtypes, 16-byte alignment of the data), so a hit skips them."""
    if type(return_lse) is not bool:
        return None
    key = _plans.gpu_key(backend, scale, q, k_cache, v_cache)
    if key is None:
        return None
    nd = sys.modules["cupy"].ndarray
    for x in (cache_seqlens, block_table):  # (read by scalar loads: their alignment does not matter)
        if x is None:
            key.append(None)
        elif type(x) is nd:
            key.append((x.shape, x.strides, x.dtype))
        else:
            return None
    if alibi_slopes is None or (type(alibi_slopes) is str and alibi_slopes == "default"):
        key.append(alibi_slopes)
    elif type(alibi_slopes) is nd:
        key.append((alibi_slopes.shape, alibi_slopes.strides, alibi_slopes.dtype))
    else:
        return None
    key += [return_lse, _settings()]
    return tuple(key)


class _DecodePlan:
    """Everything about a GPU decode call that its shapes, strides and dtypes fix: the kernels,
    their launch configuration and packed arguments, scratch buffers. A call then allocates the
    output, writes the pointers of its arrays into the packed arguments and launches (see
    decode: calls that match a cached plan skip the argument checks and the planning).

    Scratch (the splits' partials; lse when it is not returned) belongs to the plan, which belongs
    to one stream, and launches on a stream run in order: no allocation per call."""

    def __init__(self, q, k_cache, v_cache, cache_seqlens, slopes, scale, block_table, sizes, return_lse):
        cupy = require_cupy()
        d = sizes["head_dim"]
        if d < 8 or d > MAX_HEAD_DIM or d % 8:
            raise ValueError(f"head dim D={d} is not supported on the GPU: it takes multiples of 8 up to "
                             f"{MAX_HEAD_DIM} (use backend='cpu' on NumPy arrays for other sizes)")
        batch, hq, hkv, sq = sizes["batch"], sizes["num_q_heads"], sizes["num_kv_heads"], sizes["seqlen_q"]
        if batch > MAX_GRID_Z:
            raise ValueError(f"q's batch ({batch}) must be at most {MAX_GRID_Z} on the GPU")
        self.sizes = sizes
        self.device_id = device_id = cupy.cuda.Device().id
        self.stream_ptr = stream_ptr = cupy.cuda.get_current_stream().ptr
        self.dtype = q.dtype
        self.o_shape, self.lse_shape = (batch, hq, sq, d), (batch, hq, sq)
        self.return_lse = return_lse
        # per-call copies: unaligned rows (_kernel_ready), strided lengths / tables / slopes
        ready = [_kernel_ready(x, n) for x, n in ((q, "q"), (k_cache, "k_cache"), (v_cache, "v_cache"))]
        self.copy_qkv = tuple(r is not x for r, x in zip(ready, (q, k_cache, v_cache)))
        q, k_cache, v_cache = ready  # planned on what the kernels read: a copy's C-contiguous strides
        self.copy_lens = cache_seqlens is not None and not cache_seqlens.flags.c_contiguous
        self.copy_table = block_table is not None and not block_table.flags.c_contiguous
        self.slopes_given = slopes is not None and not isinstance(slopes, np.ndarray)
        self.copy_slopes = self.slopes_given and not slopes.flags.c_contiguous
        self.checked = cache_seqlens is not None or block_table is not None
        self.captured = _capture.recording()  # flags of its own, checked on the device at each replay
        lens = (_constant_int32(device_id, batch, sizes["cache_len"]) if cache_seqlens is None else "lens")
        table = _constant_int32(device_id, batch, 0).reshape(batch, 1) if block_table is None else "table"
        table_cols = 1 if block_table is None else block_table.shape[1]
        self.check = None
        if self.checked:
            self.flags = _CapturedFlags() if self.captured else _check_flags(device_id, stream_ptr)
            self.check = PackedLaunch(
                get_kernel("decode.cu", VALIDATE_EXPRESSION),
                (max(1, min(1024, -(-batch * max(1, table_cols) // 256))),),
                (256,), [lens, table, np.int32(batch), np.int32(table_cols), np.int32(sizes["cache_len"]),
                         np.int32(max(1, sizes["page_size"])), np.int32(sizes["num_pages"]), np.int32(sizes["paged"]),
                         "generation", self.flags.flags, "host_flags"])
        self.launches = []
        self.steal = None  # _StealState of the persistent kernels
        if batch * hq * sq == 0:
            return
        if slopes is None or isinstance(slopes, np.ndarray):  # none, or the defaults: cached on the device
            slope_arr = _device_slopes(device_id, hq, slopes is not None)
        else:
            slope_arr = "slopes"
        type_name = TYPE_NAMES[_checks.dtype_name(q.dtype)]
        padded = min(p for p in HEAD_DIMS if p >= d)
        num_rows = hq // hkv * sq
        props = device_properties()
        # key rows of d elements back to back (within a page where paged)
        dense = all(x.shape[2] == 1 or x.strides[2] == d * x.itemsize for x in (k_cache, v_cache))
        kernel = pick_kernel(_kernel_choice(num_rows, dense and not sizes["paged"]), props["cc"], type_name, padded,
                             sizes)
        if (KERNEL is None and kernel == "tma" and num_rows == 1
                and pick_kernel("mma", props["cc"], type_name, padded, sizes) == "mma"
                and one_row_takes_mma(batch, hkv, sizes["cache_len"], padded, props["num_sms"])):
            kernel = "mma"
        packed = kernel == "mma" and MMA_PACK_LO and num_rows <= 8  # P_lo in the empty rows
        copy = mma_copy(padded, packed, sizes["page_size"] if sizes["paged"] else 0) if kernel == "mma" else None
        span, takes = 0, None  # even pieces: the row groups' keys end to end (span each), `takes` pieces
        if kernel == "regs":
            stages = None
            rows, row_chunks, splits, chunk = plan(sizes, props["num_sms"])
        else:  # persistent: as many blocks as the SMs hold
            rows = MMA_ROWS if kernel == "mma" else rows_per_block(sizes)
            row_chunks = -(-num_rows // rows)
            groups = batch * hkv * row_chunks
            whole = False  # (tma_whole_rows)
            if kernel == "mma":
                resident, stages, splits, chunk = mma_plan(batch, hkv, row_chunks, sizes["cache_len"], padded,
                                                           props["num_sms"])
            else:
                resident, stages = tma_config(rows, padded, q.dtype.itemsize)
                whole = tma_whole_rows(rows, groups, props["num_sms"], resident * props["num_sms"])
                if whole:  # one split per row group, no pieces
                    splits, chunk = 1, split_chunk(max(1, sizes["cache_len"]), 1)
                else:
                    splits, chunk = plan_persistent(batch, hkv, row_chunks, sizes["cache_len"],
                                                    resident * props["num_sms"], props["num_sms"])
            grid = resident * props["num_sms"]
            equal_items = splits * groups
            pieces = None if whole else even_pieces(kernel, rows, equal_items, grid, props["num_sms"],
                                                    sizes["cache_len"])
            self.even_rule = (kernel, rows, equal_items, grid, pieces)  # (tests)
            even = plan_even(groups, sizes["cache_len"], pieces, EVEN_MIN_KEYS) if pieces else None
            if even:
                splits, chunk, span, takes = even
            elif kernel == "tma" and equal_items <= props["num_sms"]:
                stages = one_block_stages(rows, padded, q.dtype.itemsize)  # one block per SM
        # scratch: the splits' partial outputs and lse, then lse when the caller does not want it
        part = splits * batch * hkv * num_rows
        self.scratch = cupy.empty(part * d + part + (0 if return_lse else batch * hq * sq), dtype=cupy.float32)
        o_part, lse_part = self.scratch[:part * d], self.scratch[part * d:part * (d + 1)]
        lse_out = "lse" if return_lse else self.scratch[part * (d + 1):]

        def strides(x):
            return [np.int64(st // x.itemsize) for st in x.strides[:3]]

        args = ["q", "k", "v", lens, table, slope_arr, o_part, lse_part, *strides(q), *strides(k_cache),
                *strides(v_cache), np.int64(table_cols), np.int32(sizes["page_size"]), np.int32(batch),
                np.int32(hkv), np.int32(sq), np.int32(d), np.int32(hq // hkv), np.int32(num_rows),
                np.int32(row_chunks), np.int32(chunk), np.float32(scale * LOG2E)]
        expr = split_expression(type_name, padded, rows, sizes["paged"], kernel, stages, copy)
        self.expression = expr  # (tests)
        self.tensor_maps = None
        self.run_keys = None  # (tests: the bulk-copy kernel's keys per copy)
        # every kernel skips all work when the value check fails (its flags hold this call's generation)
        flags = self.flags.flags if self.checked else _constant_int32(device_id, 2, 0)
        check = [flags, "generation" if self.checked else np.int32(0)]
        if kernel == "regs":
            self.launches = [
                PackedLaunch(get_kernel("decode.cu", expr), (splits, hkv * row_chunks, batch), (128,), args + check),
                PackedLaunch(get_kernel("decode.cu", merge_expression(type_name)), (batch * hkv * row_chunks,), (128,),
                             [o_part, lse_part, "o", lse_out, np.int32(splits), np.int32(batch), np.int32(hq),
                              np.int32(hkv), np.int32(sq), np.int32(d), np.int32(hq // hkv), np.int32(num_rows),
                              np.int32(rows), np.int32(row_chunks), *check])]
            return
        # "tma": one bulk copy per tile of K and of V when its keys lie back to back (rows of D
        # elements, and pages holding whole tiles), else one per key row; "mma": tensor maps of
        # both caches (in place of the flag)
        options = TMA_OPTIONS + ((STATIC_FIRST_OPTION,) if STATIC_FIRST else ()) + ((PDL_OPTION,) if PDL else ())
        if kernel == "tma":
            tile = tma_tile_keys(padded, q.dtype.itemsize)
            # keys per copy (produce_tiles' run_keys): 0, a whole tile by one lane (its keys back
            # to back); else runs of keys back to back, a copy each: all a tile's keys where
            # unpaged, a page's where paged, one row where strided (H200, B 1 32/32 D 128, 16-key
            # pages: a copy per row 0.88 TB/s, per page 2.47)
            if dense and chunk % tile == 0 and (not sizes["paged"] or sizes["page_size"] % tile == 0):
                self.run_keys = 0
            elif dense:
                self.run_keys = sizes["page_size"] if sizes["paged"] else 1 << 30
            else:
                self.run_keys = 1
            copy_arg = np.int32(self.run_keys)
            smem = tma_shared_bytes(stages, rows, padded)
        else:
            smem = mma_shared_bytes(stages, padded)
            if packed:
                options += (MMA_PACK_LO_OPTION,)
                if MMA_SLABS and mma_slabs_fit(stages, padded, resident):  # the warps' rows merged at once
                    options += (MMA_SLABS_OPTION,)
                    smem = mma_shared_bytes(stages, padded, slabs=True)
            if copy == "cp.async":  # no tensor maps (a null pointer in their place)
                copy_arg = np.uint64(0)
                if PAGE_PREFETCH and sizes["paged"]:
                    options += (PAGE_PREFETCH_OPTION,)
            else:
                # the copy engine takes non-zero strides, multiples of 16 bytes (else a copy per call)
                self.tensor_maps = (_checks.dtype_name(q.dtype),
                                    tuple(_tma_ready(x, cupy) is not x for x in (k_cache, v_cache)))
                self._maps = (None, None)
                copy_arg = "tmaps"
        items = splits * groups
        blocks = min(grid, takes or items)
        if PDL and PDL_TRIGGER:  # the next launch starts early, on SMs of its own
            options += (PDL_TRIGGER_OPTION,)
            if blocks <= props["num_sms"]:
                smem = max(smem, SMEM_PER_SM // 2)
        split = get_kernel("decode.cu", expr, options, max_dynamic_smem=smem)
        self.options = options  # (tests)
        self.span = span  # (tests: even pieces in use)
        # a captured call's counters are its own (held by its graph_memory; each launch leaves
        # them zero, as the per-stream ones): its graph may replay on any stream
        n = 3 * groups + 3 + groups * splits  # (decode.cu, Work: counts, counters, the tickets' flags)
        counters = _filled_now(device_id, n, 0) if self.captured else _split_counters(device_id, stream_ptr, n)
        grain, pool_cap, window = steal_plan(chunk, padded, q.dtype.itemsize, items, blocks)  # (pieces: STEAL off)
        self.steal = _steal_state(device_id, stream_ptr)
        words, lists, pool = self.steal.buffers(device_id, items, groups * pool_cap, pool_cap * rows * (d + 1))
        self.launches = [PackedLaunch(split, (blocks,), (160,),
                                      args + [copy_arg, np.int32(splits), np.int32(span), "o", lse_out, counters,
                                              np.int32(hq), *check, words, lists, pool, np.int32(grain),
                                              np.int32(pool_cap), np.int32(window), np.int32(OWNER_GRAINS), "launch"],
                                      smem, programmatic=PDL)]

    def __call__(self, q, k_cache, v_cache, cache_seqlens, block_table, slopes):
        """Queue the call: (o, lse); lse is None unless the plan returns it."""
        cupy = require_cupy()
        o = cupy.empty(self.o_shape, dtype=self.dtype)
        lse = cupy.empty(self.lse_shape, dtype=cupy.float32) if self.return_lse else None
        if any(self.copy_qkv):  # rows not on 16-byte boundaries: aligned copies
            q, k_cache, v_cache = (aligned_copy(x) if c else x
                                   for x, c in zip((q, k_cache, v_cache), self.copy_qkv))
        values = {"q": q.data.ptr, "k": k_cache.data.ptr, "v": v_cache.data.ptr, "o": o.data.ptr}
        if lse is not None:
            values["lse"] = lse.data.ptr
        keep = []  # per-call copies stay alive until their launches are queued
        if self.slopes_given:
            keep.append(cupy.ascontiguousarray(slopes) if self.copy_slopes else slopes)
            values["slopes"] = keep[-1].data.ptr
        if self.tensor_maps is not None:
            values["tmaps"] = self._tensor_maps(k_cache, v_cache, keep, cupy)
        host = None
        if self.checked:
            if cache_seqlens is not None:
                keep.append(cupy.ascontiguousarray(cache_seqlens) if self.copy_lens else cache_seqlens)
                values["lens"] = keep[-1].data.ptr
            if block_table is not None:
                keep.append(cupy.ascontiguousarray(block_table) if self.copy_table else block_table)
                values["table"] = keep[-1].data.ptr
            values["generation"] = self.flags.next_generation()
            if self.captured:  # checked at every replay: outputs NaN and flags set where it fails
                self._poison_and_clear(o, lse, cupy)
                values["host_flags"] = self.flags.flags.data.ptr
            else:
                host = _take_host_flags(self.device_id)
                host[1][:] = 0
                values["host_flags"] = host[0]
            launch_packed(self.check, self.stream_ptr, [values[n] for n in self.check.slots])
            if self.captured:
                _capture.checked(self.flags.flags, lambda bad: raise_for_flags(bad, self.sizes))
            else:
                host[2].record()
        if self.steal is not None:
            values["launch"] = self.steal.next_launch()
        for packed in self.launches:
            launch_packed(packed, self.stream_ptr, [values[n] for n in packed.slots])
        if host is not None:
            self._wait(host)  # after queuing: the GPU does not idle while the host waits
        return o, lse

    def _tensor_maps(self, k_cache, v_cache, keep, cupy):
        """Device pointer of the K and V tensor maps (made once per cache address)."""
        kv = (k_cache.data.ptr, v_cache.data.ptr)
        cached_kv, maps = self._maps
        if cached_kv != kv:
            name, copies = self.tensor_maps
            k_m, v_m = (cupy.ascontiguousarray(x) if c else x for x, c in zip((k_cache, v_cache), copies))
            keep += [k_m, v_m]
            maps = _tma.tensor_maps([(k_m, name, MMA_TILE_KEYS), (v_m, name, MMA_TILE_KEYS)])
            if not any(copies):  # a per-call copy has a new address every time
                self._maps = (kv, maps)
        keep.append(maps)
        return maps.data.ptr

    def _poison_and_clear(self, o, lse, cupy):
        """A captured checked call's first nodes: its outputs all ones bits (NaN in every output
        dtype), written over by the kernels unless the check fails, and its flags zeroed."""
        stream = self.stream_ptr
        for x, byte in ((o, 0xFF), (lse, 0xFF), (self.flags.flags, 0)):
            if x is not None and x.nbytes:
                cupy.cuda.runtime.memsetAsync(x.data.ptr, byte, x.nbytes, stream)

    def _wait(self, host):
        """Wait for the value check; raise for its flags (after clearing them on the device)."""
        ptr, view, event = host
        event.synchronize()
        bad = (int(view[0]), int(view[1]))
        _HOST_FLAGS[self.device_id].append(host)
        if bad[0] or bad[1]:
            # queued behind this call's launches: no stale generation is left to match a later
            # call once the counter wraps
            self.flags.flags.fill(0)
            raise_for_flags(bad, self.sizes)


def _capture_refusal():
    """Why a decode call cannot be captured in a CUDA graph, or None (see also _decode_cuda)."""
    if STEAL:
        return "work stealing (cuattn.decode.STEAL) tags each launch on the host; turn it off"
    return None


class _CapturedFlags:
    """A captured checked call's value-check flags: two int32 of its own (held by its
    graph_memory), zeroed at the start of every replay, so one generation does."""

    def __init__(self):
        self.flags = require_cupy().empty(2, dtype=np.int32)

    def next_generation(self) -> int:
        return 1


def _decode_cuda(q, k_cache, v_cache, cache_seqlens, slopes, scale, block_table, sizes, return_lse, key=None):
    """Plan the call (remembered under `key` when given) and queue it."""
    plan_ = _DecodePlan(q, k_cache, v_cache, cache_seqlens, slopes, scale, block_table, sizes, return_lse)
    if key is not None:
        _plans.remember(_PLANS, key, plan_, MAX_PLANS)
    return plan_(q, k_cache, v_cache, cache_seqlens, block_table, slopes)
