"""Randomized differential checks: random shapes, layouts, dtypes and arguments against the float64
reference, for ``cuattn.attention``, ``cuattn.decode`` and ``cuattn.gla`` on the CPU or the GPU.

    python tests/fuzz.py [--device cpu|cuda] [--seconds S] [--seed N] [--ops attention,decode,gla]

Each case draws fresh inputs (shapes with odd and zero lengths, GQA, broadcast leading dims,
transposed and padded views, paged caches, ragged lengths, Sq > 1, ALiBi slopes, negative and
zero scales, -inf gates, packed sequences, initial states) and checks the result against
``cuattn.reference`` with the tests' bounds: float64 1e-10 and float32 a few 1e-5 norm-wise;
float16/bfloat16 attention no worse than plain same-dtype math (``cuattn.precision
.plain_attention``) or within one unit roundoff, decode within one unit roundoff, gla within a
few (or, where its sums cancel, within 16 float32 roundings of the reference on the inputs'
magnitudes). On the GPU each decode case also draws the module settings (kernel, copy mechanism,
P_lo packing, work stealing, even pieces, page prefetch, static first items, programmatic
launches) and is called twice with fresh lengths, so cached launch plans are exercised too;
attention and gla cases (a quarter of gla's with T = 1) are called again on the same arrays with
fresh contents. Every failure prints the case and its seed; exit status 1 if any.
``tests/test_fuzz.py`` runs a few seconds of it on the CPU in the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cuattn  # noqa: E402
from cuattn._backend import to_numpy  # noqa: E402
from cuattn._checks import BFLOAT16, dtype_name  # noqa: E402
from cuattn.precision import plain_attention  # noqa: E402
from helpers import UNIT_ROUNDOFF, draw, lse_error, poison, rel_error  # noqa: E402

CPU_DTYPES = [np.float32, np.float64, np.float16, BFLOAT16]
GPU_DTYPES = [np.float16, BFLOAT16, np.float32]
DECODE = sys.modules["cuattn.decode"]
DECODE_SETTINGS = {  # module setting: values a GPU case draws from (first: the default)
    "KERNEL": [None, "tma", "regs", "mma"],
    "MMA_COPY": [None, "tensor", "cp.async"],
    "MMA_PACK_LO": [True, False],
    "EVEN_SPLIT": [None, True, False],
    "PAGE_PREFETCH": [False, True],
    "STATIC_FIRST": [False, True],
    "STEAL": [False, True],
    "PDL": [True, False],
    "PDL_TRIGGER": [True, False],
}


class Case(Exception):
    """A failed check, with what the case was."""


_CURRENT = {}  # the running case's description, for failures that are not checks (exceptions)


def _begin(desc):
    _CURRENT.clear()
    _CURRENT.update(desc)
    return desc


def attention_bound(plain, name):
    """The norm-wise error a float16/bfloat16 attention output may have, where plain same-dtype math
    has error `plain`: no worse than it by more than 5%, or within one unit roundoff of the dtype.

    Both outputs are rounded to the dtype. Where both errors sit at that one rounding (small outputs
    of short rows, where the plain math's roundings of the scores and weights cost little), which
    of them comes out lower is a coin toss: two outputs of equal accuracy, each an fp16 rounding of
    the exact values after an internal error of half a unit roundoff, fail 1.05x plain in 30-40% of
    draws at 64-192 elements (test_attention_bound_at_the_rounding_floor); on the GPU (24th
    session) two of ~3000 16-bit cases did, at 0.6 unit roundoffs (bf16 2.37e-3 vs plain 2.36e-3,
    192 elements; fp16 3.21e-4 vs 2.62e-4, 64 elements). One unit roundoff norm-wise is what no
    implementation in the dtype avoids, the decode fuzz's bound; elsewhere the 5% holds."""
    return max(1.05 * plain + 1e-6, UNIT_ROUNDOFF[name])


def _norm_bound(dtype, float32=3e-5):
    return {"float64": 1e-10, "float32": float32}.get(dtype_name(dtype))


def _to(xp, x):
    return x if x is None or isinstance(x, (str, float, int)) else xp.asarray(x)


def _poison(xp, dtype, *shapes):
    """On the GPU, NaN-filled memory-pool blocks of the output sizes (helpers.poison): an element a
    kernel forgets to write reads NaN."""
    if xp is not np:
        poison(xp, *shapes, itemsize=np.dtype(dtype).itemsize)
        poison(xp, *(s[:-1] for s in shapes))


def _view(rng, xp, x, how):
    """x (NumPy) on the device xp as a contiguous array, the transpose of a (.., S, H, D) array,
    or rows padded by 8 elements (a slice of a wider array)."""
    if how == "bshd" and x.ndim >= 3:
        return xp.asarray(np.ascontiguousarray(np.swapaxes(x, -2, -3))).swapaxes(-2, -3)
    if how == "padded":
        wide = xp.asarray(rng.standard_normal(x.shape[:-1] + (x.shape[-1] + 8,)).astype(x.dtype))
        wide[..., : x.shape[-1]] = xp.asarray(x)
        return wide[..., : x.shape[-1]]
    return xp.asarray(x)


def attention_case(rng, xp, gpu):
    dtypes = GPU_DTYPES if gpu else CPU_DTYPES
    dtype = dtypes[rng.integers(len(dtypes))]
    lead = tuple(int(x) for x in rng.integers(1, 3, size=int(rng.integers(0, 3))))
    hkv = int(rng.integers(1, 4))
    hq = hkv * int(rng.integers(1, 4))
    sq, sk = (int(x) for x in rng.integers(0, 300, size=2))
    heads = [8, 16, 64, 72, 128] if gpu else [1, 5, 16, 64, 72]
    d = int(rng.choice(heads))
    dv = int(rng.choice([d, 32, 8 if gpu else 3]))
    q = draw(rng, lead + (hq, sq, d), dtype)
    k = (rng.standard_normal(lead + (hkv, sk, d)) * rng.choice([0.3, 1.0, 4.0])).astype(np.float32).astype(dtype)
    v = draw(rng, lead + (hkv, sk, dv), dtype)
    if lead and rng.random() < 0.3:  # k, v broadcast over the first leading dim
        k, v = k[:1], v[:1]
    causal = bool(rng.random() < 0.5)
    scale = None if rng.random() < 0.5 else float(rng.choice([-1.0, 0.0, 0.3, 3.0]))
    how = str(rng.choice(["dense", "bshd", "padded"]))
    desc = _begin(dict(op="attention", lead=lead, hq=hq, hkv=hkv, sq=sq, sk=sk, d=d, dv=dv, dtype=dtype_name(dtype),
                       causal=causal, scale=scale, layout=how))
    args = (_view(rng, xp, q, how), _view(rng, xp, k, how), _view(rng, xp, v, how))
    for call in range(2 if gpu else 1):  # twice on the GPU: the same arrays with fresh contents (a plan's hit)
        if call:
            q, k, v = (draw(rng, x.shape, dtype) for x in (q, k, v))
            for a, x in zip(args, (q, k, v)):
                a[...] = xp.asarray(x)
        _poison(xp, dtype, np.broadcast_shapes(q.shape[:-3], k.shape[:-3]) + (hq, sq, dv))
        o, lse = cuattn.attention(*args, causal=causal, scale=scale, return_lse=True)
        ro, rl = cuattn.reference.attention(q, k, v, causal=causal, scale=scale, return_lse=True)
        o, lse = to_numpy(o), to_numpy(lse)
        err = rel_error(o, ro)
        bound = _norm_bound(dtype)
        s = d ** -0.5 if scale is None else scale
        if bound is None:  # float16/bfloat16: no worse than plain same-dtype math, or one rounding of the output
            bound = attention_bound(rel_error(plain_attention(q, k, v, causal=causal, scale=s, dtype=dtype), ro),
                                    dtype_name(dtype))
        elif dtype_name(dtype) == "float32" and err > bound:  # large logits: held to plain float32 math
            bound = max(bound, 4 * rel_error(plain_attention(q, k, v, causal=causal, scale=s, dtype=dtype), ro))
        _check(desc, o.dtype == dtype and o.shape == ro.shape, "dtype or shape")
        _check(desc, err <= bound, f"error {err:.3g} > {bound:.3g}")
        _check_lse(desc, lse, rl, 2e-3 if bound > 1e-4 else 1e-5)


def plain_decode(q, k, v, lens, slopes, scale):
    """Plain float32 decode of contiguous caches: each row's logits materialized in float32 (scale
    and bias as given, rounded once each), softmax by NumPy's exp. Returns the output and the
    largest |logit| that leads a row: float32 results are held to this plain math, or to the
    rounding of logits that large (negative slopes make the far keys' logits grow with the
    length: 2.6e4 at L 4879 and slope -5.2, where float32 spacing is 2^-9)."""
    b, hq, sq, d = q.shape
    hkv, length = k.shape[1], k.shape[2]
    w = np.float32
    s = w(d ** -0.5 if scale is None else scale)
    sl = cuattn.alibi_slopes(hq) if isinstance(slopes, str) else np.zeros(hq, w) if slopes is None else slopes
    out = np.zeros(q.shape, w)
    top = 0.0
    for bb in range(b):
        n = length if lens is None else int(lens[bb])
        for h in range(hq):
            kk, vv = k[bb, h // (hq // hkv), :n].astype(w), v[bb, h // (hq // hkv), :n].astype(w)
            for t in range(sq):
                i = n - sq + t
                if i < 0:
                    continue
                x = (kk[: i + 1] @ q[bb, h, t].astype(w)) * s + w(sl[h]) * np.arange(-i, 1, dtype=w)
                p = np.exp(x - x.max())
                out[bb, h, t] = (p / p.sum()) @ vv[: i + 1]
                top = max(top, abs(float(x.max())))
    return out, top


def decode_case(rng, xp, gpu):
    dtypes = GPU_DTYPES if gpu else CPU_DTYPES
    dtype = dtypes[rng.integers(len(dtypes))]
    b = int(rng.integers(1, 4))
    hkv = int(rng.integers(1, 5))
    hq = hkv * int(rng.choice([1, 2, 3, 4, 5, 8]))
    sq = int(rng.integers(1, 5))
    length = int(rng.choice([int(rng.integers(1, 700)), int(rng.integers(700, 9000))]))
    d = int(rng.choice([8, 64, 72, 128, 256] if gpu else [1, 3, 24, 64, 128]))
    page = 0
    how = str(rng.choice(["dense", "bshd", "padded", "paged", "paged"]))
    if how == "paged":
        sizes = [p for p in (1, 4, 16, 64, 100, 256) if length % p == 0 and (p >= 4 or not gpu)]
        if not sizes:
            length = -(-length // 16) * 16
            sizes = [16]
        page = int(rng.choice(sizes))
    q = draw(rng, (b, hq, sq, d), dtype)
    k = (rng.standard_normal((b, hkv, length, d)) * rng.choice([0.3, 1.0, 3.0])).astype(np.float32).astype(dtype)
    v = draw(rng, (b, hkv, length, d), dtype)
    slopes = [None, "default", "array"][rng.integers(3)]
    if slopes == "array":
        slopes = (rng.standard_normal(hq) * rng.choice([0.01, 0.5, 4.0])).astype(np.float32)
    scale = None if rng.random() < 0.5 else float(rng.choice([-1.0, 0.0, 0.3, 2.0]))
    settings = {}
    if gpu:
        settings = {n: vals[rng.integers(len(vals))] if rng.random() < 0.4 else vals[0]
                    for n, vals in DECODE_SETTINGS.items()}
    desc = _begin(dict(op="decode", b=b, hq=hq, hkv=hkv, sq=sq, length=length, d=d, dtype=dtype_name(dtype), layout=how,
                       page=page, slopes=slopes if slopes is None or isinstance(slopes, str) else "array", scale=scale,
                       **{n: x for n, x in settings.items() if x != DECODE_SETTINGS[n][0]}))
    kw = dict(alibi_slopes=slopes, scale=scale, return_lse=True)
    if page:
        kc, vc, table = cuattn.paged_cache(k, v, page, seed=rng)
        kw["block_table"] = table
        kc, vc = _to(xp, kc), _to(xp, vc)
    else:
        kc, vc = _view(rng, xp, k, how), _view(rng, xp, v, how)
    with _settings(settings):
        for call in range(2 if gpu else 1):  # twice on the GPU: the second call reuses the plan
            lens = rng.integers(0, length + 1, size=b).astype(np.int32) if rng.random() < 0.6 else None
            if lens is not None:
                lens[0] = length if rng.random() < 0.5 else lens[0]
            args = dict(kw, cache_seqlens=lens)
            dq, dargs = _to(xp, q), {n: _to(xp, x) for n, x in args.items()}
            _poison(xp, dtype, q.shape)
            o, lse = cuattn.decode(dq, kc, vc, **dargs)
            ro, rl = cuattn.reference.decode(q, k if not page else to_numpy(kc), v if not page else to_numpy(vc),
                                             **args)
            o, lse = to_numpy(o), to_numpy(lse)
            err = rel_error(o, ro)
            name = dtype_name(dtype)
            bound = _norm_bound(dtype, 1e-5) or UNIT_ROUNDOFF[name]
            if name == "float32" and err > bound:  # large logits: plain float32 math, their rounding
                plain, top = plain_decode(q, k, v, lens, slopes, scale)
                bound = max(bound, 4 * rel_error(plain, ro), 4 * UNIT_ROUNDOFF[name] * top)
            desc["call"], desc["lens"] = call, None if lens is None else lens.tolist()
            _check(desc, o.dtype == dtype and o.shape == ro.shape, "dtype or shape")
            _check(desc, err <= bound, f"error {err:.3g} > {bound:.3g}")
            _check_lse(desc, lse, rl, 1e-5)  # (lse is float32 for every dtype)


def gla_case(rng, xp, gpu):
    dtypes = GPU_DTYPES if gpu else CPU_DTYPES
    dtype = dtypes[rng.integers(len(dtypes))]
    h = int(rng.integers(1, 4))
    kd, vd = (int(rng.choice([16, 32, 64, 128] if gpu else [1, 8, 33, 64])) for _ in range(2))
    packed = rng.random() < 0.3
    if packed:
        lens = rng.integers(0, 80, size=int(rng.integers(1, 4)))
        t = int(lens.sum()) + int(rng.integers(0, 3))
        cu = np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)
        lead, states = (1,), (len(lens),)
    else:
        t = 1 if gpu and rng.random() < 0.25 else int(rng.integers(0, 150))  # (T = 1: generation's step)
        cu = None
        lead = tuple(int(x) for x in rng.integers(1, 3, size=int(rng.integers(0, 2))))
        states = lead
    q, k = (draw(rng, lead + (h, t, kd), dtype) for _ in range(2))
    v = draw(rng, lead + (h, t, vd), dtype)
    g = -rng.exponential(rng.choice([0.01, 0.3, 3.0]), size=lead + (h, t, kd))
    u = rng.random(g.shape)
    g[u < 0.01] = -np.inf
    g = g.astype(np.float32).astype(dtype)
    scale = None if rng.random() < 0.5 else float(rng.choice([-1.0, 0.0, 2.5]))
    h0 = rng.standard_normal(states + (h, kd, vd)).astype(np.float32) if rng.random() < 0.5 else None
    mode = str(rng.choice(["chunk", "recurrent"]))
    desc = _begin(dict(op="gla", h=h, t=t, k=kd, v=vd, dtype=dtype_name(dtype), packed=packed, scale=scale,
                       state=h0 is not None, mode=mode))
    kw = dict(scale=scale, initial_state=h0, output_final_state=True, cu_seqlens=cu)
    dev = [xp.asarray(x) for x in (q, k, v, g)]
    dkw = {n: _to(xp, x) for n, x in kw.items()}
    for call in range(2 if gpu else 1):  # twice on the GPU: the same arrays with fresh contents (a plan's hit)
        if call:
            q, k, v = (draw(rng, x.shape, dtype) for x in (q, k, v))
            for a, x in zip(dev, (q, k, v)):
                a[...] = xp.asarray(x)
        _poison(xp, dtype, v.shape)
        o, s = cuattn.gla(*dev, mode=mode, **dkw)
        ro, rs = cuattn.reference.gla(q, k, v, g, **kw)
        o, s = to_numpy(o), to_numpy(s)
        name = dtype_name(dtype)
        bound = {"float64": 1e-10, "float32": 2e-5 if gpu else 3e-5, "float16": 2e-3, "bfloat16": 1e-2}[name]
        _check(desc, o.dtype == dtype and o.shape == ro.shape, "dtype or shape")
        state_bound, err_o, err_s = max(bound, 3e-5), rel_error(o, ro), rel_error(s, rs)
        if err_o > bound or err_s > state_bound:
            # Where the sums cancel (a state of terms that nearly add to zero) no float32 arithmetic is
            # near the float64 result in norm-wise relative terms; what any implementation keeps is an
            # error of a few float32 roundings of the terms' magnitudes: the reference on |q|, |k|, |v|,
            # |scale|, |h0| (the gates' factors are >= 0). Measured: <= 1.7 u of that (ours, chunk and
            # recurrent, and a plain float32 recurrence, on cancelling cases); allowed ABS_ROUNDINGS u.
            ao, as_ = cuattn.reference.gla(*(np.abs(x) for x in (q, k, v)), g, **{
                **kw, "scale": None if scale is None else abs(scale),
                "initial_state": None if h0 is None else np.abs(h0)})
            _check(desc, _within(o, ro, ao, bound), f"output error {err_o:.3g} > {bound:.3g}")
            _check(desc, _within(s, rs, as_, state_bound), f"state error {err_s:.3g} > {state_bound:.3g}")


ABS_ROUNDINGS = 16  # gla: float32 unit roundoffs allowed of the norm of the terms' magnitudes


def _within(x, ref, ref_abs, rel):
    """rel_error(x, ref) <= rel, or ||x - ref|| <= ABS_ROUNDINGS float32 roundings of ||ref_abs||
    (the same sums of magnitudes: what cancellation leaves any float32 arithmetic)."""
    if rel_error(x, ref) <= rel:
        return True
    x = np.asarray(x, dtype=np.float64)
    return bool(np.all(np.isfinite(x))) and float(np.linalg.norm(x - ref)) <= (
        ABS_ROUNDINGS * UNIT_ROUNDOFF["float32"] * float(np.linalg.norm(ref_abs)))


def _check(desc, ok, what):
    if not ok:
        raise Case(f"{what}: {desc}")


def _check_lse(desc, lse, ref, rel):
    off = lse_error(lse, ref)  # (inf where the -inf pattern differs)
    finite = ref[np.isfinite(ref)]
    if off > rel * max(1.0, float(np.abs(finite).max(initial=0.0))):
        raise Case(f"lse off by {off:.3g}: {desc}")


@contextlib.contextmanager
def _settings(values):
    saved = {n: getattr(DECODE, n) for n in values}
    try:
        for n, x in values.items():
            setattr(DECODE, n, x)
        yield
    finally:
        for n, x in saved.items():
            setattr(DECODE, n, x)


OPS = {"attention": attention_case, "decode": decode_case, "gla": gla_case}


def fuzz(ops=tuple(OPS), device="cpu", seconds=10.0, seed=None, out=print):
    """Run random cases of `ops` for about `seconds` each; returns (cases run, failures)."""
    seed = int(np.random.SeedSequence().entropy % 2**32) if seed is None else seed
    gpu = device == "cuda"
    xp = np
    if gpu:
        import cupy as xp
    runs, failures = 0, []
    for op in ops:
        rng = np.random.default_rng([seed, list(OPS).index(op)])
        end = time.monotonic() + seconds
        n = 0
        while time.monotonic() < end:
            try:
                OPS[op](rng, xp, gpu)
            except Case as exc:
                failures.append(f"{op} (seed {seed}, case {n}): {exc}")
                out(failures[-1])
            except Exception as exc:  # valid input must not raise
                failures.append(f"{op} (seed {seed}, case {n}): {type(exc).__name__}: {exc}: {dict(_CURRENT)}")
                out(failures[-1])
            n += 1
        runs += n
        out(f"{op}: {n} cases on the {device.upper()} (seed {seed})")
    return runs, failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--seconds", type=float, default=30.0, help="per op")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--ops", default=",".join(OPS))
    args = parser.parse_args()
    _, failures = fuzz([o for o in args.ops.split(",") if o], args.device, args.seconds, args.seed)
    print(f"{len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
