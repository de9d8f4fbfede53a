"""Sweep of attention shapes for compute-sanitizer (memcheck, racecheck) on a GPU machine.

    compute-sanitizer --tool memcheck python tests/sanitize_attention.py
    compute-sanitizer --tool racecheck python tests/sanitize_attention.py

Small shapes covering every code path: tails in Sq, Sk and D, causal with Sq != Sk, GQA,
strided views, lengths 0 and 1, each dtype. Prints one line per case and a final count.
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cupy  # noqa: E402

import cuattn  # noqa: E402
from cuattn._checks import BFLOAT16  # noqa: E402

CASES = [  # (B, Hq, Hkv, Sq, Sk, D, Dv)
    (1, 2, 1, 65, 130, 64, 64),
    (2, 2, 2, 1, 37, 128, 128),
    (1, 1, 1, 100, 20, 40, 40),
    (1, 2, 2, 33, 33, 256, 256),
    (1, 1, 1, 17, 0, 32, 32),
    (1, 1, 1, 70, 90, 200, 72),
]


def main():
    rng = np.random.default_rng()
    n = 0
    for dtype in (np.float16, BFLOAT16, np.float32):
        for b, hq, hkv, sq, sk, d, dv in CASES:
            for causal in (False, True):
                q = cupy.asarray(rng.standard_normal((b, sq, hq, d)).astype(dtype)).transpose(0, 2, 1, 3)
                k = cupy.asarray(rng.standard_normal((b, hkv, sk, d)).astype(dtype))
                v = cupy.asarray(rng.standard_normal((b, hkv, sk, dv)).astype(dtype))
                o, lse = cuattn.attention(q, k, v, causal=causal, return_lse=True)
                cupy.cuda.Device().synchronize()
                n += 1
                print(np.dtype(dtype).name, (b, hq, hkv, sq, sk, d, dv), causal, "ok", flush=True)
    print(f"{n} cases ran")


if __name__ == "__main__":
    main()
