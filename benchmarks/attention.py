"""Prefill attention benchmark: cuattn vs torch SDPA (flash = FlashAttention-2, cuDNN).

Run on a GPU machine:  python benchmarks/attention.py [--out DIR] [--quick] [--sweep]

The grid is ANCHORS.md's (16k tokens, hidden 2048) for bf16 and fp16. Every implementation
reads the same random inputs (torch tensors viewed by CuPy through DLPack, no copy). Timing:
10 warm-up calls, then CUDA events around batches of calls (about 2 ms of GPU work each, so
host overhead overlaps the GPU for everyone), at least 15 batches and 0.3 s, median per call.
TFLOP/s = 4 * B * H * S * S * D / time, halved when causal. Results go to DIR/attention.json
(default benchmarks/results/) and a plot attention.png when matplotlib is present.
Each row also records the GPU time alone (`<impl>_graph`, TFLOP/s: 20 calls captured in a CUDA
graph and replayed, so no host time between calls counts), which tells a slower kernel from a
slower host path (`cuattn_host_us`) on short rows.
--sweep also times alternative tile shapes of cuattn's kernel (for choosing MMA_TILES).
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
from common import bar_chart, cupy_graph_ms, host_time, run_metadata, time_calls, torch_graph_ms  # noqa: E402

import cuattn  # noqa: E402
import cuattn.attention as _attention_module  # noqa: E402,F401

attn_mod = sys.modules["cuattn.attention"]

# (D, S, B, H, causal)
GRID = [
    (64, 512, 32, 32, False),
    (64, 2048, 8, 32, False),
    (64, 8192, 2, 32, True),
    (128, 512, 32, 16, True),
    (128, 2048, 8, 16, False),
    (128, 8192, 2, 16, False),
    (128, 8192, 2, 16, True),
    (256, 2048, 8, 8, False),
    (256, 16384, 1, 8, False),
]

SWEEP = {  # alternative wgmma (kBlockN, kWarpGroups, kStages, kQStages) per padded head dim
    64: [(64, 3, 4, 2), (64, 2, 4, 2), (128, 2, 3, 2)],
    128: [(128, 2, 3, 1), (64, 3, 3, 2), (128, 2, 2, 2), (64, 2, 4, 2)],
    256: [(64, 2, 2, 1)],
}


def torch_impls(q, k, v, causal):
    try:
        import torch
        from torch.nn.attention import SDPBackend, sdpa_kernel
        from torch.nn.functional import scaled_dot_product_attention as sdpa
    except Exception:
        return {}
    impls = {}
    for name, be in (("torch_flash", SDPBackend.FLASH_ATTENTION), ("torch_cudnn", SDPBackend.CUDNN_ATTENTION)):
        def fn(be=be):
            with sdpa_kernel(be):
                return sdpa(q, k, v, is_causal=causal)

        try:
            fn()
            torch.cuda.synchronize()
            impls[name] = fn
        except Exception as exc:  # a backend that refuses the shape
            print(f"  {name} unavailable: {str(exc).splitlines()[0][:100]}")
    return impls


def make_inputs(b, h, s, d, dtype_name):
    try:
        import torch

        tdt = {"bfloat16": torch.bfloat16, "float16": torch.float16}[dtype_name]
        t = [torch.randn(b, h, s, d, device="cuda", dtype=tdt) for _ in range(3)]
        return t, [cupy.from_dlpack(x) for x in t]
    except ImportError:
        dt = cuattn._checks.parse_dtype(dtype_name)
        c = [cupy.asarray(np.random.standard_normal((b, h, s, d)).astype(np.float32)).astype(dt) for _ in range(3)]
        return None, c


def check(cq, ck, cv, tq, tk, tv, causal):
    """Relative difference between cuattn and torch's flash backend on these inputs."""
    o = cuattn.attention(cq, ck, cv, causal=causal).astype(cupy.float32)
    impls = torch_impls(tq, tk, tv, causal)
    if "torch_flash" not in impls:
        return None
    ref = cupy.from_dlpack(impls["torch_flash"]()).astype(cupy.float32)
    return float(cupy.linalg.norm(o - ref) / cupy.linalg.norm(ref))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--quick", action="store_true", help="bf16 only, fewer repeats")
    parser.add_argument("--sweep", action="store_true", help="also time alternative tile shapes")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    meta = run_metadata()
    rows = []
    dtypes = ["bfloat16"] if args.quick else ["bfloat16", "float16"]
    print(f"{meta['device']}: prefill attention forward, TFLOP/s (ratio = cuattn / torch)")
    print(f"{'dtype':9} {'D':>4} {'S':>6} {'BxH':>6} {'causal':>6} {'cuattn':>7} {'flash':>7} {'cudnn':>7} {'x flash':>8} {'x cudnn':>8} {'mma.sync':>8}")
    for dtype_name in dtypes:
        for d, s, b, h, causal in GRID:
            t, c = make_inputs(b, h, s, d, dtype_name)
            flops = 4 * b * h * s * s * d / (2 if causal else 1)
            row = dict(dtype=dtype_name, D=d, S=s, B=b, H=h, causal=causal)
            cuattn.attention(*c, causal=causal)  # compile outside the timing
            row["cuattn"] = flops / time_calls(lambda: cuattn.attention(*c, causal=causal)) / 1e12
            row["cuattn_host_us"] = host_time(lambda: cuattn.attention(*c, causal=causal)) * 1e6
            if cupy.cuda.Device().compute_capability == "90":  # the mma.sync kernel, for comparison
                attn_mod.USE_WGMMA = False
                cuattn.attention(*c, causal=causal)
                row["cuattn_mma_sync"] = flops / time_calls(
                    lambda: cuattn.attention(*c, causal=causal), min_batches=5, min_seconds=0.1) / 1e12
                attn_mod.USE_WGMMA = True
            if t is not None:
                for name, fn in torch_impls(*t, causal).items():
                    row[name] = flops / time_calls(fn) / 1e12
                    try:  # GPU time alone: calls replayed from a CUDA graph (no host work between them)
                        row[f"{name}_graph"] = flops / (torch_graph_ms(fn) * 1e-3) / 1e12
                    except Exception as exc:
                        row[f"{name}_graph_error"] = f"{type(exc).__name__}: {exc}"[:200]
                row["rel_diff_vs_flash"] = check(*c, *t, causal)
            try:
                row["cuattn_graph"] = flops / (cupy_graph_ms(lambda: cuattn.attention(*c, causal=causal)) * 1e-3) / 1e12
            except Exception as exc:
                row["cuattn_graph_error"] = f"{type(exc).__name__}: {exc}"[:200]
            if args.sweep and d in SWEEP:
                saved, saved_short = dict(attn_mod.WGMMA_TILES), attn_mod.SHORT_KV
                attn_mod.SHORT_KV = -1  # the swept tiles apply at every length
                row["sweep"] = {}
                for tiles in SWEEP[d]:
                    attn_mod.WGMMA_TILES[d] = tiles
                    try:
                        cuattn.attention(*c, causal=causal)
                        row["sweep"]["x".join(map(str, tiles))] = flops / time_calls(
                            lambda: cuattn.attention(*c, causal=causal), min_batches=5, min_seconds=0.1) / 1e12
                    except Exception as exc:
                        row["sweep"]["x".join(map(str, tiles))] = f"failed: {exc}"[:200]
                attn_mod.WGMMA_TILES.clear()
                attn_mod.WGMMA_TILES.update(saved)
                attn_mod.SHORT_KV = saved_short
            for ref in ("torch_flash", "torch_cudnn"):
                if ref in row:
                    row[f"ratio_{ref}"] = row["cuattn"] / row[ref]
            rows.append(row)
            print(f"{dtype_name:9} {d:4} {s:6} {b:>2}x{h:<3} {str(causal):>6} {row['cuattn']:7.1f} "
                  f"{row.get('torch_flash', float('nan')):7.1f} {row.get('torch_cudnn', float('nan')):7.1f} "
                  f"{row.get('ratio_torch_flash', float('nan')):8.2f} {row.get('ratio_torch_cudnn', float('nan')):8.2f} "
                  f"{row.get('cuattn_mma_sync', float('nan')):8.1f}"
                  + (f"  sweep {row['sweep']}" if "sweep" in row else ""), flush=True)
            del t, c
    result = {"meta": meta, "rows": rows}
    (out / "attention.json").write_text(json.dumps(result, indent=1))
    plot(rows, meta, out / "attention.png")
    print(f"wrote {out / 'attention.json'}")


def plot(rows, meta, path):
    labels = [f"{r['dtype'][:4]} D{r['D']} S{r['S']}{' c' if r['causal'] else ''}" for r in rows]
    bar_chart(path, rows, ["cuattn", "torch_flash", "torch_cudnn"], labels, "TFLOP/s",
              f"prefill attention forward, {meta['device']}, {meta['date']}", rotation=60)


if __name__ == "__main__":
    main()
