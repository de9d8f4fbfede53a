"""Error measures used by the tests (norm-wise, as DESIGN.md asks)."""

import numpy as np

from cuattn._backend import to_numpy


def rel_error(x, ref):
    """||x - ref|| / ||ref|| in float64 (Frobenius); NaN anywhere in x gives inf."""
    x = np.asarray(to_numpy(x), dtype=np.float64)
    ref = np.asarray(to_numpy(ref), dtype=np.float64)
    assert x.shape == ref.shape, (x.shape, ref.shape)
    if x.size == 0:
        return 0.0
    if not np.all(np.isfinite(x)):
        return np.inf
    denom = np.linalg.norm(ref)
    return float(np.linalg.norm(x - ref) / (denom if denom > 0 else 1.0))


def lse_error(lse, ref):
    """Max |lse - ref| over finite entries; inf if the -inf pattern differs."""
    lse = np.asarray(to_numpy(lse), dtype=np.float64)
    ref = np.asarray(to_numpy(ref), dtype=np.float64)
    assert lse.shape == ref.shape
    if not np.array_equal(np.isneginf(lse), np.isneginf(ref)):
        return np.inf
    finite = np.isfinite(ref)
    if not finite.any():
        return 0.0
    return float(np.max(np.abs(lse[finite] - ref[finite])))
