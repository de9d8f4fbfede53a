"""The CPU kernels' 16-bit floats as bits (cuattn/_bits16.py): every pattern widened, float32s narrowed."""

import ml_dtypes
import numpy as np
import pytest
from numba import njit

from cuattn._bits16 import float32_to_half, half_to_float32, narrow, patterns, value


@njit(cache=True)
def _widen_all(x):
    out = np.empty(x.shape, np.float32)
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            for k in range(x.shape[2]):
                for m in range(x.shape[3]):
                    out[i, j, k, m] = value(x, i, j, k, m)
    return out


@njit(cache=True)
def _map(fn, x, out):
    """out[i] = fn(x[i]) (1-d arrays)."""
    for i in range(x.size):
        out[i] = fn(x[i])
    return out


def _same(got, expect, payloads):
    """Bits equal where expect is a number; NaN where it is NaN (payloads: its bits too)."""
    nan = np.isnan(expect)
    if payloads:
        return np.array_equal(got.view(np.uint32), expect.view(np.uint32))
    return np.array_equal(np.isnan(got), nan) and np.array_equal(got[~nan].view(np.uint32),
                                                                  expect[~nan].view(np.uint32))


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16], ids=["float16", "bfloat16"])
def test_every_pattern_widens_to_the_float32_value(dtype):
    """All 65536 patterns (zeros, subnormals, infinities, NaNs of both signs) give the float32 of
    NumPy's / ml_dtypes' conversion (a NaN for a NaN), in a strided view too."""
    bits = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(dtype)
    x = bits.reshape(4, 16, 32, 32)
    for view in (x, x.transpose(0, 2, 1, 3)):
        got = _widen_all(patterns(view))
        assert got.dtype == np.float32
        assert _same(got, view.astype(np.float32), payloads=dtype != np.float16)
    assert _same(_widen_all(patterns(x)).ravel(), bits.astype(np.float32), payloads=dtype != np.float16)


def test_half_formula_gives_every_patterns_bits():
    """The integer-operation float16 path (CPUs without F16C) gives NumPy's bits, NaN payloads too."""
    bits = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    expect = bits.view(np.float16).astype(np.float32)
    assert _same(_map(half_to_float32, bits, np.empty(bits.shape, np.float32)), expect, payloads=True)


def test_float_arrays_pass_through(rng):
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((2, 3, 4, 5)).astype(dtype)
        assert patterns(x) is x
        got = _widen_all(x)  # (float32 out: float64 values rounded, as the test's buffer holds them)
        assert np.array_equal(got, x.astype(np.float32))


@njit(cache=True)
def _narrow_all(x, like):
    out = np.empty(x.shape, like.dtype)
    for i in range(x.size):
        out[i] = narrow(x[i], like)
    return out


def _float32_cases(rng):
    """Random float32 bit patterns, both signs of each, and every float32 near the rounding
    boundaries: half's smallest normal, its overflow to infinity, its subnormal steps, 1, bfloat16
    ties and infinity/NaN."""
    bits = [rng.integers(0, 1 << 32, 400_000, dtype=np.uint64).astype(np.uint32)]
    for c in (0x3F800000, 0x38800000, 0x387FC000, 0x33000000, 0x33800000, 0x477FE000, 0x477FF000, 0x7F7F8000,
              0x7F800000, 0x00800000, 0):
        bits.append(np.arange(max(c - 20000, 0), c + 20000, dtype=np.int64).astype(np.uint32))
    bits = np.concatenate(bits)
    return np.concatenate([bits, bits | np.uint32(0x80000000)]).view(np.float32)


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16], ids=["float16", "bfloat16"])
def test_float32s_narrow_to_the_cast_bits(rng, dtype):
    """narrow rounds as NumPy's / ml_dtypes' cast (to nearest even, overflow to infinity,
    subnormals): the same bits for every number, a NaN for a NaN; and every 16-bit value back."""
    x = _float32_cases(rng)
    like = patterns(np.zeros(1, dtype))
    with np.errstate(invalid="ignore", over="ignore"):
        expect = x.astype(dtype)
    got = _narrow_all(x, like).view(dtype)
    nan = np.isnan(expect)
    assert np.array_equal(got[~nan].view(np.uint16), expect[~nan].view(np.uint16))
    assert np.all(np.isnan(got[nan]))
    every = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(dtype).astype(np.float32)
    back = _narrow_all(every, like).view(dtype)
    keep = ~np.isnan(every)
    assert np.array_equal(back[keep].view(np.uint16), every[keep].astype(dtype).view(np.uint16))


def test_half_narrowing_formula(rng):
    """The integer-operation float16 rounding (CPUs without F16C) gives NumPy's cast bits."""
    x = _float32_cases(rng)
    with np.errstate(invalid="ignore", over="ignore"):
        expect = x.astype(np.float16)
    got = _map(float32_to_half, x, np.empty(x.shape, np.uint16)).view(np.float16)
    nan = np.isnan(expect)
    assert np.array_equal(got[~nan].view(np.uint16), expect[~nan].view(np.uint16))
    assert np.all(np.isnan(got[nan]))
