"""GLA one-token step and recurrent tile probe (the analysis behind benchmarks/NOTES.md's GLA section).

    python benchmarks/gla_step_probe.py [--out DIR]

- GPU-only time of a T=1 call: 20 calls captured in a CUDA graph and replayed (no host work
  between kernels), for cuattn and flash-linear-attention's fused_recurrent_gla (when present);
  the batch of the ANCHORS row (128) and a larger one (1024), where host time no longer hides;
- (where the host time of a call goes: benchmarks/host_profile.py; results/gla_step_probe.json
  from 2026-11-23 still holds the cProfile table this script printed then);
- the recurrent kernel's value tile on the K = V = 64 row (RECURRENT_TILE None / 32 / 64).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import cupy_graph_ms, run_metadata, time_calls, torch_graph_ms  # noqa: E402
from gla import GLA, fla_functions, make_inputs  # noqa: E402

import cuattn  # noqa: E402


def step_rows(fla):
    rows = []
    for b in (128, 1024):
        h, d = 16, 128
        tensors, (q, k, v, g, h0) = make_inputs(b, 1, h, d, with_state=True)
        state_bytes = 2 * 4 * b * h * d * d
        row = dict(B=b, T=1, H=h, K=d, V=d, state_MB=state_bytes / 1e6)
        fn = lambda: cuattn.gla(q, k, v, g, mode="recurrent", initial_state=h0, output_final_state=True)  # noqa: E731
        for rows_per_thread in GLA.STEP_ROWS_CHOICES:
            GLA.STEP_ROWS = rows_per_thread
            try:
                ms = cupy_graph_ms(fn)
                row[f"cuattn_rows{rows_per_thread}_graph_ms"] = ms
                row[f"cuattn_rows{rows_per_thread}_state_TBps"] = state_bytes / ms / 1e9
            except Exception as exc:
                row[f"cuattn_rows{rows_per_thread}_graph_error"] = f"{type(exc).__name__}: {exc}"[:200]
            row[f"cuattn_rows{rows_per_thread}_pipeline_ms"] = time_calls(fn) * 1e3
        GLA.STEP_ROWS = 16
        if fla is not None and tensors is not None:
            _, fused_recurrent_gla = fla
            tq, tk, tv, tg, th0 = tensors
            ffn = lambda: fused_recurrent_gla(tq, tk, tv, gk=tg, initial_state=th0, output_final_state=True)  # noqa: E731
            try:
                ms = torch_graph_ms(ffn)
                row["fla_graph_ms"] = ms
                row["fla_state_TBps"] = state_bytes / ms / 1e9
            except Exception as exc:
                row["fla_graph_error"] = f"{type(exc).__name__}: {exc}"[:200]
            row["fla_pipeline_ms"] = time_calls(ffn) * 1e3
        rows.append(row)
        print(json.dumps(row), flush=True)
        del tensors, q, k, v, g, h0
    return rows


def tile_rows():
    b, t, h, d = 16, 2048, 32, 64
    _, (q, k, v, g, _) = make_inputs(b, t, h, d, with_state=False)
    row = dict(B=b, T=t, H=h, K=d, V=d)
    for tile in (None, 32, 64):
        GLA.RECURRENT_TILE = tile
        fn = lambda: cuattn.gla(q, k, v, g, mode="recurrent")  # noqa: E731
        fn()
        row[f"recurrent_tile{tile}_ms"] = time_calls(fn) * 1e3
    GLA.RECURRENT_TILE = None
    print(json.dumps(row), flush=True)
    return [row]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"meta": run_metadata(dtype="bfloat16"), "step": step_rows(fla_functions()), "recurrent_tile": tile_rows()}
    (out / "gla_step_probe.json").write_text(json.dumps(result, indent=1))
    print(f"wrote {out / 'gla_step_probe.json'}")


if __name__ == "__main__":
    main()
