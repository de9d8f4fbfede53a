# 40th session: the script run on the device under compute-sanitizer (racecheck: B 1 32/8 L 4096 D 128
# and B 2 8/2 L 2000 D 64; memcheck: those and B 3 16/4 L 3001 D 128): one decode call each on the
# tensor-core kernel with MMA_SLABS, its plan and its error on the float64 reference printed.
import sys, numpy as np, cupy as cp, cuattn
m = sys.modules["cuattn.decode"]
rng = np.random.default_rng(0)
for b, hq, hkv, L, d in [(1, 32, 8, 4096, 128), (2, 8, 2, 2000, 64), (3, 16, 4, 3001, 128)]:
    q = cp.asarray(rng.standard_normal((b, hq, 1, d)).astype(np.float16))
    k = cp.asarray(rng.standard_normal((b, hkv, L, d)).astype(np.float16))
    v = cp.asarray(rng.standard_normal((b, hkv, L, d)).astype(np.float16))
    o = cuattn.decode(q, k, v, alibi_slopes="default")
    ref = cuattn.reference.decode(q.get(), k.get(), v.get(), alibi_slopes="default")
    plan = [p for p in m._PLANS.values() if hasattr(p, "even_rule")][-1]
    err = np.linalg.norm(o.get().astype(np.float64) - ref) / np.linalg.norm(ref)
    print(plan.expression, m.MMA_SLABS_OPTION in plan.options, f"err {err:.1e}")
