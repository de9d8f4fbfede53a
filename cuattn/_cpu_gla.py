"""Numba CPU kernels for ``cuattn.gla``: recurrent and chunk modes.

Work items are (sequence x head); ``prange`` spreads them over the cores. The recurrent kernel
walks the recurrence one token at a time, one pass over the state per token (decay, update and
the output's share of each state row together, along contiguous rows). The chunk kernel follows
cuda/gla.cu: steps of CHUNK tokens (intra-step weights: 8x8 diagonal blocks elementwise, the off-diagonal block as one
product of half-referenced q and k), decay factors formed only as products of E = exp(g) in [0, 1] (never as exp of a
difference of cumulative log sums), so -inf and huge negative gates stay exact; the state
products are BLAS calls through ``np.dot``. Gates of -inf must flow, so no ``fastmath=True``.

float16/bfloat16 inputs are not widened to float32 copies first, nor is a float32 output cast
afterwards: the kernels read the inputs' bits and widen them step by step, and round each output
to 16 bits as they write it (cuattn/_bits16.py: exact, to nearest even), so they give the bits of a
float32 copy's call cast to the input dtype.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from . import _checks, _numba_cache
from ._bits16 import narrow, patterns, value, widen_row

CHUNK = 16
_FLAGS = {"reassoc", "contract"}  # no "nnan"/"ninf": -inf and NaN must flow


def _steps(x, b, h, t0, m):
    """x[b, h, t0:t0 + m] as a contiguous array in the working dtype (16-bit inputs come as their
    bits: see _bits16; float ones as the rows themselves where contiguous). Numba code only."""
    raise NotImplementedError("compiled by Numba (overload below)")


@overload(_steps)
def _steps_typed(x, b, h, t0, m):
    if isinstance(x.dtype, types.Float):
        return lambda x, b, h, t0, m: np.ascontiguousarray(x[b, h, t0:t0 + m])

    def widened(x, b, h, t0, m):
        out = np.empty((m, x.shape[3]), np.float32)
        for t in range(m):
            widen_row(x[b, h, t0 + t], out[t])
        return out
    return widened


@njit(parallel=True, cache=True, fastmath=_FLAGS)
def _recurrent_kernel(q, k, v, g, h0, o, ht, bos, lens, rows, scale):
    heads = q.shape[1]
    kdim = q.shape[3]
    vdim = v.shape[3]
    for item in prange(bos.shape[0] * heads):
        n = item // heads
        h = item % heads
        b = rows[n]
        s = h0[n, h].copy()
        out = np.empty(vdim, s.dtype)
        zero = s.dtype.type(0)
        vt = np.empty(vdim, s.dtype)
        for t in range(bos[n], bos[n] + lens[n]):
            widen_row(v[b, h, t], vt)
            for j in range(vdim):
                out[j] = zero
            # one pass over the state per token: row c decays, takes k_c v, and adds q_c times
            # itself to the output (rows are contiguous: the j loops vectorize)
            for c in range(kdim):
                ec = np.exp(value(g, b, h, t, c))
                kc = value(k, b, h, t, c)
                qc = value(q, b, h, t, c)
                for j in range(vdim):
                    x = s[c, j] * ec + kc * vt[j]
                    s[c, j] = x
                    out[j] += qc * x
            for j in range(vdim):
                o[b, h, t, j] = narrow(scale * out[j], o)
        ht[n, h] = s


@njit(parallel=True, cache=True, fastmath=_FLAGS)
def _chunk_kernel(q, k, v, g, h0, o, ht, bos, lens, rows, scale, chunk):
    heads = q.shape[1]
    kdim = q.shape[3]
    for item in prange(bos.shape[0] * heads):
        n = item // heads
        h = item % heads
        b = rows[n]
        s = h0[n, h].copy()
        end = bos[n] + lens[n]
        for t0 in range(bos[n], end, chunk):
            m = min(chunk, end - t0)
            e = np.exp(_steps(g, b, h, t0, m))  # (m, K), in [0, 1] for gates <= 0
            qs = _steps(q, b, h, t0, m)
            ks = _steps(k, b, h, t0, m)
            vs = _steps(v, b, h, t0, m)
            q_dec = np.empty_like(qs)                       # q_t * prod_{u<=t} E_u
            k_dec = np.empty_like(ks)                       # k_s * prod_{s<u<m} E_u
            prefix = np.ones(kdim, dtype=s.dtype)
            for t in range(m):
                prefix *= e[t]
                q_dec[t] = qs[t] * prefix
            suffix = np.ones(kdim, dtype=s.dtype)
            for t in range(m - 1, -1, -1):
                k_dec[t] = ks[t] * suffix
                suffix *= e[t]
            # W[t, s] = sum_c q_tc k_sc P_c(s, t): same-half pairs by a running product, the
            # block t >= half > s as (q_t P(half-1, t]) . (k_s P(s, half-1]) (as cuda/gla.cu)
            half = chunk // 2
            w = np.zeros((m, m), dtype=s.dtype)
            for t in range(m):
                f = np.ones(kdim, dtype=s.dtype)
                start = (t // half) * half
                for j in range(t, start - 1, -1):
                    acc = 0.0
                    for c in range(kdim):
                        acc += qs[t, c] * ks[j, c] * f[c]
                    w[t, j] = acc
                    f *= e[j]
            if m > half:
                q_half = np.empty((m - half, kdim), dtype=s.dtype)
                run = np.ones(kdim, dtype=s.dtype)
                for t in range(half, m):
                    run *= e[t]
                    q_half[t - half] = qs[t] * run
                k_half = np.empty((half, kdim), dtype=s.dtype)
                run = np.ones(kdim, dtype=s.dtype)
                for j in range(half - 1, -1, -1):
                    k_half[j] = ks[j] * run
                    run *= e[j]
                w[half:, :half] = np.dot(q_half, k_half.T.copy())
            y = scale * (np.dot(q_dec, s) + np.dot(w, vs))
            for t in range(m):
                for j in range(y.shape[1]):
                    o[b, h, t0 + t, j] = narrow(y[t, j], o)
            s = prefix.reshape((kdim, 1)) * s + np.dot(k_dec.T.copy(), vs)
        ht[n, h] = s


def gla_cpu(q, k, v, gk, initial_state, sizes, mode, output_final_state):
    """Run a Numba kernel on NumPy arrays; returns (o in the input dtype, final state float32 or None)."""
    in_dtype = q.dtype
    work = np.float64 if in_dtype == _checks.FLOAT64 else np.float32
    batch, heads, seqlen = sizes["batch"], sizes["num_heads"], sizes["seqlen"]
    kdim, vdim = sizes["head_dim_k"], sizes["head_dim_v"]
    nbatch = int(np.prod(batch, dtype=np.int64))

    def prepare(x, dim):  # (16-bit inputs stay 16-bit: widened in the kernels)
        x = np.broadcast_to(np.asarray(x, dtype=work if x.dtype.itemsize > 2 else x.dtype),
                            batch + (heads, seqlen, dim))
        return patterns(np.ascontiguousarray(x.reshape((nbatch, heads, seqlen, dim))))

    qf, kf, gf, vf = prepare(q, kdim), prepare(k, kdim), prepare(gk, kdim), prepare(v, vdim)
    cu = sizes["cu_seqlens"]
    if cu is not None:
        bos = cu[:-1].astype(np.int64)
        lens = np.diff(cu).astype(np.int64)
        rows = np.zeros(len(lens), dtype=np.int64)
    else:
        bos = np.zeros(nbatch, dtype=np.int64)
        lens = np.full(nbatch, seqlen, dtype=np.int64)
        rows = np.arange(nbatch, dtype=np.int64)
    num_seqs = len(lens)
    if initial_state is None:
        h0 = np.zeros((num_seqs, heads, kdim, vdim), dtype=work)
    else:
        h0 = np.ascontiguousarray(np.broadcast_to(np.asarray(initial_state, dtype=work), sizes["state_shape"]))
        h0 = h0.reshape((num_seqs, heads, kdim, vdim))
    # zeros: tokens past cu_seqlens[-1]; 16-bit outputs written as their bits (see _bits16)
    o = patterns(np.zeros((nbatch, heads, seqlen, vdim), dtype=in_dtype if in_dtype.itemsize == 2 else work))
    ht = np.empty((num_seqs, heads, kdim, vdim), dtype=work)
    if num_seqs and heads:
        if mode == "chunk":
            _chunk_kernel(qf, kf, vf, gf, h0, o, ht, bos, lens, rows, work(sizes["scale"]), CHUNK)
        else:
            _recurrent_kernel(qf, kf, vf, gf, h0, o, ht, bos, lens, rows, work(sizes["scale"]))
    o = o.view(in_dtype).reshape(batch + (heads, seqlen, vdim))
    final = ht.reshape(sizes["state_shape"]).astype(np.float32) if output_final_state else None
    return o, final


_numba_cache.guard(globals())  # after every kernel: Numba does not see edits of the files they call into
