"""Work stealing on and off, and its grain: TB/s of cuattn.decode (ALiBi "default", fp16, Sq 1).

Run on a GPU machine:  python benchmarks/decode_steal_probe.py [--out DIR] [--only TEXT]

For every row of benchmarks/decode.py (its ROWS, paged row included), cuattn.decode with
cuattn.decode.STEAL off and on at each grain in GRAINS (GRAIN_BYTES: K and V bytes a thief
takes at a time), timed side by side with benchmarks/common.time_calls, variants interleaved
(ROUNDS rounds, each variant's best-of-rounds median kept, so drift between variants is not
mistaken for a difference). Answers: what does stealing gain per row, and at which grain.
Writes DIR/decode_steal_probe.json (default benchmarks/results/).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cupy  # noqa: E402
from common import out_dir, results_parser, run_metadata, time_calls  # noqa: E402
from decode import PAGE_SIZE, ROWS, paged_copy  # noqa: E402

import cuattn  # noqa: E402

module = sys.modules["cuattn.decode"]
GRAINS = (65536, 262144)
ROUNDS = 3


def main():
    parser = results_parser(__doc__)
    parser.add_argument("--only", default="", help="only rows whose label contains this text")
    args = parser.parse_args()
    out = out_dir(args)
    rng = cupy.random.default_rng(0)
    prng = np.random.default_rng(0)
    variants = [("off", False, module.GRAIN_BYTES)] + [(f"grain {g // 1024}K", True, g) for g in GRAINS]
    saved = module.STEAL, module.GRAIN_BYTES
    rows = []
    try:
        for b, hq, hkv, d, length, paged in ROWS:
            label = f"B{b} {hq}/{hkv} D{d} L{length}{' paged' if paged else ''}"
            if args.only not in label:
                continue
            q = rng.standard_normal((b, hq, 1, d), dtype=cupy.float32).astype(cupy.float16)
            k = rng.standard_normal((b, hkv, length, d), dtype=cupy.float32).astype(cupy.float16)
            v = rng.standard_normal((b, hkv, length, d), dtype=cupy.float32).astype(cupy.float16)
            nbytes = 2 * k.nbytes
            kw = {}
            if paged:
                k, v, kw["block_table"] = paged_copy(k, v, PAGE_SIZE, prng)

            def call():
                return cuattn.decode(q, k, v, alibi_slopes="default", **kw)

            best = {}
            for _ in range(ROUNDS):
                for name, steal, grain in variants:
                    module.STEAL, module.GRAIN_BYTES = steal, grain
                    t = time_calls(call)
                    best[name] = min(best.get(name, t), t)
            row = dict(label=label, B=b, Hq=hq, Hkv=hkv, D=d, L=length, paged=paged,
                       tbps={n: nbytes / t / 1e12 for n, t in best.items()}, us={n: t * 1e6 for n, t in best.items()})
            rows.append(row)
            print(f"{label:32} " + "  ".join(f"{n}: {x:.3f}" for n, x in row["tbps"].items()), flush=True)
            del q, k, v, kw
            cupy.get_default_memory_pool().free_all_blocks()
    finally:
        module.STEAL, module.GRAIN_BYTES = saved
    (out / "decode_steal_probe.json").write_text(json.dumps(dict(meta=run_metadata(unit="TB/s"), rows=rows),
                                                            indent=1))


if __name__ == "__main__":
    main()
