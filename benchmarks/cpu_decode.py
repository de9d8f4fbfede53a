"""CPU decode benchmark: cuattn.decode on NumPy arrays (Numba kernels) vs NumPy materialized.

Run:  python benchmarks/cpu_decode.py [--out DIR] [--repeats N]

Rows: one query token (Sq = 1), float32, random normal inputs, ALiBi "default" slopes, GQA and
MHA shapes. NumPy materialized is the textbook version per KV head: logits = scale q K^T + bias
(float32, the whole (group, L) matrix), softmax, @ V. Timing: one warm-up call, then the median
of ``--repeats`` calls. GB/s = bytes of K and V / time (decode reads the cache once; the GQA rows
are bound by arithmetic on a small CPU, the MHA rows by memory). Then cache dtypes and
layouts on the first row: float32, float16, bfloat16 caches as they are (dense, FlashAttention's
(B, L, Hkv, D) passed as its transpose, shuffled 16-key pages), against first copying the cache to
a contiguous float32 one and decoding that (what the CPU backend did before the 18th session).
Results go to DIR/cpu_decode.json (default benchmarks/results/).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cpu_attention import cpu_args, median_time, write_cpu_results  # noqa: E402

import cuattn  # noqa: E402

ROWS = [(1, 32, 8, 33001, 128), (2, 40, 8, 33001, 128), (4, 32, 32, 4096, 128), (1, 8, 8, 131072, 64)]  # B, Hq, Hkv, L, D


def numpy_materialized(q, k, v, slopes):
    b, hq, _, d = q.shape
    hkv, length = k.shape[1], k.shape[2]
    g = hq // hkv
    qg = q.reshape(b, hkv, g, d)
    logits = np.einsum("bhgd,bhld->bhgl", qg, k) / np.float32(np.sqrt(d))
    logits += slopes.reshape(1, hkv, g, 1) * (np.arange(length, dtype=np.float32) - (length - 1))
    logits -= logits.max(-1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(-1, keepdims=True)
    return np.einsum("bhgl,bhld->bhgd", p, v).reshape(b, hq, 1, d)


def layout_rows(rng, repeats):
    """ROWS[0] with each cache dtype and layout, read in place vs widened to a float32 copy first."""
    from cuattn._checks import CPU_DTYPES, FLOAT64, dtype_name

    b, hq, hkv, length, d = ROWS[0]
    length -= length % 16  # whole 16-key pages
    out = []
    for dtype in [x for x in CPU_DTYPES if x != FLOAT64]:
        q, k, v = (rng.standard_normal((b, h, n, d)).astype(np.float32).astype(dtype)
                   for h, n in ((hq, 1), (hkv, length), (hkv, length)))
        flash = [np.ascontiguousarray(x.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3) for x in (k, v)]
        kp, vp, table = cuattn.paged_cache(k, v, 16, seed=0)
        for name, kc, vc, bt in (("dense", k, v, None), ("bshd", *flash, None), ("paged 16", kp, vp, table)):
            def widened():
                return cuattn.decode(q.astype(np.float32), np.ascontiguousarray(kc, np.float32),
                                     np.ascontiguousarray(vc, np.float32), alibi_slopes="default", block_table=bt)
            t_in = median_time(lambda: cuattn.decode(q, kc, vc, alibi_slopes="default", block_table=bt), repeats)
            t_wide = median_time(widened, repeats)
            row = dict(B=b, Hq=hq, Hkv=hkv, L=length, D=d, dtype=dtype_name(dtype), layout=name,
                       in_place_ms=t_in * 1e3, float32_copy_first_ms=t_wide * 1e3,
                       in_place_gbps=2 * k.nbytes / t_in / 1e9)
            out.append(row)
            print(f"{row['dtype']:>8} {name:>8}: in place {row['in_place_ms']:.1f} ms "
                  f"({row['in_place_gbps']:.1f} GB/s), float32 copy first {row['float32_copy_first_ms']:.1f} ms",
                  flush=True)
    return out


def main():
    args = cpu_args(__doc__, 7)
    rng = np.random.default_rng(0)
    rows = []
    for b, hq, hkv, length, d in ROWS:
        q = rng.standard_normal((b, hq, 1, d)).astype(np.float32)
        k = rng.standard_normal((b, hkv, length, d)).astype(np.float32)
        v = rng.standard_normal((b, hkv, length, d)).astype(np.float32)
        slopes = cuattn.alibi_slopes(hq)
        t_ours = median_time(lambda: cuattn.decode(q, k, v, alibi_slopes="default"), args.repeats)
        t_np = median_time(lambda: numpy_materialized(q, k, v, slopes), max(3, args.repeats // 2))
        err = float(np.linalg.norm(cuattn.decode(q, k, v, alibi_slopes="default") - numpy_materialized(q, k, v, slopes))
                    / np.linalg.norm(numpy_materialized(q, k, v, slopes)))
        nbytes = 2 * k.nbytes
        row = dict(B=b, Hq=hq, Hkv=hkv, L=length, D=d, cuattn_ms=t_ours * 1e3, numpy_ms=t_np * 1e3,
                   cuattn_gbps=nbytes / t_ours / 1e9, speedup_vs_numpy=t_np / t_ours, rel_diff_vs_numpy=err)
        rows.append(row)
        print(f"B{b} {hq}/{hkv} L{length} D{d}: cuattn {row['cuattn_ms']:.1f} ms ({row['cuattn_gbps']:.1f} GB/s), "
              f"NumPy materialized {row['numpy_ms']:.1f} ms, {row['speedup_vs_numpy']:.1f}x", flush=True)
    layouts = layout_rows(rng, args.repeats)
    write_cpu_results(args, "cpu_decode", rows=rows, layouts=layouts)


if __name__ == "__main__":
    main()
