"""Where a decode call's time goes: the whole call vs each of its launches alone, and host time.

Run on a GPU machine:  python benchmarks/decode_launches.py [--kernel NAME]  (cuattn.decode.KERNELS)

For each contiguous-cache row of benchmarks/decode.py (ANCHORS.md's decode rows; fp16, ALiBi
"default"), records the kernel launches one cuattn.decode call makes (by wrapping cuattn.decode's
launch helper), then times the whole call and each launch replayed alone with
benchmarks/common.time_calls, and the host time of a call (benchmarks/common.host_time). A split
kernel much faster alone than the whole call means the time goes to the other launches, gaps or
host work, not to streaming the cache.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cupy  # noqa: E402
from common import host_time, time_calls  # noqa: E402
from decode import ROWS as DECODE_ROWS  # noqa: E402

import cuattn  # noqa: E402

ROWS = [row[:5] for row in DECODE_ROWS if not row[5]]  # benchmarks/decode.py's contiguous rows


def recorded_launches(call):
    """Every launch one call makes, as replayable no-argument functions (through cuattn.decode's
    launch_packed: each records its packed launch, stream and slot values; the call's outputs are
    kept alive by the replays, which write them again)."""
    module = sys.modules["cuattn.decode"]
    recorded = []
    real_launch = module.launch_packed
    module.launch_packed = lambda packed, stream, values=(): (recorded.append((packed, stream, list(values))),
                                                             real_launch(packed, stream, values))
    try:
        out = call()
    finally:
        module.launch_packed = real_launch
    return [Replay(packed, stream, values, out) for packed, stream, values in recorded]


class Replay:
    """One recorded launch: calling it launches it again with the same arguments."""

    def __init__(self, packed, stream, values, keep):
        self.packed, self.stream, self.values, self._keep = packed, stream, values, keep
        self.grid = packed.grid

    def __call__(self):
        self.packed(self.stream, self.values)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    module = sys.modules["cuattn.decode"]
    parser.add_argument("--kernel", choices=module.KERNELS, default=None, help="cuattn.decode.KERNEL")
    args = parser.parse_args()
    if args.kernel:
        module.KERNEL = args.kernel
    rng = cupy.random.default_rng(0)
    for b, hq, hkv, d, length in ROWS:
        q = rng.standard_normal((b, hq, 1, d), dtype=cupy.float32).astype(cupy.float16)
        k = rng.standard_normal((b, hkv, length, d), dtype=cupy.float32).astype(cupy.float16)
        v = rng.standard_normal((b, hkv, length, d), dtype=cupy.float32).astype(cupy.float16)
        nbytes = 2 * k.nbytes

        def call():
            return cuattn.decode(q, k, v, alibi_slopes="default")

        call()  # compile
        recorded = recorded_launches(call)
        whole = time_calls(call, min_batches=8, min_seconds=0.2)
        alone = [time_calls(replay, min_batches=8, min_seconds=0.2) for replay in recorded]
        parts = ", ".join(f"grid {r.grid}: {t * 1e6:.1f} us" for r, t in zip(recorded, alone))
        split = max(alone)
        print(f"B{b} Hq{hq}/Hkv{hkv} D{d} L{length}: call {whole * 1e6:.1f} us = {nbytes / whole / 1e12:.2f} TB/s; "
              f"launches {parts}; longest alone {nbytes / split / 1e12:.2f} TB/s; host {host_time(call) * 1e6:.0f} us",
              flush=True)


if __name__ == "__main__":
    main()
