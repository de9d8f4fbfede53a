"""How each persistent decode kernel streams: ring depth, the consumers' math, item counts.

Run on a GPU machine:  python benchmarks/decode_stream_probe.py [--out DIR] [--only TEXT] [--variants A/B] [--shapes "B,Hq,Hkv,D,L;..."]

For every row of benchmarks/decode.py (its ROWS), cuattn.decode (ALiBi "default", fp16, Sq 1)
with the kernel the dispatcher picks and module settings changed one variant at a time:

- ring depth (MMA_STAGES or TMA_STAGES; deeper rings leave room for fewer blocks per SM),
- "no math": the kernel compiled with -DCUATTN_DECODE_SKIP_MATH, whose consumers take each tile
  and hand it back at once (wrong results; the time of the stream alone: producer, copies, ring),
- "bulk, no math" (tensor-core kernel): also -DCUATTN_DECODE_MMA_BULK, the ring filled by 1-d
  bulk copies of whole tiles instead of tensor copies (the same bytes; contiguous caches),
- "cp.async" (tensor-core kernel): MMA_COPY "cp.async", the producer warp's 16-byte cp.async,
- "many items": ONE_PER_SM_MIN_KEYS out of reach, so plan_persistent picks its cost-model split
  count rather than one item per SM,
- the register kernel ("regs") on rows of one query row per block,
- "no row ends" (bulk-copy kernel): compiled with -DCUATTN_DECODE_SKIP_END, whose consumers skip
  every partial's end (written partial, count, merge; wrong results: what the rows' ends cost),
  with and without the math, even pieces (the default) and equal splits,
- the ends as they were before the 13th session: "sc fences" (-DCUATTN_DECODE_SC_FENCE: every
  consumer thread's fence.sc before and after the count, not one thread's release/acquire
  atomic), "lone via partial" (-DCUATTN_DECODE_LONE_PARTIAL: a row group's only partial written as
  a partial and merged by its own block, not straight into the output), "old ends" (both),
- "no count" (-DCUATTN_DECODE_SKIP_COUNT: partials and lone outputs written, no count, no merge;
  wrong results): the count and merge's cost beside the partials' writes,
- "serial finish" (-DCUATTN_DECODE_SERIAL_FINISH): a one-row partial's warps merged one warp after
  the other (kWarps + 1 barriers), as before the 14th session; the default: all at once (2 barriers),
- "merge 4 in flight" (-DCUATTN_DECODE_MERGE_IN_FLIGHT=4): merge_rows loads 4 partials at a time,
  not 8; "old merge": 16 partials of 4 columns a thread, as before the 14th session (the one-row
  bulk-copy kernel at the cap of 128 registers; now 94: 8 partials of 1 or 2 columns),
- "piece in order" (-DCUATTN_DECODE_PIECE_IN_ORDER): an even piece's row groups streamed in key order,
  its end fragment (a partial, counted and merged) last, as before the 15th session; the default:
  both end fragments first, the whole row groups (outputs written straight, no count) last,
- "count no wait" (-DCUATTN_DECODE_COUNT_NO_WAIT): the count sent as a release reduction and its
  answer never awaited, no merge (wrong results): what waiting for the answer costs beside "no
  count"; "relaxed count no wait": a relaxed reduction (what the release costs),
- "tickets" (-DCUATTN_DECODE_TICKETS, probe option, the same bits): a split row group merged by the
  block whose key loop ended last, found by tickets its consumers take as the loop ends (answered
  while they write the partial) and flags, not by the count after the partial (decode.cu, Work;
  40th session, H100: -0.3 to +0.2% on the split rows),
- "out prefetch" (-DCUATTN_DECODE_OUT_PREFETCH, tensor-core kernel, the same bits): an item's output
  rows, partial and final, prefetched into L2 by thread 0 as the item starts (40th session),
- "warps at once" (-DCUATTN_DECODE_SKIP_WARP_MERGE, tensor-core kernel; wrong results): an item's
  end lets every warp add its columns at once, one step and one barrier, not the warps' four serial
  steps (40th session: what the serial order costs),
- "no slabs" (MMA_SLABS False, tensor-core kernel, the same bits): the warps' serial merge at an
  item's end everywhere, as before the 40th session; "no slabs, bound 2" (also
  -DCUATTN_DECODE_MMA_BOUND_2): and the launch bound of two blocks per SM (168 registers) on the
  one-block rings too: the kernels as before the 40th session,
- "barrier store" (-DCUATTN_DECODE_BARRIER_STORE, tensor-core kernel, the same bits): an item's
  rows written as to the 41st session: 1 / total published to all warps through a barrier, a column
  a thread. The default since the 42nd session has no such barrier (each warp its own copy) and
  four columns a thread (16-byte slab loads; 16- or 8-byte stores where head_dim is the kernel's);
  measured as the 41st session's "lean store" on an H100 (42nd session): B 4 32/4 D 64 2.585 ->
  2.618 TB/s, B 8 32/8 L 8192 2.876 -> 2.896, B 1 32/8 3.022 -> 3.033, the others level,
- "no merge" (-DCUATTN_DECODE_SKIP_MERGE): the count sent and its answer awaited as by default,
  but no merge (wrong results): beside "count no wait", what the merge costs and what the wait,
- "p hi only" (tensor-core kernel, -DCUATTN_DECODE_MMA_P_HI_ONLY, MMA_PACK_LO False): P V with P
  rounded to fp16 / bf16 alone (one product per tile, not P_hi + P_lo: less accurate; timing only),
- "pack lo" (tensor-core kernel, MMA_PACK_LO True, the default since the 16th session): P_lo of
  rows g in the empty rows g + 8 of the P V product (row groups of at most 8 query rows): one
  product a tile, the same precision; "no pack lo": MMA_PACK_LO False, two products a tile;
  "tensor", "cp.async, no pack lo", "tensor, no pack lo": each producer (MMA_COPY) with and
  without the packing (the default producer: cp.async at D 128, tensor copies at D 64),
- "lean mask" (tensor-core kernel, -DCUATTN_DECODE_MMA_LEAN_MASK, opt-in, the same bits): tiles
  every real row sees whole scored without the per-score mask (P_lo packed row groups),
- "l2 128", "l2 256" (tensor-core kernel's cp.async producer, -DCUATTN_CP_ASYNC_L2_PREFETCH): its
  16-byte copies with PTX's L2 prefetch-size hint (SASS LDGSTS.E.BYPASS.LTC128B / LTC256B;
  FlashInfer's decode and CUTLASS's sm80 copies carry .L2::128B, ours none); "l2 256, no math":
  the stream alone with it,
- "l2 ahead 2", "l2 ahead 4", "l2 ahead 8" (both kernels, contiguous caches,
  -DCUATTN_DECODE_L2_AHEAD=n; the same bits): the producer also prefetches into L2 (one
  cp.async.bulk.prefetch.L2 each of K and V) the tile n tiles ahead of the one it copies, within the
  item: more bytes on their way to an SM than its ring holds (39th session's traces: the math's cost
  sits at the end of a call, where the SMs still streaming run at their ring's depth over latency);
  measured slower on every row (39th session, H100: n = 2 -1 to -8%, 4 -5 to -18%, 8 -11 to -39%),
- "k then v" (tensor-core kernel's cp.async producer, -DCUATTN_DECODE_K_THEN_V): a whole tile's K
  rows copied, then its V rows (runs of 16 KB of one cache at D 128) instead of K and V pieces
  taking turns every 512 bytes; cuDNN's decode kernel copies 128-key tiles of K, then of V (34th
  session's SASS); with "no math" and with 2 and 6 stages; "stages 2": a ring of two 64-key tiles
  (at most 64 KB of K and V in flight a block, as cuDNN's one 128-key tile of each),
- "stages 4" (bulk-copy kernel): TMA_STAGES 4, the ring depth one-block-per-SM launches had before
  the 14th session,
- "relaxed count" (-DCUATTN_DECODE_RELAXED_COUNT: the count by a relaxed atomic, timing only): what
  the count's release and acquire cost beside its round trip,
- "no pdl" (both kernels): cuattn.decode.PDL False, plain launches (the default since the 25th
  session: programmatic dependent launch, each call's kernel placed and set up while the previous
  call's ends, its reads and writes waiting for that one); "pdl trigger": also each block's
  producer starting the next launch when it has no more tiles (-DCUATTN_DECODE_PDL_TRIGGER; lost
  5-6% on one-block-per-SM rows, 25th session); "pdl trigger, own sms": cuattn.decode.PDL_TRIGGER,
  the trigger and launches of one block per SM asking for half an SM's shared memory, so the next
  launch's blocks cannot double up on SMs that finished early; "steal": cuattn.decode.STEAL (work
  stealing: the ragged ends of one-item-per-SM launches), and with the trigger ("pdl trigger, own
  sms, steal": the head and the tail of the launch both shortened),
- "item overhead 128": plan_persistent's cost of an item doubled (fewer, longer splits; B 64 L 2048:
  one split per row group, then even pieces by the default rule),
- "whole rows", "whole rows, stages 6", "whole rows, stages 8" (bulk-copy kernel): one item per row
  group, its keys whole (plan_persistent's item cost so large that one split wins; no even pieces):
  no partials, no merges, each row group's output written by its block, in three, two and one
  blocks per SM (TMA_STAGES 4, 6, 8). B 16 32/32 L 4096 by default cuts its 512 row groups into
  261 even pieces of 8064 keys, so nearly every row group is merged from two partials; the 39th
  session's bare ring on the whole row groups (512 blocks, no math, no outputs) streamed 3.17-3.19
  TB/s there against cuDNN's 3.151 and our decode's 3.113 (H100). The 44th session measured them
  faster (B 8 32/32 L 8192 +4.7%), but decode.py slower on B 16 32/32 L 4096 (2.96 against 3.11);
  "whole rows rule": the opt-in cuattn.decode.TMA_WHOLE_ROWS (whole row groups where there are
  about two an SM up to one a resident block: one round),

beside torch SDPA's cuDNN and flash backends on the same inputs. Variants are interleaved (ROUNDS
rounds, best-of-rounds median of benchmarks/common.time_calls kept per variant). Answers: is a
kernel short of bytes in flight (deeper ring faster), of consumer speed ("no math" much faster
than the default), of copy speed ("bulk, no math" faster than "no math") or of balance ("many
items")? Writes DIR/decode_stream_probe.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cupy  # noqa: E402
from common import out_dir, results_parser, run_metadata, time_calls  # noqa: E402
from decode import ROWS, make_inputs, torch_impls  # noqa: E402

import cuattn  # noqa: E402

module = sys.modules["cuattn.decode"]
ROUNDS = 3
SKIP = ("-DCUATTN_DECODE_SKIP_MATH",)
SKIP_END = ("-DCUATTN_DECODE_SKIP_END",)  # the bulk-copy kernel's partials' ends skipped
SC_FENCE = ("-DCUATTN_DECODE_SC_FENCE",)  # the old count: every consumer's fence.sc before and after
LONE_PARTIAL = ("-DCUATTN_DECODE_LONE_PARTIAL",)  # the old lone partial: written, then merged by its block
RELAXED = ("-DCUATTN_DECODE_RELAXED_COUNT",)  # the count without release/acquire (timing only)
SERIAL_FINISH = ("-DCUATTN_DECODE_SERIAL_FINISH",)  # one row's finish as before the 14th session
MERGE_4 = ("-DCUATTN_DECODE_MERGE_IN_FLIGHT=4",)  # merge_rows: 4 partials' loads at a time, not 8
OLD_MERGE = ("-DCUATTN_DECODE_MERGE_IN_FLIGHT=16", "-DCUATTN_DECODE_MERGE_VEC=4")  # before the 14th session
SKIP_COUNT = ("-DCUATTN_DECODE_SKIP_COUNT",)  # partials written, no count, no merge (bulk-copy kernel)
SKIP_MERGE = ("-DCUATTN_DECODE_SKIP_MERGE",)  # the count and its answer, no merge (wrong results)
LEAN_MASK = ("-DCUATTN_DECODE_MMA_LEAN_MASK",)  # tensor-core kernel: whole visible tiles without the per-score mask
P_HI_ONLY = ("-DCUATTN_DECODE_MMA_P_HI_ONLY",)  # tensor-core kernel: one P V product (P in T), timing only
TICKETS = ("-DCUATTN_DECODE_TICKETS",)  # split row groups merged by tickets (probe option, 40th session)
NO_WAIT = ("-DCUATTN_DECODE_COUNT_NO_WAIT",)  # the count sent, its answer not awaited, no merge (wrong results)
PIECE_IN_ORDER = ("-DCUATTN_DECODE_PIECE_IN_ORDER",)  # a piece's row groups in key order, as before the 15th session
K_THEN_V = ("-DCUATTN_DECODE_K_THEN_V",)  # cp.async producer: a tile's K rows, then its V rows (34th session)
L2_PREFETCH = {n: (f"-DCUATTN_CP_ASYNC_L2_PREFETCH={n}",) for n in (128, 256)}  # cp.async with PTX's .L2::<n>B hint
L2_AHEAD = {n: (f"-DCUATTN_DECODE_L2_AHEAD={n}",) for n in (2, 4, 8)}  # L2 prefetch n tiles ahead (39th session)
WHOLE_ROWS = {"EVEN_SPLIT": False, "TMA_ITEM_OVERHEAD": 1 << 30}  # one split per row group (bulk-copy kernel)
LAUNCH_VARIANTS = [  # both kernels: how launches follow each other, and work stealing
    ("tickets", {"TMA_OPTIONS": module.TMA_OPTIONS + TICKETS}),
    ("out prefetch", {"TMA_OPTIONS": module.TMA_OPTIONS + ("-DCUATTN_DECODE_OUT_PREFETCH",)}),
    ("warps at once", {"TMA_OPTIONS": module.TMA_OPTIONS + ("-DCUATTN_DECODE_SKIP_WARP_MERGE",)}),
    ("no slabs", {"MMA_SLABS": False}),
    ("barrier store", {"TMA_OPTIONS": module.TMA_OPTIONS + ("-DCUATTN_DECODE_BARRIER_STORE",)}),
    ("no slabs, bound 2", {"MMA_SLABS": False, "TMA_OPTIONS": module.TMA_OPTIONS + ("-DCUATTN_DECODE_MMA_BOUND_2",)}),
    ("no pdl", {"PDL": False}),
    ("pdl trigger", {"TMA_OPTIONS": module.TMA_OPTIONS + (module.PDL_TRIGGER_OPTION,)}),
    ("pdl trigger, own sms", {"PDL_TRIGGER": True}),
    ("steal", {"STEAL": True}),
    ("pdl trigger, own sms, steal", {"PDL_TRIGGER": True, "STEAL": True}),
]
MMA_VARIANTS = [
    ("default", {}),
    ("stages 4", {"MMA_STAGES": 4}),
    ("stages 6", {"MMA_STAGES": 6}),
    ("stages 8", {"MMA_STAGES": 8}),
    ("stages 12", {"MMA_STAGES": 12}),
    ("two blocks", {"MMA_DEEP_STAGES": ()}),
    ("no math", {"TMA_OPTIONS": module.TMA_OPTIONS + SKIP}),
    ("no math, stages 6", {"TMA_OPTIONS": module.TMA_OPTIONS + SKIP, "MMA_STAGES": 6}),
    ("bulk, no math", {"TMA_OPTIONS": module.TMA_OPTIONS + SKIP + ("-DCUATTN_DECODE_MMA_BULK",)}),
    ("cp.async", {"MMA_COPY": "cp.async"}),
    ("cp.async, no math", {"MMA_COPY": "cp.async", "TMA_OPTIONS": module.TMA_OPTIONS + SKIP}),
    ("cp.async, stages 6", {"MMA_COPY": "cp.async", "MMA_STAGES": 6}),
    ("many items", {"ONE_PER_SM_MIN_KEYS": 1 << 40}),
    ("sc fences", {"TMA_OPTIONS": module.TMA_OPTIONS + SC_FENCE}),
    ("lone via partial", {"TMA_OPTIONS": module.TMA_OPTIONS + LONE_PARTIAL}),
    ("relaxed count", {"TMA_OPTIONS": module.TMA_OPTIONS + RELAXED}),
    ("p hi only", {"TMA_OPTIONS": module.TMA_OPTIONS + P_HI_ONLY, "MMA_PACK_LO": False}),
    ("pack lo", {"MMA_PACK_LO": True}),
    ("no pack lo", {"MMA_PACK_LO": False}),
    ("tensor", {"MMA_COPY": "tensor"}),
    ("cp.async, no pack lo", {"MMA_COPY": "cp.async", "MMA_PACK_LO": False}),
    ("tensor, no pack lo", {"MMA_COPY": "tensor", "MMA_PACK_LO": False}),
    ("no merge", {"TMA_OPTIONS": module.TMA_OPTIONS + SKIP_MERGE}),
    ("lean mask", {"TMA_OPTIONS": module.TMA_OPTIONS + LEAN_MASK}),
    ("lean mask, many items", {"TMA_OPTIONS": module.TMA_OPTIONS + LEAN_MASK, "ONE_PER_SM_MIN_KEYS": 1 << 40}),
    ("l2 128", {"TMA_OPTIONS": module.TMA_OPTIONS + L2_PREFETCH[128]}),
    ("l2 256", {"TMA_OPTIONS": module.TMA_OPTIONS + L2_PREFETCH[256]}),
    ("l2 256, no math", {"TMA_OPTIONS": module.TMA_OPTIONS + L2_PREFETCH[256] + SKIP}),
    ("k then v", {"MMA_COPY": "cp.async", "TMA_OPTIONS": module.TMA_OPTIONS + K_THEN_V}),
    ("k then v, no math", {"MMA_COPY": "cp.async", "TMA_OPTIONS": module.TMA_OPTIONS + K_THEN_V + SKIP}),
    ("stages 2", {"MMA_STAGES": 2}),
    ("k then v, stages 2", {"MMA_COPY": "cp.async", "MMA_STAGES": 2, "TMA_OPTIONS": module.TMA_OPTIONS + K_THEN_V}),
    ("k then v, stages 6", {"MMA_COPY": "cp.async", "MMA_STAGES": 6, "TMA_OPTIONS": module.TMA_OPTIONS + K_THEN_V}),
] + [(f"l2 ahead {n}", {"TMA_OPTIONS": module.TMA_OPTIONS + o}) for n, o in L2_AHEAD.items()] + LAUNCH_VARIANTS
TMA_VARIANTS = [
    ("default", {}),
    ("stages 4", {"TMA_STAGES": 4}),
    ("stages 6", {"TMA_STAGES": 6}),
    ("stages 8", {"TMA_STAGES": 8}),
    ("no math", {"TMA_OPTIONS": module.TMA_OPTIONS + SKIP}),
    ("no math, stages 8", {"TMA_OPTIONS": module.TMA_OPTIONS + SKIP, "TMA_STAGES": 8}),
    ("many items", {"ONE_PER_SM_MIN_KEYS": 1 << 40}),
    ("regs", {"KERNEL": "regs"}),
    ("equal splits", {"EVEN_SPLIT": False}),
    ("no row ends", {"TMA_OPTIONS": module.TMA_OPTIONS + SKIP_END}),
    ("no count", {"TMA_OPTIONS": module.TMA_OPTIONS + SKIP_COUNT}),
    ("serial finish", {"TMA_OPTIONS": module.TMA_OPTIONS + SERIAL_FINISH}),
    ("merge 4 in flight", {"TMA_OPTIONS": module.TMA_OPTIONS + MERGE_4}),
    ("old merge", {"TMA_OPTIONS": module.TMA_OPTIONS + OLD_MERGE}),
    ("piece in order", {"TMA_OPTIONS": module.TMA_OPTIONS + PIECE_IN_ORDER}),
    ("count no wait", {"TMA_OPTIONS": module.TMA_OPTIONS + NO_WAIT}),
    ("no merge", {"TMA_OPTIONS": module.TMA_OPTIONS + SKIP_MERGE}),
    ("relaxed count no wait", {"TMA_OPTIONS": module.TMA_OPTIONS + NO_WAIT + RELAXED}),
    ("no math, no row ends", {"TMA_OPTIONS": module.TMA_OPTIONS + SKIP + SKIP_END}),
    ("equal splits, no row ends", {"EVEN_SPLIT": False, "TMA_OPTIONS": module.TMA_OPTIONS + SKIP_END}),
    ("equal splits, no math", {"EVEN_SPLIT": False, "TMA_OPTIONS": module.TMA_OPTIONS + SKIP}),
    ("sc fences", {"TMA_OPTIONS": module.TMA_OPTIONS + SC_FENCE}),
    ("lone via partial", {"TMA_OPTIONS": module.TMA_OPTIONS + LONE_PARTIAL}),
    ("relaxed count", {"TMA_OPTIONS": module.TMA_OPTIONS + RELAXED}),
    ("old ends", {"TMA_OPTIONS": module.TMA_OPTIONS + SC_FENCE + LONE_PARTIAL}),
    ("item overhead 128", {"TMA_ITEM_OVERHEAD": 128}),
    ("item overhead 128, equal splits", {"TMA_ITEM_OVERHEAD": 128, "EVEN_SPLIT": False}),
    ("whole rows", WHOLE_ROWS),
    ("whole rows rule", {"TMA_WHOLE_ROWS": True}),
    ("whole rows, stages 6", {**WHOLE_ROWS, "TMA_STAGES": 6}),
    ("whole rows, stages 8", {**WHOLE_ROWS, "TMA_STAGES": 8}),
] + [(f"l2 ahead {n}", {"TMA_OPTIONS": module.TMA_OPTIONS + o}) for n, o in L2_AHEAD.items()] + LAUNCH_VARIANTS


def apply(settings: dict, saved: dict):
    """Restore the saved module settings, then set these; drop every cached plan; zero the
    persistent kernels' per-stream counters (cuattn.decode._COUNTERS). The variants that send the
    count and never await it ("count no wait", "relaxed count no wait": wrong results) leave their
    row groups' counts standing (no merging block resets them), and the next variant's launches
    share the stream's buffer, where a plan with fewer row groups keeps its work counter: on the
    39th session's device B 1 32/8 and D 64 read 35 and 8.8 TB/s after them (launches skipping
    their work). Zeroed between variants, every variant starts from the state a default launch
    leaves."""
    for name, value in {**saved, **settings}.items():
        setattr(module, name, value)
    module._PLANS.clear()
    module.plan_persistent.cache_clear()
    cupy.cuda.Device().synchronize()  # the last variant's launches are done with the counters
    for counters in module._COUNTERS.values():
        counters.fill(0)
    cupy.cuda.Device().synchronize()


def main():
    parser = results_parser(__doc__)
    parser.add_argument("--only", default="", help="only rows whose label contains this text")
    parser.add_argument("--shapes", default="",
                        help="contiguous shapes 'B,Hq,Hkv,D,L' separated by ';' to time instead of decode.py's rows")
    parser.add_argument("--variants", default="",
                        help="variant names separated by '/' to time (default: all; 'default' is always timed)")
    args = parser.parse_args()
    out = out_dir(args)
    names = {n for _, v in MMA_VARIANTS + TMA_VARIANTS for n in v}
    saved = {n: getattr(module, n) for n in names}
    rows = []
    try:
        shapes = [(*map(int, s.split(",")), False) for s in args.shapes.split(";") if s] or ROWS
        for b, hq, hkv, d, length, paged in shapes:
            if paged:
                continue  # the contiguous rows tell the same for the stream
            label = f"B{b} {hq}/{hkv} D{d} L{length}"
            if args.only not in label:
                continue
            t, (q, k, v) = make_inputs(b, hq, hkv, d, length)
            nbytes = 2 * k.nbytes
            variants = MMA_VARIANTS if hq // hkv > 1 else TMA_VARIANTS
            if args.variants:
                wanted = {"default", *args.variants.split("/")}
                variants = [(n, v) for n, v in variants if n in wanted]

            def call():
                return cuattn.decode(q, k, v, alibi_slopes="default")

            best = {}
            others = torch_impls(*t, cuattn.alibi_slopes(hq)) if t is not None else {}
            for _ in range(ROUNDS):
                for name, settings in variants:
                    apply(settings, saved)
                    tt = time_calls(call, min_batches=10, min_seconds=0.2)
                    best[name] = min(best.get(name, tt), tt)
                apply({}, saved)
                for name in ("torch_cudnn", "torch_flash"):
                    if name in others:
                        tt = time_calls(others[name][0], min_batches=10, min_seconds=0.2)
                        best[name] = min(best.get(name, tt), tt)
            row = dict(label=label, B=b, Hq=hq, Hkv=hkv, D=d, L=length,
                       tbps={n: nbytes / x / 1e12 for n, x in best.items()}, us={n: x * 1e6 for n, x in best.items()})
            rows.append(row)
            print(f"{label:26} " + "  ".join(f"{n}: {x:.3f}" for n, x in row["tbps"].items()), flush=True)
            t = q = k = v = others = None
            cupy.get_default_memory_pool().free_all_blocks()
    finally:
        apply({}, saved)
    (out / "decode_stream_probe.json").write_text(json.dumps(dict(meta=run_metadata(unit="TB/s"), rows=rows),
                                                             indent=1))


if __name__ == "__main__":
    main()
