"""Decode diagnostics: why a row runs short of the copy ceiling (geometry, partition, host sync).

Run on a GPU machine:  python benchmarks/decode_probe.py [--out DIR]

Three questions, each answered by timing cuattn.decode (fp16, ALiBi "default", D 128, one query
token, GQA group 4) with benchmarks/common.time_calls, the whole call and its split kernel replayed
alone (the launches recorded from one call):

1. geometry: B 1 / Hkv 8 / L 131072 (benchmarks/decode.py's weakest contiguous row) against
   layouts of the same bytes (B 4 / L 32768, B 2 / Hkv 16 / L 32768, L 130000, the cache sliced
   from a longer allocation so that head strides are not a power of two) and torch cuDNN on the
   base layout. A layout effect (all split starts a power of two apart) shows as a gap between
   the base and the sliced or odd-length cache.
2. partition: the base row with plan_persistent's (splits, keys per split) overridden: equal
   items one round (the default), fewer items than blocks, two and more rounds.
3. host sync: the paged row (B 16 / Hkv 8 / L 32768, 256-key pages) and the same cache contiguous
   with and without cache_seqlens (the value check's host synchronization), each whole call vs
   its split kernel alone.
With --trace, instead: a timeline of single calls (cuda/decode.cu built with
-DCUATTN_DECODE_TRACE: each block's thread 0 stamps %globaltimer at the start of each work item,
its first landed tile, the end of its key loop, the partial written and the merge check done),
summarized per case: launch skew, first-tile latency, streaming time per item (spread = unequal
bandwidth between SMs), the partial's write, the merge, and the tail after the median block.
Prints one line per case and writes DIR/decode_probe.json (DIR/decode_trace.json with --trace).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cupy  # noqa: E402
from common import run_metadata, time_calls  # noqa: E402
from decode import paged_copy, with_settings  # noqa: E402
from decode_launches import recorded_launches  # noqa: E402

import cuattn  # noqa: E402

module = sys.modules["cuattn.decode"]
REPS = dict(min_batches=10, min_seconds=0.2)


def split_alone(call):
    """Seconds of the call's longest launch replayed alone (its split kernel), and the launch count."""
    recorded = recorded_launches(call)
    cupy.cuda.Device().synchronize()
    return max(time_calls(replay, **REPS) for replay in recorded), len(recorded)


def measure(name, call, nbytes, results, **extra):
    call()
    whole = time_calls(call, **REPS)
    alone, launches = split_alone(call)
    rec = dict(case=name, call_us=whole * 1e6, kernel_us=alone * 1e6, call_tbs=nbytes / whole / 1e12,
               kernel_tbs=nbytes / alone / 1e12, launches=launches, **extra)
    results.append(rec)
    print(f"{name:58s} call {rec['call_us']:7.1f} us {rec['call_tbs']:5.2f} TB/s | kernel alone "
          f"{rec['kernel_us']:7.1f} us {rec['kernel_tbs']:5.2f} TB/s | launches {launches} {extra or ''}", flush=True)
    return rec


def cache(b, hkv, length, d, pad=0):
    rng = cupy.random.default_rng(1)
    k = rng.standard_normal((b, hkv, length + pad, d), dtype=cupy.float32).astype(cupy.float16)
    v = rng.standard_normal((b, hkv, length + pad, d), dtype=cupy.float32).astype(cupy.float16)
    return k[:, :, :length], v[:, :, :length]


def query(b, hq, d):
    return cupy.random.default_rng(2).standard_normal((b, hq, 1, d), dtype=cupy.float32).astype(cupy.float16)


def inputs(b, hq, hkv, length, d, pad=0):
    """q, K and V caches, and the bytes of K and V."""
    k, v = cache(b, hkv, length, d, pad)
    return query(b, hq, d), k, v, 2 * k.size * k.itemsize


def torch_cudnn(q, k, v):
    try:
        import torch
        from torch.nn.attention import SDPBackend, sdpa_kernel
        from torch.nn.functional import scaled_dot_product_attention as sdpa
    except Exception:
        return None
    tq, tk, tv = (torch.from_dlpack(x) for x in (q, k, v))

    def fn():
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            return sdpa(tq, tk, tv, enable_gqa=True)
    try:
        fn()
    except Exception as exc:
        print("cudnn unavailable:", str(exc)[:100])
        return None
    return fn


def trace_call(call, extra_options=()):
    """Per-item stamps (blocks x 16 items x 7 slots, ns, int64; rows of unused items are 0) of the
    last of 5 back-to-back calls (the buffer cleared before it), with the trace build of the split
    kernel (and extra_options, e.g. the stream probe's -DCUATTN_DECODE_SKIP_MATH)."""
    from cuattn import _cuda

    saved_options, seen = module.TMA_OPTIONS, []
    real_get = module.get_kernel
    module.TMA_OPTIONS = saved_options + ("-DCUATTN_DECODE_TRACE",) + tuple(extra_options)
    module.get_kernel = lambda name, expr, options=(), **kw: (seen.append((name, expr, tuple(options))),
                                                              real_get(name, expr, options, **kw))[1]
    try:
        call()
        name, expr, options = [x for x in seen if "-DCUATTN_DECODE_TRACE" in x[2]][-1]
        ptr = _cuda._module(name, (expr,), options).get_global("decode_trace")
        buf = cupy.ndarray((1024, 16, 8), cupy.uint64, ptr)
        for _ in range(4):
            call()
        buf.fill(0)  # the last call's stamps only (blocks take different numbers of items per call)
        call()
        cupy.cuda.Device().synchronize()
        return buf.get().astype(np.int64), expr
    finally:
        module.TMA_OPTIONS, module.get_kernel = saved_options, real_get


def summarize(name, trace, expr, nbytes, finish=False):
    used = trace[:, :, 0] > 0
    t0 = trace[:, :, 0][used].min()
    st = np.where(used[..., None], trace - t0, 0)
    st[..., 5] = trace[..., 5]
    if not finish:
        st[..., 7] = trace[..., 7]  # the item
    st[..., 6] = np.where(trace[..., 6] > 0, st[..., 6], st[..., 2])  # slot 6: mma only
    items = st[used]  # (n, 6) in ns from the first start
    blocks = np.nonzero(used.any(axis=1))[0]
    block_end = np.array([st[b, used[b], 4].max() for b in blocks])
    block_start = np.array([st[b, 0, 0] for b in blocks])
    us = 1e-3
    q = lambda x: [round(float(v) * us, 2) for v in np.percentile(x, [0, 10, 50, 90, 100])]  # noqa: E731
    rec = dict(case=name, kernel=expr, blocks=len(blocks), items=int(used.sum()), span_us=float(block_end.max() * us),
               tbs_in_span=nbytes / (block_end.max() * 1e-9) / 1e12, start_skew_us=q(block_start),
               first_tile_us=q(items[:, 1] - items[:, 0]), stream_us=q(items[:, 2] - items[:, 1]),
               warps_done_us=q(items[:, 6] - items[:, 2]), write_partial_us=q(items[:, 3] - items[:, 6]), merge_check_us=q(items[:, 4] - items[:, 3]),
               block_end_us=q(block_end), tail_after_median_block_us=float((block_end.max() - np.median(block_end)) * us))
    slow = blocks[np.argsort(block_end)[-3:]]
    rec["slowest_blocks"] = [dict(block=int(b), sm=int(st[b, 0, 5]), end_us=float(st[b, used[b], 4].max() * us),
                                  stream_us=float((st[b, used[b], 2] - st[b, used[b], 1]).sum() * us)) for b in slow]
    # every item: block, SM, stamps 0-4 and 6 (us from the first start), for offline looks
    rec["raw"] = [[int(b), int(st[b, n, 5])] + [round(float(st[b, n, j]) * us, 3) for j in (0, 1, 2, 3, 4, 6)]
                  for b, n in zip(*np.nonzero(used))]
    if finish:  # slot 7: the warps' serial merge done (-DCUATTN_DECODE_TRACE_FINISH), appended to raw
        for row, (b, n) in zip(rec["raw"], zip(*np.nonzero(used))):
            row.append(round(float(st[b, n, 7]) * us, 3))
        rec["warp_merge_us"] = q(items[:, 7] - items[:, 6])
        rec["partial_store_us"] = q(items[:, 3] - items[:, 7])
    sm_of = st[:, 0, 5]
    per_sm = {}
    for b in blocks:
        per_sm.setdefault(int(sm_of[b]), []).append(float((st[b, used[b], 2] - st[b, used[b], 1]).sum() * us))
    counts = {}
    for sm, times in per_sm.items():
        counts.setdefault(len(times), []).append(np.mean(times))
    rec["stream_us_by_blocks_per_sm"] = {n: [len(v), round(float(np.mean(v)), 1), round(float(np.min(v)), 1),
                                             round(float(np.max(v)), 1)] for n, v in sorted(counts.items())}
    print(f"{name}: {expr}\n  span {rec['span_us']:.1f} us ({rec['tbs_in_span']:.2f} TB/s) blocks {len(blocks)} "
          f"items {rec['items']}; percentiles 0/10/50/90/100 in us:\n"
          + "".join(f"    {k:22s} {rec[k]}\n" for k in ("start_skew_us", "first_tile_us", "stream_us",
                                                         "warps_done_us", "write_partial_us", "merge_check_us", "block_end_us",
                                                         *(("warp_merge_us", "partial_store_us") if finish else ())))
          + f"    stream time per block by blocks on its SM: n -> [SMs, mean, min, max] {rec['stream_us_by_blocks_per_sm']}\n"
          + f"    tail after the median block {rec['tail_after_median_block_us']:.1f} us; slowest {rec['slowest_blocks']}",
          flush=True)
    return rec


def trace_main(out, only=""):
    results = []
    d = 128
    saved_kernel, saved_plan = module.KERNEL, module.plan_persistent
    no_math = ("-DCUATTN_DECODE_SKIP_MATH",)
    ahead = ("-DCUATTN_DECODE_L2_AHEAD=4",)
    tickets = ("-DCUATTN_DECODE_TICKETS",)  # the probe option (decode.cu, Work)
    finish = ("-DCUATTN_DECODE_TRACE_FINISH",)  # slot 7: the warps' merge done
    barrier = ("-DCUATTN_DECODE_BARRIER_STORE",)  # the rows' store phase as to the 41st session (probe)
    out_pf = ("-DCUATTN_DECODE_OUT_PREFETCH",)  # the item's output rows prefetched as it starts
    even = {"EVEN_SPLIT": True}  # even pieces (opt-in): one equal piece of the row groups' keys per SM
    cases = [  # name, B, Hq, Hkv, L, kernel, (splits, chunk) or None, module settings
        ("B1 32/8 L131072 mma", 1, 32, 8, 131072, "mma", None, {}),
        ("B1 32/8 L131072 mma even", 1, 32, 8, 131072, "mma", None, even),
        ("B1 32/8 L131072 tma", 1, 32, 8, 131072, "tma", None, {}),
        ("B1 32/8 L131072 mma chunk 8192", 1, 32, 8, 131072, "mma", (16, 8192), {}),
        ("B1 32/8 L131072 mma chunk 2048", 1, 32, 8, 131072, "mma", (64, 2048), {}),
        ("B1 32/32 L33001 tma", 1, 32, 32, 33001, "tma", None, {}),
        ("B1 32/32 L33001 tma even", 1, 32, 32, 33001, "tma", None, even),
        ("B16 32/8 L33001 mma", 16, 32, 8, 33001, "mma", None, {}),
        ("B16 32/8 L33001 mma even", 16, 32, 8, 33001, "mma", None, even),
        ("B64 32/32 L2048 tma", 64, 32, 32, 2048, "tma", None, {}),
        ("B64 32/32 L2048 tma equal splits", 64, 32, 32, 2048, "tma", None, {"EVEN_SPLIT": False}),
        # the default (cuattn.decode.even_pieces: two pieces per SM on this shape), equal splits, and
        # one block per SM with a 12-stage ring
        ("B16 32/32 L4096 tma", 16, 32, 32, 4096, "tma", None, {}),
        ("B16 32/32 L4096 tma equal splits", 16, 32, 32, 4096, "tma", None, {"EVEN_SPLIT": False}),
        ("B16 32/32 L4096 tma 1 block/SM 12 stages", 16, 32, 32, 4096, "tma", None, {"TMA_STAGES": 12}),
        ("B1 32/32 L33001 tma 1 block/SM 12 stages", 1, 32, 32, 33001, "tma", None, {"TMA_STAGES": 12}),
        # the math's share of a call (39th session): each with the consumers' math skipped (the
        # stream alone; wrong results), D 64's short row and a long GQA row
        ("B4 32/4 L32768 D64 mma", 4, 32, 4, 32768, "mma", None, {"_d": 64}),
        ("B4 32/4 L32768 D64 mma no math", 4, 32, 4, 32768, "mma", None, {"_d": 64, "_options": no_math}),
        ("B16 32/8 L33001 mma no math", 16, 32, 8, 33001, "mma", None, {"_options": no_math}),
        ("B8 32/8 L8192 mma", 8, 32, 8, 8192, "mma", None, {}),
        ("B8 32/8 L8192 mma no math", 8, 32, 8, 8192, "mma", None, {"_options": no_math}),
        # L2 prefetch 4 tiles ahead (-DCUATTN_DECODE_L2_AHEAD, probe option; the same bits)
        ("B4 32/4 L32768 D64 mma l2 ahead 4", 4, 32, 4, 32768, "mma", None, {"_d": 64, "_options": ahead}),
        ("B16 32/8 L33001 mma l2 ahead 4", 16, 32, 8, 33001, "mma", None, {"_options": ahead}),
        ("B8 32/8 L8192 mma l2 ahead 4", 8, 32, 8, 8192, "mma", None, {"_options": ahead}),
        # where the tensor-core kernel's item end spends its time (-DCUATTN_DECODE_TRACE_FINISH)
        ("B1 32/8 L131072 mma finish", 1, 32, 8, 131072, "mma", None, {"_options": finish}),
        ("B4 32/4 L32768 D64 mma finish", 4, 32, 4, 32768, "mma", None, {"_d": 64, "_options": finish}),
        ("B16 32/8 L33001 mma finish", 16, 32, 8, 33001, "mma", None, {"_options": finish}),
        # the same stamp moved into the rows' store phase (-DCUATTN_DECODE_TRACE_FINISH_AT=k: 1 the
        # warp's 1 / total written (warp 0: and the lse), 2 past the barrier after them in the store
        # phase of -DCUATTN_DECODE_BARRIER_STORE (the default to the 41st session); the default has no
        # such barrier, so 1 and 2 stamp the same point there)
        *((f"{name} finish at {k}, barrier store", b, 32, hkv, length, "mma", None,
           {**extra, "_options": finish + barrier + (f"-DCUATTN_DECODE_TRACE_FINISH_AT={k}",)})
          for k in (1, 2) for name, b, hkv, length, extra in (("B1 32/8 L131072 mma", 1, 8, 131072, {}),
                                                              ("B4 32/4 L32768 D64 mma", 4, 4, 32768, {"_d": 64}),
                                                              ("B16 32/8 L33001 mma", 16, 8, 33001, {}))),
        # the rows' store phase with the barrier for 1 / total, a column a thread
        # (-DCUATTN_DECODE_BARRIER_STORE, probe option, the same bits; the default to the 41st session)
        ("B1 32/8 L131072 mma finish, barrier store", 1, 32, 8, 131072, "mma", None, {"_options": finish + barrier}),
        ("B4 32/4 L32768 D64 mma finish, barrier store", 4, 32, 4, 32768, "mma", None,
         {"_d": 64, "_options": finish + barrier}),
        ("B16 32/8 L33001 mma finish, barrier store", 16, 32, 8, 33001, "mma", None, {"_options": finish + barrier}),
        # the same with the item's output rows prefetched as it starts (-DCUATTN_DECODE_OUT_PREFETCH)
        ("B1 32/8 L131072 mma finish, out prefetch", 1, 32, 8, 131072, "mma", None, {"_options": finish + out_pf}),
        ("B4 32/4 L32768 D64 mma finish, out prefetch", 4, 32, 4, 32768, "mma", None,
         {"_d": 64, "_options": finish + out_pf}),
        ("B16 32/8 L33001 mma finish, out prefetch", 16, 32, 8, 33001, "mma", None, {"_options": finish + out_pf}),
        # the split rows merged by tickets (-DCUATTN_DECODE_TICKETS, probe option; 40th session)
        ("B1 32/8 L131072 mma tickets", 1, 32, 8, 131072, "mma", None, {"_options": tickets}),
        ("B1 32/32 L33001 tma tickets", 1, 32, 32, 33001, "tma", None, {"_options": tickets}),
        ("B4 32/4 L32768 D64 mma tickets", 4, 32, 4, 32768, "mma", None, {"_d": 64, "_options": tickets}),
        ("B8 32/8 L8192 mma tickets", 8, 32, 8, 8192, "mma", None, {"_options": tickets}),
    ]
    for name, b, hq, hkv, length, kern, fixed, settings in cases:
        if not any(part in name for part in only.split("|")):
            continue
        settings = dict(settings)
        extra = settings.pop("_options", ())
        q, k, v, nbytes = inputs(b, hq, hkv, length, settings.pop("_d", d))
        module.KERNEL = kern
        if fixed:
            module.plan_persistent = lambda *a, f=fixed, **kw: f
        try:
            trace, expr = trace_call(with_settings(lambda q=q, k=k, v=v: cuattn.decode(q, k, v, alibi_slopes="default"),
                                                   **settings), extra)
        finally:
            module.KERNEL, module.plan_persistent = saved_kernel, saved_plan
        results.append(summarize(name, trace, expr, nbytes, finish="-DCUATTN_DECODE_TRACE_FINISH" in extra))
        del k, v, q
        cupy.get_default_memory_pool().free_all_blocks()
    (out / "decode_trace.json").write_text(json.dumps(dict(meta=run_metadata(unit="us"), rows=results), indent=1))
    print(f"wrote {out / 'decode_trace.json'}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--kernels", default="mma,tma")
    parser.add_argument("--trace", action="store_true", help="timelines of single calls instead of timings")
    parser.add_argument("--only", default="", help="with --trace: the cases whose name contains this text (alternatives separated by '|')")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.trace:
        return trace_main(out, args.only)
    results = []
    d = 128
    kernels = args.kernels.split(",")
    saved_kernel, saved_plan = module.KERNEL, module.plan_persistent

    print("-- 1. geometry (same bytes as B1 Hq32/Hkv8 L131072)")
    layouts = [("B1 Hkv8 L131072", 1, 8, 131072, 0), ("B1 Hkv8 L131072 sliced (stride L+320)", 1, 8, 131072, 320),
               ("B1 Hkv8 L130000", 1, 8, 130000, 0), ("B4 Hkv8 L32768", 4, 8, 32768, 0),
               ("B2 Hkv16 L32768 (Hq 64)", 2, 16, 32768, 0)]
    for name, b, hkv, length, pad in layouts:
        q, k, v, nbytes = inputs(b, 4 * hkv, hkv, length, d, pad)
        for kern in kernels:
            module.KERNEL = kern
            measure(f"{name} [{kern}]", lambda: cuattn.decode(q, k, v, alibi_slopes="default"), nbytes, results,
                    plan=module.plan_persistent(b, hkv, 1, length, 264))
        module.KERNEL = saved_kernel
        fn = torch_cudnn(q, k, v)
        if fn is not None:
            t = time_calls(fn, **REPS)
            results.append(dict(case=f"{name} [torch cudnn]", call_us=t * 1e6, call_tbs=nbytes / t / 1e12))
            print(f"{name + ' [torch cudnn]':58s} call {t * 1e6:7.1f} us {nbytes / t / 1e12:5.2f} TB/s", flush=True)
        del k, v, q
        cupy.get_default_memory_pool().free_all_blocks()

    print("-- 2. partition of B1 Hkv8 L131072 (grid 264: 2 blocks x 132 SMs)")
    q, k, v, nbytes = inputs(1, 32, 8, 131072, d)
    for kern in kernels:
        module.KERNEL = kern
        for chunk in (8192, 4224, 4096, 2048, 1408, 1024, 512):
            splits = -(-131072 // chunk)
            module.plan_persistent = lambda *a, s=splits, c=chunk, **kw: (s, c)
            try:
                measure(f"chunk {chunk} ({splits} splits, {8 * splits} items) [{kern}]",
                        lambda: cuattn.decode(q, k, v, alibi_slopes="default"), nbytes, results)
            finally:
                module.plan_persistent = saved_plan
    module.KERNEL = saved_kernel
    del k, v, q
    cupy.get_default_memory_pool().free_all_blocks()

    print("-- 3. paged row and the value check's host sync (B16 Hq32/Hkv8 L32768)")
    q, k, v, nbytes = inputs(16, 32, 8, 32768, d)
    kp, vp, table = paged_copy(k, v, 256, np.random.default_rng(0))
    lens = cupy.full((16,), 32768, dtype=cupy.int32)
    for kern in kernels:
        module.KERNEL = kern
        measure(f"paged 256-key pages [{kern}]", lambda: cuattn.decode(q, kp, vp, block_table=table, alibi_slopes="default"),
                nbytes, results)
        measure(f"contiguous, cache_seqlens given [{kern}]",
                lambda: cuattn.decode(q, k, v, cache_seqlens=lens, alibi_slopes="default"), nbytes, results)
        measure(f"contiguous, no cache_seqlens [{kern}]", lambda: cuattn.decode(q, k, v, alibi_slopes="default"),
                nbytes, results)
    module.KERNEL = saved_kernel
    (out / "decode_probe.json").write_text(json.dumps(dict(meta=run_metadata(unit="us, TB/s"), rows=results), indent=1))
    print(f"wrote {out / 'decode_probe.json'}")


if __name__ == "__main__":
    main()
