"""Does the host's pace change the GPU time of back-to-back attention calls?

Run on a GPU machine:  python benchmarks/attention_pace_probe.py [--out DIR] [--pace 0,20,60,150]

Why (30th session, benchmarks/NOTES.md): a launch-plan cache cut cuattn.attention's host time per
call from 140-210 us to 16-26 us, and bench-attention's pipelined rates then fell 2-11% on rows of
180-2000 us of GPU work a call while the CUDA-graph (GPU-only) rates stayed within 2% and torch's
did not move. A faster host should not slow the GPU. This probe separates the candidates: each
call is followed by a host busy-wait of PACE us (0: as fast as the host goes), and for each row,
implementation and pace it reports the pipelined time per call (benchmarks/common.time_calls), the
median and largest time between CUDA events recorded after every call of a run of 30 (each call's
GPU time plus any idle GPU time before it), and the CUDA-graph time. If cuattn's pipelined time
grows as PACE falls while torch's does not, the fast host itself costs GPU time; if the per-call
event gaps show idle time, the GPU waits on the host or the driver.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cupy  # noqa: E402
from attention import make_inputs, torch_impls  # noqa: E402
from common import cupy_graph_ms, host_time, out_dir, results_parser, run_metadata, time_calls, torch_graph_ms  # noqa: E402

import cuattn  # noqa: E402

ROWS = [  # dtype, D, S, B, H, causal: the tie row and the two rows that moved most
    ("float16", 128, 512, 32, 16, True),
    ("float16", 128, 2048, 8, 16, False),
    ("bfloat16", 128, 8192, 2, 16, True),
]


def paced(fn, pace_us: float):
    """fn followed by a host busy-wait of pace_us microseconds."""
    if pace_us <= 0:
        return fn

    def call():
        out = fn()
        until = time.perf_counter() + pace_us * 1e-6
        while time.perf_counter() < until:
            pass
        return out

    return call


def event_gaps(fn, calls: int = 30):
    """(median, max) ms between events recorded after each of `calls` back-to-back calls (led by
    one untimed call so the GPU is busy when the first event is recorded)."""
    fn()
    cupy.cuda.Device().synchronize()
    events = [cupy.cuda.Event() for _ in range(calls + 1)]
    fn()
    events[0].record()
    for e in events[1:]:
        fn()
        e.record()
    events[-1].synchronize()
    gaps = [cupy.cuda.get_elapsed_time(a, b) for a, b in zip(events, events[1:])]
    return float(np.median(gaps)), float(np.max(gaps))


def main():
    parser = results_parser(__doc__)
    parser.add_argument("--pace", default="0,20,60,150", help="host busy-waits after each call, us")
    args = parser.parse_args()
    out = out_dir(args)
    paces = [float(p) for p in args.pace.split(",")]
    meta = run_metadata(paces_us=paces)
    rows = []
    print(f"{meta['device']}: ms per call; pipelined / event gap median (max) at each pace; graph")
    for dtype_name, d, s, b, h, causal in ROWS:
        t, c = make_inputs(b, h, s, d, dtype_name)
        impls = {"cuattn": lambda c=c: cuattn.attention(*c, causal=causal)}
        torch_fns = torch_impls(*t, causal) if t is not None else {}
        if "torch_flash" in torch_fns:
            impls["torch_flash"] = torch_fns["torch_flash"]
        for name, fn in impls.items():
            fn()
            row = dict(dtype=dtype_name, D=d, S=s, B=b, H=h, causal=causal, impl=name,
                       host_us=host_time(fn) * 1e6, paces={})
            for pace in paces:
                pfn = paced(fn, pace)
                pipelined = time_calls(pfn) * 1e3
                gap_median, gap_max = event_gaps(pfn)
                row["paces"][str(pace)] = dict(pipelined_ms=pipelined, gap_median_ms=gap_median, gap_max_ms=gap_max)
            try:
                row["graph_ms"] = cupy_graph_ms(fn) if name == "cuattn" else torch_graph_ms(fn)
            except Exception as exc:  # a call that cannot be captured
                row["graph_ms"] = None
                print(f"  {name}: no graph ({str(exc).splitlines()[0][:80]})")
            rows.append(row)
            cells = "  ".join(f"{p:g}us {v['pipelined_ms']:.4f}/{v['gap_median_ms']:.4f}({v['gap_max_ms']:.4f})"
                              for p, v in zip(paces, row["paces"].values()))
            graph = "-" if row["graph_ms"] is None else f"{row['graph_ms']:.4f}"
            print(f"{dtype_name:9} D{d} S{s} {b}x{h} {'causal' if causal else 'full':6} {name:11} "
                  f"host {row['host_us']:.0f}us  {cells}  graph {graph}")
    path = out / "attention_pace_probe.json"
    path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
