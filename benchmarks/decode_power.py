"""Clocks and power while decode runs: does the consumers' math cost SM clock?

Run on a GPU machine with torch:  python benchmarks/decode_power.py [--out DIR] [--seconds S]

Why: under Nsight Compute (20th session, results/logs/decode_ncu_mma_s20.log, H200, B 1 32/8 L
131072) the tensor-core decode kernel ran at an SM frequency of 1.29 GHz with its math and 1.41
GHz without it (-DCUATTN_DECODE_SKIP_MATH), 142.8 vs 134.6 us. If the lent GPU is held by its
power limit while HBM streams at full rate, every watt the consumers draw lowers the SM clock,
and a stream whose per-SM issue is counted in cycles (copies, barrier round trips) slows with it.
That would explain why our whole kernel trails its own stream alone by 0.4-4% while the ring's
slack says the math is hidden.

For each row and implementation (cuattn.decode with ALiBi "default", the same compiled with
-DCUATTN_DECODE_SKIP_MATH ("no math": its stream alone), torch SDPA cuDNN and flash without bias)
the calls run back to back for --seconds (CUDA-event timing as every benchmark here: TB/s = K and
V bytes / median time per call) while nvidia-smi samples the GPU every 50 ms: the medians of SM
clock, memory clock, power draw, the power limit, and every clock-event (throttle) reason seen
active. The implementations take turns for --rounds rounds, so a drift of the GPU's temperature
or clock over the run reaches them alike; the table gives each round, the JSON keeps them all.
Writes DIR/decode_power.json and prints a table.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cupy  # noqa: E402
from common import out_dir, results_parser, run_metadata, time_calls  # noqa: E402
from decode import make_inputs, torch_impls, with_settings  # noqa: E402
from decode_stream_probe import SKIP  # noqa: E402

import cuattn  # noqa: E402

module = sys.modules["cuattn.decode"]
ROWS = [(1, 32, 8, 128, 131072), (8, 32, 8, 128, 8192), (16, 32, 8, 128, 33001), (1, 32, 32, 128, 33001),
        (64, 32, 32, 128, 2048)]
FIELDS = ("clocks.sm", "clocks.mem", "power.draw", "power.limit", "temperature.gpu")
REASONS = ("clocks_event_reasons.active", "clocks_throttle_reasons.active")  # (newer, older nvidia-smi)


@functools.lru_cache(maxsize=None)
def _query() -> str:
    """nvidia-smi's --query-gpu list: FIELDS and the clock-event reasons field it takes (probed once)."""
    for reason in REASONS:
        query = ",".join(FIELDS + (reason,))
        probe = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits"],
                               capture_output=True, text=True)
        if probe.returncode == 0 and "Field" not in probe.stdout:
            return query
    raise RuntimeError("nvidia-smi takes neither clock-event reason field")


def sampler():
    """A running nvidia-smi sampling FIELDS and the active clock-event reasons every 50 ms."""
    return subprocess.Popen(["nvidia-smi", f"--query-gpu={_query()}", "--format=csv,noheader,nounits", "-lms", "50"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def summary(lines):
    values = [[x.strip() for x in line.split(",")] for line in lines if line.count(",") == len(FIELDS)]
    if not values:
        return {}
    out = {}
    for i, name in enumerate(FIELDS):
        nums = [float(v[i]) for v in values if v[i].replace(".", "", 1).isdigit()]
        out[name] = float(np.median(nums)) if nums else None
    reasons = 0
    for v in values:
        try:
            reasons |= int(v[-1], 16)
        except ValueError:
            pass
    out["reasons_seen"] = hex(reasons)
    out["samples"] = len(values)
    return out


def measure(fn, nbytes, seconds):
    fn()
    cupy.cuda.Device().synchronize()
    proc = sampler()
    time.sleep(0.2)
    try:
        per_call = time_calls(fn, min_batches=30, min_seconds=seconds)
    finally:
        proc.terminate()
        lines = proc.communicate()[0].splitlines()
    return {"tbps": nbytes / per_call / 1e12, "us": per_call * 1e6, **summary(lines[4:])}  # (first samples: ramp)


def main():
    parser = results_parser(__doc__)
    parser.add_argument("--seconds", type=float, default=1.5, help="per implementation and round")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    out = out_dir(args)
    info = subprocess.run(["nvidia-smi", "-q", "-d", "POWER,CLOCK,PERFORMANCE"], capture_output=True, text=True).stdout
    print(info)
    meta = run_metadata(nvidia_smi=info)
    skip = {"TMA_OPTIONS": module.TMA_OPTIONS + SKIP}
    rows = []
    for b, hq, hkv, d, length in ROWS:
        t, (q, k, v) = make_inputs(b, hq, hkv, d, length)
        nbytes = 2 * b * hkv * length * d * k.itemsize
        impls = {"cuattn": lambda: cuattn.decode(q, k, v, alibi_slopes="default")}
        impls["no math"] = with_settings(impls["cuattn"], **skip)
        if t is not None:
            impls.update({name: fn for name, (fn, _) in torch_impls(*t, cuattn.alibi_slopes(hq)).items()
                          if name in ("torch_cudnn", "torch_flash")})
        label = f"B{b} {hq}/{hkv} D{d} L{length}"
        row = {"label": label, "B": b, "Hq": hq, "Hkv": hkv, "D": d, "L": length,
               "impls": {name: [] for name in impls}}
        for fn in impls.values():  # every variant compiled first: no compile pause (an idle, cooling GPU) between runs
            fn()
        for round_ in range(args.rounds):
            for name, fn in impls.items():
                r = measure(fn, nbytes, args.seconds)
                row["impls"][name].append(r)
                print(f"{label:24s} {name:12s} round {round_}  {r['tbps']:6.3f} TB/s  SM {r.get('clocks.sm')} MHz  "
                      f"mem {r.get('clocks.mem')} MHz  {r.get('power.draw')} / {r.get('power.limit')} W  "
                      f"{r.get('temperature.gpu')} C  reasons {r.get('reasons_seen')}", flush=True)
        rows.append(row)  # (written after every row: a run cut by its time limit keeps what it measured)
        (out / "decode_power.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
