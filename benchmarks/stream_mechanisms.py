"""How fast can one block per SM stream its own region of K and V, by copy mechanism?

Run on a GPU machine:  python benchmarks/stream_mechanisms.py [--out DIR] [--items-only]

The decode kernels give each block (about one per SM) its own contiguous stretch of K and of V.
This measures, on that access pattern and nothing else (no math: consumers touch one word per
stage), the read rate of:

- "bulk": a 1-d bulk-copy (TMA) ring filled by one producer lane (as decode_split_tma), chunk
  bytes of K and of V per stage, optionally split into pieces (more, smaller copies) or with an
  L2 evict-first hint,
- "cp.async": a 16-byte cp.async (LDGSTS) ring issued by all 128 threads (as the sm80 kernels of
  FlashAttention-2 and cuDNN),
- "loads": plain 16-byte non-caching loads into registers, 8 in flight per thread,

for grids of 128, 132, 264 and 396 blocks (each block 4 MB of K and 4 MB of V), beside the
grid-stride read ceiling of benchmarks/decode_timeline.py; then "items": rings on the exact items
of four decode rows (B 1 x 32 kv heads x 4 splits of 8320 keys, B 16 x 8 kv heads x 33001 keys, B 1
x 8 kv heads x 16 splits of 8192 keys, B 16 x 32 kv heads x 4096 keys; D 128, fp16 random normal K
and V, one block per item taking its item from a counter): the bulk ring of one producer lane and a
16-byte cp.async ring issued by all 128 threads (cuDNN's sm80 decode kernel's way), several chunk
sizes and depths, beside cuattn.decode itself on the same arrays, the same decode compiled with
-DCUATTN_DECODE_SKIP_MATH (its stream alone) and torch SDPA's cuDNN backend where torch is there
(3 interleaved rounds, the best time each). With --items-only just that part
(DIR/stream_mechanisms_items.json). TB/s = bytes read / median
time of CUDA-event-timed launches. Writes DIR/stream_mechanisms.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cupy  # noqa: E402
from common import out_dir, results_parser, run_metadata, time_calls  # noqa: E402
from decode import with_settings  # noqa: E402
from decode_probe import torch_cudnn  # noqa: E402  (torch SDPA's cuDNN on the same arrays, or None)
from decode_timeline import READ_SOURCE  # noqa: E402

CUDA_DIR = Path(__file__).resolve().parent.parent / "cuda"
SOURCE = r"""
#include "common.cuh"
#include "hopper.cuh"

__device__ __forceinline__ void bulk_load_evict_first(u32 dst, const void* src, u32 bytes, u32 bar) {
    asm volatile(
        "{\n.reg .b64 pol;\ncreatepolicy.fractional.L2::evict_first.b64 pol, 1.0;\n"
        "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1], %2, [%3], pol;\n}\n"
        ::"r"(dst), "l"(src), "r"(bytes), "r"(bar) : "memory");
}

// One block's bulk-copy ring over n chunks of K (kb) and of V (vb): thread 128 copies (kPiece bytes a
// copy), threads 0-127 take each stage (touching one word) and hand it back.
template <int kChunk, int kStages, int kPiece, bool kHint>
__device__ __forceinline__ void bulk_ring(const char* __restrict__ kb, const char* __restrict__ vb, long long n,
                                          unsigned* sink) {
    extern __shared__ __align__(128) unsigned char smem[];
    const u32 ring = smem_addr(smem), full = ring + 2 * kChunk * kStages, empty = full + 8 * kStages;
    const int tid = threadIdx.x;
    if (tid == 0) {
        for (int s = 0; s < kStages; ++s) { mbar_init(full + 8 * s, 1); mbar_init(empty + 8 * s, 128); }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();
    if (tid >= 128) {
        if (tid == 128) {
            for (long long i = 0; i < n; ++i) {
                const int s = (int)(i % kStages);
                if (i >= kStages) mbar_wait(empty + 8 * s, (u32)((i / kStages - 1) & 1));
                mbar_expect_bytes(full + 8 * s, 2 * kChunk);
                const u32 dk = ring + 2 * kChunk * s;
                for (int p = 0; p < kChunk; p += kPiece) {
                    if (kHint) {
                        bulk_load_evict_first(dk + p, kb + i * kChunk + p, kPiece, full + 8 * s);
                        bulk_load_evict_first(dk + kChunk + p, vb + i * kChunk + p, kPiece, full + 8 * s);
                    } else {
                        bulk_load(dk + p, kb + i * kChunk + p, kPiece, full + 8 * s);
                        bulk_load(dk + kChunk + p, vb + i * kChunk + p, kPiece, full + 8 * s);
                    }
                }
            }
        }
        return;
    }
    unsigned acc = 0;
    for (long long i = 0; i < n; ++i) {
        const int s = (int)(i % kStages);
        mbar_wait(full + 8 * s, (u32)((i / kStages) & 1));
        unsigned x;
        asm volatile("ld.shared.u32 %0, [%1];" : "=r"(x) : "r"(ring + 2 * kChunk * s + 4 * tid));
        acc ^= x;
        mbar_arrive(empty + 8 * s);
    }
    if (acc == 0x9e3779b9u) sink[0] = acc;
}

// block b streams region b of K and of V
template <int kChunk, int kStages, int kPiece, bool kHint>
__global__ void __launch_bounds__(160, 1) ring_bulk(const char* __restrict__ k, const char* __restrict__ v,
                                                    long long region, unsigned* sink) {
    bulk_ring<kChunk, kStages, kPiece, kHint>(k + blockIdx.x * region, v + blockIdx.x * region, region / kChunk, sink);
}

// A block's decode item: item i = (head i / splits, split i % splits), taken from a counter (the
// launch's last take sets it back to 0): its byte offset in K and V and its whole chunks
struct RingItem {
    long long off, chunks;
};
template <int kChunk>
__device__ __forceinline__ RingItem take_ring_item(long long head_bytes, int splits, long long split_bytes,
                                                   int* counter, int num_items) {
    __shared__ int s_item;
    if (threadIdx.x == 0) {
        s_item = atomicAdd(counter, 1);
        if (s_item == num_items - 1) *counter = 0;  // the launch's last take (one per block)
    }
    __syncthreads();
    const int item = s_item;
    const long long start = (long long)(item % splits) * split_bytes;
    return {(long long)(item / splits) * head_bytes + start, min(split_bytes, head_bytes - start) / kChunk};
}

// The bulk ring on decode's items
template <int kChunk, int kStages>
__global__ void __launch_bounds__(160, 1) ring_items(const char* __restrict__ k, const char* __restrict__ v,
                                                     long long head_bytes, int splits, long long split_bytes,
                                                     unsigned* sink, int* counter, int num_items) {
    const RingItem it = take_ring_item<kChunk>(head_bytes, splits, split_bytes, counter, num_items);
    bulk_ring<kChunk, kStages, kChunk, false>(k + it.off, v + it.off, it.chunks, sink);
}

// A block's 16-byte cp.async ring over n chunks of K (kb) and of V (vb), issued by all 128 threads
// (the sm80 kernels' way: FlashAttention-2, cuDNN's decode kernel): kStages - 1 chunks of each in
// flight while the block takes the oldest (touching one word). kKThenV: a chunk's K pieces, then
// its V pieces (cuDNN's order, 34th session's SASS); else K and V pieces taking turns.
template <int kChunk, int kStages, bool kKThenV>
__device__ __forceinline__ void cp_async_ring(const char* __restrict__ kb, const char* __restrict__ vb, long long n,
                                              unsigned* sink) {
    extern __shared__ __align__(128) unsigned char smem[];
    const u32 ring = smem_addr(smem);
    const int tid = threadIdx.x;
    auto issue = [&](long long i) {
        const u32 d = ring + 2 * kChunk * (int)(i % kStages);
        if (kKThenV) {
#pragma unroll
            for (int c = tid * 16; c < kChunk; c += 128 * 16) cp_async_16(d + c, kb + i * kChunk + c, true);
#pragma unroll
            for (int c = tid * 16; c < kChunk; c += 128 * 16) cp_async_16(d + kChunk + c, vb + i * kChunk + c, true);
        } else {
#pragma unroll
            for (int c = tid * 16; c < kChunk; c += 128 * 16) {
                cp_async_16(d + c, kb + i * kChunk + c, true);
                cp_async_16(d + kChunk + c, vb + i * kChunk + c, true);
            }
        }
    };
    for (int i = 0; i < kStages - 1; ++i) {
        if (i < n) issue(i);
        cp_async_commit();
    }
    unsigned acc = 0;
    for (long long i = 0; i < n; ++i) {
        cp_async_wait<kStages - 2>();
        __syncthreads();  // chunk i landed for every thread; every thread is done with chunk i - 1's stage
        unsigned x;
        asm volatile("ld.shared.u32 %0, [%1];" : "=r"(x) : "r"(ring + 2 * kChunk * (int)(i % kStages) + 4 * tid));
        acc ^= x;
        if (i + kStages - 1 < n) issue(i + kStages - 1);  // into chunk i - 1's stage
        cp_async_commit();
    }
    if (acc == 0x9e3779b9u) sink[0] = acc;
}

// The same items streamed by the all-threads cp.async ring, K then V a chunk (cuDNN's sm80 decode
// kernel copies its K and V tiles so)
template <int kChunk, int kStages>
__global__ void __launch_bounds__(128, 1) ring_cp_async_items(const char* __restrict__ k, const char* __restrict__ v,
                                                              long long head_bytes, int splits, long long split_bytes,
                                                              unsigned* sink, int* counter, int num_items) {
    const RingItem it = take_ring_item<kChunk>(head_bytes, splits, split_bytes, counter, num_items);
    cp_async_ring<kChunk, kStages, true>(k + it.off, v + it.off, it.chunks, sink);
}

// block b streams region b of K and of V by the all-threads cp.async ring
template <int kChunk, int kStages>
__global__ void __launch_bounds__(128, 1) ring_cp_async(const char* __restrict__ k, const char* __restrict__ v,
                                                        long long region, unsigned* sink) {
    cp_async_ring<kChunk, kStages, false>(k + blockIdx.x * region, v + blockIdx.x * region, region / kChunk, sink);
}

template <int kThreads>
__global__ void __launch_bounds__(kThreads) region_loads(const char* __restrict__ k, const char* __restrict__ v,
                                                         long long region, unsigned* sink) {
    const uint4* a = reinterpret_cast<const uint4*>(k + blockIdx.x * region);
    const uint4* b = reinterpret_cast<const uint4*>(v + blockIdx.x * region);
    const long long n = region / 16;
    unsigned acc = 0;
    for (long long i = threadIdx.x; i < n; i += 4 * kThreads) {
        uint4 x[8];
#pragma unroll
        for (int u = 0; u < 4; ++u) {
            const long long j = i + u * kThreads;
            asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                         : "=r"(x[u].x), "=r"(x[u].y), "=r"(x[u].z), "=r"(x[u].w) : "l"(a + j));
            asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                         : "=r"(x[4 + u].x), "=r"(x[4 + u].y), "=r"(x[4 + u].z), "=r"(x[4 + u].w) : "l"(b + j));
        }
#pragma unroll
        for (int u = 0; u < 8; ++u) acc ^= x[u].x ^ x[u].y ^ x[u].z ^ x[u].w;
    }
    if (acc == 0x9e3779b9u) sink[0] = acc;
}
"""

REGION = 4 << 20   # bytes of K (and of V) per block
GRIDS = (128, 132, 264, 396)
BULK = [(8192, 4, 8192, False), (8192, 8, 8192, False), (16384, 4, 16384, False), (16384, 6, 16384, False),
        (32768, 3, 32768, False), (16384, 6, 2048, False), (16384, 6, 16384, True), (4096, 12, 4096, False)]
CP_ASYNC = [(8192, 4), (8192, 6), (16384, 4), (16384, 6)]
LOADS = (256, 512, 1024)
ITEM_ROWS = [((1, 32, 32, 128, 33001), 4, 8320), ((16, 32, 8, 128, 33001), 1, 33001),  # shape, splits, keys per split
             ((1, 32, 8, 128, 131072), 16, 8192), ((16, 32, 32, 128, 4096), 1, 4096)]
# the rings timed on the items (39th session: more shapes, the all-threads cp.async ring, cuDNN beside):
# bulk ring_items<chunk, stages> (one producer lane) and ring_cp_async_items<chunk, stages>
ITEM_BULK = [(8192, 4), (16384, 2), (16384, 3), (16384, 4), (32768, 2), (32768, 3)]
ITEM_CP_ASYNC = [(16384, 3), (32768, 2), (32768, 3)]


def kernel_names():
    """The template instantiations of SOURCE that main() compiles (tests/test_compile.py compiles the
    same for sm_90a)."""
    return ([f"ring_bulk<{c}, {s}, {p}, {'true' if h else 'false'}>" for c, s, p, h in BULK]
            + [f"ring_cp_async<{c}, {s}>" for c, s in CP_ASYNC] + [f"region_loads<{t}>" for t in LOADS]
            + [f"ring_items<{c}, {s}>" for c, s in ITEM_BULK]
            + [f"ring_cp_async_items<{c}, {s}>" for c, s in ITEM_CP_ASYNC])


def main():
    parser = results_parser(__doc__)
    parser.add_argument("--items-only", action="store_true",
                        help="only the rings on decode's items beside cuattn.decode and cuDNN (not the synthetic regions)")
    args = parser.parse_args()
    out = out_dir(args)
    names = kernel_names()
    mod = cupy.RawModule(code=SOURCE, options=("-std=c++17", f"-I{CUDA_DIR}", "-arch=sm_90a"),
                         name_expressions=names)
    sink = cupy.zeros(1, cupy.uint32)
    rows = []
    if args.items_only:
        items_vs_decode(mod, rows, sink)
        (out / "stream_mechanisms_items.json").write_text(json.dumps(dict(meta=run_metadata(unit="TB/s"), rows=rows),
                                                                     indent=1))
        return
    n_max = max(GRIDS) * REGION
    k = cupy.random.default_rng(0).integers(0, 2**31, n_max // 4, dtype=cupy.int32).view(cupy.uint8)
    v = cupy.random.default_rng(1).integers(0, 2**31, n_max // 4, dtype=cupy.int32).view(cupy.uint8)

    def record(kind, config, grid, fn):
        t = time_calls(fn, min_batches=10, min_seconds=0.2)
        tbps = 2 * grid * REGION / t / 1e12
        rows.append(dict(kind=kind, config=config, grid=grid, tbps=tbps))
        print(f"{kind:9} {config:34} grid {grid:4}: {tbps:.3f} TB/s", flush=True)

    for grid in GRIDS:
        args_ = (k, v, np.int64(REGION), sink)
        for (c, s, p, h), name in zip(BULK, names):
            f = mod.get_function(name)
            smem = 2 * c * s + 16 * s
            f.max_dynamic_shared_size_bytes = smem
            record("bulk", f"chunk {c} stages {s} piece {p}{' evict_first' if h else ''}", grid,
                   lambda: f((grid,), (160,), args_, shared_mem=smem))
        for (c, s), name in zip(CP_ASYNC, names[len(BULK):]):
            f = mod.get_function(name)
            smem = 2 * c * s
            f.max_dynamic_shared_size_bytes = smem
            record("cp.async", f"chunk {c} stages {s}", grid, lambda: f((grid,), (128,), args_, shared_mem=smem))
        for t, name in zip(LOADS, names[len(BULK) + len(CP_ASYNC):]):
            f = mod.get_function(name)
            record("loads", f"threads {t}", grid, lambda: f((grid,), (t,), args_))
    read = cupy.RawKernel(READ_SOURCE, "stream_read")
    sms = cupy.cuda.Device().attributes["MultiProcessorCount"]
    n16 = 128 * REGION // 16
    for bps, threads in ((2, 1024), (4, 512)):
        t = time_calls(lambda: read((sms * bps,), (threads,), (k, v, np.int64(n16), sink)), min_batches=10, min_seconds=0.2)
        rows.append(dict(kind="grid-stride", config=f"{bps}x{threads}", grid=sms * bps, tbps=2 * 128 * REGION / t / 1e12))
        print(f"grid-stride {bps}x{threads}: {rows[-1]['tbps']:.3f} TB/s", flush=True)
    k = v = None  # the items' arrays next
    items_vs_decode(mod, rows, sink)
    (out / "stream_mechanisms.json").write_text(json.dumps(dict(meta=run_metadata(unit="TB/s"), rows=rows), indent=1))


def items_vs_decode(mod, rows, sink, rounds=3):
    """The rings on decode's items (each block takes an item from a counter) vs cuattn.decode (and its
    stream alone) and torch's cuDNN on the same arrays: interleaved rounds, the best time each."""
    import cuattn
    decode_module = sys.modules["cuattn.decode"]
    counter = cupy.zeros(1, cupy.int32)
    rng = cupy.random.default_rng(2)
    saved = decode_module.TMA_OPTIONS
    for (b, hq, hkv, d, length), splits, chunk in ITEM_ROWS:
        q, k, v = (rng.standard_normal((b, h, n, d), dtype=cupy.float32).astype(cupy.float16)
                   for h, n in ((hq, 1), (hkv, length), (hkv, length)))
        items = b * hkv * splits
        ring_args = (k, v, np.int64(length * d * 2), np.int32(splits), np.int64(chunk * d * 2), sink, counter,
                     np.int32(items))
        fns, read_bytes = {}, {}
        head_bytes, split_bytes = length * d * 2, chunk * d * 2
        for kind, shapes, threads, extra in (("ring_items", ITEM_BULK, 160, 16), ("ring_cp_async_items", ITEM_CP_ASYNC,
                                                                                 128, 0)):
            for c, st in shapes:
                f = mod.get_function(f"{kind}<{c}, {st}>")
                smem = 2 * c * st + extra * st  # the ring (and a full and an empty barrier per stage)
                f.max_dynamic_shared_size_bytes = smem
                label = f"{'bulk' if kind == 'ring_items' else 'cp.async all threads'} {c // 1024} KB x {st}"
                fns[label] = (lambda f=f, smem=smem, threads=threads: f((items,), (threads,), ring_args, shared_mem=smem))
                # the bytes a ring reads: whole chunks of each item (its end past the last whole chunk left)
                read_bytes[label] = 2 * c * b * hkv * sum(min(split_bytes, head_bytes - i * split_bytes) // c
                                                          for i in range(splits))

        fns["decode"] = lambda: cuattn.decode(q, k, v, alibi_slopes="default")
        # (TMA_OPTIONS is part of the launch plans' key: no stale plan)
        fns["decode, no math"] = with_settings(fns["decode"], TMA_OPTIONS=saved + ("-DCUATTN_DECODE_SKIP_MATH",))
        cudnn = torch_cudnn(q, k, v)
        if cudnn is not None:
            fns["torch cuDNN"] = cudnn
        best = {}
        for _ in range(rounds):
            for name, fn in fns.items():
                t = time_calls(fn, min_batches=10, min_seconds=0.2)
                best[name] = min(best.get(name, t), t)
        for name, t in best.items():
            rows.append(dict(kind="items", config=f"B{b} {hq}/{hkv} D{d} L{length}: {name}", grid=items,
                             tbps=read_bytes.get(name, 2 * k.nbytes) / t / 1e12))
            print(f"items {rows[-1]['config']:52}: {rows[-1]['tbps']:.3f} TB/s", flush=True)
        q = k = v = cudnn = fns = None
        cupy.get_default_memory_pool().free_all_blocks()


if __name__ == "__main__":
    main()
