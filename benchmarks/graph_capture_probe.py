"""What CUDA graph capture allows around cuattn calls (run on a GPU machine, ~1 minute).

    python benchmarks/graph_capture_probe.py

Prints, for CuPy stream capture in relaxed and in global mode: whether a pinned host-to-device
copy on another (non-capturing) stream followed by that stream's synchronize is allowed while
capturing (what a capture-safe tensor-map upload would do), whether cupy.empty is, what
cuattn.attention (Hopper tensor maps at new addresses), cuattn.gla and cuattn.decode (with and
without cache_seqlens) do under capture today, and the host cost of Stream.is_capturing().
"""

from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cupy  # noqa: E402
from cupy.cuda import runtime  # noqa: E402

import cuattn  # noqa: E402

MODES = {"relaxed": runtime.streamCaptureModeRelaxed, "global": runtime.streamCaptureModeGlobal}


def attempt(label, mode, body):
    """Capture body() on a fresh stream in `mode`, replay once; print what happened."""
    stream = cupy.cuda.Stream(non_blocking=True)
    status = "ok"
    with stream:
        stream.begin_capture(mode=MODES[mode])
        try:
            body()
        except Exception as exc:  # noqa: BLE001 - a probe reports everything
            status = f"{type(exc).__name__}: {str(exc).splitlines()[0][:150]}"
        try:
            graph = stream.end_capture()
            graph.launch()
            stream.synchronize()
            replay = "replayed"
        except Exception as exc:  # noqa: BLE001
            replay = f"end/replay {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    try:
        cupy.cuda.Device().synchronize()
    except Exception as exc:  # noqa: BLE001
        replay += f"; device sync {type(exc).__name__}: {exc}"
    print(f"{mode:8} {label:55} {status} | {replay}", flush=True)


def main():
    rng = np.random.default_rng(0)

    def dev(shape, dtype=np.float16):
        return cupy.asarray(rng.standard_normal(shape, dtype=np.float32).astype(dtype))

    print(cupy.cuda.runtime.getDeviceProperties(0)["name"].decode(), "cupy", cupy.__version__)
    side = cupy.cuda.Stream(non_blocking=True)
    pinned = cupy.cuda.alloc_pinned_memory(384)
    host = np.frombuffer(pinned, dtype=np.uint8, count=384)
    host[:] = 7
    dst = cupy.empty(384, dtype=cupy.uint8)

    def side_copy():
        runtime.memcpyAsync(dst.data.ptr, host.ctypes.data, 384, runtime.memcpyHostToDevice, side.ptr)
        side.synchronize()

    def side_copy_pageable():
        page = np.full(384, 5, dtype=np.uint8)
        runtime.memcpyAsync(dst.data.ptr, page.ctypes.data, 384, runtime.memcpyHostToDevice, side.ptr)
        side.synchronize()

    q, k, v = dev((4, 8, 256, 128)), dev((4, 8, 256, 128)), dev((4, 8, 256, 128))
    dq, kc, vc = dev((4, 32, 1, 128)), dev((4, 8, 4096, 128)), dev((4, 8, 4096, 128))
    lens = cupy.asarray(rng.integers(1, 4097, 4).astype(np.int32))
    gq, gk, gv = dev((2, 4, 64, 64)), dev((2, 4, 64, 64)), dev((2, 4, 64, 64))
    gg = cupy.asarray(-rng.random((2, 4, 64, 64), dtype=np.float32) * 0.1).astype(cupy.float16)
    cuattn.attention(q, k, v)
    cuattn.decode(dq, kc, vc)
    cuattn.decode(dq, kc, vc, cache_seqlens=lens)
    cuattn.gla(gq, gk, gv, gg)
    cupy.cuda.Device().synchronize()
    for mode in MODES:
        attempt("pinned H2D on a side stream + its synchronize", mode, side_copy)
        attempt("pageable H2D on a side stream + its synchronize", mode, side_copy_pageable)
        attempt("cupy.empty(1 GB) (a new pool block)", mode, lambda: cupy.empty(2**30, dtype=cupy.uint8))
        attempt("attention, warm layout, same arrays", mode, lambda: cuattn.attention(q, k, v))
        attempt("attention, new addresses (q copy)", mode, lambda: cuattn.attention(q.copy(), k, v))
        attempt("decode, no cache_seqlens", mode, lambda: cuattn.decode(dq, kc, vc))
        attempt("decode, cache_seqlens (value check)", mode, lambda: cuattn.decode(dq, kc, vc, cache_seqlens=lens))
        attempt("gla", mode, lambda: cuattn.gla(gq, gk, gv, gg))
    print("pinned copy landed:", bool((dst == 7).all()) or bool((dst == 5).all()))
    stream = cupy.cuda.get_current_stream()
    n = 100000
    t0 = time.perf_counter()
    for _ in range(n):
        stream.is_capturing()
    print(f"Stream.is_capturing(): {(time.perf_counter() - t0) / n * 1e6:.2f} us a call")


if __name__ == "__main__":
    try:
        main()
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        sys.exit(1)
