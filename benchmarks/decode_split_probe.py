"""Split counts forced per row: TB/s of cuattn.decode (ALiBi "default", fp16, one query token).

Run on a GPU machine:  python benchmarks/decode_split_probe.py [--out DIR]

For each row, the default plan and plan_persistent's (splits, keys per split) forced to each
count in SPLITS (those that divide the row into whole CHUNK_ALIGN pieces), timed side by side
with benchmarks/common.time_calls. Answers: would more, shorter items (several blocks per SM)
beat one long item per SM on short calls, and do long rows lose anything by it? Writes
DIR/decode_split_probe.json (default benchmarks/results/).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cupy  # noqa: E402
from common import out_dir, results_parser, run_metadata, time_calls  # noqa: E402

import cuattn  # noqa: E402

module = sys.modules["cuattn.decode"]
ROWS = [(4, 32, 4, 64, 32768), (8, 32, 8, 128, 8192), (4, 32, 4, 128, 16384), (16, 32, 8, 128, 33001),
        (1, 32, 8, 128, 131072)]
SPLITS = (1, 2, 4, 8, 16, 32, 64)


def main():
    args = results_parser(__doc__).parse_args()
    out = out_dir(args)
    rng = cupy.random.default_rng(0)
    rows = []
    saved = module.plan_persistent
    for b, hq, hkv, d, length in ROWS:
        q = rng.standard_normal((b, hq, 1, d), dtype=cupy.float32).astype(cupy.float16)
        k = rng.standard_normal((b, hkv, length, d), dtype=cupy.float32).astype(cupy.float16)
        v = rng.standard_normal((b, hkv, length, d), dtype=cupy.float32).astype(cupy.float16)
        nbytes = 2 * k.nbytes
        row = dict(B=b, Hq=hq, Hkv=hkv, D=d, L=length, default=saved(b, hkv, 1, length, 264, 132))

        def call():
            return cuattn.decode(q, k, v, alibi_slopes="default")

        row["tbps"] = {"default": nbytes / time_calls(call) / 1e12}
        try:
            for s in SPLITS:
                chunk = module.split_chunk(length, s)
                if -(-length // chunk) != s:
                    continue
                module.plan_persistent = lambda *a, f=(s, chunk), **kw: f
                row["tbps"][s] = nbytes / time_calls(call) / 1e12
        finally:
            module.plan_persistent = saved
        rows.append(row)
        print(f"B{b} {hq}/{hkv} D{d} L{length} (default plan {row['default']}): "
              + ", ".join(f"{n}: {t:.3f}" for n, t in row["tbps"].items()), flush=True)
        del q, k, v
        cupy.get_default_memory_pool().free_all_blocks()
    (out / "decode_split_probe.json").write_text(json.dumps(dict(meta=run_metadata(unit="TB/s"), rows=rows), indent=1))


if __name__ == "__main__":
    main()
