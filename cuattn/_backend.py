"""Array kinds and backend choice, shared by every operation.

The backend follows the array type: NumPy arrays run on the CPU (Numba), CuPy arrays (and
objects CuPy can view without a copy: ``__cuda_array_interface__`` or DLPack on the GPU) run
on the GPU. ``backend=`` overrides. Mixed kinds are an error, never a silent copy.
"""

from __future__ import annotations

import functools

import numpy as np

BACKENDS = ("cuda", "cpu", "reference")


@functools.lru_cache(maxsize=None)
def cupy_module():
    """Return the ``cupy`` module, or None when CuPy is not installed."""
    try:
        import cupy
    except Exception:  # ImportError, or a broken CUDA install raising at import
        return None
    return cupy


@functools.lru_cache(maxsize=None)
def gpu_available() -> bool:
    """True when CuPy is installed and sees at least one CUDA device."""
    cupy = cupy_module()
    if cupy is None:
        return False
    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def require_cupy():
    """Return ``cupy`` or raise a RuntimeError saying what is missing."""
    cupy = cupy_module()
    if cupy is None:
        raise RuntimeError(
            "the CUDA backend needs CuPy: pip install 'cuattn[cuda13]' (or [cuda12]); "
            "NumPy arrays run on the CPU backend without it"
        )
    if not gpu_available():
        raise RuntimeError("the CUDA backend needs a CUDA GPU, and CuPy sees none")
    return cupy


def _is_gpu_object(x) -> bool:
    if hasattr(x, "__cuda_array_interface__"):
        return True
    dev = getattr(x, "__dlpack_device__", None)
    if dev is not None and not isinstance(x, np.ndarray):
        try:
            return int(dev()[0]) in (2, 3, 13)  # kDLCUDA, kDLCUDAHost, kDLCUDAManaged
        except Exception:
            return False
    return False


def array_kind(x, name: str) -> str:
    """'numpy' or 'cupy' for one input; TypeError for anything else."""
    if isinstance(x, np.ndarray):
        return "numpy"
    cupy = cupy_module()
    if cupy is not None and isinstance(x, cupy.ndarray):
        return "cupy"
    if _is_gpu_object(x):
        return "cupy"
    raise TypeError(
        f"{name} must be a NumPy array, a CuPy array or a GPU array exposing "
        f"__cuda_array_interface__/DLPack; got {type(x).__name__}"
    )


def as_cupy(x):
    """View a GPU object as a CuPy array without copying."""
    cupy = require_cupy()
    if isinstance(x, cupy.ndarray):
        return x
    if hasattr(x, "__cuda_array_interface__"):
        return cupy.asarray(x)
    return cupy.from_dlpack(x)


def resolve_backend(arrays: dict, backend: str | None) -> str:
    """Pick the backend for named input arrays (None entries are skipped).

    Raises TypeError on mixed array kinds or a backend that does not fit the arrays.
    """
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS} or None; got {backend!r}")
    kinds = {name: array_kind(a, name) for name, a in arrays.items() if a is not None}
    distinct = set(kinds.values())
    if len(distinct) > 1:
        detail = ", ".join(f"{n}: {k}" for n, k in kinds.items())
        raise TypeError(
            f"inputs mix NumPy and GPU arrays ({detail}); move them to one side first "
            "(cupy.asarray / cupy.asnumpy): cuattn never copies between host and device silently"
        )
    kind = distinct.pop() if distinct else "numpy"
    if backend is None:
        return "cuda" if kind == "cupy" else "cpu"
    if backend == "cuda" and kind != "cupy":
        raise TypeError("backend='cuda' needs CuPy (GPU) arrays; got NumPy arrays (use cupy.asarray)")
    if backend == "cpu" and kind != "numpy":
        raise TypeError("backend='cpu' needs NumPy arrays; got GPU arrays (use cupy.asnumpy)")
    return backend


def to_numpy(x):
    """Host copy of a NumPy or GPU array (used by the references only)."""
    if x is None or isinstance(x, np.ndarray):
        return x
    if array_kind(x, "array") == "cupy":
        return as_cupy(x).get()
    return np.asarray(x)
