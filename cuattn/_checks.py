"""Argument checks shared by every operation.

Every public function calls these before any launch; each error names the argument and what
was expected.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

try:  # bfloat16 comes from ml_dtypes (CuPy >= 14 supports it when ml_dtypes is installed)
    import ml_dtypes

    BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
except Exception:  # pragma: no cover - ml_dtypes missing
    BFLOAT16 = None

FLOAT16 = np.dtype(np.float16)
FLOAT32 = np.dtype(np.float32)
FLOAT64 = np.dtype(np.float64)

GPU_DTYPES = tuple(d for d in (FLOAT16, BFLOAT16, FLOAT32) if d is not None)
CPU_DTYPES = tuple(d for d in (FLOAT16, BFLOAT16, FLOAT32, FLOAT64) if d is not None)


def dtype_name(dtype) -> str:
    return "bfloat16" if BFLOAT16 is not None and np.dtype(dtype) == BFLOAT16 else np.dtype(dtype).name


def parse_dtype(name) -> np.dtype:
    """'float16' / 'bfloat16' / 'float32' / 'float64' (or a dtype) -> np.dtype."""
    if isinstance(name, str) and name == "bfloat16":
        if BFLOAT16 is None:
            raise ValueError("bfloat16 needs the ml_dtypes package: pip install ml_dtypes")
        return BFLOAT16
    return np.dtype(name)


def check_scale(scale, head_dim: int, name: str = "scale") -> float:
    """None -> head_dim ** -0.5; any finite real (negative and zero included) is used as given."""
    if scale is None:
        return float(head_dim) ** -0.5 if head_dim > 0 else 1.0
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
        raise TypeError(f"{name} must be a real number or None; got {type(scale).__name__}")
    value = float(scale)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite; got {value}")
    return value


def check_ndim(x, name: str, min_ndim: int, what: str):
    if x.ndim < min_ndim:
        raise ValueError(f"{name} must have shape {what} (at least {min_ndim} dims); got shape {tuple(x.shape)}")


def check_dtype(x, name: str, allowed, where: str):
    if x.dtype not in allowed:
        names = ", ".join(dtype_name(d) for d in allowed)
        raise TypeError(f"{name} has dtype {dtype_name(x.dtype)}; the {where} backend takes {names}")


def check_same_dtype(arrays: dict):
    dtypes = {n: a.dtype for n, a in arrays.items() if a is not None}
    if len(set(dtypes.values())) > 1:
        detail = ", ".join(f"{n}: {dtype_name(d)}" for n, d in dtypes.items())
        raise TypeError(f"inputs must share one dtype; got {detail}")


def check_bool(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return bool(value)


def broadcast_batch(shapes: dict, trailing: int) -> tuple:
    """Broadcast the leading (batch) dims of several shapes as numpy.matmul does."""
    try:
        return tuple(np.broadcast_shapes(*(s[:-trailing] for s in shapes.values())))
    except ValueError:
        detail = ", ".join(f"{n}: {tuple(s)}" for n, s in shapes.items())
        raise ValueError(f"leading (batch) dims do not broadcast: {detail}") from None


def check_heads(num_q_heads: int, num_kv_heads: int, q_name="q", kv_name="k"):
    if num_kv_heads < 1 or num_q_heads % num_kv_heads != 0:
        raise ValueError(
            f"the head count of {q_name} ({num_q_heads}) must be a multiple of that of "
            f"{kv_name} ({num_kv_heads}) (GQA/MQA)"
        )


def attention_shapes(q, k, v) -> dict:
    """Check q (..., Hq, Sq, D), k (..., Hkv, Sk, D), v (..., Hkv, Sk, Dv); return the sizes."""
    for x, name, what in ((q, "q", "(..., Hq, Sq, D)"), (k, "k", "(..., Hkv, Sk, D)"), (v, "v", "(..., Hkv, Sk, Dv)")):
        check_ndim(x, name, 3, what)
    hq, sq, d = q.shape[-3:]
    hkv, sk, dk = k.shape[-3:]
    hv, sv, dv = v.shape[-3:]
    if dk != d:
        raise ValueError(f"k's last dim ({dk}) must equal q's head dim ({d})")
    if (hv, sv) != (hkv, sk):
        raise ValueError(f"v must have k's heads and length (..., {hkv}, {sk}, Dv); got shape {tuple(v.shape)}")
    check_heads(hq, hkv)
    batch = broadcast_batch({"q": q.shape, "k": k.shape, "v": v.shape}, 3)
    return dict(batch=batch, num_q_heads=hq, num_kv_heads=hkv, seqlen_q=sq, seqlen_k=sk, head_dim=d, head_dim_v=dv)
