"""ALiBi decode on the cache layouts users hand in: dense (B, Hkv, L, D), FlashAttention's
(B, L, Hkv, D) passed as its transpose (key rows Hkv x D apart), paged caches of 16, 32, 64
and 256 keys a page, and pages of 16 and 256 keys in vLLM's order (pages, page_size, Hkv, D)
passed as their transpose ("paged N nhd"), the dense cache with cache_seqlens ("dense, lens": the
paged columns pass them, and each such call waits on the host for its value check), against torch
SDPA (cuDNN, flash) on the dense cache of the same size.

Run on a GPU machine:  python benchmarks/decode_layouts.py [--out DIR] [--rounds N] [--only TEXT]

Why (17th session, H200): before it, strided rows ran on the bulk-copy kernel (one copy per key
row: 0.94 TB/s on B 1 32/32) and pages that are not whole 64-key tiles on the bulk-copy or
register kernel (GQA 32/8: 2.8 TB/s, 32/4 D 64: 0.7); now strided rows go to the tensor-core
kernel where it takes the head dim (cp.async, pointer steps), and its cp.async producer takes
pages of 4 keys or more (16-row groups), and one-row paged caches go to it too. Columns ", tma"
force the bulk-copy kernel, ", mma" (one row) the tensor-core kernel, "torch_*, bshd" run torch
on the transposed cache. rel_diff_vs_dense in the JSON: each column's result against the dense
call's (before the 17th session's last fix the paged calls read the padded last page's zeros). Timing as benchmarks/decode.py
(interleaved rounds, median). Results: DIR/decode_layouts.json (default benchmarks/results/).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cupy  # noqa: E402
from common import run_metadata  # noqa: E402
from decode import interleaved, torch_impls, with_settings  # noqa: E402

import cuattn  # noqa: E402

SHAPES = [(1, 32, 32, 128, 33001), (16, 32, 8, 128, 32768), (4, 32, 4, 64, 32768)]
PAGES = (16, 32, 64, 256)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    reps = dict(min_batches=5, min_seconds=0.05)
    rng = np.random.default_rng(0)
    rows = []
    meta = run_metadata(unit="TB/s = bytes of K and V / time")
    for b, hq, hkv, d, length in SHAPES:
        label = f"B{b} {hq}/{hkv} D{d} L{length}"
        if args.only not in label:
            continue
        q = cupy.asarray(rng.standard_normal((b, hq, 1, d), dtype=np.float32)).astype(cupy.float16)
        k = cupy.asarray(rng.standard_normal((b, hkv, length, d), dtype=np.float32)).astype(cupy.float16)
        v = cupy.asarray(rng.standard_normal((b, hkv, length, d), dtype=np.float32)).astype(cupy.float16)
        nbytes = 2 * k.nbytes
        lens = cupy.full(b, length, cupy.int32)  # (a paged cache's last page is padded past L)
        # FlashAttention's layout: (B, L, Hkv, D) in memory, passed as its (B, Hkv, L, D) view
        kt = cupy.ascontiguousarray(k.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)
        vt = cupy.ascontiguousarray(v.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)
        fns = {"dense": lambda a=(q, k, v): cuattn.decode(*a, alibi_slopes="default"),
               "bshd": lambda a=(q, kt, vt): cuattn.decode(*a, alibi_slopes="default")}
        # the dense cache with cache_seqlens, as the paged columns pass them: each such call waits on the
        # host for its value check, so short calls are host-bound alike (D 64: paged vs this, not vs dense)
        fns["dense, lens"] = lambda a=(q, k, v): cuattn.decode(*a, alibi_slopes="default", cache_seqlens=lens)
        # the bulk-copy kernel on strided rows: a copy per key row (the default before the 17th session)
        fns["bshd, tma"] = with_settings(fns["bshd"], KERNEL="tma")
        keep = []
        for ps in PAGES:
            kc, vc, table = cuattn.paged_cache(k, v, ps, seed=rng)
            keep.append((kc, vc, table))
            name = f"paged {ps}"
            fns[name] = (lambda a=(q, kc, vc), t=table: cuattn.decode(*a, alibi_slopes="default", block_table=t,
                                                                       cache_seqlens=lens))
            if hq == hkv:  # one row: the tensor-core kernel on the pages (the default is the bulk-copy kernel)
                fns[name + ", mma"] = with_settings(fns[name], KERNEL="mma")
            if ps < 64:  # the bulk-copy kernel (one copy per key row here)
                fns[name + ", tma"] = with_settings(fns[name], KERNEL="tma")
            if ps in (16, 256):  # vLLM's pages (pages, page_size, Hkv, D), passed as their transpose
                kn, vn = (cupy.ascontiguousarray(x.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3) for x in (kc, vc))
                keep.append((kn, vn))
                fns[name + " nhd"] = (lambda a=(q, kn, vn), t=table: cuattn.decode(
                    *a, alibi_slopes="default", block_table=t, cache_seqlens=lens))
        ref = fns["dense"]().astype(cupy.float32)
        diffs = {}
        for name, fn in fns.items():  # every layout gives the dense cache's answer
            o = fn().astype(cupy.float32)
            diffs[name] = float(cupy.linalg.norm(o - ref) / cupy.linalg.norm(ref))
        try:
            import torch

            tq, tk, tv = (torch.from_dlpack(x) for x in (q, k, v))
            for name, (fn, _note) in torch_impls(tq, tk, tv, cuattn.alibi_slopes(hq)).items():
                if name in ("torch_cudnn", "torch_flash"):
                    fns[name] = fn
            # torch on the (B, L, Hkv, D) cache's transposed view (what FlashAttention's layout costs it)
            tkt, tvt = torch.from_dlpack(kt), torch.from_dlpack(vt)
            for name, (fn, _note) in torch_impls(tq, tkt, tvt, cuattn.alibi_slopes(hq)).items():
                if name in ("torch_cudnn", "torch_flash"):
                    fns[name + ", bshd"] = fn
        except ImportError:
            pass
        row = dict(label=label, B=b, Hq=hq, Hkv=hkv, D=d, L=length, rel_diff_vs_dense=diffs)
        row.update(interleaved(fns, nbytes, args.rounds, reps))
        rows.append(row)
        print(label + "  " + "  ".join(f"{n}: {row[n]:.3f}" for n in fns), flush=True)
        del keep, fns, kt, vt, k, v
        cupy.get_default_memory_pool().free_all_blocks()
    (out / "decode_layouts.json").write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))


if __name__ == "__main__":
    main()
