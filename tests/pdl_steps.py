"""test_gpu_programmatic_launch's steps one at a time, each waited for with a deadline: tells a
launch that hangs (and at which step) from a test that is only slow.

    python tests/pdl_steps.py                      # PDL_TRIGGER on, every persistent kernel
    python tests/pdl_steps.py --kernels mma --setting PDL --deadline 30

For each kernel, the setting off then on: the test's plans (one-item-per-SM and many-items-per-block,
GQA and MHA, D 64 / 128 / 256, paged, one block per SM), each called, then a call that fails its
value check, then again (the same bits as the first); then calls queued back to back on one plan.
Every call is waited for by polling the stream (not a blocking synchronize): a step past
--deadline seconds prints "HANG at ..." and the process exits 3 (the kernel may still spin on the
GPU: end the process). Each step's time is printed (host and GPU; a plan's first call with its
NVRTC compile, so keep the deadline above a compile).
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cupy as cp  # noqa: E402

import cuattn  # noqa: E402
import cuattn.decode  # noqa: E402,F401
from helpers import on_device, queued_sets, ragged_inputs  # noqa: E402
from test_decode_gpu import PDL_PLANS, PDL_QUEUED  # noqa: E402

DECODE_MODULE = sys.modules["cuattn.decode"]


def wait(label, start, deadline):
    """Poll the current stream until its work is done; exit 3 once `deadline` seconds have passed
    since `start` (time.perf_counter() before the step's calls: the host's part, compiles included,
    counts too)."""
    stream = cp.cuda.get_current_stream()
    while not stream.done:
        if time.perf_counter() - start > deadline:
            print(f"HANG at {label}: not done after {deadline:.0f} s", flush=True)
            os._exit(3)
        time.sleep(0.001)
    print(f"  {label:<72} {time.perf_counter() - start:8.3f} s", flush=True)


def plan_steps(rng, label, shape, deadline):
    """One plan: a call, a call that fails its value check, the call again; False if the bits differ."""
    b, length = shape[0], shape[3]
    q, k, v, kw = ragged_inputs(rng, *shape)
    dev = on_device(cp, kw)
    q, k, v = cp.asarray(q), cp.asarray(k), cp.asarray(v)
    start = time.perf_counter()
    o, lse = cuattn.decode(q, k, v, return_lse=True, **dev)
    wait(f"{label} {shape} call", start, deadline)
    start = time.perf_counter()
    try:
        cuattn.decode(q, k, v, return_lse=True, **dict(dev, cache_seqlens=cp.full(b, length + 1, cp.int32)))
        print(f"  {label} {shape}: the bad lengths were not refused", flush=True)
        return False
    except ValueError:
        pass
    wait(f"{label} {shape} failed value check", start, deadline)
    start = time.perf_counter()
    again, again_lse = cuattn.decode(q, k, v, return_lse=True, **dev)
    wait(f"{label} {shape} again", start, deadline)
    return bool((again == o).all()) and bool((again_lse == lse).all())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernels", default="tma,mma", help="persistent split kernels (cuattn.decode.KERNELS)")
    parser.add_argument("--setting", default="PDL_TRIGGER", choices=("PDL", "PDL_TRIGGER"))
    parser.add_argument("--deadline", type=float, default=60.0, help="seconds a step may take (compiles included)")
    args = parser.parse_args()
    if cp.cuda.Device().compute_capability != "90":
        sys.exit("the persistent kernels' programmatic launches run on cc 9.0")
    differ = 0
    for kernel in args.kernels.split(","):
        DECODE_MODULE.KERNEL = kernel
        rng = np.random.default_rng(0)
        for value in (False, True):
            setattr(DECODE_MODULE, args.setting, value)
            label = f"{kernel} {args.setting}={value}"
            for shape in PDL_PLANS:
                if not plan_steps(rng, label, shape, args.deadline):
                    print(f"  {label} {shape}: the repeated call gave other bits", flush=True)
                    differ += 1
            for b, hq, hkv, length, d in PDL_QUEUED:
                sets = queued_sets(cp, rng, b, hq, hkv, length, d)
                start = time.perf_counter()
                for i in range(12):
                    cuattn.decode(*sets[i % 3], alibi_slopes="default", return_lse=True)
                wait(f"{label} 12 queued calls {(b, hq, hkv, length, d)}", start, args.deadline)
    print(f"done: no step hung; {differ} plans gave other bits when repeated")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
