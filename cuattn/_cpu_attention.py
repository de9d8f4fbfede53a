"""Numba CPU kernel for ``cuattn.attention``: tiled online softmax, O(N) memory.

Work items are (batch x head x query block); ``prange`` spreads them over the cores. Each item
keeps a (block_m, D) output accumulator and streams key/value blocks: S = Q K^T and O += P V
are BLAS products through ``np.dot``. Only block_m x block_n scores exist at a time.
Masking uses -inf, so the kernels avoid ``fastmath=True`` (it assumes no infinities).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import _checks

BLOCK_M = 128
BLOCK_N = 256
_FLAGS = {"reassoc", "contract"}  # no "nnan"/"ninf": -inf and NaN must flow


@njit(parallel=True, cache=True, fastmath=_FLAGS)
def _attention_kernel(q, k, v, o, lse, group, scale, causal, block_m, block_n):
    nb, hq, sq, d = q.shape
    sk = k.shape[2]
    dv = v.shape[3]
    offset = sk - sq
    num_m = (sq + block_m - 1) // block_m
    for item in prange(nb * hq * num_m):
        mb = item % num_m
        h = (item // num_m) % hq
        b = item // (num_m * hq)
        hk = h // group
        m0 = mb * block_m
        m1 = min(sq, m0 + block_m)
        rows = m1 - m0
        qs = np.ascontiguousarray(q[b, h, m0:m1]) * scale
        acc = np.zeros((rows, dv), dtype=o.dtype)
        run_max = np.full(rows, -np.inf, dtype=o.dtype)
        run_sum = np.zeros(rows, dtype=o.dtype)
        n_end = sk
        if causal:
            n_end = min(sk, max(0, m1 + offset))
        for n0 in range(0, n_end, block_n):
            n1 = min(n_end, n0 + block_n)
            s = np.dot(qs, np.ascontiguousarray(k[b, hk, n0:n1]).T)
            if causal and n1 - 1 > m0 + offset:
                for r in range(rows):
                    first = m0 + r + offset + 1 - n0  # first masked column of row r
                    for c in range(max(first, 0), n1 - n0):
                        s[r, c] = -np.inf
            for r in range(rows):
                mx = run_max[r]
                for c in range(n1 - n0):
                    if s[r, c] > mx:
                        mx = s[r, c]
                shift = 0.0 if mx == -np.inf else mx
                alpha = np.exp(run_max[r] - shift)
                total = 0.0
                for c in range(n1 - n0):
                    p = np.exp(s[r, c] - shift)
                    s[r, c] = p
                    total += p
                run_max[r] = mx
                run_sum[r] = run_sum[r] * alpha + total
                for c in range(dv):
                    acc[r, c] *= alpha
            acc += np.dot(s, np.ascontiguousarray(v[b, hk, n0:n1]))
        for r in range(rows):
            total = run_sum[r]
            inv = 1.0 / total if total > 0 else (0.0 if total == 0 else total)
            for c in range(dv):
                o[b, h, m0 + r, c] = acc[r, c] * inv
            if total > 0:
                shift = 0.0 if run_max[r] == -np.inf else run_max[r]
                lse[b, h, m0 + r] = shift + np.log(total)
            elif total == 0:
                lse[b, h, m0 + r] = -np.inf
            else:
                lse[b, h, m0 + r] = total


def attention_cpu(q, k, v, sizes, causal, scale):
    """Run the Numba kernel on NumPy arrays; returns (o in the input dtype, lse float32)."""
    in_dtype = q.dtype
    work = np.float64 if in_dtype == _checks.FLOAT64 else np.float32
    batch = sizes["batch"]
    hq, hkv = sizes["num_q_heads"], sizes["num_kv_heads"]
    sq, sk, d, dv = sizes["seqlen_q"], sizes["seqlen_k"], sizes["head_dim"], sizes["head_dim_v"]
    nbatch = int(np.prod(batch, dtype=np.int64))

    def prepare(x, heads, seqlen, dim):
        x = np.broadcast_to(np.asarray(x, dtype=work), batch + (heads, seqlen, dim))
        return x.reshape((nbatch, heads, seqlen, dim)) if x.size else np.zeros((nbatch, heads, seqlen, dim), work)

    qf, kf, vf = prepare(q, hq, sq, d), prepare(k, hkv, sk, d), prepare(v, hkv, sk, dv)
    o = np.empty((nbatch, hq, sq, dv), dtype=work)
    lse = np.empty((nbatch, hq, sq), dtype=work)
    if o.size or lse.size:
        _attention_kernel(qf, kf, vf, o, lse, hq // hkv, work(scale), causal, BLOCK_M, BLOCK_N)
    o = o.reshape(batch + (hq, sq, dv)).astype(in_dtype, copy=False)
    return o, lse.reshape(batch + (hq, sq)).astype(np.float32)
