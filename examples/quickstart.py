"""Quickstart: exact fused attention on the GPU if there is one, else on the CPU.

Run:  python examples/quickstart.py

It builds random queries, keys and values, runs ``cuattn.attention`` (causal, grouped-query),
and checks the result against the float64 reference ``cuattn.reference.attention`` (exit status
1 if it is off).
"""

import sys
import time

import numpy as np

import cuattn


def main():
    rng = np.random.default_rng()
    batch, q_heads, kv_heads, seqlen, head_dim = 2, 8, 2, 1024, 64
    q = rng.standard_normal((batch, q_heads, seqlen, head_dim), dtype=np.float32)
    k = rng.standard_normal((batch, kv_heads, seqlen, head_dim), dtype=np.float32)
    v = rng.standard_normal((batch, kv_heads, seqlen, head_dim), dtype=np.float32)

    if cuattn.gpu_available():
        import cupy

        from cuattn._checks import BFLOAT16

        dtype = BFLOAT16 if BFLOAT16 is not None else np.float16
        args = [cupy.asarray(x.astype(dtype)) for x in (q, k, v)]
        where = f"GPU ({cupy.cuda.runtime.getDeviceProperties(0)['name'].decode()}), {np.dtype(dtype).name}"
    else:
        args = [q, k, v]
        where = "CPU (no CUDA GPU found), float32"

    cuattn.attention(*args, causal=True)  # first call compiles (GPU) or JIT-compiles (CPU)
    start = time.perf_counter()
    o, lse = cuattn.attention(*args, causal=True, return_lse=True)
    if cuattn.gpu_available():
        import cupy

        cupy.cuda.get_current_stream().synchronize()
    elapsed = time.perf_counter() - start

    ref = cuattn.reference.attention(*args, causal=True)
    o_host = np.asarray(o.get() if hasattr(o, "get") else o, dtype=np.float64)
    err = np.linalg.norm(o_host - ref) / np.linalg.norm(ref)
    flops = 4 * batch * q_heads * seqlen * seqlen * head_dim / 2
    print(f"cuattn {cuattn.__version__} on {where}")
    print(f"attention {tuple(o.shape)} causal GQA {q_heads}/{kv_heads}: {elapsed * 1e3:.2f} ms, "
          f"{flops / elapsed / 1e9:.1f} GFLOP/s")
    tol = 2e-5 if where.endswith("float32") else 2e-2  # 16-bit inputs: the output's own rounding and more
    print(f"relative error vs float64 reference: {err:.2e} (tolerance {tol:.0e})")
    print("OK" if err < tol else "MISMATCH")
    sys.exit(0 if err < tol else 1)


if __name__ == "__main__":
    main()
