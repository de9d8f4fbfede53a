"""Gated linear attention benchmark: cuattn chunk/recurrent vs flash-linear-attention.

Run on a GPU machine:  python benchmarks/gla.py [--out DIR] [--quick] [--variants] [--chunk-only]
(with flash-linear-attention: pip install --no-deps .whl/fla_core-0.6.0-py3-none-any.whl)

Rows are ANCHORS.md's GLA rows (bf16, K = V, gates logsigmoid(x) / 16), plus a T=1 generation
step. Every implementation reads the same random inputs: torch tensors in fla's (B, T, H, D)
layout, passed to cuattn as (B, H, T, D) transposed views through DLPack (no copy). fla runs only
when ``from fla.ops.gla import chunk_gla, fused_recurrent_gla`` works.
Timing: 10 warm-up calls, then CUDA events around batches of calls (about 2 ms of GPU work
each, so host overhead overlaps the GPU for everyone), at least 15 batches and 0.3 s, median
per call. The IO floor is the bytes that must move (read q, k, v, g, write o; the T=1 step also
reads and writes the fp32 state) over the device-to-device copy bandwidth measured in the same
run. The T=1 step is host-bound in such a pipeline (cuattn and fla each spend 110-200 us of
host time per call against ~0.1 ms of GPU time), so its row also records host time per call and
the GPU time alone: 20 calls captured in a CUDA graph and replayed (cupy_graph_ms,
torch_graph_ms in common.py); state_TBps is over that GPU-only time. On prefill rows chunk mode
is also timed with the prepass forced on and off (cuattn_chunk_prepass_ms,
cuattn_chunk_no_prepass_ms; the default picks by K). --variants also times
each forced chunk variant (4 or 8 warps, sequential or segmented; [ms, relative difference from
the automatic choice] per variant, each without and with the prepass); --chunk-only skips
recurrent mode and the T=1 row (a variant sweep's JSON then goes to DIR/gla.json too: use its
own --out). Results go to DIR/gla.json (default benchmarks/results/)
and DIR/gla.png (matplotlib).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cupy  # noqa: E402
from common import bar_chart, cupy_graph_ms, host_time, run_metadata, time_calls, torch_graph_ms  # noqa: E402

import cuattn  # noqa: E402

GLA = sys.modules["cuattn.gla"]  # the module (cuattn.gla is the function)

ROWS = [  # (B, T, H, K=V)
    (8, 2048, 16, 128),
    (4, 8192, 16, 128),
    (16, 2048, 32, 64),
]
# Chunk-mode variants timed on each prefill row with --variants, forced through cuattn.gla's
# switches: (CHUNK_WARPS, CHUNK_SEGMENT_LEN); segment length 0 = sequential, else segmented.
# Each is timed without and with the prepass (CHUNK_PREPASS).
CHUNK_VARIANTS = [(4, 0), (8, 0), (4, 512), (4, 1024), (4, 2048), (8, 512), (8, 1024), (8, 2048), (8, 4096)]
STEP_ROW = (128, 1, 16, 128)  # token-by-token generation: T=1 with a state in and out (268 MB of state traffic)


def copy_bandwidth():
    """Device-to-device copy, bytes read + written per second (the IO ceiling of this run)."""
    src = cupy.ones(256 * 2**20, dtype=cupy.uint8)
    dst = cupy.empty_like(src)
    t = time_calls(lambda: dst.__setitem__(Ellipsis, src), min_batches=10, min_seconds=0.2)
    return 2 * src.nbytes / t


def make_inputs(b, t, h, d, with_state):
    """torch (B, T, H, D) bf16 tensors (or None without torch) and cuattn's (B, H, T, D) views."""
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        gen = torch.Generator(device="cuda").manual_seed(0)
        x = [torch.randn(b, t, h, d, device="cuda", dtype=torch.bfloat16, generator=gen) for _ in range(3)]
        g = (torch.nn.functional.logsigmoid(torch.randn(b, t, h, d, device="cuda", generator=gen)) / 16).to(torch.bfloat16)
        h0 = torch.randn(b, h, d, d, device="cuda", dtype=torch.float32, generator=gen) if with_state else None
        views = [cupy.from_dlpack(a).transpose(0, 2, 1, 3) for a in (*x, g)]
        state = cupy.from_dlpack(h0) if h0 is not None else None
        return (*x, g, h0), (*views, state)
    dt = cuattn._checks.BFLOAT16
    rng = np.random.default_rng(0)
    views = [cupy.asarray(rng.standard_normal((b, h, t, d), dtype=np.float32)).astype(dt) for _ in range(3)]
    g = cupy.asarray(-np.logaddexp(0, -rng.standard_normal((b, h, t, d))) / 16).astype(dt)
    state = cupy.asarray(rng.standard_normal((b, h, d, d), dtype=np.float32)) if with_state else None
    return None, (*views, g, state)


def fla_functions():
    try:
        from fla.ops.gla import chunk_gla, fused_recurrent_gla
    except Exception as exc:
        print(f"flash-linear-attention unavailable ({type(exc).__name__}: {exc}); timing cuattn alone")
        return None
    return chunk_gla, fused_recurrent_gla


def rel_diff(a, b):
    a, b = a.astype(cupy.float32), b.astype(cupy.float32)
    return float(cupy.linalg.norm(a - b) / cupy.linalg.norm(b))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--variants", action="store_true",
                        help="also time every forced chunk variant (CHUNK_VARIANTS) on the prefill rows")
    parser.add_argument("--chunk-only", action="store_true",
                        help="chunk mode and fla's chunk_gla on the prefill rows only (for variant sweeps)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    reps = dict(min_batches=5, min_seconds=0.05) if args.quick else {}

    meta = run_metadata(dtype="bfloat16", gates="logsigmoid(randn) / 16")
    fla = fla_functions()
    try:
        import fla as fla_pkg

        meta["fla"] = getattr(fla_pkg, "__version__", "?")
    except Exception:
        pass
    bandwidth = copy_bandwidth()
    meta["copy_bandwidth_TBps"] = bandwidth / 1e12
    rows = []
    for b, t, h, d in ROWS + ([] if args.chunk_only else [STEP_ROW]):
        step = (b, t, h, d) == STEP_ROW
        tensors, (q, k, v, g, h0) = make_inputs(b, t, h, d, with_state=step)
        row = dict(B=b, T=t, H=h, K=d, V=d, kind="step" if step else "prefill")
        io_bytes = 2 * b * t * h * d * 5 + (2 * 4 * b * h * d * d if step else 0)
        row["io_floor_ms"] = io_bytes / bandwidth * 1e3
        kwargs = dict(initial_state=h0, output_final_state=step)
        modes = ["recurrent"] if step else ["chunk"] if args.chunk_only else ["chunk", "recurrent"]
        for mode in modes:
            fn = lambda mode=mode: cuattn.gla(q, k, v, g, mode=mode, **kwargs)  # noqa: E731
            fn()  # compile outside the timing
            row[f"cuattn_{mode}_ms"] = time_calls(fn, **reps) * 1e3
        if not step:  # chunk mode with the prepass forced on and off (CHUNK_PREPASS), beside the default
            default_o = cuattn.gla(q, k, v, g, mode="chunk", **kwargs)[0]
            saved = GLA.CHUNK_PREPASS
            try:
                for prep, name in ((True, "prepass"), (False, "no_prepass")):
                    GLA.CHUNK_PREPASS = prep
                    fn = lambda: cuattn.gla(q, k, v, g, mode="chunk", **kwargs)  # noqa: E731
                    row[f"rel_diff_chunk_{name}_vs_default"] = rel_diff(fn()[0], default_o)
                    row[f"cuattn_chunk_{name}_ms"] = time_calls(fn, **reps) * 1e3
            finally:
                GLA.CHUNK_PREPASS = saved
        if args.variants and not step:
            saved = GLA.CHUNK_WARPS, GLA.CHUNK_SEGMENT_LEN, GLA.CHUNK_PREPASS
            auto = cuattn.gla(q, k, v, g, mode="chunk", **kwargs)[0]
            row["chunk_variants_ms"] = {}
            try:
                for (warps, seg), prep in itertools.product(CHUNK_VARIANTS, (False, True)):
                    GLA.CHUNK_WARPS, GLA.CHUNK_SEGMENT_LEN, GLA.CHUNK_PREPASS = warps, seg, prep
                    fn = lambda: cuattn.gla(q, k, v, g, mode="chunk", **kwargs)  # noqa: E731
                    diff = rel_diff(fn()[0], auto)
                    ms = time_calls(fn, **reps) * 1e3
                    row["chunk_variants_ms"][f"warps{warps}_seg{seg}_prep{int(prep)}"] = [ms, diff]
                    print(f"  variant warps {warps} segment {seg} prepass {prep}: {ms:.3f} ms", flush=True)
            finally:
                GLA.CHUNK_WARPS, GLA.CHUNK_SEGMENT_LEN, GLA.CHUNK_PREPASS = saved
        if fla is not None and tensors is not None:
            chunk_gla, fused_recurrent_gla = fla
            tq, tk, tv, tg, th0 = tensors
            fla_fns = {} if args.chunk_only else {
                "fla_fused_recurrent": lambda: fused_recurrent_gla(tq, tk, tv, gk=tg, initial_state=th0,
                                                                   output_final_state=step)}
            if not step:
                fla_fns["fla_chunk"] = lambda: chunk_gla(tq, tk, tv, tg, initial_state=th0, output_final_state=step)
            for name, fn in fla_fns.items():
                try:
                    ref = fn()[0]
                    row[f"{name}_ms"] = time_calls(fn, **reps) * 1e3
                    mine = cuattn.gla(q, k, v, g, mode="chunk" if name == "fla_chunk" else "recurrent", **kwargs)[0]
                    row[f"rel_diff_vs_{name}"] = rel_diff(mine, cupy.from_dlpack(ref).transpose(0, 2, 1, 3))
                except Exception as exc:  # a version that refuses the call
                    row[f"{name}_error"] = f"{type(exc).__name__}: {exc}"[:300]
        if step:  # host-bound in a pipeline: GPU time alone (CUDA-graph replay), host time, gla_step variants
            state_bytes = 2 * 4 * b * h * d * d
            fn = lambda: cuattn.gla(q, k, v, g, mode="recurrent", **kwargs)  # noqa: E731
            row["cuattn_step_host_us"] = host_time(fn) * 1e6
            saved = GLA.STEP_ROWS
            try:
                for rows_per_thread in GLA.STEP_ROWS_CHOICES:
                    GLA.STEP_ROWS = rows_per_thread
                    row[f"cuattn_step_rows{rows_per_thread}_graph_ms"] = cupy_graph_ms(fn)
            finally:
                GLA.STEP_ROWS = saved
            row["cuattn_step_graph_ms"] = row[f"cuattn_step_rows{saved}_graph_ms"]
            row["cuattn_step_graph_state_TBps"] = state_bytes / row["cuattn_step_graph_ms"] / 1e9
            if fla is not None and tensors is not None:
                ffn = fla_fns["fla_fused_recurrent"]
                row["fla_fused_recurrent_host_us"] = host_time(ffn) * 1e6
                row["fla_fused_recurrent_graph_ms"] = torch_graph_ms(ffn)
                row["fla_graph_state_TBps"] = state_bytes / row["fla_fused_recurrent_graph_ms"] / 1e9
        if "fla_chunk_ms" in row:
            row["speedup_chunk_vs_fla_chunk"] = row["fla_chunk_ms"] / row["cuattn_chunk_ms"]
        if "fla_fused_recurrent_ms" in row:
            row["speedup_recurrent_vs_fla_recurrent"] = row["fla_fused_recurrent_ms"] / row["cuattn_recurrent_ms"]
        best = min(row.get("cuattn_chunk_ms", np.inf), row.get("cuattn_recurrent_ms", np.inf))
        row["io_floor_fraction"] = row["io_floor_ms"] / best
        if step:  # bytes of the state read and written per call, over the GPU-only time
            row["state_TBps"] = 2 * 4 * b * h * d * d / (row["cuattn_step_graph_ms"] * 1e-3) / 1e12
            row["state_fraction_of_copy_bandwidth"] = row["state_TBps"] * 1e12 / bandwidth
        rows.append(row)
        print(json.dumps(row), flush=True)
        del tensors, q, k, v, g, h0
    result = {"meta": meta, "rows": rows}
    (out / "gla.json").write_text(json.dumps(result, indent=1))
    plot(rows, meta, out / "gla.png")
    print(f"wrote {out / 'gla.json'}")
    print(f"\n{meta['device']}: GLA forward, bf16, ms (speedup = fla / cuattn); copy bandwidth "
          f"{meta['copy_bandwidth_TBps']:.2f} TB/s")
    print(f"{'B':>3} {'T':>5} {'H':>3} {'K=V':>4} {'cu chunk':>9} {'fla chunk':>9} {'x':>5} {'cu recur':>9} "
          f"{'fla recur':>9} {'x':>5} {'IO floor':>8} {'floor/best':>10}")
    nan = float("nan")
    for r in rows:
        print(f"{r['B']:3} {r['T']:5} {r['H']:3} {r['K']:4} {r.get('cuattn_chunk_ms', nan):9.3f} "
              f"{r.get('fla_chunk_ms', nan):9.3f} {r.get('speedup_chunk_vs_fla_chunk', nan):5.2f} "
              f"{r.get('cuattn_recurrent_ms', nan):9.3f} {r.get('fla_fused_recurrent_ms', nan):9.3f} "
              f"{r.get('speedup_recurrent_vs_fla_recurrent', nan):5.2f} {r['io_floor_ms']:8.3f} "
              f"{r['io_floor_fraction']:10.2f}" + (f"  state {r['state_TBps']:.2f} TB/s GPU-only" if "state_TBps" in r else ""))


def plot(rows, meta, path):
    names = ["cuattn_chunk_ms", "fla_chunk_ms", "cuattn_recurrent_ms", "fla_fused_recurrent_ms", "io_floor_ms"]
    labels = [f"B{r['B']} T{r['T']} H{r['H']} K{r['K']}" for r in rows]
    bar_chart(path, rows, names, labels, "ms (log)", f"GLA forward bf16, {meta['device']}, {meta['date']}", log=True)


if __name__ == "__main__":
    main()
