"""Numba CPU kernel for ``cuattn.attention``: tiled online softmax, O(N) memory.

Work items are (batch x head x query block of ``BLOCK_M`` rows). ``prange`` runs one worker per
Numba thread; worker ``w`` takes items ``w, w + W, w + 2W, ...`` (round robin, so the uneven
causal items spread evenly) and reuses its scratch buffers for all of them. Per item:

- ``Q`` (``BLOCK_M x D``) is copied once, pre-multiplied by ``scale * log2(e)``, so the scores
  are in the base-2 domain and the softmax needs ``exp2`` only;
- key/value blocks of ``BLOCK_N`` rows stream past: ``S = Q K^T`` and ``P V`` are BLAS GEMMs
  through ``np.dot`` with preallocated outputs (single-threaded BLAS: the two cores are already
  busy with one item each); per row a vectorized max, then ``P = exp2(S - m)`` with a
  polynomial ``exp2`` that LLVM vectorizes (libm's ``exp`` is scalar and was the main cost),
  then the usual online-softmax rescale of the ``BLOCK_M x Dv`` accumulator;
- causal: key blocks past the diagonal are never computed; only blocks that cross the diagonal
  are masked, by limiting each row's column range (no -inf writes).

Memory: per worker ``BLOCK_M x BLOCK_N`` scores plus a few ``BLOCK_M x D`` buffers; never
``Sq x Sk``. Masking and NaN rows rely on IEEE infinities, so no ``nnan``/``ninf`` fast-math flags.
"""

from __future__ import annotations

import contextlib
import ctypes
import math

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic, overload

from . import _checks, _numba_cache
from ._bits16 import from_float32, to_float32

BLOCK_M = 128
BLOCK_N = 512
LOG2E = 1.4426950408889634
LN2 = 0.6931471805599453
# "reassoc" lets LLVM vectorize the row sums; no "nnan"/"ninf": -inf and NaN must flow.
_FLAGS = {"reassoc", "contract", "nsz", "arcp"}


# --- exp2 that vectorizes ----------------------------------------------------------------
# 2**x = 2**n * 2**(x - n) with n = floor(x); 2**(x - n) = sqrt(2) * 2**f, f = x - n - 1/2 in
# [-1/2, 1/2), by its Taylor series (degree 7 for float32: error 5e-9 relative; degree 13 for
# float64: 2e-17). 2**n is built from its exponent bits. Inputs are <= 0 here (scores minus
# their running max); below the smallest normal exponent the result is 0, NaN stays NaN.

def _taylor(degree):
    return [math.sqrt(2.0) * LN2**i / math.factorial(i) for i in range(degree + 1)]


_C32 = tuple(np.float32(c) for c in _taylor(7))
_C64 = tuple(np.float64(c) for c in _taylor(13))
_LOW32, _HALF32, _ZERO32 = np.float32(-126.0), np.float32(0.5), np.float32(0.0)
_LOW64, _HALF64, _ZERO64 = np.float64(-1022.0), np.float64(0.5), np.float64(0.0)


@intrinsic
def _pow2_int(typingctx, n):
    """2.0 ** n for an integer-valued float n in the normal exponent range (bit construction)."""
    if n == types.float32:
        int_type, bias, shift = ir.IntType(32), 127, 23
    elif n == types.float64:
        int_type, bias, shift = ir.IntType(64), 1023, 52
    else:
        return None

    def codegen(context, builder, signature, args):
        bits = builder.add(builder.fptosi(args[0], int_type), ir.Constant(int_type, bias))
        return builder.bitcast(builder.shl(bits, ir.Constant(int_type, shift)), args[0].type)

    return n(n), codegen


def _exp2(x):
    """exp2 for scores minus their max (x <= 0 or NaN); the body is chosen per dtype."""
    raise NotImplementedError  # only called from jitted code


@overload(_exp2, jit_options={"fastmath": {"contract"}})
def _exp2_overload(x):
    if x == types.float32:
        c0, c1, c2, c3, c4, c5, c6, c7 = _C32

        def exp2_f32(x):
            xc = x if x >= _LOW32 else _LOW32
            n = np.floor(xc)
            f = xc - n - _HALF32
            p = c7 * f + c6
            p = p * f + c5
            p = p * f + c4
            p = p * f + c3
            p = p * f + c2
            p = p * f + c1
            p = p * f + c0
            r = p * _pow2_int(n)
            r = r if x >= _LOW32 else _ZERO32
            return r if x == x else x

        return exp2_f32
    if x == types.float64:
        c = _C64

        def exp2_f64(x):
            xc = x if x >= _LOW64 else _LOW64
            n = np.floor(xc)
            f = xc - n - _HALF64
            p = c[13] * f + c[12]
            p = p * f + c[11]
            p = p * f + c[10]
            p = p * f + c[9]
            p = p * f + c[8]
            p = p * f + c[7]
            p = p * f + c[6]
            p = p * f + c[5]
            p = p * f + c[4]
            p = p * f + c[3]
            p = p * f + c[2]
            p = p * f + c[1]
            p = p * f + c[0]
            r = p * _pow2_int(n)
            r = r if x >= _LOW64 else _ZERO64
            return r if x == x else x

        return exp2_f64
    return None


# --- the kernel ----------------------------------------------------------------------------

LANES = 16  # independent partial maxima, so the row max vectorizes (a select chain does not)


@njit(cache=True, fastmath=_FLAGS)
def _row_max(row, count, start, lanes):
    """max(start, row[:count]) ignoring NaN (NaN then flows through exp2 instead)."""
    for j in range(LANES):
        lanes[j] = start
    full = count - count % LANES
    for c0 in range(0, full, LANES):
        for j in range(LANES):
            x = row[c0 + j]
            lanes[j] = x if x > lanes[j] else lanes[j]
    best = start
    for j in range(LANES):
        best = lanes[j] if lanes[j] > best else best
    for c in range(full, count):
        best = row[c] if row[c] > best else best
    return best


@njit(cache=True, fastmath=_FLAGS)
def _row_exp2(row, count, width, shift, zero):
    """row[:count] = exp2(row[:count] - shift), row[count:width] = 0; returns the sum."""
    total = zero
    for c in range(count):
        p = _exp2(row[c] - shift)
        row[c] = p
        total += p
    for c in range(count, width):
        row[c] = zero
    return total


@njit(cache=True, fastmath=_FLAGS)
def _attend_item(item, qf, kf, vf, qidx, kidx, vidx, o, lse, sizes, causal, scale_log2, zero,
                 qbuf, sbuf, pvbuf, acc, row_max, row_sum, alpha, lanes):
    hq, hkv, sq, sk, d, dv, block_m, block_n = sizes
    num_m = (sq + block_m - 1) // block_m
    mb = item % num_m
    h = (item // num_m) % hq
    b = item // (num_m * hq)
    hk = h // (hq // hkv)
    offset = sk - sq
    m0 = mb * block_m
    m1 = min(sq, m0 + block_m)
    rows = m1 - m0

    qstart = ((qidx[b] * hq + h) * sq + m0) * d
    for i in range(rows * d):
        qbuf[i] = qf[qstart + i] * scale_log2
    q_block = qbuf[: rows * d].reshape((rows, d))
    for i in range(rows * dv):
        acc[i] = zero
    for r in range(rows):
        row_max[r] = -np.inf
        row_sum[r] = zero

    n_end = min(sk, max(0, m1 + offset)) if causal else sk
    kstart = (kidx[b] * hkv + hk) * sk * d
    vstart = (vidx[b] * hkv + hk) * sk * dv
    for n0 in range(0, n_end, block_n):
        n1 = min(n_end, n0 + block_n)
        width = n1 - n0
        scores = sbuf[: rows * width].reshape((rows, width))
        k_block = kf[kstart + n0 * d : kstart + n1 * d].reshape((width, d))
        np.dot(q_block, k_block.T, scores)
        diagonal = causal and n1 - 1 > m0 + offset
        for r in range(rows):
            count = width
            if diagonal:
                count = min(width, max(0, m0 + r + offset + 1 - n0))
            row = scores[r]
            old = row_max[r]
            new = _row_max(row, count, old, lanes)
            shift = new if new != -np.inf else zero
            a = _exp2(old - shift)
            row_sum[r] = row_sum[r] * a + _row_exp2(row, count, width, shift, zero)
            row_max[r] = new
            alpha[r] = a
        v_block = vf[vstart + n0 * dv : vstart + n1 * dv].reshape((width, dv))
        pv = pvbuf[: rows * dv].reshape((rows, dv))
        np.dot(scores, v_block, pv)
        for r in range(rows):
            a = alpha[r]
            base = r * dv
            for c in range(dv):
                acc[base + c] = acc[base + c] * a + pvbuf[base + c]

    for r in range(rows):
        total = row_sum[r]
        if total > 0:
            inv = 1 / total
            lse[b, h, m0 + r] = (row_max[r] + np.log2(total)) * LN2
        elif total == 0:  # the row sees no key
            inv = zero
            lse[b, h, m0 + r] = -np.inf
        else:  # NaN
            inv = total
            lse[b, h, m0 + r] = total
        base = r * dv
        for c in range(dv):
            o[b, h, m0 + r, c] = acc[base + c] * inv


@njit(parallel=True, cache=True, fastmath=_FLAGS)
def _attention_kernel(qf, kf, vf, qidx, kidx, vidx, o, lse, sizes, causal, scale_log2, zero, num_workers):
    hq, hkv, sq, sk, d, dv, block_m, block_n = sizes
    num_items = o.shape[0] * hq * ((sq + block_m - 1) // block_m)
    for worker in prange(num_workers):
        qbuf = np.empty(block_m * d, qf.dtype)
        sbuf = np.empty(block_m * block_n, qf.dtype)
        pvbuf = np.empty(block_m * dv, qf.dtype)
        acc = np.empty(block_m * dv, qf.dtype)
        row_max = np.empty(block_m, qf.dtype)
        row_sum = np.empty(block_m, qf.dtype)
        alpha = np.empty(block_m, qf.dtype)
        lanes = np.empty(LANES, qf.dtype)
        for item in range(worker, num_items, num_workers):
            _attend_item(item, qf, kf, vf, qidx, kidx, vidx, o, lse, sizes, causal, scale_log2, zero,
                         qbuf, sbuf, pvbuf, acc, row_max, row_sum, alpha, lanes)


# --- BLAS threads --------------------------------------------------------------------------
# The kernel calls BLAS from every Numba thread at once. A multithreaded OpenBLAS inside that
# oversubscribes the cores (measured: ~50x slower on 2 cores), so the call runs with BLAS
# limited to one thread and restores the previous setting after. threadpoolctl is used when
# installed; otherwise loaded OpenBLAS libraries are found through /proc/self/maps (Linux).

_OPENBLAS_PREFIXES = ("scipy_openblas", "openblas")
_blas_controls = None


def _find_openblas_controls():
    controls = []
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and ".so" in line}
    except OSError:
        return controls
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in _OPENBLAS_PREFIXES:
            for suffix in ("", "64_"):
                getter = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                setter = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                if getter is not None and setter is not None:
                    getter.restype = ctypes.c_int
                    setter.argtypes = [ctypes.c_int]
                    controls.append((getter, setter))
                    break
            else:
                continue
            break
    return controls


_blas_controller = None  # threadpoolctl's view of the loaded libraries, taken after a first call


@contextlib.contextmanager
def _single_threaded_blas():
    """BLAS limited to one thread inside (the Numba kernels call it from every thread). The
    loaded libraries are looked up in full on the first use and kept from then on (by then the
    kernels have run once, so the BLAS they call is loaded): later uses cost microseconds, not
    the ~0.3 ms of a fresh lookup, which short CPU calls (decode of one layer) would feel."""
    global _blas_controls, _blas_controller
    try:
        from threadpoolctl import ThreadpoolController, threadpool_limits
    except ImportError:
        ThreadpoolController = threadpool_limits = None
    if threadpool_limits is not None:
        if _blas_controller is not None:
            with _blas_controller.limit(limits=1, user_api="blas"):
                yield
            return
        with threadpool_limits(limits=1, user_api="blas"):
            yield
        _blas_controller = ThreadpoolController()
        return
    fresh = _blas_controls is None
    if fresh:
        _blas_controls = _find_openblas_controls()
    previous = [getter() for getter, _ in _blas_controls]
    for _, setter in _blas_controls:
        setter(1)
    try:
        yield
    finally:
        for (_, setter), n in zip(_blas_controls, previous):
            setter(n)
        if fresh:  # look again once the kernel has run (its BLAS may have loaded meanwhile)
            _blas_controls = _find_openblas_controls()


# --- entry ---------------------------------------------------------------------------------

def _flat(x, batch, work):
    """x as a flat contiguous work-dtype array plus, per flattened batch index, its own batch
    index (broadcast dims are indexed, not copied)."""
    lead = x.shape[:-3]
    index = np.broadcast_to(np.arange(math.prod(lead), dtype=np.int64).reshape(lead), batch).reshape(-1)
    flat = to_float32(x) if x.dtype.itemsize == 2 else np.ascontiguousarray(x, dtype=work)  # (16-bit: see _bits16)
    return flat.reshape(-1), np.ascontiguousarray(index)


def attention_cpu(q, k, v, sizes, causal, scale):
    """Run the Numba kernel on NumPy arrays; returns (o in the input dtype, lse float32)."""
    in_dtype = q.dtype
    work = np.float64 if in_dtype == _checks.FLOAT64 else np.float32
    batch = sizes["batch"]
    hq, hkv = sizes["num_q_heads"], sizes["num_kv_heads"]
    sq, sk, d, dv = sizes["seqlen_q"], sizes["seqlen_k"], sizes["head_dim"], sizes["head_dim_v"]
    nbatch = math.prod(batch)
    o = np.empty((nbatch, hq, sq, dv), dtype=work)
    lse = np.empty((nbatch, hq, sq), dtype=np.float32)
    if lse.size:
        (qf, qidx), (kf, kidx), (vf, vidx) = (_flat(x, batch, work) for x in (q, k, v))
        block_m = min(BLOCK_M, sq)
        block_n = max(1, min(BLOCK_N, sk))
        dims = tuple(int(x) for x in (hq, hkv, sq, sk, d, dv, block_m, block_n))
        num_items = nbatch * hq * (-(-sq // block_m))
        workers = max(1, min(numba.get_num_threads(), num_items))
        with _single_threaded_blas():
            _attention_kernel(qf, kf, vf, qidx, kidx, vidx, o, lse, dims, causal,
                              work(scale * LOG2E), work(0), workers)
    o = o.reshape(batch + (hq, sq, dv))
    o = from_float32(o, in_dtype) if in_dtype.itemsize == 2 else o.astype(in_dtype, copy=False)
    return o, lse.reshape(batch + (hq, sq))


_numba_cache.guard(globals())  # after every kernel: Numba does not see edits of the files they call into
