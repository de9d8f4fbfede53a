"""CPU GLA benchmark: cuattn.gla on NumPy arrays (Numba kernels), per dtype and mode.

Run:  python benchmarks/cpu_gla.py [--out DIR] [--repeats N]

Rows: B 1, H 8, T 4096, K = V 64 and B 2, H 4, T 2048, K = V 128; random normal q, k, v, gates
log(sigmoid(normal)); float32, float16, bfloat16 inputs; chunk and recurrent modes. Each 16-bit
row is timed as cuattn runs it (inputs read as their bits and widened in the kernels, outputs
rounded to 16 bits as they are written) and as the CPU backend ran before the 19th session's
change: the inputs copied to float32 first, the float32 output cast to the input dtype after
(both give the same bits). Timing: one warm-up call, then the median of ``--repeats`` calls.
Results go to DIR/cpu_gla.json (default benchmarks/results/).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cpu_attention import cpu_args, median_time, write_cpu_results  # noqa: E402

import cuattn  # noqa: E402
from cuattn._checks import CPU_DTYPES, FLOAT64, dtype_name  # noqa: E402

SHAPES = [(1, 8, 4096, 64), (2, 4, 2048, 128)]  # B, H, T, K = V


def main():
    args = cpu_args(__doc__, 7)
    rng = np.random.default_rng(0)
    rows = []
    for b, h, t, d in SHAPES:
        x = [rng.standard_normal((b, h, t, d)).astype(np.float32) for _ in range(3)]
        g = np.log(1.0 / (1.0 + np.exp(-rng.standard_normal((b, h, t, d))))).astype(np.float32)
        for dtype in [x for x in CPU_DTYPES if x != FLOAT64]:
            q, k, v, gk = (a.astype(dtype) for a in (*x, g))
            for mode in ("chunk", "recurrent"):
                def widened():
                    o, _ = cuattn.gla(*(a.astype(np.float32) for a in (q, k, v, gk)), mode=mode)
                    return o.astype(dtype)
                t_in = median_time(lambda: cuattn.gla(q, k, v, gk, mode=mode), args.repeats)
                t_wide = median_time(widened, args.repeats) if dtype != np.float32 else t_in
                row = dict(B=b, H=h, T=t, K=d, V=d, dtype=dtype_name(dtype), mode=mode, ms=t_in * 1e3,
                           float32_copy_first_ms=t_wide * 1e3)
                rows.append(row)
                print(f"B{b} H{h} T{t} K=V{d} {row['dtype']:>8} {mode:>9}: {row['ms']:.1f} ms"
                      + (f" (float32 copy first {row['float32_copy_first_ms']:.1f} ms)" if dtype != np.float32 else ""),
                      flush=True)
    write_cpu_results(args, "cpu_gla", rows=rows)


if __name__ == "__main__":
    main()
