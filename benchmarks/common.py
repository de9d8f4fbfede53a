"""Shared by the benchmark scripts: GPU timing (CUDA events through CuPy), run metadata, plots."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import cupy


def results_parser(doc: str, calls: int | None = None) -> argparse.ArgumentParser:
    """The command line of a benchmark script: --out DIR (default benchmarks/results/) and, when
    `calls` is given, --calls N with that default."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    if calls is not None:
        parser.add_argument("--calls", type=int, default=calls)
    return parser


def out_dir(args) -> Path:
    """args.out as a Path, created if missing."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def time_calls(fn, min_batches=15, min_seconds=0.3, warmup=10):
    """Median seconds per call. Calls are queued in batches between two CUDA events (enough
    calls for about 2 ms of GPU work), so host-side launch overhead overlaps GPU work for every
    implementation alike, as it does in a real pipeline; 10 warm-up calls first. Each batch is
    led by one untimed call, so the GPU is already busy when the first event is recorded and the
    first timed call's host work is hidden like the others' (without it, every batch would count
    one call's host time as idle GPU time). Where the host is slower than the GPU, the result is
    the host-bound rate of a pipeline of calls."""
    for _ in range(warmup):
        fn()
    cupy.cuda.Device().synchronize()

    def batch(n):
        e0, e1 = cupy.cuda.Event(), cupy.cuda.Event()
        fn()  # lead call, untimed
        e0.record()
        for _ in range(n):
            fn()
        e1.record()
        e1.synchronize()
        return cupy.cuda.get_elapsed_time(e0, e1) * 1e-3 / n

    per_call = batch(3)
    inner = int(min(50, max(1, 2e-3 // max(per_call, 1e-6))))
    times = []
    start_wall = time.perf_counter()
    while len(times) < min_batches or time.perf_counter() - start_wall < min_seconds:
        times.append(batch(inner))
        if len(times) >= 500:
            break
    return float(np.median(times))


def round_order(names: list, r: int, rounds: int) -> list:
    """The order of round r (of `rounds`) of an interleaved timing: `names` rotated by
    r * len(names) // rounds places, so that over the rounds each name's place in the order spreads
    over the whole round. (A rotation by r places, used up to the 38th session, kept the first names
    at the two ends of every round where there are fewer rounds than names: decode.py's 7 rounds of
    ~20 columns put its headline column first once and within the last seven places six times.)"""
    n = len(names)
    shift = r * n // max(rounds, 1) % n if n else 0
    return names[shift:] + names[:shift]


def host_time(fn, calls=50, repeats=5):
    """Seconds of Python/launch work per call (wall time of queuing calls, GPU not waited on): the
    median over `repeats` batches of `calls` calls, each batch started on an idle GPU (one batch,
    up to the 38th session, read 18.5-33 us a call on decode.py rows of the same code path)."""
    per_call = []
    for _ in range(repeats):
        cupy.cuda.Device().synchronize()
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        per_call.append((time.perf_counter() - start) / calls)
        cupy.cuda.Device().synchronize()
    return float(np.median(per_call))


METHOD = ("median per call of CUDA-event times over batches of calls (about 2 ms of GPU work a "
          "batch, each led by one untimed call so the GPU is busy when timing starts), >= 15 batches "
          "and >= 0.3 s after 10 warm-ups; the same random inputs for all")


def run_metadata(**extra):
    """Device, date and library versions for a results JSON."""
    import platform

    props = cupy.cuda.runtime.getDeviceProperties(0)
    meta = {
        "device": props["name"].decode(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cupy": cupy.__version__,
        "python": platform.python_version(),
        "method": METHOD,
    }
    try:
        import torch

        meta["torch"] = torch.__version__
        meta["cudnn"] = torch.backends.cudnn.version()
    except ImportError:
        pass
    meta.update(extra)
    return meta


def bar_chart(path, rows, names, labels, ylabel, title, log=False, hline=None, rotation=30):
    """Grouped bars of rows[i][name] for each name (matplotlib optional: nothing without it)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    names = [n for n in names if any(n in r for r in rows)]
    fig, ax = plt.subplots(figsize=(max(8, 0.6 * len(rows) + 4), 4.5))
    x = np.arange(len(rows))
    width = 0.8 / len(names)
    for i, n in enumerate(names):
        ax.bar(x + i * width, [r.get(n) or 0 for r in rows], width, label=n)
    if hline is not None:
        ax.axhline(hline, color="gray", lw=0.8, ls="--")
    ax.set_xticks(x + width * (len(names) - 1) / 2, labels, rotation=rotation, ha="right", fontsize=7)
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def cupy_graph_ms(fn, calls=20, replays=20):
    """Median GPU ms per call with no host work between calls: `calls` calls captured in a CUDA
    graph (CuPy stream capture) and replayed. For calls whose host time exceeds their GPU time.
    cuattn calls are captured inside cuattn.graph_memory(), which holds their buffers while the
    graph is replayed here."""
    import cuattn

    stream = cupy.cuda.Stream(non_blocking=True)
    with stream, cuattn.graph_memory() as memory:
        fn()
        stream.synchronize()
        stream.begin_capture()
        for _ in range(calls):
            fn()
        graph = stream.end_capture()
        graph.launch()
        stream.synchronize()
        times = []
        for _ in range(replays):
            e0, e1 = cupy.cuda.Event(), cupy.cuda.Event()
            e0.record(stream)
            graph.launch()
            e1.record(stream)
            e1.synchronize()
            times.append(cupy.cuda.get_elapsed_time(e0, e1) / calls)
    del graph
    memory.release()
    return float(np.median(times))


def torch_graph_ms(fn, calls=20, replays=20):
    """cupy_graph_ms for torch work (torch.cuda.CUDAGraph, warmed up on a side stream)."""
    import torch

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(replays):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        graph.replay()
        e1.record()
        e1.synchronize()
        times.append(e0.elapsed_time(e1) / calls)
    return float(np.median(times))
