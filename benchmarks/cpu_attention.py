"""CPU attention benchmark: cuattn (Numba kernel) vs NumPy materialized attention (and torch SDPA).

Run:  python benchmarks/cpu_attention.py [--out DIR] [--repeats N]

Rows are ANCHORS.md's CPU table (float32, random normal inputs), causal and not. NumPy
materialized is the textbook version: ``s = scale * q @ k^T`` (masked with -inf when causal),
``softmax`` along the keys, ``@ v``, all float32. torch CPU SDPA is timed when torch imports
(it is not a dependency of cuattn). Timing: one warm-up call, then the median of ``--repeats``
calls. GFLOP/s = 4 * B * H * S * S * D / time, halved when causal. Results go to
DIR/cpu_attention.json (default benchmarks/results/).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numba  # noqa: E402

import cuattn  # noqa: E402

try:
    import torch
except ImportError:
    torch = None

GRID = [(1, 8, 1024, 64), (1, 8, 4096, 64), (2, 16, 2048, 128)]  # (B, H, S, D)


def numpy_materialized(q, k, v, causal, scale):
    s = np.float32(scale) * (q @ k.swapaxes(-1, -2))
    if causal:
        sq, sk = s.shape[-2:]
        s = np.where(np.tri(sq, sk, sk - sq, dtype=bool), s, np.float32(-np.inf))
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    return p @ v


def median_time(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def cpu_args(doc, repeats):
    """The command line of a CPU benchmark script: --out DIR (default benchmarks/results/) and
    --repeats N (default ``repeats``)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--repeats", type=int, default=repeats)
    return parser.parse_args()


def write_cpu_results(args, name, extra=None, **payload):
    """DIR/name.json: the payload with the run's metadata (machine, threads, versions, date)."""
    meta = dict(machine=platform.processor() or platform.machine(), cpus=os.cpu_count(),
                numba_threads=numba.get_num_threads(), numpy=np.__version__, numba=numba.__version__,
                **(extra or {}), repeats=args.repeats, date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(dict(meta=meta, **payload), indent=1) + "\n")


def main():
    args = cpu_args(__doc__, 5)
    rng = np.random.default_rng(0)
    rows = []
    header = f"{'B x H':>6} {'S':>5} {'D':>4} {'causal':>6} | {'cuattn':>7} {'numpy':>7} {'torch':>7} | {'x numpy':>7} {'x torch':>7}"
    print("GFLOP/s, float32\n" + header)
    for b, h, s, d in GRID:
        q, k, v = (rng.standard_normal((b, h, s, d), dtype=np.float32) for _ in range(3))
        scale = d**-0.5
        for causal in (False, True):
            flops = 4 * b * h * s * s * d / (2 if causal else 1)
            t_cuattn = median_time(lambda: cuattn.attention(q, k, v, causal=causal), args.repeats)
            t_numpy = median_time(lambda: numpy_materialized(q, k, v, causal, scale), args.repeats)
            t_torch = None
            if torch is not None:
                tq, tk, tv = (torch.from_numpy(x) for x in (q, k, v))
                sdpa = torch.nn.functional.scaled_dot_product_attention
                t_torch = median_time(lambda: sdpa(tq, tk, tv, is_causal=causal), args.repeats)
            row = dict(batch=b, heads=h, seqlen=s, head_dim=d, causal=causal, dtype="float32",
                       cuattn_gflops=flops / t_cuattn / 1e9, numpy_gflops=flops / t_numpy / 1e9,
                       torch_gflops=None if t_torch is None else flops / t_torch / 1e9)
            rows.append(row)
            torch_text = f"{row['torch_gflops']:7.1f}" if t_torch else f"{'-':>7}"
            ratio_torch = f"{t_torch / t_cuattn:7.2f}" if t_torch else f"{'-':>7}"
            print(f"{b:>2} x {h:<2} {s:>5} {d:>4} {str(causal):>6} | {row['cuattn_gflops']:7.1f} "
                  f"{row['numpy_gflops']:7.1f} {torch_text} | {t_numpy / t_cuattn:7.2f} {ratio_torch}", flush=True)
    write_cpu_results(args, "cpu_attention", dict(torch=None if torch is None else torch.__version__), rows=rows)


if __name__ == "__main__":
    main()
