"""Where the one-row rules send a dense MHA decode call, and whether the tensor-core kernel wins there.

Run on a GPU machine:  python benchmarks/decode_one_row_scope.py [--rounds 5] [--out DIR]
List the shapes and each rule's verdict without a GPU:  python benchmarks/decode_one_row_scope.py --list [--sms 132]

cuattn.decode gives one query row per block on a dense cache (MHA, Sq 1) to the tensor-core kernel
("mma") instead of the bulk-copy kernel ("tma") where its plan keeps every row group whole
(ONE_ROW_MMA_WHOLE, mma_keeps_rows_whole) or splits every row group over one block per SM with
at most half as many row groups as SMs (ONE_ROW_MMA_FEW, mma_splits_few_rows). Both rules were
first measured on benchmarks/decode.py's rows only (B 64 32/32 L 2048; B 1 32/32 L 33001); this
script's first run (44th session, H100) set the few-rows rule's bound. It times both
kernels (forced through cuattn.decode.KERNEL) and the automatic choice on fp16 D 128 shapes inside
and next to the rules' scope (short and long caches, 8 to 128 row groups), in interleaved rounds
(benchmarks/decode.py's `interleaved`: median per column, per-round values kept), and writes
decode_one_row_scope.json: per shape the rules' verdicts, TB/s per column and mma / tma.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import out_dir, results_parser  # noqa: E402

import cuattn  # noqa: E402,F401  (registers cuattn.decode's module)

DECODE_MODULE = sys.modules["cuattn.decode"]
D = 128
SHAPES = [  # (B, H, L): MHA, one query row per block, fp16, head dim D
    (1, 32, 4096), (1, 32, 33001), (1, 32, 131072),   # B 1 32/32: ONE_ROW_MMA_FEW's measured row at L 33001
    (2, 8, 3200), (1, 8, 33001), (2, 16, 16384),       # few row groups (8-32)
    (2, 32, 8192), (3, 32, 33001), (4, 32, 2048),      # 64-128 row groups
    (4, 32, 33001), (8, 32, 2048), (64, 32, 2048),     # as many row groups as SMs or more
]


def verdicts(b: int, h: int, length: int, sms: int) -> dict:
    """Each one-row rule's verdict on a shape and the kernel the automatic choice takes with
    today's settings (dense cache, one row per block)."""
    whole, few = DECODE_MODULE._one_row_mma_rules(b, h, length, D, sms)
    takes = DECODE_MODULE.one_row_takes_mma(b, h, length, D, sms)
    resident, stages, splits, chunk = DECODE_MODULE.mma_plan(b, h, 1, length, D, sms)
    return {"whole": bool(whole), "few": bool(few), "auto_kernel": "mma" if takes else "tma",
            "mma_plan": {"blocks_per_sm": resident, "stages": stages, "splits": splits, "chunk": chunk}}


def calls_on(inputs):
    """One cuattn.decode call (ALiBi "default") on these (q, k_cache, v_cache)."""
    q, k, v = inputs
    return lambda: cuattn.decode(q, k, v, alibi_slopes="default")


def main():
    parser = results_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--list", action="store_true", help="print the shapes and the rules' verdicts; no GPU")
    parser.add_argument("--sms", type=int, default=132, help="SM count for --list (an H100 SXM / H200: 132)")
    args = parser.parse_args()
    if args.list:
        for b, h, length in SHAPES:
            print(f"B {b:3d} {h}/{h} L {length:6d}:", json.dumps(verdicts(b, h, length, args.sms)))
        return
    import cupy

    from common import run_metadata
    from decode import interleaved, make_inputs, with_settings

    sms = DECODE_MODULE.device_properties()["num_sms"]
    rows = []
    for b, h, length in SHAPES:
        _, inputs = make_inputs(b, h, h, D, length)
        nbytes = 2 * inputs[1].nbytes
        call = calls_on(inputs)
        fns = {"auto": call,
               "tma": with_settings(call, KERNEL="tma"),
               "mma": with_settings(call, KERNEL="mma")}
        result = interleaved(fns, nbytes, args.rounds, dict(min_batches=15, min_seconds=0.2))
        row = dict(B=b, H=h, L=length, bytes=nbytes, **verdicts(b, h, length, sms))
        row.update({name: result[name] for name in fns}, rounds=result["rounds"],
                   mma_over_tma=result["mma"] / result["tma"])
        rows.append(row)
        print(f"B {b:3d} {h}/{h} L {length:6d}  auto ({row['auto_kernel']}) {result['auto']:.3f}"
              f"  tma {result['tma']:.3f}  mma {result['mma']:.3f}  mma/tma {row['mma_over_tma']:.4f}"
              f"  whole {row['whole']} few {row['few']}", flush=True)
        del inputs, call, fns
        cupy.get_default_memory_pool().free_all_blocks()
    out = out_dir(args) / "decode_one_row_scope.json"
    meta = run_metadata(decode_settings={name: getattr(DECODE_MODULE, name)
                                         for name in ("ONE_ROW_MMA_WHOLE", "ONE_ROW_MMA_FEW", "STEAL")})
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print("wrote", out)


if __name__ == "__main__":
    main()
