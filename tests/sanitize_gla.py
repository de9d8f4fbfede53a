"""Small GPU sweep of every gla kernel family for compute-sanitizer (not collected by pytest).

    compute-sanitizer --tool memcheck  python tests/sanitize_gla.py
    compute-sanitizer --tool racecheck python tests/sanitize_gla.py
    compute-sanitizer --tool synccheck python tests/sanitize_gla.py

Covers both modes, the three dtypes, every padded K (32..256), partial value tiles, packed
sequences with empty and length-1 members, one-token calls with a state, each chunk variant
(4/8 warps, sequential or segmented: forced through cuattn.gla's switches), and exits non-zero if
a result is off (so a sanitizer-clean but wrong kernel still fails).
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cupy as cp  # noqa: E402

import cuattn  # noqa: E402
import cuattn.gla  # noqa: E402,F401
from cuattn._checks import BFLOAT16  # noqa: E402
from helpers import gla_inputs, rel_error  # noqa: E402

TOL = {np.dtype(np.float16): 2e-3, np.dtype(BFLOAT16): 1e-2, np.dtype(np.float32): 2e-5}


GLA = sys.modules["cuattn.gla"]  # the module (cuattn.gla is the function)
CHUNK_VARIANTS = [(None, None, None), (None, None, False), (4, 0, False), (8, 0, False), (4, 16, False), (8, 48, False),
                  (4, 0, True), (8, 48, True)]  # (CHUNK_WARPS, CHUNK_SEGMENT_LEN, CHUNK_PREPASS)
RECURRENT_TILES = (64, 128)  # forced RECURRENT_TILE (the default sweep runs the automatic 32)


def main():
    rng = np.random.default_rng(0)
    worst = 0.0
    for warps, segment_len, prepass in CHUNK_VARIANTS:
        GLA.CHUNK_WARPS, GLA.CHUNK_SEGMENT_LEN, GLA.CHUNK_PREPASS = warps, segment_len, prepass
        print(f"chunk variant: warps={warps} segment_len={segment_len} prepass={prepass}", flush=True)
        worst = max(worst, sweep(rng))
    GLA.CHUNK_WARPS, GLA.CHUNK_SEGMENT_LEN, GLA.CHUNK_PREPASS = None, None, None
    for tile in RECURRENT_TILES:
        GLA.RECURRENT_TILE = tile
        print(f"recurrent tile {tile}", flush=True)
        worst = max(worst, sweep(rng, modes=("recurrent",)))
    GLA.RECURRENT_TILE = None
    cp.cuda.Device().synchronize()
    print(f"worst error / tolerance: {worst:.3f}")
    sys.exit(0 if worst < 1 else 1)


def sweep(rng, modes=("chunk", "recurrent")):
    worst = 0.0
    cases = [((1, 2, 37), 16, 24), ((1, 1, 20), 64, 72), ((1, 1, 33), 128, 64), ((1, 1, 17), 256, 256),
             ((2, 1, 1), 40, 16), ((3, 2, 1), 128, 136), ((1, 1, 1), 256, 256)]
    for dtype in (np.float16, BFLOAT16, np.float32):
        for mode in modes:
            for lead, kdim, vdim in cases:
                q, k, v, g = gla_inputs(rng, lead, kdim, vdim, "masked_-inf", dtype)
                h0 = rng.standard_normal(lead[:-1] + (kdim, vdim)).astype(np.float32)
                o, s = cuattn.gla(*(cp.asarray(x) for x in (q, k, v, g)), initial_state=cp.asarray(h0),
                                  output_final_state=True, mode=mode, scale=-0.3)
                ro, rs = cuattn.reference.gla(q, k, v, g, initial_state=h0, output_final_state=True, scale=-0.3)
                err = max(rel_error(o, ro), rel_error(s, rs))
                worst = max(worst, err / TOL[np.dtype(dtype)])
                print(f"{np.dtype(dtype).name:9} {mode:9} {lead} K={kdim} V={vdim}: {err:.2e}", flush=True)
            cu = np.array([0, 1, 1, 18, 40], np.int32)
            q, k, v, g = gla_inputs(rng, (1, 2, 42), 64, 64, "masked_-0.1max", dtype)
            o, s = cuattn.gla(*(cp.asarray(x) for x in (q, k, v, g)), output_final_state=True, mode=mode,
                              cu_seqlens=cp.asarray(cu))
            ro, rs = cuattn.reference.gla(q, k, v, g, output_final_state=True, cu_seqlens=cu)
            err = max(rel_error(o, ro), rel_error(s, rs))
            worst = max(worst, err / TOL[np.dtype(dtype)])
            print(f"{np.dtype(dtype).name:9} {mode:9} cu_seqlens {cu.tolist()}: {err:.2e}", flush=True)
    return worst


if __name__ == "__main__":
    main()
