"""Even pieces on the bulk-copy decode kernel: how many pieces per SM, on which shapes.

Run on a GPU machine:  python benchmarks/decode_pieces_sweep.py [--out DIR] [--rounds N] [--only TEXT]

Even pieces lay the row groups' keys of the bulk-copy kernel (one query row per block: MHA rows)
end to end and cut them into equal pieces. In the 11th session the default cut one piece per
resident block (3 per SM at D 128 and 256); on the ANCHORS.md rows 2 pieces per SM gained more on
B 16 32/32 L 4096 (+3.2-3.5% over equal splits, against +1-2% for 3) and lost 0.6-0.9% on B 1 32/32
and B 64. This sweep (first run in the 12th session; its result is cuattn.decode.even_pieces' rule)
times equal splits and 1, 2, 3 and 4 pieces per SM (and EVEN_MIN_KEYS 2048, where pieces
would be shorter than the default 4096; 2 per SM in two blocks per SM with 6-stage rings; one block
per SM with a 12-stage ring, pieces or equal splits) on a
grid of MHA shapes, interleaved in rounds as in
benchmarks/decode.py, to find the rule. fp16, ALiBi "default", Sq 1. Writes
DIR/decode_pieces_sweep.json: per shape, TB/s per variant (median over rounds), the per-round
values, and plan_even's (slots, keys per piece, span, pieces) for each piece count.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cupy  # noqa: E402
from common import out_dir, results_parser, run_metadata  # noqa: E402
from decode import interleaved, make_inputs, with_settings  # noqa: E402

import cuattn  # noqa: E402

module = sys.modules["cuattn.decode"]
SHAPES = [  # (B, Hq, Hkv, D, L): Hq = Hkv (one row per block), and GQA at D 256 (4-row blocks: the
    # tensor-core kernel takes D 64 and 128 only), all on the bulk-copy kernel
    (1, 32, 32, 128, 33001), (2, 32, 32, 128, 33001), (4, 32, 32, 128, 16384), (8, 32, 32, 128, 8192),
    (16, 32, 32, 128, 4096), (32, 32, 32, 128, 4096), (64, 32, 32, 128, 2048), (128, 32, 32, 128, 1024),
    (8, 16, 16, 256, 33001), (4, 16, 16, 256, 16384), (32, 8, 8, 64, 32768),
    (8, 32, 8, 256, 16384), (2, 32, 8, 256, 65536),
]
PER_SM = (1, 2, 3, 4)


def main():
    parser = results_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", default="", help="only shapes whose label contains this text")
    args = parser.parse_args()
    out = out_dir(args)
    sms = cupy.cuda.Device().attributes["MultiProcessorCount"]
    reps = dict(min_batches=5, min_seconds=0.05)
    rows = []
    for b, hq, hkv, d, length in SHAPES:
        label = f"B{b} {hq}/{hkv} D{d} L{length}"
        if args.only not in label:
            continue
        _, (q, k, v) = make_inputs(b, hq, hkv, d, length)
        nbytes = 2 * b * hkv * length * d * k.itemsize
        alibi = lambda a=(q, k, v): cuattn.decode(*a, alibi_slopes="default")  # noqa: E731
        fns = {"equal splits": with_settings(alibi, EVEN_SPLIT=False), "default": alibi}
        plans = {}
        for per_sm in PER_SM:
            fns[f"{per_sm}/SM"] = with_settings(alibi, EVEN_SPLIT=True, EVEN_PIECES=per_sm * sms)
            fns[f"{per_sm}/SM, min 2048"] = with_settings(alibi, EVEN_SPLIT=True, EVEN_PIECES=per_sm * sms,
                                                          EVEN_MIN_KEYS=2048)
            plans[per_sm] = module.plan_even(b * hkv, length, per_sm * sms, module.EVEN_MIN_KEYS)
        # two blocks per SM with a 6-stage ring (96 KB in flight each) instead of three with 4 stages
        fns["2/SM, 6 stages"] = with_settings(alibi, EVEN_SPLIT=True, EVEN_PIECES=2 * sms, TMA_STAGES=6)
        # one block per SM with a 12-stage ring (192 KB in flight: the three 4-stage blocks' bytes in
        # one stream per SM), even pieces (one per block) and equal splits
        fns["1 block/SM, 12 stages"] = with_settings(alibi, TMA_STAGES=12)
        fns["1 block/SM, 12 stages, equal splits"] = with_settings(alibi, TMA_STAGES=12, EVEN_SPLIT=False)
        result = interleaved(fns, nbytes, args.rounds, reps)
        row = dict(label=label, B=b, Hq=hq, Hkv=hkv, D=d, L=length, bytes=nbytes,
                   tbps={n: result[n] for n in fns}, rounds=result["rounds"],
                   plans={str(p): plan for p, plan in plans.items()})
        rows.append(row)
        print(f"{label:22}" + "  ".join(f"{n}: {x:.3f}" for n, x in row["tbps"].items()), flush=True)
        del q, k, v, fns, alibi
        cupy.get_default_memory_pool().free_all_blocks()
    doc = {"meta": run_metadata(unit="TB/s = bytes of K and V / time", rounds=args.rounds), "rows": rows}
    (out / "decode_pieces_sweep.json").write_text(json.dumps(doc, indent=1))
    print(f"wrote {out / 'decode_pieces_sweep.json'}")


if __name__ == "__main__":
    main()
