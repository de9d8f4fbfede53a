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
    """The fuzz fails where a result is off by a few parts in a thousand (one key's weight lost
    in a thousand keys is worse than that): each op's call is wrapped to perturb its output."""
    real = getattr(cuattn, op)

    def off(*args, **kwargs):
        out = real(*args, **kwargs)
        o, rest = out[0], out[1:]
        o = o + (np.abs(o).max(initial=0) * 3e-3 * np.sign(np.sin(np.arange(o.size)))).reshape(o.shape).astype(o.dtype)
        return (o, *rest)

    monkeypatch.setattr(cuattn, op, off)
    runs, failures = fuzz.fuzz([op], "cpu", 1.0, int(rng.integers(2**31)), out=lambda line: None)
    assert runs > 0 and len(failures) > runs // 2, (runs, len(failures))


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
