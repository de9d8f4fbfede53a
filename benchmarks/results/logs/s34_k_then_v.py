"""34th session: does the cp.async producer's K-then-V order (-DCUATTN_DECODE_K_THEN_V) give the
default's bits? fp16/bf16 GQA rows (tensor-core kernel, cp.async producer), contiguous and paged."""
import sys
import numpy as np
import cupy as cp
sys.path.insert(0, ".")
import cuattn
import cuattn.decode  # noqa: F401
m = sys.modules["cuattn.decode"]
rng = np.random.default_rng(1)
bad = 0
for dtype in (np.float16, cuattn._checks.BFLOAT16):
    for b, hq, hkv, L, d in ((3, 32, 8, 5001, 128), (2, 16, 2, 777, 128), (2, 8, 2, 3000, 64)):
        q = cp.asarray(rng.standard_normal((b, hq, 1, d)).astype(np.float32).astype(dtype))
        k = cp.asarray(rng.standard_normal((b, hkv, L, d)).astype(np.float32).astype(dtype))
        v = cp.asarray(rng.standard_normal((b, hkv, L, d)).astype(np.float32).astype(dtype))
        lens = cp.asarray(rng.integers(0, L + 1, b).astype(np.int32))
        outs = []
        for opts in ((), ("-DCUATTN_DECODE_K_THEN_V",)):
            saved = m.TMA_OPTIONS, m.MMA_COPY
            m.TMA_OPTIONS, m.MMA_COPY = m.TMA_OPTIONS + opts, "cp.async"
            m._PLANS.clear()
            outs.append(cuattn.decode(q, k, v, cache_seqlens=lens, alibi_slopes="default").get())
            m.TMA_OPTIONS, m.MMA_COPY = saved
            m._PLANS.clear()
        same = np.array_equal(outs[0].view(np.uint16), outs[1].view(np.uint16))
        bad += not same
        print(np.dtype(dtype).name, b, hq, hkv, L, d, "same bits" if same else "DIFFERENT")
print("k-then-v check:", "OK" if not bad else f"{bad} DIFFER")
sys.exit(1 if bad else 0)
