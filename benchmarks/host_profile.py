"""Where the host time of a cuattn GPU call goes: cProfile of many calls per operation.

    python benchmarks/host_profile.py [--out DIR] [--calls 300]

A pipeline of short calls (the attention tie row, T=1 GLA steps, decode at small batch) runs at
the host's pace once Python's per-call work exceeds the kernel's GPU time. For one shape per
operation this prints and saves (DIR/host_profile.json): the host microseconds per call
(common.host_time: wall time of queuing calls, the GPU not waited on), the GPU-only time per
call (common.cupy_graph_ms: CUDA-graph replay), and the functions taking the most own time under
cProfile (which inflates every Python call, so read its column as shares, not as microseconds).
"""

from __future__ import annotations

import cProfile
import io
import json
import pstats
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cupy  # noqa: E402
from common import cupy_graph_ms, host_time, out_dir, results_parser, run_metadata  # noqa: E402

import cuattn  # noqa: E402
from cuattn._checks import BFLOAT16  # noqa: E402


def cases():
    """(name, call, capturable) for one short-call shape per operation, inputs on the GPU; a call
    that synchronizes with the host (decode's value checks) cannot be captured in a graph."""
    rng = np.random.default_rng(0)

    def dev(shape, dtype=np.float16):
        return cupy.asarray(rng.standard_normal(shape, dtype=np.float32).astype(dtype))

    q, k, v = dev((32, 16, 512, 128)), dev((32, 16, 512, 128)), dev((32, 16, 512, 128))
    yield "attention fp16 B32 H16 S512 D128 causal", lambda: cuattn.attention(q, k, v, causal=True), True
    dq, kc, vc = dev((16, 32, 1, 128)), dev((16, 8, 4096, 128)), dev((16, 8, 4096, 128))
    lens = cupy.asarray(rng.integers(1, 4097, 16).astype(np.int32))
    yield "decode fp16 B16 Hq32 Hkv8 L4096 ALiBi", lambda: cuattn.decode(dq, kc, vc, alibi_slopes="default"), True
    yield ("decode ... with cache_seqlens (value check: one host sync)",
           lambda: cuattn.decode(dq, kc, vc, cache_seqlens=lens, alibi_slopes="default"), False)
    gq, gk, gv = (dev((128, 16, 1, 128), BFLOAT16) for _ in range(3))
    gg = cupy.asarray((-np.logaddexp(0, -rng.standard_normal((128, 16, 1, 128))) / 16).astype(BFLOAT16))
    state = cupy.asarray(rng.standard_normal((128, 16, 128, 128), dtype=np.float32))
    yield "gla T=1 bf16 B128 H16 K=V=128", lambda: cuattn.gla(gq, gk, gv, gg, initial_state=state,
                                                                output_final_state=True, mode="recurrent"), True


def main():
    args = results_parser(__doc__, calls=300).parse_args()
    out = out_dir(args)
    rows = []
    for name, fn, capturable in cases():
        for _ in range(10):  # compile and warm up outside the measurements
            fn()
        row = {"case": name, "host_us": host_time(fn, args.calls) * 1e6}
        if capturable:
            row["gpu_only_us"] = cupy_graph_ms(fn) * 1e3
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(args.calls):
            fn()
        prof.disable()
        cupy.cuda.Device().synchronize()
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(15)
        row["profile"] = text.getvalue()[-4000:]
        rows.append(row)
        print(f"{name}: host {row['host_us']:.1f} us/call, GPU only "
              f"{row.get('gpu_only_us', float('nan')):.1f} us/call", flush=True)
        print(row["profile"], flush=True)
    (out / "host_profile.json").write_text(json.dumps({"meta": run_metadata(), "rows": rows}, indent=1))
    print(f"wrote {out / 'host_profile.json'}")


if __name__ == "__main__":
    main()
