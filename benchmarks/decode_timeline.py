"""Kernel timelines of back-to-back decode calls: cuattn vs torch cuDNN and flash, from CUPTI.

Run on a GPU machine with torch:  python benchmarks/decode_timeline.py [--out DIR] [--calls N]

For each row of benchmarks/decode.py, N calls of each implementation (cuattn with ALiBi
"default", torch SDPA cuDNN and flash without bias) run back to back under torch.profiler, which
records every kernel on the GPU (CuPy's launches too) with its start, duration, grid, block,
registers and shared memory. Per implementation it reports: the kernels of one call (name,
launch configuration, median duration), the median period (start of one call's first kernel to
the next call's), the gap between one call's last kernel end and the next call's first kernel
start (negative: the next call's kernel began before the previous one ended, as programmatic
dependent launch allows), and the TB/s of the period. The question it answers: does the best
torch backend beat cuattn by streaming faster, or by overlapping or shortening what lies
between the streaming of two calls?
Beside them, the row's read ceiling: a plain kernel that streams the same K and V bytes once with
16-byte non-caching loads (best of a few grid shapes).
Writes DIR/decode_timeline.json (default benchmarks/results/).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cupy  # noqa: E402
from common import out_dir, results_parser, run_metadata, time_calls  # noqa: E402
from decode import PAGE_SIZE, ROWS, make_inputs, paged_copy, torch_impls  # noqa: E402

import cuattn  # noqa: E402


READ_SOURCE = r"""
extern "C" __global__ void stream_read(const uint4* __restrict__ a, const uint4* __restrict__ b, long long n,
                                       unsigned* out) {
    // every 16-byte piece of a and b read once (4 loads of each in flight per thread), folded into
    // one word so the loads are not dead
    unsigned acc = 0;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += 4 * stride) {
        uint4 x[8];
#pragma unroll
        for (int u = 0; u < 4; ++u) {
            const long long j = i + u * stride;
            if (j < n) {
                asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                             : "=r"(x[u].x), "=r"(x[u].y), "=r"(x[u].z), "=r"(x[u].w) : "l"(a + j));
                asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                             : "=r"(x[4 + u].x), "=r"(x[4 + u].y), "=r"(x[4 + u].z), "=r"(x[4 + u].w) : "l"(b + j));
            } else {
                x[u] = x[4 + u] = make_uint4(0, 0, 0, 0);
            }
        }
#pragma unroll
        for (int u = 0; u < 8; ++u) acc ^= x[u].x ^ x[u].y ^ x[u].z ^ x[u].w;
    }
    if (acc == 0x9e3779b9u) out[0] = acc;
}
"""


def read_ceiling(k, v):
    """TB/s of the best plain streaming read of k and v (16-byte non-caching loads), over grid sizes."""
    kern = cupy.RawKernel(READ_SOURCE, "stream_read")
    sink = cupy.zeros(1, cupy.uint32)
    n = k.nbytes // 16
    sms = cupy.cuda.Device().attributes["MultiProcessorCount"]
    best = {}
    for blocks_per_sm, threads in ((2, 1024), (4, 512), (8, 256), (16, 128), (4, 1024)):
        grid = sms * blocks_per_sm
        t = time_calls(lambda: kern((grid,), (threads,), (k, v, np.int64(n), sink)), min_batches=10, min_seconds=0.2)
        best[f"{blocks_per_sm}x{threads}"] = 2 * k.nbytes / t / 1e12
    return max(best.values()), best


def kernel_events(fn, calls):
    """CUPTI kernel records (name, start us, duration us, args) of `calls` back-to-back fn()."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(path))
        trace = json.loads(path.read_text())
    events = [e for e in trace.get("traceEvents", []) if e.get("cat") == "kernel"]
    events.sort(key=lambda e: e["ts"])
    return [(e["name"], float(e["ts"]), float(e["dur"]), e.get("args", {})) for e in events]


def summarize(events, calls, nbytes):
    """Split the records into calls (kernels per call = len / calls) and summarize them."""
    if not events or len(events) % calls:
        return {"error": f"{len(events)} kernel records for {calls} calls"}
    per = len(events) // calls
    groups = [events[i * per:(i + 1) * per] for i in range(calls)]
    kernels = []
    for j in range(per):
        name, _, _, args = groups[0][j]
        kernels.append(dict(name=name[:160], grid=args.get("grid"), block=args.get("block"),
                            registers=args.get("registers per thread"),
                            shared_bytes=args.get("shared memory"),
                            blocks_per_sm=args.get("blocks per SM"),
                            occupancy=args.get("est. achieved occupancy %"),
                            median_us=float(np.median([g[j][2] for g in groups]))))
    starts = np.array([g[0][1] for g in groups])
    ends = np.array([max(e[1] + e[2] for e in g) for g in groups])
    period = float(np.median(np.diff(starts)))
    gaps = starts[1:] - ends[:-1]
    busy = float(np.median(ends - starts))
    return dict(kernels=kernels, period_us=period, call_span_us=busy, gap_us_median=float(np.median(gaps)),
                gap_us_min=float(gaps.min()), tbps_period=nbytes / period / 1e6,
                tbps_span=nbytes / busy / 1e6)


def main():
    args = results_parser(__doc__, calls=30).parse_args()
    out = out_dir(args)
    rng = np.random.default_rng(0)
    rows = []
    for b, hq, hkv, d, length, paged in ROWS:
        t, c = make_inputs(b, hq, hkv, d, length)
        if t is None:
            sys.exit("decode_timeline.py needs torch (its profiler records the kernels)")
        q, k, v = c
        nbytes = 2 * k.nbytes
        kw = {}
        kc, vc = k, v
        if paged:
            kc, vc, table = paged_copy(k, v, PAGE_SIZE, rng)
            kw["block_table"] = table
        impls = {"cuattn_alibi": lambda q=q, kc=kc, vc=vc: cuattn.decode(q, kc, vc, alibi_slopes="default", **kw)}
        for name, (fn, _) in torch_impls(*t, cuattn.alibi_slopes(hq)).items():
            if name != "torch_alibi_bias":
                impls[name] = fn
        row = dict(B=b, Hq=hq, Hkv=hkv, D=d, L=length, paged=paged, bytes=nbytes)
        row["read_ceiling_tbps"], row["read_ceiling_configs"] = read_ceiling(k, v)
        print(f"B{b} {hq}/{hkv} D{d} L{length}: plain streaming read of K and V {row['read_ceiling_tbps']:.3f} TB/s "
              f"{ {c: round(x, 3) for c, x in row['read_ceiling_configs'].items()} }", flush=True)
        for name, fn in impls.items():
            row[name] = s = summarize(kernel_events(fn, args.calls), args.calls, nbytes)
            if "error" in s:
                print(f"B{b} {hq}/{hkv} D{d} L{length}{' paged' if paged else ''} {name}: {s['error']}")
                continue
            ks = "; ".join(f"{kk['name'][:48]} grid {kk['grid']} block {kk['block']} regs {kk['registers']} "
                           f"smem {kk['shared_bytes']} {kk['median_us']:.1f} us" for kk in s["kernels"])
            print(f"B{b} {hq}/{hkv} D{d} L{length}{' paged' if paged else ''} {name}: period {s['period_us']:.1f} us "
                  f"({s['tbps_period']:.3f} TB/s), span {s['call_span_us']:.1f} us ({s['tbps_span']:.3f}), "
                  f"gap median {s['gap_us_median']:.2f} min {s['gap_us_min']:.2f} us | {ks}", flush=True)
        rows.append(row)
        del t, c, q, k, v, kc, vc, impls
        cupy.get_default_memory_pool().free_all_blocks()
    result = {"meta": run_metadata(unit="us; TB/s = bytes of K and V / time"), "rows": rows}
    (out / "decode_timeline.json").write_text(json.dumps(result, indent=1))
    print(f"wrote {out / 'decode_timeline.json'}")


if __name__ == "__main__":
    main()
