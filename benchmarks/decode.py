"""ALiBi decode benchmark: cuattn.decode vs torch SDPA (flash, cuDNN, and a materialized ALiBi bias).

Run on a GPU machine:  python benchmarks/decode.py [--out DIR] [--quick] [--sweep] [--rounds N] [--only TEXT]
                                                [--layers N]

Rows are ANCHORS.md's decode rows (one query token, fp16 KV cache) plus a paged-cache row and
two short calls (per-layer sizes whose reads take 45-90 us, where host time per call shows).
Achieved TB/s = bytes of K and V read (2 B Hkv L D itemsize) / time. Every split kernel also runs forced
(cuattn_alibi_<kernel> in the JSON), and on GQA rows the tensor-core kernel with each of its
producers (cuattn_alibi_mma_tensor, cuattn_alibi_mma_cp_async: cuattn.decode.MMA_COPY), and every row
with equal splits per row group (cuattn_alibi_equal_splits: cuattn.decode.EVEN_SPLIT False; the default
cuts the bulk-copy kernel's rows into even pieces where cuattn.decode.even_pieces says so) and with even pieces on
either kernel (cuattn_alibi_even_pieces, _2, _3: EVEN_SPLIT True, one, two or three pieces per SM; equal
splits where pieces would be shorter than EVEN_MIN_KEYS; _deep: one piece and one block per SM with the
deepest ring; on the MHA rows also the tensor-core kernel's, cuattn_alibi_mma_even_pieces, _2), and the
paged row with the block-table prefetch (cuattn_alibi_page_prefetch: cuattn.decode.PAGE_PREFETCH True,
opt-in), with its pages in key order (cuattn_alibi_pages_in_order: the shuffle's share of what paging
costs) and with the contiguous cache read through a block table of one page a row
(cuattn_alibi_one_page_a_row: the lookups' share), the GQA rows with the tensor-core kernel's ring as
before the 35th session (at D 128 cuattn_alibi_mma_two_blocks: two blocks an SM of 3 stages on split row
groups too, cuattn.decode.MMA_DEEP_STAGES ()) and at D 64 with 6 stages (cuattn_alibi_mma_stages_6:
MMA_TWO_BLOCK_STAGES (), the deepest that fits; the default 4 since the 36th session), and every row
with static first items (cuattn_alibi_static_first: cuattn.decode.STATIC_FIRST True, opt-in), and the
GQA rows of at most 8 query rows a group without P_lo packed into the tensor-core kernel's empty rows
(cuattn_alibi_no_pack_lo: cuattn.decode.MMA_PACK_LO False; the default packs), and the MHA rows with
the bulk-copy kernel's row groups kept whole where there are about two an SM up to one a resident
block (cuattn_alibi_whole_rows: cuattn.decode.TMA_WHOLE_ROWS True, opt-in; the default cuts even
pieces). cuattn_alibi_wrapped is cuattn_alibi itself called through the variants' settings wrapper (the
same plan): the wrapper's share.
cuattn runs with ALiBi ("default" slopes, the target configuration) and without; torch runs SDPA on the same tensors
(viewed by CuPy through DLPack, no copy): the flash and cuDNN backends without bias, and the
default backend with a materialized (B, Hq, 1, L) ALiBi bias in the cache dtype. GQA rows pass
``enable_gqa=True``; a backend that refuses it gets K/V expanded to Hq heads beforehand (noted
in the JSON; its TB/s still counts the Hkv bytes). The paged row times cuattn on a shuffled
block table of 256-key pages against torch on the equivalent contiguous cache.
Timing: every column of a row (cuattn's variants and torch's) is timed in rounds (7, 3 with
--quick), each round timing every column once in an order rotated from round to round (by
len(columns) / rounds places a round: common.round_order): 3 warm-up
calls, then CUDA events around batches of calls (about 2 ms of GPU work each), at least 5 batches
and 0.05 s, median per call; a column's TB/s is its median over the rounds (per-round values in the
JSON, and the ratio to the best torch backend round by round as [min, median, max]), so drift of
the clocks over a row's seconds falls on every column alike. cuattn's host time per call (Python
checks and the launch, GPU not waited on) is recorded beside it.
--layers N (default 1) gives every row N independent sets of inputs (q, K, V, block table) and has every
column cycle through them call by call, as a model's layer loop does: no call then finds bytes the call
before it left in the 50 MB L2 (with one set, the end of one call's reads can still be in L2 when the next
call starts; triton.testing.do_bench, which measured ANCHORS.md, clears L2 before each call instead).
Every set of a row is at least 2x the L2 for N >= 2 on these rows (the smallest row reads 134 MB).
Results go to DIR/decode.json (default benchmarks/results/) and DIR/decode.png (matplotlib).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cupy  # noqa: E402
from common import bar_chart, host_time, round_order, run_metadata, time_calls  # noqa: E402

import cuattn  # noqa: E402

ROWS = [  # (B, Hq, Hkv, D, L, paged)
    (1, 32, 32, 128, 33001, False),
    (1, 32, 8, 128, 131072, False),
    (16, 32, 32, 128, 4096, False),
    (16, 32, 8, 128, 33001, False),
    (64, 32, 32, 128, 2048, False),
    (8, 16, 16, 256, 33001, False),
    (16, 32, 8, 128, 32768, True),
    # short calls (per-layer sizes, 45-90 us of reads; not ANCHORS.md rows): host time per call
    # shows here, for torch as for cuattn
    (4, 32, 4, 64, 32768, False),
    (8, 32, 8, 128, 8192, False),
]
PAGE_SIZE = 256
TORCH_NAMES = ("torch_flash", "torch_cudnn", "torch_alibi_bias")  # the torch columns (torch_impls)
SWEEP_BLOCKS_PER_SM = (4, 8, 16, 32, 64)
SWEEP_TMA_STAGES = (3, 4, 6, 8)
decode_module = sys.modules["cuattn.decode"]


def torch_impls(q, k, v, slopes):
    """name -> (callable, note) for the torch SDPA variants that accept these shapes."""
    try:
        import torch
        from torch.nn.attention import SDPBackend, sdpa_kernel
        from torch.nn.functional import scaled_dot_product_attention as sdpa
    except Exception:
        return {}
    hq, hkv, length = q.shape[1], k.shape[1], k.shape[2]
    expanded = None
    j = torch.arange(length, device=q.device, dtype=torch.float32)
    bias = (torch.as_tensor(slopes, device=q.device)[:, None, None] * (j - (length - 1))).to(q.dtype)[None]
    variants = (("torch_flash", SDPBackend.FLASH_ATTENTION, None), ("torch_cudnn", SDPBackend.CUDNN_ATTENTION, None),
                ("torch_alibi_bias", None, bias))
    impls = {}
    for name, be, mask in variants:
        attempts = [(k, v, {"enable_gqa": True} if hq != hkv else {}, "enable_gqa" if hq != hkv else "")]
        if hq != hkv:
            attempts.append((None, None, {}, "K/V expanded to Hq heads"))
        for kk, vv, extra, note in attempts:
            if kk is None:
                if expanded is None:
                    expanded = (k.repeat_interleave(hq // hkv, dim=1), v.repeat_interleave(hq // hkv, dim=1))
                kk, vv = expanded

            def fn(be=be, kk=kk, vv=vv, mask=mask, extra=extra):
                if be is None:
                    return sdpa(q, kk, vv, attn_mask=mask, **extra)
                with sdpa_kernel(be):
                    return sdpa(q, kk, vv, attn_mask=mask, **extra)

            try:
                fn()
                torch.cuda.synchronize()
                impls[name] = (fn, note)
                break
            except Exception as exc:  # a backend that refuses the shape
                print(f"  {name} ({note or 'plain'}) unavailable: {str(exc).splitlines()[0][:100]}")
    return impls


def with_settings(fn, **settings):
    """fn called with those cuattn.decode module settings in place (restored after the call)."""
    def call():
        saved = {name: getattr(decode_module, name) for name in settings}
        for name, value in settings.items():
            setattr(decode_module, name, value)
        try:
            return fn()
        finally:
            for name, value in saved.items():
                setattr(decode_module, name, value)
    return call


def even_pieces_columns(fns, fn, sms, name, per_sm_counts, **settings):
    """Columns name, name_2, name_3, ...: fn with even pieces (EVEN_SPLIT True), 1, 2, 3, ... per SM
    (one per SM: EVEN_PIECES None), and any further settings."""
    for per_sm in per_sm_counts:
        fns[name + ("" if per_sm == 1 else f"_{per_sm}")] = with_settings(
            fn, EVEN_SPLIT=True, EVEN_PIECES=None if per_sm == 1 else per_sm * sms, **settings)


def interleaved(fns, nbytes, rounds, reps):
    """TB/s of each function: `rounds` rounds, each timing every function once (time_calls with
    short batches), the order rotated from round to round (round_order: each function's place
    spread over the rounds); the result is each function's median
    over the rounds ({name: TB/s}) and its per-round values ({"rounds": {name: [TB/s, ...]}}), so
    drift of the GPU's clocks or the memory's over a row's seconds falls on every column alike."""
    for fn in fns.values():  # compile and allocate outside the timing
        fn()
    cupy.cuda.Device().synchronize()
    names = list(fns)
    per_round = {name: [] for name in names}
    for r in range(rounds):
        for name in round_order(names, r, rounds):
            per_round[name].append(nbytes / time_calls(fns[name], warmup=3, **reps) / 1e12)
    result = {name: float(np.median(values)) for name, values in per_round.items()}
    result["rounds"] = per_round
    return result


def cycled(fns):
    """One callable that calls fns[0], fns[1], ... in turn, one per call (a layer loop); fns[0] itself
    when there is one."""
    if len(fns) == 1:
        return fns[0]
    turn = itertools.cycle(fns)
    return lambda: next(turn)()


def make_inputs(b, hq, hkv, d, length):
    try:
        import torch

        t = [torch.randn(b, hq, 1, d, device="cuda", dtype=torch.float16),
             torch.randn(b, hkv, length, d, device="cuda", dtype=torch.float16),
             torch.randn(b, hkv, length, d, device="cuda", dtype=torch.float16)]
        return t, [cupy.from_dlpack(x) for x in t]
    except ImportError:
        c = [cupy.asarray(np.random.standard_normal(s).astype(np.float16))
             for s in ((b, hq, 1, d), (b, hkv, length, d), (b, hkv, length, d))]
        return None, c


def paged_copy(k, v, page_size, rng):
    """The cache as shuffled pages of page_size keys and the matching block table (CuPy)."""
    return cuattn.paged_cache(k, v, page_size, seed=rng)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--quick", action="store_true", help="fewer repeats and rounds")
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds of interleaved timing per row (default 7, 3 with --quick)")
    parser.add_argument("--sweep", action="store_true", help="also time other BLOCKS_PER_SM split targets and TMA_STAGES ring depths")
    parser.add_argument("--only", default="", help="only rows whose label (as 'B16 32/8 D128 L32768 paged') "
                        "contains this text")
    parser.add_argument("--layers", type=int, default=1,
                        help="independent input sets per row, cycled call by call (a layer loop; default 1)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    reps = dict(min_batches=3, min_seconds=0.02) if args.quick else dict(min_batches=5, min_seconds=0.05)
    rounds = args.rounds or (3 if args.quick else 7)

    if args.layers < 1:
        parser.error("--layers must be at least 1")
    meta = run_metadata(unit="TB/s = bytes of K and V / time", decode_settings=decode_settings(),
                        layers=args.layers)
    rng = np.random.default_rng(0)
    rows = []
    lines = []
    header = (f"{'B':>3} {'Hq':>3} {'Hkv':>3} {'D':>4} {'L':>7} {'paged':>5} {'alibi':>7} {'no bias':>7} "
              f"{'flash':>6} {'cudnn':>6} {'t+bias':>6} {'x best':>6}")
    print(f"{meta['device']}: decode, one fp16 query token, achieved TB/s")
    for b, hq, hkv, d, length, paged in ROWS:
        if args.only not in f"B{b} {hq}/{hkv} D{d} L{length}{' paged' if paged else ''}":
            continue
        # args.layers sets of inputs: (torch tensors or None, [q, k, v] CuPy, cuattn's (q, k, v), its kwargs)
        layers = []
        for _ in range(args.layers):
            t, c = make_inputs(b, hq, hkv, d, length)
            q, k, v = c
            kw = {}
            kc, vc = k, v
            if paged:
                kc, vc, table = paged_copy(k, v, PAGE_SIZE, rng)
                kw["block_table"] = table
            layers.append((t, c, (q, kc, vc), kw))
        t, c, (q, kc, vc), kw = layers[0]
        q, k, v = c
        nbytes = 2 * b * hkv * length * d * k.itemsize
        row = dict(B=b, Hq=hq, Hkv=hkv, D=d, L=length, paged=paged, bytes=nbytes, layers=args.layers)
        saved_kernel = decode_module.KERNEL
        # the row's arrays bound as defaults (they are deleted at the row's end)
        fns = {"cuattn_alibi": cycled([lambda a=a, kw=kw: cuattn.decode(*a, alibi_slopes="default", **kw)
                                       for _, _, a, kw in layers]),
               "cuattn": cycled([lambda a=a, kw=kw: cuattn.decode(*a, alibi_slopes=None, **kw)
                                 for _, _, a, kw in layers])}
        alibi = fns["cuattn_alibi"]
        # the same call and plan through with_settings (its settings as they are): what the wrapper's
        # host time between calls does to the timing (every other variant pays it; on the D 64 row
        # cuattn_alibi read 0.3-0.9% under variants of the same plan in every round of five H100 runs)
        fns["cuattn_alibi_wrapped"] = with_settings(alibi, KERNEL=saved_kernel)
        # every split kernel (cuattn.decode.KERNELS) forced, ALiBi, for comparison
        for other in decode_module.KERNELS:
            if other != saved_kernel:
                fns[f"cuattn_alibi_{other}"] = with_settings(alibi, KERNEL=other)
        if hq // hkv > 1:  # the tensor-core kernel with each of its producers (MMA_COPY)
            for copy in decode_module.MMA_COPIES:
                fns[f"cuattn_alibi_mma_{copy.replace('.', '_')}"] = with_settings(alibi, KERNEL="mma", MMA_COPY=copy)
        if hq // hkv > 1 and d >= 128:  # the tensor-core kernel's ring as before the 35th session: two blocks
            # an SM of 3 stages on every launch (since: one block of 6 where row groups are split; MMA_DEEP_STAGES)
            fns["cuattn_alibi_mma_two_blocks"] = with_settings(alibi, MMA_DEEP_STAGES=())
        if hq // hkv > 1 and d <= 64:  # D 64's ring at 6 stages (the default 4), two blocks an SM
            fns["cuattn_alibi_mma_stages_6"] = with_settings(alibi, MMA_TWO_BLOCK_STAGES=())
        if 1 < hq // hkv <= 8:  # two P V products a tile (MMA_PACK_LO False; the default packs P_lo)
            fns["cuattn_alibi_no_pack_lo"] = with_settings(alibi, MMA_PACK_LO=False)
        if paged:  # the cp.async producer's block-table prefetch (PAGE_PREFETCH, opt-in)
            fns["cuattn_alibi_page_prefetch"] = with_settings(alibi, PAGE_PREFETCH=True)
            # what paging costs, in two parts: the same pages in key order (row 0's first: the
            # shuffle's share), and the contiguous cache itself read through a block table of one
            # page a row (page_size L: the same addresses as the dense cache; the lookups' share)
            in_order, one_page = [], []
            for _, (lq, lk, lv), _, _ in layers:
                pk, pv, ptable = cuattn.paged_cache(lk, lv, PAGE_SIZE, shuffle=False)
                in_order.append(lambda a=(lq, pk, pv), t=ptable: cuattn.decode(*a, alibi_slopes="default",
                                                                              block_table=t))
                rows_table = cupy.arange(b, dtype=cupy.int32).reshape(b, 1)
                one_page.append(lambda a=(lq, lk, lv), t=rows_table: cuattn.decode(*a, alibi_slopes="default",
                                                                                  block_table=t))
            fns["cuattn_alibi_pages_in_order"] = cycled(in_order)
            fns["cuattn_alibi_one_page_a_row"] = cycled(one_page)
        # block i's first item i, without the counter (STATIC_FIRST, opt-in)
        fns["cuattn_alibi_static_first"] = with_settings(alibi, STATIC_FIRST=True)
        # equal splits per row group (EVEN_SPLIT False; the default: even pieces where even_pieces says so)
        fns["cuattn_alibi_equal_splits"] = with_settings(alibi, EVEN_SPLIT=False)
        if hq == hkv:  # the MHA rows with whole row groups on the bulk-copy kernel (TMA_WHOLE_ROWS, opt-in)
            fns["cuattn_alibi_whole_rows"] = with_settings(alibi, TMA_WHOLE_ROWS=True)
        # even pieces on either kernel (EVEN_SPLIT True): one piece per SM (EVEN_PIECES None), 2 or 3
        # per SM, and one per SM in one block per SM with the deepest ring that fits (8 bulk-copy
        # stages, 6 tensor-core ones: 128 / 192 KB in flight, not 64 / 96)
        sms = cupy.cuda.Device().attributes["MultiProcessorCount"]
        even_pieces_columns(fns, alibi, sms, "cuattn_alibi_even_pieces", (1, 2, 3))
        fns["cuattn_alibi_even_pieces_deep"] = with_settings(alibi, EVEN_SPLIT=True, TMA_STAGES=8, MMA_STAGES=6)
        if hq == hkv and not paged:  # the MHA rows' split row groups on the tensor-core kernel in even
            # pieces (KERNEL "mma", EVEN_SPLIT True), one and two pieces per SM
            even_pieces_columns(fns, alibi, sms, "cuattn_alibi_mma_even_pieces", (1, 2), KERNEL="mma")
        notes = {}
        per_layer = []  # torch's columns of each layer
        if t is not None:
            slopes = cuattn.alibi_slopes(hq)
            per_layer = [torch_impls(*lt, slopes) for lt, *_ in layers]
            for name, (fn, note) in per_layer[0].items():
                if all(name in impls for impls in per_layer):
                    fns[name] = cycled([impls[name][0] for impls in per_layer])
                    if note:
                        notes[name] = note
        row.update(interleaved(fns, nbytes, rounds, reps))
        # Python and launch work per call (GPU not waited on): under the GPU time, calls queue
        # back to back and the GPU never waits for the host
        row["cuattn_host_us"] = host_time(alibi) * 1e6
        row["kernel"] = saved_kernel or "auto"  # KERNEL None: mma for row groups, tma for one row
        knob = {"regs": ("BLOCKS_PER_SM", SWEEP_BLOCKS_PER_SM), "tma": ("TMA_STAGES", SWEEP_TMA_STAGES)}.get(saved_kernel)
        if args.sweep and knob:
            # the knob of the split kernel in use: split target (register kernel) or ring depth
            knob_name, values = knob
            saved = getattr(decode_module, knob_name)
            sweep = row[f"sweep_{knob_name.lower()}"] = {}
            for value in values:  # time_calls warms up (compiles) before timing
                setattr(decode_module, knob_name, value)
                sweep[value] = nbytes / time_calls(alibi, min_batches=5, min_seconds=0.1) / 1e12
            setattr(decode_module, knob_name, saved)
        row["notes"] = notes
        if "torch_alibi_bias" in fns:  # the two implementations agree on the same inputs (the same layer)
            ref = cupy.from_dlpack(per_layer[0]["torch_alibi_bias"][0]()).astype(cupy.float32)
            o = cuattn.decode(q, kc, vc, alibi_slopes="default", **kw).astype(cupy.float32)
            row["rel_diff_vs_torch_alibi"] = float(cupy.linalg.norm(o - ref) / cupy.linalg.norm(ref))
        torch_names = [n for n in TORCH_NAMES if n in row]
        best = max((row[n] for n in torch_names), default=None)
        if best:
            row["ratio_alibi_vs_best_torch"] = row["cuattn_alibi"] / best
            # the same ratio round by round (against that round's best torch backend): its spread
            torch_rounds = [row["rounds"][n] for n in torch_names]
            ratios = [a / max(ts) for a, *ts in zip(row["rounds"]["cuattn_alibi"], *torch_rounds)]
            row["ratio_alibi_vs_best_torch_rounds"] = [min(ratios), float(np.median(ratios)), max(ratios)]
        rows.append(row)
        line = (f"{b:3} {hq:3} {hkv:3} {d:4} {length:7} {str(paged):>5} {row['cuattn_alibi']:7.2f} {row['cuattn']:7.2f} "
                f"{row.get('torch_flash', float('nan')):6.2f} {row.get('torch_cudnn', float('nan')):6.2f} "
                f"{row.get('torch_alibi_bias', float('nan')):6.2f} {row.get('ratio_alibi_vs_best_torch', float('nan')):6.2f}")
        lines.append(line)
        others = {n[len("cuattn_alibi_"):]: round(x, 3) for n, x in row.items()
                  if n.startswith("cuattn_alibi_") and isinstance(x, float)}
        print(line + f"  [{row['kernel']}; other kernels {others}]"
              + (f"  sweep {row.get('sweep_blocks_per_sm')} stages {row.get('sweep_tma_stages')}" if args.sweep else ""), flush=True)
        del layers, per_layer, t, c, q, k, v, kc, vc, fns, alibi
        cupy.get_default_memory_pool().free_all_blocks()
    result = {"meta": meta, "rows": rows}
    (out / "decode.json").write_text(json.dumps(result, indent=1))
    plot(rows, meta, out / "decode.png")
    print(f"wrote {out / 'decode.json'}")
    print(f"\n{meta['device']}: decode TB/s (x best = cuattn with ALiBi / best torch backend)")
    print(header)
    for line in lines:
        print(line)


def decode_settings() -> dict:
    """cuattn.decode's switches and choices at the start of the run (upper-case module names whose
    value is a bool or None: PDL, PDL_TRIGGER, STEAL, KERNEL, ...), so a results file says which
    defaults it timed; each column's own settings are in its name."""
    return {name: value for name, value in sorted(vars(decode_module).items())
            if name.isupper() and not name.startswith("_") and (value is None or isinstance(value, bool))}


def plot(rows, meta, path):
    labels = [f"B{r['B']} {r['Hq']}/{r['Hkv']} D{r['D']} L{r['L']}{' paged' if r['paged'] else ''}" for r in rows]
    names = ["cuattn_alibi", "cuattn", *TORCH_NAMES]
    bar_chart(path, rows, names, labels, "TB/s (K and V bytes / time)",
              f"decode, one fp16 query token, {meta['device']}, {meta['date']}", hline=2.8)


if __name__ == "__main__":
    main()
