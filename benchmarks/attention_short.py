"""Short prefill attention calls: cuattn with and without launch plans vs torch SDPA.

Run on a GPU machine:  python benchmarks/attention_short.py [--out DIR] [--rounds 3]

A call of tens of microseconds of GPU work runs at the host's pace: cuattn's full path (argument
checks, planning, CuPy launch) costs 100-200 us of Python a call, more than such a call's GPU
time. Calls up to ``cuattn.attention.PLAN_MAX_WORK`` keep a launch plan per layout and skip that
work (31st session). For each row this reports, per call: the pipelined time (common.time_calls,
what a stream of such calls achieves) and the host time (common.host_time) of cuattn with plans
("plans") and with them off (MAX_PLANS = 0: every call takes the full path, as before plans),
the GPU-only time (CUDA-graph replay) of cuattn and torch's pipelined times (flash and cuDNN).
The two cuattn settings alternate for --rounds rounds (medians kept) so drift hits both alike.
Results: DIR/attention_short.json and a plot attention_short.png (microseconds per call).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cupy  # noqa: E402
from attention import make_inputs, torch_impls  # noqa: E402
from common import bar_chart, cupy_graph_ms, host_time, out_dir, results_parser, run_metadata, time_calls  # noqa: E402

import cuattn  # noqa: E402

attn_mod = sys.modules["cuattn.attention"]

ROWS = [  # dtype, D, S, B, H, causal: a few heads of a small model up to the plan threshold and past it
    ("float16", 128, 128, 1, 32, True),
    ("float16", 128, 256, 4, 32, True),
    ("bfloat16", 64, 1024, 2, 32, True),
    ("bfloat16", 128, 512, 8, 16, True),
    ("float16", 256, 512, 2, 8, False),
    ("bfloat16", 128, 1024, 8, 16, False),  # past PLAN_MAX_WORK: both settings take the full path
]


def cuattn_fn(q, k, v, causal):
    return lambda: cuattn.attention(q, k, v, causal=causal)


def measure(fn):
    return time_calls(fn) * 1e6, host_time(fn, 200) * 1e6


def main():
    parser = results_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    out = out_dir(args)
    default_plans = attn_mod.MAX_PLANS
    rows = []
    print(f"{cupy.cuda.runtime.getDeviceProperties(0)['name'].decode()}: us per call (pipelined; host in brackets)")
    print(f"{'row':34s} {'plans':>16s} {'no plans':>16s} {'graph':>7s} {'flash':>7s} {'cudnn':>7s} "
          f"{'x best torch':>12s}")
    for dtype, d, s, b, h, causal in ROWS:
        tin, (q, k, v) = make_inputs(b, h, s, d, dtype)
        work = b * h * s * s * 2 * d
        fn = cuattn_fn(q, k, v, causal)
        label = f"{dtype} D{d} S{s} {b}x{h} {'causal' if causal else 'full'}"
        runs = {"plans": [], "no_plans": []}
        try:
            for _ in range(args.rounds):
                for name, max_plans in (("plans", default_plans), ("no_plans", 0)):
                    attn_mod.MAX_PLANS = max_plans
                    attn_mod._PLANS.clear()
                    runs[name].append(measure(fn))
        finally:
            attn_mod.MAX_PLANS = default_plans
        row = {"dtype": dtype, "D": d, "S": s, "B": b, "H": h, "causal": causal, "work": work,
               "planned": work <= attn_mod.PLAN_MAX_WORK}
        for name, vals in runs.items():
            row[f"cuattn_{name}_us"] = float(np.median([p for p, _ in vals]))
            row[f"cuattn_{name}_host_us"] = float(np.median([hst for _, hst in vals]))
        row["cuattn_graph_us"] = cupy_graph_ms(fn) * 1e3
        if tin is not None:
            for name, tfn in torch_impls(*tin, causal).items():
                row[f"{name}_us"] = time_calls(tfn) * 1e6
        torch_best = min([row[key] for key in ("torch_flash_us", "torch_cudnn_us") if key in row], default=None)
        row["x_best_torch"] = torch_best / row["cuattn_plans_us"] if torch_best else None
        rows.append(row)
        print(f"{label:34s} {row['cuattn_plans_us']:7.1f} ({row['cuattn_plans_host_us']:5.1f}) "
              f"{row['cuattn_no_plans_us']:7.1f} ({row['cuattn_no_plans_host_us']:5.1f}) {row['cuattn_graph_us']:7.1f} "
              f"{row.get('torch_flash_us', float('nan')):7.1f} {row.get('torch_cudnn_us', float('nan')):7.1f} "
              f"{row['x_best_torch'] or float('nan'):12.2f}", flush=True)
    meta = run_metadata(rounds=args.rounds, plan_max_work=attn_mod.PLAN_MAX_WORK, max_plans=default_plans)
    (out / "attention_short.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    labels = [f"{r['dtype'][:4]} D{r['D']} S{r['S']}\n{r['B']}x{r['H']} {'c' if r['causal'] else 'f'}" for r in rows]
    names = [n for n in ("cuattn_plans_us", "cuattn_no_plans_us", "cuattn_graph_us", "torch_flash_us", "torch_cudnn_us")
             if all(n in r for r in rows)]
    bar_chart(out / "attention_short.png", rows, names, labels, "us per call (lower is better)",
              "short attention calls, pipelined (graph: GPU only)")
    print(f"wrote {out / 'attention_short.json'}")


if __name__ == "__main__":
    main()
