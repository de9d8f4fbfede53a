"""GPU timing shared by the benchmark scripts (CUDA events through CuPy)."""

from __future__ import annotations

import time

import numpy as np

import cupy


def time_calls(fn, min_batches=15, min_seconds=0.3, warmup=10):
    """Median seconds per call. Calls are queued in batches between two CUDA events (enough
    calls for about 2 ms of GPU work), so host-side launch overhead overlaps GPU work for every
    implementation alike, as it does in a real pipeline; 10 warm-up calls first."""
    for _ in range(warmup):
        fn()
    cupy.cuda.Device().synchronize()
    e0, e1 = cupy.cuda.Event(), cupy.cuda.Event()
    e0.record()
    for _ in range(3):
        fn()
    e1.record()
    e1.synchronize()
    per_call = cupy.cuda.get_elapsed_time(e0, e1) * 1e-3 / 3
    inner = int(min(50, max(1, 2e-3 // max(per_call, 1e-6))))
    times = []
    start_wall = time.perf_counter()
    while len(times) < min_batches or time.perf_counter() - start_wall < min_seconds:
        e0, e1 = cupy.cuda.Event(), cupy.cuda.Event()
        e0.record()
        for _ in range(inner):
            fn()
        e1.record()
        e1.synchronize()
        times.append(cupy.cuda.get_elapsed_time(e0, e1) * 1e-3 / inner)
        if len(times) >= 500:
            break
    return float(np.median(times))


def host_time(fn, calls=50):
    """Seconds of Python/launch work per call (wall time of queuing calls, GPU not waited on)."""
    cupy.cuda.Device().synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    elapsed = time.perf_counter() - start
    cupy.cuda.Device().synchronize()
    return elapsed / calls
