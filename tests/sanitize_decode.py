"""Small GPU sweep of decode shapes for compute-sanitizer (not collected by pytest).

    compute-sanitizer --tool memcheck  python tests/sanitize_decode.py
    compute-sanitizer --tool racecheck python tests/sanitize_decode.py
    compute-sanitizer --tool synccheck python tests/sanitize_decode.py

Covers the three dtypes, every padded head dim (32..256, with D tails), every row-block size
(1, 4, 8 rows, and more rows than a block holds), contiguous and paged caches, ragged lengths
with zero-length rows and rows shorter than Sq, an empty cache, and several splits per row,
with each split kernel (cuattn.decode.KERNELS: the bulk-copy ring and the register one), and
the persistent ones again with work stealing forced (fp16: OWNER_GRAINS) and with even pieces
forced (fp16: EVEN_MIN_KEYS, EVEN_PIECES) and with static first items (fp16 and the failed value
checks: STATIC_FIRST) and with plain launches (fp16 and the failed value checks: PDL False;
the default launches are programmatic, with the early trigger) and with programmatic launches
without the early trigger (fp16: PDL_TRIGGER False),
and the tensor-core kernel again with its cp.async producer
(cuattn.decode.MMA_COPY "cp.async", alone, stealing, and with its block-table prefetch,
PAGE_PREFETCH), and both producers without P_lo packed into the empty rows (MMA_PACK_LO False), the cp.async
producer with the opt-in -DCUATTN_DECODE_MMA_LEAN_MASK, the persistent kernels with the probe option
-DCUATTN_DECODE_TICKETS (fp16; `--tickets`: those passes alone, the tensor-core kernel with both producers;
`--barrier-store`: the tensor-core kernel with the probe option -DCUATTN_DECODE_BARRIER_STORE alone, both producers),
and pages of 16 and 20 keys and strided rows, contiguous and paged (the tensor-core and bulk-copy
kernels).
Exits non-zero if a result is off the float64 reference (so a sanitizer-clean but wrong kernel
still fails).
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cupy as cp  # noqa: E402

import cuattn  # noqa: E402
import cuattn.decode  # noqa: E402,F401
from cuattn._checks import BFLOAT16  # noqa: E402
from helpers import flash_layout, on_device, rel_error, to_paged  # noqa: E402

TOL = {np.dtype(np.float16): 2e-3, np.dtype(BFLOAT16): 1e-2, np.dtype(np.float32): 2e-5}

CASES = [
    # (batch, hq, hkv, sq, length, d, lens)
    (2, 4, 4, 1, 700, 32, [700, 0]),
    (3, 8, 2, 1, 1500, 64, [1500, 1, 999]),
    (2, 12, 4, 2, 600, 128, [600, 1]),
    (1, 40, 8, 1, 2049, 256, None),
    (2, 16, 1, 1, 300, 40, [300, 77]),
    (1, 6, 2, 3, 500, 200, [2]),
    (1, 2, 2, 1, 0, 64, None),
]


def main():
    decode_module = sys.modules["cuattn.decode"]
    worst, failures = 0.0, 0
    saved_grain = decode_module.GRAIN_BYTES

    def stealing(rng, label):  # work stealing forced: owners keep one grain of 128 keys, thieves take the rest
        decode_module.STEAL, decode_module.OWNER_GRAINS, decode_module.GRAIN_BYTES = True, 1, 1
        try:
            return sweep(rng, label + "+steal", (np.float16,))
        finally:
            decode_module.STEAL, decode_module.OWNER_GRAINS, decode_module.GRAIN_BYTES = False, 0, saved_grain

    def even(rng, label):  # even pieces forced on these small caches: 7 pieces of the row groups' keys
        decode_module.EVEN_SPLIT, decode_module.EVEN_MIN_KEYS, decode_module.EVEN_PIECES = True, 128, 7
        try:
            return sweep(rng, label + "+even", (np.float16,))
        finally:
            decode_module.EVEN_SPLIT, decode_module.EVEN_MIN_KEYS, decode_module.EVEN_PIECES = None, 4096, None

    def setting(rng, kernel, name, value, label, check_values):  # one module setting's fp16 sweep (and value checks)
        saved = getattr(decode_module, name)
        setattr(decode_module, name, value)
        try:
            return sweep(rng, kernel + label, (np.float16,)), bad_values(kernel) if check_values else 0
        finally:
            setattr(decode_module, name, saved)

    def probe(rng, label, option, suffix):  # a probe option of decode.cu: its fp16 sweep
        return setting(rng, label, "TMA_OPTIONS", decode_module.TMA_OPTIONS + (option,), suffix, False)[0]

    tickets = ("-DCUATTN_DECODE_TICKETS", "+tickets")  # split rows merged by tickets
    # --tickets: the tickets passes alone (the persistent kernels; both producers of the tensor-core
    # kernel); --barrier-store: -DCUATTN_DECODE_BARRIER_STORE's (the tensor-core kernel's, both producers)
    only = {"--tickets": (*tickets, ("tma", "mma")),
            "--barrier-store": ("-DCUATTN_DECODE_BARRIER_STORE", "+barrier-store", ("mma",))}
    only = next((only[a] for a in sys.argv[1:] if a in only), None)
    for kernel in decode_module.KERNELS:
        decode_module.KERNEL = kernel
        rng = np.random.default_rng(0)
        if only:
            option, suffix, kernels = only
            if kernel in kernels:
                runs = [probe(rng, kernel, option, suffix)]
                if kernel == "mma":
                    decode_module.MMA_COPY = "cp.async"
                    runs.append(probe(rng, "mma+cp.async", option, suffix))
                    decode_module.MMA_COPY = None
                for w, f in runs:
                    worst, failures = max(worst, w), failures + f
            continue
        # the tensor-core kernel with each producer (MMA_COPY; the default picks per head dim)
        decode_module.MMA_COPY = "tensor" if kernel == "mma" else None
        runs = [sweep(rng, kernel)]
        if kernel != "regs":
            runs += [stealing(rng, kernel), even(rng, kernel), probe(rng, kernel, *tickets)]
            for name, value, label, check_values in (
                    ("STATIC_FIRST", True, "+static", True),  # block i's first item i, the counter the rest (opt-in)
                    ("PDL", False, "+no-pdl", True),  # plain launches (the default: programmatic dependent launches)
                    ("PDL_TRIGGER", False, "+no-trigger", False)):  # PDL without the early trigger (the default has it)
                run, bad = setting(rng, kernel, name, value, label, check_values)
                runs.append(run)
                failures += bad
        if kernel == "mma":  # the cp.async producer, alone and stealing
            decode_module.MMA_COPY = "cp.async"
            runs += [sweep(rng, "mma+cp.async", (np.float16, BFLOAT16)), stealing(rng, "mma+cp.async")]
            decode_module.PAGE_PREFETCH = True  # its opt-in block-table prefetch (paged caches)
            runs.append(sweep(rng, "mma+cp.async+prefetch", (np.float16,)))
            decode_module.PAGE_PREFETCH = False
            decode_module.MMA_PACK_LO = False  # two P V products a tile (the default packs P_lo, <= 8 rows)
            runs += [sweep(rng, "mma+cp.async+no-pack-lo", (np.float16, BFLOAT16)), stealing(rng, "mma+no-pack-lo")]
            decode_module.MMA_COPY = "tensor"
            runs.append(sweep(rng, "mma+no-pack-lo", (np.float16,)))
            decode_module.MMA_PACK_LO = True
            saved_options = decode_module.TMA_OPTIONS  # the opt-in lean mask of whole visible tiles
            decode_module.TMA_OPTIONS = saved_options + ("-DCUATTN_DECODE_MMA_LEAN_MASK",)
            runs.append(sweep(rng, "mma+cp.async+lean-mask", (np.float16, BFLOAT16)))
            decode_module.TMA_OPTIONS = saved_options
            decode_module.MMA_COPY = None  # pages of part tiles (16-row groups; any rows) and strided rows
            runs += [sweep(rng, "mma+pages16", (np.float16,), page=16),
                     sweep(rng, "mma+pages20", (np.float16,), page=20),
                     sweep(rng, "mma+strided", (np.float16,), strided=True),
                     sweep(rng, "mma+strided+pages16", (np.float16,), page=16, strided=True)]
        if kernel == "tma":  # strided rows: a copy per key row
            runs.append(sweep(rng, "tma+strided", (np.float16,), strided=True))
        decode_module.MMA_COPY = None
        for w, f in runs:
            worst, failures = max(worst, w), failures + f
        failures += bad_values(kernel)
    cp.cuda.Device().synchronize()
    print(f"{failures} failures, worst norm-wise error {worst:.2e}")
    sys.exit(1 if failures else 0)


def sweep(rng, kernel, dtypes=(np.float16, BFLOAT16, np.float32), page=None, strided=False):
    """Every case contiguous and paged (pages of `page` keys; default 64 for "mma": whole tiles for
    every producer, 50 for "tma": runs of a page's keys); strided: the cache as the transpose of a
    (B, L, Hkv, D) array, the pages as the transpose of (pages, page_size, Hkv, D) ones."""
    worst, failures = 0.0, 0
    if page is None:
        page = 64 if kernel.startswith("mma") else 50
    for dtype in dtypes:
        for batch, hq, hkv, sq, length, d, lens in CASES:
            for paged in (False, True):
                if paged and length % page:
                    length_p = -(-length // page) * page
                else:
                    length_p = length
                q = rng.standard_normal((batch, hq, sq, d)).astype(np.float32).astype(dtype)
                k = rng.standard_normal((batch, hkv, length_p, d)).astype(np.float32).astype(dtype)
                v = rng.standard_normal((batch, hkv, length_p, d)).astype(np.float32).astype(dtype)
                lens_np = np.array(lens if lens is not None else [length] * batch, np.int32)
                kw = dict(cache_seqlens=lens_np, alibi_slopes="default")
                kd, vd = k, v
                if paged and length_p > 0:
                    kd, vd, kw["block_table"] = to_paged(rng, k, v, page)
                elif paged:
                    continue
                dev = on_device(cp, kw)
                kg, vg = cp.asarray(kd), cp.asarray(vd)
                if strided:  # key rows hkv x d apart
                    kg, vg = flash_layout(cp, kg), flash_layout(cp, vg)
                o, lse = cuattn.decode(cp.asarray(q), kg, vg, return_lse=True, **dev)
                ro = cuattn.reference.decode(q, kd, vd, **kw)
                err = rel_error(o, ro)
                ok = err <= TOL[np.dtype(dtype)]
                failures += not ok
                worst = max(worst, err)
                print(f"{kernel:4} {np.dtype(dtype).name:9} B{batch} Hq{hq} Hkv{hkv} Sq{sq} L{length_p} D{d} "
                      f"{'paged' if paged else 'contig'} err {err:.2e} {'ok' if ok else 'FAIL'}", flush=True)
    return worst, failures


def bad_values(kernel):
    """Lengths past the cache and pages far out of range raise ValueError, and no kernel touches
    memory with them (the persistent kernels are queued before the check's result and must skip
    all work: memcheck reports any read they make). Returns the number of failures."""
    failures = 0
    q = cp.ones((2, 8, 1, 128), cp.float16)
    pages = cp.ones((8, 2, 64, 128), cp.float16)
    for table, lens in (([[0, 1], [2, 1 << 20]], None), ([[0, 1], [2, 3]], [128, 1 << 20]),
                        ([[0, -(1 << 20)], [2, 3]], [128, 100])):
        kw = dict(block_table=cp.array(table, cp.int32), alibi_slopes="default")
        if lens is not None:
            kw["cache_seqlens"] = cp.array(lens, cp.int32)
        try:
            cuattn.decode(q, pages, pages, **kw)
        except ValueError as exc:
            print(f"{kernel:4} bad values raise: {exc}", flush=True)
        else:
            print(f"{kernel:4} bad values {table} {lens}: no ValueError FAIL", flush=True)
            failures += 1
    cp.cuda.Device().synchronize()
    return failures


if __name__ == "__main__":
    main()
