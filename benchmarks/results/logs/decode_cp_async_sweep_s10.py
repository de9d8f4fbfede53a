"""10th session: cp.async producer of the mma kernel vs tensor copies, ring depths, rows incl. MHA."""
import json, sys, os, time
sys.path.insert(0, "benchmarks")
import numpy as np, cupy
import cuattn
from common import time_calls
import decode as bench
dm = sys.modules["cuattn.decode"]
ROWS = [(1, 32, 32, 128, 33001, False), (1, 32, 8, 128, 131072, False), (16, 32, 32, 128, 4096, False),
        (16, 32, 8, 128, 33001, False), (64, 32, 32, 128, 2048, False), (16, 32, 8, 128, 32768, True),
        (4, 32, 4, 64, 32768, False), (4, 32, 4, 64, 131072, False), (8, 32, 8, 128, 8192, False),
        (16, 32, 4, 128, 33001, False)]
rng = np.random.default_rng(0)
out = []
reps = dict(min_batches=10, min_seconds=0.15)
for b, hq, hkv, d, L, paged in ROWS:
    t, c = bench.make_inputs(b, hq, hkv, d, L)
    q, k, v = c
    nbytes = 2 * b * hkv * L * d * 2
    kw = {}
    if paged:
        k, v, table = bench.paged_copy(k, v, bench.PAGE_SIZE, rng)
        kw["block_table"] = table
    row = dict(B=b, Hq=hq, Hkv=hkv, D=d, L=L, paged=paged)
    def tm():
        f = lambda: cuattn.decode(q, k, v, alibi_slopes="default", **kw)
        f()
        return round(nbytes / time_calls(f, **reps) / 1e12, 3)
    ref = None
    for kern, copy, stages, steal in [("tma", "tensor", None, False), ("mma", "tensor", None, False),
                                      ("mma", "cp.async", None, False), ("mma", "cp.async", 2, False),
                                      ("mma", "cp.async", 4, False), ("mma", "cp.async", 6, False),
                                      ("mma", "cp.async", None, True)]:
        dm.KERNEL, dm.MMA_COPY, dm.MMA_STAGES, dm.STEAL = kern, copy, stages, steal
        try:
            row[f"{kern}/{copy}/{stages}/{'steal' if steal else ''}"] = tm()
        except Exception as e:
            row[f"{kern}/{copy}/{stages}"] = str(e)[:80]
    dm.KERNEL, dm.MMA_COPY, dm.MMA_STAGES, dm.STEAL = None, "tensor", None, False
    if t is not None:
        for name, (fn, note) in bench.torch_impls(*t, cuattn.alibi_slopes(hq)).items():
            if name == "torch_cudnn" or name == "torch_flash":
                row[name] = round(nbytes / time_calls(fn, **reps) / 1e12, 3)
    print(row, flush=True)
    out.append(row)
    del t, c, q, k, v
    cupy.get_default_memory_pool().free_all_blocks()
json.dump(out, open(os.path.join(os.environ.get("OUT", "."), "cp_sweep.json"), "w"), indent=1)
