"""ALiBi decode against a long, ragged, paged KV cache (on the GPU when present, else the CPU).

Run:  python examples/decode_alibi.py [--length 33001] [--device auto|cpu|gpu]

One new query token per sequence, grouped-query heads (16 query heads over 4 KV heads), a cache
of up to ``--length`` keys where every sequence has its own valid length (``cache_seqlens``),
and the default ALiBi slopes of Press et al. The same cache is then cut into pages of 256 keys,
shuffled, and addressed through a ``block_table`` (the layout of paged-attention servers): the
two calls give identical results, and both are checked against the float64 reference
(``cuattn.reference.decode``) with a norm-wise tolerance tight enough to catch a single wrong
row out of thousands (lesson 5 of the design notes: a finite stand-in for -inf broke exactly
that at 33001 keys). On the GPU the cache is float16; on the CPU float32.

On the GPU the paged call is then captured once in a CUDA graph and replayed as a server's decode
loop: each step writes the new lengths (one more key per non-empty row) into the captured
``cache_seqlens`` array, and each replay must give the eager call's bits. Last, one negative
length: the replay's output is NaN and ``memory.check()`` raises the eager call's ValueError.
"""

import argparse
import sys
import time

import numpy as np

import cuattn

PAGE = 256  # keys per page


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=33001, help="longest cache row, in keys")
    parser.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    args = parser.parse_args()
    gpu = args.device == "gpu" or (args.device == "auto" and cuattn.gpu_available())
    if gpu and not cuattn.gpu_available():
        sys.exit("--device gpu: no CUDA GPU (or no CuPy) found")

    rng = np.random.default_rng()
    batch, hq, hkv, d = 4, 16, 4, 128
    capacity = args.length
    dtype = np.float16 if gpu else np.float32
    q = rng.standard_normal((batch, hq, 1, d)).astype(dtype)
    k = rng.standard_normal((batch, hkv, capacity, d)).astype(dtype)
    v = rng.standard_normal((batch, hkv, capacity, d)).astype(dtype)
    lens = np.array([args.length, args.length // 2, 1, 0], np.int32)[:batch]  # ragged; one empty row
    # pages of PAGE keys in shuffled order (the last one of each row zero-padded), and the block table
    kp, vp, table = cuattn.paged_cache(k, v, PAGE, seed=rng)

    xp = np
    if gpu:
        import cupy as xp
    dev = [xp.asarray(x) for x in (q, k, v, kp, vp, lens, table)]
    dq, dk, dv, dkp, dvp, dlens, dtable = dev
    cuattn.decode(dq, dk, dv, cache_seqlens=dlens, alibi_slopes="default")  # compile / JIT first
    start = time.perf_counter()
    o, lse = cuattn.decode(dq, dk, dv, cache_seqlens=dlens, alibi_slopes="default", return_lse=True)
    if gpu:
        xp.cuda.get_current_stream().synchronize()
    elapsed = time.perf_counter() - start
    o_paged = cuattn.decode(dq, dkp, dvp, cache_seqlens=dlens, block_table=dtable, alibi_slopes="default")

    o, lse, o_paged = (np.asarray(x.get() if gpu else x) for x in (o, lse, o_paged))
    ref = cuattn.reference.decode(q, k, v, cache_seqlens=lens, alibi_slopes="default")
    err = np.linalg.norm(o.astype(np.float64) - ref) / np.linalg.norm(ref)
    tol = 2e-3 if gpu else 1e-5
    read = 2 * int(lens.sum()) * hkv * d * np.dtype(dtype).itemsize  # bytes of K and V read
    print(f"cuattn {cuattn.__version__} on {'GPU' if gpu else 'CPU'}, {np.dtype(dtype).name} cache")
    print(f"decode B={batch} Hq/Hkv={hq}/{hkv} D={d}, cache lengths {lens.tolist()}, ALiBi default slopes: "
          f"{elapsed * 1e3:.2f} ms ({read / elapsed / 1e9:.1f} GB/s of K and V)")
    print(f"relative error vs float64 reference: {err:.2e} (tolerance {tol:.0e})")
    print(f"paged cache ({len(kp)} pages of {PAGE} keys, shuffled) identical to contiguous: "
          f"{np.array_equal(o, o_paged)}")
    print(f"empty row: output all zero {bool(np.all(o[3] == 0))}, lse {lse[3, 0, 0]}")
    ok = err < tol and np.array_equal(o, o_paged) and np.all(o[3] == 0) and np.all(np.isneginf(lse[3]))
    if gpu:
        ok = graph_steps(xp, dq, dkp, dvp, dlens, dtable, capacity) and ok
    print("OK" if ok else "MISMATCH")
    sys.exit(0 if ok else 1)


def graph_steps(cp, q, kp, vp, lens, table, capacity, steps=16):
    """The paged call captured in a CUDA graph and replayed step by step (see the module notes);
    True where every replay matched the eager call and the bad length was caught."""
    stream = cp.cuda.Stream(non_blocking=True)

    def call():
        return cuattn.decode(q, kp, vp, cache_seqlens=lens, block_table=table, alibi_slopes="default")

    with stream, cuattn.graph_memory() as memory:  # keep `memory` as long as `graph`
        stream.begin_capture()
        o = call()
        graph = stream.end_capture()
    same, host_lens = True, lens.get()
    replay_s = eager_s = 0.0
    for _ in range(steps):
        host_lens = np.minimum(host_lens + (host_lens > 0), capacity)  # one new token per live row
        with stream:
            lens[...] = cp.asarray(host_lens)
            stream.synchronize()
            start = time.perf_counter()
            graph.launch(stream)
            stream.synchronize()
            replay_s += time.perf_counter() - start
            start = time.perf_counter()
            eager = call()
            stream.synchronize()
            eager_s += time.perf_counter() - start
        same = same and np.array_equal(o.get(), eager.get())
    memory.check()  # every replay's lengths and pages were in range
    print(f"CUDA graph: {steps} replayed steps (lengths now {host_lens.tolist()}) identical to eager calls: {same}; "
          f"per step {replay_s / steps * 1e6:.0f} us replayed, {eager_s / steps * 1e6:.0f} us eager (host and GPU)")
    with stream:
        lens[0] = -1  # a length out of range: the replay computes nothing
        graph.launch(stream)
    try:
        memory.check()
        caught = False
    except ValueError as error:
        caught = True
        print(f"a negative length in a replay: output NaN {bool(cp.isnan(o).all())}; memory.check(): {error}")
    return same and caught and bool(cp.isnan(o).all())


if __name__ == "__main__":
    main()
