"""A few seconds of tests/fuzz.py (random shapes, layouts, dtypes and arguments against the float64
reference) on the CPU in every test run; on a GPU machine run it longer there:
``python tests/fuzz.py --device cuda --seconds 60``."""

import os

import numpy as np
import pytest

import cuattn
import fuzz

SECONDS = float(os.environ.get("CUATTN_FUZZ_SECONDS", 4))


@pytest.mark.parametrize("op", list(fuzz.OPS))
def test_cpu_fuzz(op, rng):
    seed = int(rng.integers(2**31))
    runs, failures = fuzz.fuzz([op], "cpu", SECONDS, seed, out=lambda line: None)
    assert runs > 0
    assert not failures, "\n".join(failures[:5])


@pytest.mark.parametrize("op", list(fuzz.OPS))
def test_fuzz_sees_a_wrong_result(op, monkeypatch, rng):
    """The fuzz fails nearly every case whose output is off by a few parts in a thousand (one key's
    weight lost in a thousand keys is worse than that; bfloat16: 3e-2, a few of its roundings,
    since its bounds are 1e-2): each op's call is wrapped to perturb its output by that much of its
    largest magnitude (of 1 where the output is all zeros: gla with scale 0, decode of empty
    caches), in alternating signs. Cases with large logits, held to plain same-dtype math, may
    hide it (measured: 3 in 2700 attention cases, 3 in 980 decode cases, 0 in 6400 gla cases), so
    of at least 30 cases run, nine in ten of those with an output must fail (the chance that more
    hide: ~1e-6). (Until the 26th session 3e-3 everywhere and half of 10 cases: gla's bfloat16 and
    scale-0 cases hid it, and CI failed on a draw where half did.)"""
    real = getattr(cuattn, op)
    empty = []

    def off(*args, **kwargs):
        out = real(*args, **kwargs)
        o, rest = out[0], out[1:]
        empty.append(o.size == 0)
        top = float(np.abs(o).max(initial=0)) or 1.0
        size = 3e-2 if o.dtype == fuzz.BFLOAT16 else 3e-3
        signs = 1.0 - 2.0 * (np.arange(o.size) % 2)
        o = o + (top * size * signs).reshape(o.shape).astype(o.dtype)
        return (o, *rest)

    monkeypatch.setattr(cuattn, op, off)
    runs, failures = 0, []
    while runs < 30:  # (a slow machine's first cases may take the whole second: compiles)
        r, f = fuzz.fuzz([op], "cpu", 1.0, int(rng.integers(2**31)), out=lambda line: None)
        runs, failures = runs + r, failures + f
    shown = runs - sum(empty)  # (on the CPU each case calls the op once)
    assert shown >= 20 and len(failures) >= 0.9 * shown, (runs, shown, len(failures))


@pytest.mark.parametrize("op", list(fuzz.OPS))
def test_gpu_cases_drawn_on_the_cpu(op, rng):
    """The GPU's cases (its dtypes and head dims, decode's module settings drawn, two calls a case)
    run through the CPU backend: the case code the device will run, without a GPU. The settings
    are restored after each case."""
    before = {n: getattr(fuzz.DECODE, n) for n in fuzz.DECODE_SETTINGS}
    gen = np.random.default_rng(int(rng.integers(2**31)))
    for _ in range(5):
        fuzz.OPS[op](gen, np, True)
    assert {n: getattr(fuzz.DECODE, n) for n in fuzz.DECODE_SETTINGS} == before


def test_decode_settings_lead_with_the_defaults():
    """Each of decode's module settings the GPU fuzz draws lists the module's default first: a case
    reports only the settings it drew away from it (a default that changed, as PDL_TRIGGER's did in
    the 29th session, must change here too)."""
    for name, values in fuzz.DECODE_SETTINGS.items():
        assert values[0] == getattr(fuzz.DECODE, name), name
        assert len(set(map(repr, values))) == len(values) >= 2, name


def test_gla_bound_of_cancelling_sums(rng):
    """A gla state whose terms nearly cancel (found by the fuzz: float32 state error 3.1e-5 against
    a plain float32 recurrence's 2.8e-5): held to float32 roundings of the terms' magnitudes, not
    to a fixed norm-wise bound, and an error of a few more roundings than that still fails."""
    t, kd = 64, 4
    q, k, v = (rng.standard_normal((1, t, n)).astype(np.float32) for n in (kd, kd, 1))
    g = -rng.exponential(0.01, (1, t, kd)).astype(np.float32)
    v[0, -1] = 1
    weight = np.exp(np.cumsum(g[0, :0:-1].astype(np.float64), 0)[::-1])  # exp(sum g[j+1:]) of key j < t - 1
    k[0, -1] = -(weight * k[0, :-1] * v[0, :-1]).sum(0) * (1 + 1e-4 * rng.standard_normal(kd))
    _, rs = cuattn.reference.gla(q, k, v, g, output_final_state=True)
    _, rs_abs = cuattn.reference.gla(np.abs(q), np.abs(k), np.abs(v), g, output_final_state=True)
    assert np.linalg.norm(rs_abs) > 1e3 * np.linalg.norm(rs)  # ill-conditioned: a fixed 3e-5 cannot hold
    _, s = cuattn.gla(q, k, v, g, output_final_state=True)
    assert fuzz._within(s, rs, rs_abs, 3e-5)
    unit = fuzz.UNIT_ROUNDOFF["float32"] * np.linalg.norm(rs_abs)
    off = rs + 4 * fuzz.ABS_ROUNDINGS * unit * np.sign(np.sin(np.arange(rs.size))).reshape(rs.shape) / np.sqrt(rs.size)
    assert not fuzz._within(off, rs, rs_abs, 3e-5)


def test_attention_bound_at_the_rounding_floor(rng):
    """16-bit attention where both our output and plain math's sit at one rounding of the result:
    two outputs of equal accuracy (each an fp16 rounding of the exact values after an internal
    error of half a unit roundoff, 64 and 192 elements: 0.65 unit roundoffs norm-wise) fail 1.05x
    plain in 30-40% of draws, and pass fuzz.attention_bound (which also takes one unit roundoff)
    but for up to 2 in a thousand; an output with four times that internal error (2 unit
    roundoffs, 3x plain) fails it every time."""
    u = fuzz.UNIT_ROUNDOFF["float16"]
    for n in (64, 192):
        x = rng.standard_normal((4000, n))

        def error(internal):
            y = (x * (1 + internal * u * rng.standard_normal(x.shape))).astype(np.float16).astype(np.float64)
            return np.linalg.norm(y - x, axis=1) / np.linalg.norm(x, axis=1)

        ours, plain, worse = error(0.5), error(0.5), error(2.0)
        bound = np.array([fuzz.attention_bound(p, "float16") for p in plain])
        assert np.mean(ours > 1.05 * plain + 1e-6) > 0.25
        assert np.mean(ours > bound) < 0.005
        assert np.median(worse / plain) > 2.5 and np.mean(worse > bound) > 0.99
