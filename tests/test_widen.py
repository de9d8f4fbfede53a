"""The CPU kernels' in-place widening of 16-bit floats (cuattn/_widen.py): every bit pattern."""

import ml_dtypes
import numpy as np
import pytest
from numba import njit

from cuattn._widen import half_to_float32, patterns, value


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
def _half_formula(x):
    out = np.empty(x.shape, np.float32)
    for i in range(x.size):
        out[i] = half_to_float32(x[i])
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
    assert _same(_half_formula(bits), expect, payloads=True)


def test_float_arrays_pass_through(rng):
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((2, 3, 4, 5)).astype(dtype)
        assert patterns(x) is x
        got = _widen_all(x)  # (float32 out: float64 values rounded, as the test's buffer holds them)
        assert np.array_equal(got, x.astype(np.float32))
