"""44th session, one-off (GPU): does the bulk-copy kernel's whole-row plan (TMA_WHOLE_ROWS) depend
on where K and V lie in memory? decode.py read it at 2.959 TB/s on B 16 32/32 L 4096 (pieces 3.113),
the stream probe at 3.129 (pieces 3.108-3.110). K and V are carved out of one buffer at several
offsets; each placement times the default (whole rows) and TMA_WHOLE_ROWS False (pieces), 3
interleaved rounds, best per column. Writes $OUT/whole_rows_placement.json."""
import json
import os
import sys

import cupy

sys.path.insert(0, "benchmarks")
from common import time_calls  # noqa: E402

import cuattn  # noqa: E402

mod = sys.modules["cuattn.decode"]
out = {}
for b, h, length in ((16, 32, 4096), (8, 32, 8192)):
    n = b * h * length * 128
    for k_off, v_gap in ((0, 0), (8, 0), (65536, 8), (524288 + 64, 1 << 20), (3 * 1000003 // 8 * 8, 4104)):
        buf = cupy.empty(2 * n + k_off + v_gap + 64, dtype=cupy.float16)
        k = buf[k_off:k_off + n].reshape(b, h, length, 128)
        v = buf[k_off + n + v_gap:k_off + 2 * n + v_gap].reshape(b, h, length, 128)
        k[...] = cupy.random.standard_normal(k.shape, dtype=cupy.float32).astype(cupy.float16)
        v[...] = cupy.random.standard_normal(v.shape, dtype=cupy.float32).astype(cupy.float16)
        q = cupy.random.standard_normal((b, h, 1, 128), dtype=cupy.float32).astype(cupy.float16)
        best = {}
        for _ in range(3):
            for name, rule in (("whole", True), ("pieces", False)):
                mod.TMA_WHOLE_ROWS = rule
                mod._PLANS.clear()
                t = time_calls(lambda: cuattn.decode(q, k, v, alibi_slopes="default"), min_batches=10, min_seconds=0.2)
                best[name] = min(best.get(name, t), t)
        mod.TMA_WHOLE_ROWS = True
        label = f"B{b} {h}/{h} L{length} k_off {k_off} v_gap {v_gap}"
        out[label] = {name: 2 * n * 2 / t / 1e12 for name, t in best.items()}
        print(label, {name: round(x, 3) for name, x in out[label].items()}, flush=True)
        buf = k = v = q = None
        cupy.get_default_memory_pool().free_all_blocks()
with open(os.path.join(os.environ.get("OUT", "."), "whole_rows_placement.json"), "w") as f:
    json.dump(out, f, indent=1)
