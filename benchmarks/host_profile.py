"""Where the host time of a cuattn GPU call goes: cProfile of many calls per operation.

    python benchmarks/host_profile.py [--out DIR] [--calls 300] [--only decode]

A pipeline of short calls (the attention tie row and a short attention call, T=1 GLA steps, decode
at small batch) runs at the host's pace once Python's per-call work exceeds the kernel's GPU
time. For one shape per operation this prints and saves (DIR/host_profile.json): the host microseconds per call
(common.host_time: wall time of queuing calls, the GPU not waited on), the GPU-only time per
call (common.cupy_graph_ms: CUDA-graph replay), the pipelined time per call (common.time_calls:
what the benchmarks report; host-bound when it tracks host_us instead of the GPU-only time), and
the functions taking the most own and cumulative time under cProfile (which inflates every Python
call, so read its columns as shares, not as microseconds). Two floors for scale: a CuPy launch of
an empty kernel with as many arguments as decode's split kernel, and torch's cuDNN decode call.
"""

from __future__ import annotations

import cProfile
import io
import itertools
import json
import pstats
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cupy  # noqa: E402
from common import cupy_graph_ms, host_time, out_dir, results_parser, run_metadata, time_calls  # noqa: E402

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
    # the same layout at other addresses each call (a layer's activations): plan hits whose tensor
    # maps (Hopper) change from call to call
    sets = itertools.cycle([(dev((32, 16, 512, 128)), dev((32, 16, 512, 128)), dev((32, 16, 512, 128)))
                            for _ in range(3)] + [(q, k, v)])
    yield "attention ... 4 input sets in turn", lambda: cuattn.attention(*next(sets), causal=True), True
    # a short call (under cuattn.attention.PLAN_MAX_WORK: it keeps a launch plan; the rows above do not)
    sq_a, sk_a, sv_a = dev((1, 32, 128, 128)), dev((1, 32, 128, 128)), dev((1, 32, 128, 128))
    yield ("attention short fp16 B1 H32 S128 D128 causal (planned)",
           lambda: cuattn.attention(sq_a, sk_a, sv_a, causal=True), True)
    dq, kc, vc = dev((16, 32, 1, 128)), dev((16, 8, 4096, 128)), dev((16, 8, 4096, 128))
    lens = cupy.asarray(rng.integers(1, 4097, 16).astype(np.int32))
    yield "decode fp16 B16 Hq32 Hkv8 L4096 ALiBi", lambda: cuattn.decode(dq, kc, vc, alibi_slopes="default"), True
    yield ("decode ... with cache_seqlens (value check: one host sync)",
           lambda: cuattn.decode(dq, kc, vc, cache_seqlens=lens, alibi_slopes="default"), False)
    # short decode calls (per-layer sizes of a small model): GPU time ~45 us at the read ceiling
    sq_, sk_, sv_ = dev((4, 32, 1, 64)), dev((4, 4, 32768, 64)), dev((4, 4, 32768, 64))
    slens = cupy.asarray(rng.integers(30000, 32769, 4).astype(np.int32))
    yield "decode small fp16 B4 Hq32 Hkv4 D64 L32768 ALiBi", lambda: cuattn.decode(sq_, sk_, sv_, alibi_slopes="default"), True
    yield ("decode small ... with cache_seqlens",
           lambda: cuattn.decode(sq_, sk_, sv_, cache_seqlens=slens, alibi_slopes="default"), False)
    pages = 32768 // 256
    table = cupy.asarray(rng.permutation(4 * pages).astype(np.int32).reshape(4, pages))
    pk = sk_.reshape(4, 4, pages, 256, 64).transpose(0, 2, 1, 3, 4).reshape(-1, 4, 256, 64)[table.reshape(-1).argsort()]
    pv = sv_.reshape(4, 4, pages, 256, 64).transpose(0, 2, 1, 3, 4).reshape(-1, 4, 256, 64)[table.reshape(-1).argsort()]
    yield ("decode small paged (page 256) with cache_seqlens",
           lambda: cuattn.decode(sq_, pk, pv, cache_seqlens=slens, block_table=table, alibi_slopes="default"), False)
    try:
        import torch
        from torch.nn.attention import SDPBackend, sdpa_kernel
        from torch.nn.functional import scaled_dot_product_attention as sdpa

        tq, tk, tv = (torch.from_dlpack(x) for x in (sq_, sk_, sv_))

        def torch_cudnn():
            with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
                return sdpa(tq, tk, tv, enable_gqa=True)
        torch_cudnn()
        yield "torch cuDNN decode, the same small shape (no bias)", torch_cudnn, False
    except Exception as exc:  # no torch, or no cuDNN attention for this shape
        print(f"torch floor skipped: {exc!r}")
    nargs = 36
    empty = cupy.RawKernel("extern \"C\" __global__ void empty_kernel(" + ", ".join(f"long long a{i}" for i in range(nargs))
                           + ") {}", "empty_kernel")
    scalars = [np.int64(i) for i in range(nargs)]
    yield f"floor: empty RawKernel, {nargs} numpy scalar args", lambda: empty((132,), (160,), tuple(scalars)), True
    yield "floor: cupy.empty x 4", lambda: [cupy.empty((4, 32, 1, 64), cupy.float16) for _ in range(4)], False
    gq, gk, gv = (dev((128, 16, 1, 128), BFLOAT16) for _ in range(3))
    gg = cupy.asarray((-np.logaddexp(0, -rng.standard_normal((128, 16, 1, 128))) / 16).astype(BFLOAT16))
    state = cupy.asarray(rng.standard_normal((128, 16, 128, 128), dtype=np.float32))
    yield "gla T=1 bf16 B128 H16 K=V=128", lambda: cuattn.gla(gq, gk, gv, gg, initial_state=state,
                                                                output_final_state=True, mode="recurrent"), True


def main():
    parser = results_parser(__doc__, calls=300)
    parser.add_argument("--only", default="", help="run only the cases whose name contains this text")
    args = parser.parse_args()
    out = out_dir(args)
    rows = []
    for name, fn, capturable in cases():
        if args.only not in name and not name.startswith("floor") and not name.startswith("torch"):
            continue
        for _ in range(10):  # compile and warm up outside the measurements
            fn()
        row = {"case": name, "host_us": host_time(fn, args.calls) * 1e6}
        if capturable:
            row["gpu_only_us"] = cupy_graph_ms(fn) * 1e3
        if not name.startswith("floor"):
            row["pipelined_us"] = time_calls(fn) * 1e6
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(args.calls):
            fn()
        prof.disable()
        cupy.cuda.Device().synchronize()
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(15)
        row["profile"] = text.getvalue()[-4000:]
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(30)
        row["profile_cumulative"] = text.getvalue()[-6000:]
        rows.append(row)
        print(f"{name}: host {row['host_us']:.1f} us/call, GPU only "
              f"{row.get('gpu_only_us', float('nan')):.1f} us/call, pipelined "
              f"{row.get('pipelined_us', float('nan')):.1f} us/call", flush=True)
        print(row["profile"], flush=True)
        print(row["profile_cumulative"], flush=True)
    (out / "host_profile.json").write_text(json.dumps({"meta": run_metadata(), "rows": rows}, indent=1))
    print(f"wrote {out / 'host_profile.json'}")


if __name__ == "__main__":
    main()
