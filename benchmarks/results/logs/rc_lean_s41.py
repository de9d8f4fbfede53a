# 41st session: the script run on the device under compute-sanitizer (memcheck and racecheck): one
# decode call each on the tensor-core kernel with the opt-in -DCUATTN_DECODE_LEAN_STORE (no
# barrier for 1 / total, four columns a thread): split rows on the deep ring with slabs (B 1 32/8), D 64 (two
# blocks, slabs), row groups written straight to the output (B 16 32/8 L 1000, bf16), a padded
# head dim (D 96 on the 128 kernel: a store a column), 8 query rows a group (Sq 2), paged; its
# plan and its error on the float64 reference printed.
import sys, numpy as np, cupy as cp, cuattn
from cuattn._checks import BFLOAT16
m = sys.modules["cuattn.decode"]
m.TMA_OPTIONS = m.TMA_OPTIONS + ("-DCUATTN_DECODE_LEAN_STORE",)
rng = np.random.default_rng(0)
for b, hq, hkv, sq, L, d, dt, page in [(1, 32, 8, 1, 4096, 128, np.float16, 0), (2, 8, 2, 1, 2000, 64, np.float16, 0),
                                       (16, 32, 8, 1, 1000, 128, BFLOAT16, 0), (3, 16, 4, 1, 3001, 96, np.float16, 0),
                                       (2, 16, 4, 2, 1500, 128, np.float16, 0), (2, 16, 4, 1, 2048, 128, np.float16, 256)]:
    q, k, v = (rng.standard_normal(s).astype(np.float32).astype(dt) for s in ((b, hq, sq, d), (b, hkv, L, d), (b, hkv, L, d)))
    kw = dict(alibi_slopes="default")
    kd, vd = k, v
    if page:
        kd, vd, kw["block_table"] = cuattn.paged_cache(k, v, page, seed=rng)
    dev = {key: (cp.asarray(x) if isinstance(x, np.ndarray) else x) for key, x in kw.items()}
    o = cuattn.decode(cp.asarray(q), cp.asarray(kd), cp.asarray(vd), **dev)
    ref = cuattn.reference.decode(q, kd, vd, **kw)
    plan = [p for p in m._PLANS.values() if hasattr(p, "even_rule")][-1]
    err = np.linalg.norm(o.get().astype(np.float64) - ref) / np.linalg.norm(ref)
    print(plan.expression, m.MMA_SLABS_OPTION in plan.options, "-DCUATTN_DECODE_LEAN_STORE" in plan.options,
          f"err {err:.1e}", flush=True)
