"""float16/bfloat16 arrays read and written in place by the Numba CPU kernels, as their bits.

Reading (widening). ``patterns(x)`` gives the kernels a 16-bit array's bits without a copy: float16
viewed as uint16, bfloat16 as int16 (the integer dtype tells the kernels which format);
float32/float64 arrays come as they are. ``widen(h)`` (Numba code) gives an element of such an
array as float32 or as it is, ``value(x, i, j, k, l)`` element [i, j, k, l]; a contiguous row
copied by a loop of ``widen`` vectorizes (the decode kernels widen row by row: a 4-d indexed loop,
k and v together, took a scalar path for float16, ~35% slower). bfloat16 is the upper half of its
float32 (a shift); float16 goes through LLVM's half-to-float conversion where the CPU has one
(x86's F16C: vcvtph2ps, 8 values an instruction) and through integer operations and selects
otherwise (exact, scalar: LLVM vectorizes neither a table look-up nor these; LLVM's own conversion
without F16C calls a runtime function Numba does not link, which crashed). Every pattern gives the
float32 value NumPy's (and ml_dtypes') conversion gives, zeros, subnormals and infinities
included, and a NaN for a NaN (F16C sets a signalling NaN's quiet bit). The kernels' results are
therefore those of the same call on a float32 copy, without the copy (which took ~90% of a float16
decode and twice the cache's memory).

Writing (narrowing). ``narrow(x, like)`` (Numba code) rounds a float32 to the element type of the
``patterns`` array ``like`` (to nearest, ties to even, as NumPy's and ml_dtypes' casts): float16
by F16C's vcvtps2ph where the CPU has it, by integer operations otherwise; bfloat16 by integer
operations. Every float32 gives the bits of those casts, NaN payloads aside (a NaN gives a NaN).
The GLA kernels write 16-bit outputs this way instead of a float32 output cast afterwards
(NumPy's float32 -> float16 cast ran at ~1.5 ns an element here). ``to_float32`` and
``from_float32`` convert whole arrays with these in parallel, for the CPU attention kernel, which
reads each K tile many times and so takes float32 copies (~0.35 ns an element into memory
already mapped, 2 threads; NumPy's float16 casts ~1.5-2; a fresh array's page faults come on top
of either).

tests/test_bits16.py checks all 65536 patterns each way round and float32 edge values.
Numba's on-disk cache does not see edits to this file in the kernels that use it: after one,
touch cuattn/_cpu_decode.py and cuattn/_cpu_gla.py (or clear their __pycache__).
"""

from __future__ import annotations

import platform

import numba
import numpy as np
from llvmlite import binding, ir
from numba import njit, prange, types
from numba.extending import intrinsic, overload

from . import _numba_cache


def _hardware_half() -> bool:
    """Whether Numba compiles for this x86 CPU and it converts float16 (F16C)."""
    if numba.config.CPU_NAME is not None or platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        return bool(binding.get_host_cpu_features().get("f16c", False))
    except RuntimeError:  # (features unknown)
        return False


HARDWARE_HALF = _hardware_half()


def patterns(x: np.ndarray) -> np.ndarray:
    """x as the kernels take it: 16-bit floats as their bits (float16: uint16, bfloat16: int16)."""
    if x.dtype.itemsize != 2:
        return x
    return x.view(np.uint16 if x.dtype == np.float16 else np.int16)


@intrinsic
def _float32_of_bits(typingctx, bits):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.uint32), codegen


@intrinsic
def _bits_of_float32(typingctx, x):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))
    return types.uint32(types.float32), codegen


@intrinsic
def _half_extended(typingctx, bits):
    def codegen(context, builder, signature, args):
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())
    return types.float32(types.uint16), codegen


@njit
def half_to_float32(h):
    """The float32 value of float16 bits h (exact, every pattern; integer operations)."""
    u = np.uint32(h)
    em = u & np.uint32(0x7FFF)  # exponent and mantissa
    # normal: exponent rebiased (+112 << 23); infinity/NaN: to 255 (+224 << 23), payload kept
    bits = (em << np.uint32(13)) + (np.uint32(0x70000000) if em >= np.uint32(0x7C00) else np.uint32(0x38000000))
    # zero and subnormal: mantissa x 2 ** -24, exact in float32
    small = _bits_of_float32(np.float32(np.int32(em)) * np.float32(2.0 ** -24))
    bits = small if em < np.uint32(0x400) else bits
    return _float32_of_bits(bits | ((u & np.uint32(0x8000)) << np.uint32(16)))


@njit
def bfloat16_to_float32(h):
    """The float32 value of bfloat16 bits h (exact, every pattern: the upper half of its float32)."""
    return _float32_of_bits(np.uint32(np.uint16(h)) << np.uint32(16))


def widen(h):
    """An element of a ``patterns`` array as float32 (16-bit) or as it is. Numba code only."""
    raise NotImplementedError("compiled by Numba (overload below)")


@overload(widen)
def _widen_typed(h):  # typed per element dtype: no branch at run time
    if h == types.uint16 and HARDWARE_HALF:
        return lambda h: _half_extended(h)
    if h == types.uint16:
        return lambda h: half_to_float32(h)
    if h == types.int16:
        return lambda h: bfloat16_to_float32(h)
    return lambda h: h


@njit(cache=True)
def widen_row(src, dst):
    """dst[:] = src widened (1-d: a contiguous row's loop vectorizes, F16C's included)."""
    for c in range(dst.shape[0]):
        dst[c] = widen(src[c])


def value(x, i, j, k, l):
    """x[i, j, k, l] widened (see the module docstring). Numba code only."""
    raise NotImplementedError("compiled by Numba (overload below)")


@overload(value)
def _value_typed(x, i, j, k, l):
    return lambda x, i, j, k, l: widen(x[i, j, k, l])


@intrinsic
def _half_rounded(typingctx, x):
    def codegen(context, builder, signature, args):
        return builder.bitcast(builder.fptrunc(args[0], ir.HalfType()), ir.IntType(16))
    return types.uint16(types.float32), codegen


@njit
def float32_to_half(x):
    """float16 bits of float32 x, rounded to nearest even (integer operations; NaN: a quiet NaN)."""
    f = _bits_of_float32(x)
    sign = (f >> np.uint32(16)) & np.uint32(0x8000)
    a = f & np.uint32(0x7FFFFFFF)
    # normal halves: rebias, round to nearest even on the 13 dropped bits (a carry may reach the
    # exponent: right); from 65520 on the rounding gives infinity
    normal = (a - np.uint32(0x38000000) + np.uint32(0xFFF) + ((a >> np.uint32(13)) & np.uint32(1))) >> np.uint32(13)
    # below 2 ** -14: adding 0.5 leaves the half's subnormal steps (2 ** -24) as the float's last
    # mantissa bit, the add itself rounds to nearest even
    small = _bits_of_float32(_float32_of_bits(a) + np.float32(0.5)) - np.uint32(0x3F000000)
    h = small if a < np.uint32(0x38800000) else normal
    h = np.uint32(0x7C00) if a >= np.uint32(0x477FF000) else h
    h = np.uint32(0x7E00) | ((a & np.uint32(0x7FFFFF)) >> np.uint32(13)) if a > np.uint32(0x7F800000) else h
    return np.uint16(h | sign)


@njit
def float32_to_bfloat16(x):
    """bfloat16 bits (as int16) of float32 x, rounded to nearest even; NaN: ml_dtypes' quiet NaN."""
    f = _bits_of_float32(x)
    r = (f + np.uint32(0x7FFF) + ((f >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    nan = (f >> np.uint32(16) & np.uint32(0x8000)) | np.uint32(0x7FC0)
    r = nan if (f & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000) else r
    return np.int16(np.uint16(r))


def narrow(x, like):
    """x rounded to the element type of the patterns array ``like``. Numba code only."""
    raise NotImplementedError("compiled by Numba (overload below)")


@overload(narrow)
def _narrow_typed(x, like):  # typed per output dtype: no branch at run time
    if like.dtype == types.uint16 and HARDWARE_HALF:
        return lambda x, like: _half_rounded(np.float32(x))
    if like.dtype == types.uint16:
        return lambda x, like: float32_to_half(np.float32(x))
    if like.dtype == types.int16:
        return lambda x, like: float32_to_bfloat16(np.float32(x))
    return lambda x, like: x


@njit(parallel=True, cache=True)
def _convert_flat(x, out):
    """out[i] = x[i] widened or narrowed to out's element type (1-d patterns arrays), in parallel."""
    n = x.size
    step = 1 << 16
    for p in prange((n + step - 1) // step):
        for i in range(p * step, min(n, (p + 1) * step)):
            out[i] = narrow(widen(x[i]), out)


def to_float32(x: np.ndarray) -> np.ndarray:
    """A contiguous float32 copy of a float16/bfloat16 array (the bits of ``x.astype(float32)``,
    NaN payloads aside), converted in parallel (see the module docstring for rates)."""
    flat = patterns(np.ascontiguousarray(x)).reshape(-1)
    out = np.empty(flat.shape, np.float32)
    _convert_flat(flat, out)
    return out.reshape(x.shape)


def from_float32(x: np.ndarray, dtype) -> np.ndarray:
    """x (float32) rounded to the 16-bit ``dtype`` (the bits of ``x.astype(dtype)``, NaN payloads
    aside), in parallel."""
    flat = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    out = patterns(np.empty(flat.shape, dtype))
    _convert_flat(flat, out)
    return out.view(dtype).reshape(x.shape)


_numba_cache.guard(globals())  # after every kernel: Numba does not see edits of the files they call into
