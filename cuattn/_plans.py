"""Launch plans, shared by the GPU entry points (attention, decode, gla).

A GPU call spends 100-200 us of Python on argument checks and planning, more than the GPU time
of a short call. Each op keeps the launch of a layout it has checked and planned (kernel, launch
shape, packed arguments) under a key that holds everything the checks and the planning look at;
a later call with an equal key skips both and only allocates its outputs and launches. The keys
start with :func:`gpu_key` (the arrays' layouts, the scale, device and stream); each op adds its
own arguments and module settings.
"""

from __future__ import annotations

import sys

from . import _capture


def array_key(x) -> tuple:
    """What the checks and the kernels see of a GPU array: shape, strides, dtype and where its
    data lies against 16-byte boundaries (the kernels' vector loads need them)."""
    return (x.shape, x.strides, x.dtype, x.data.ptr & 15)


def gpu_key(backend, scale, *arrays):
    """The shared part of a plan key as a list, or None where the call takes the full path:
    CuPy not imported, a backend other than CUDA asked for, an unusual ``scale`` type, or any of
    ``arrays`` not a CuPy ndarray (subclasses included: they may behave otherwise), or a call
    being captured in a CUDA graph (cuattn._capture: its buffers must be its own)."""
    cupy = sys.modules.get("cupy")
    if cupy is None or (backend is not None and backend != "cuda") or _capture.recording():
        return None
    if scale is not None and type(scale) is not float and type(scale) is not int:
        return None
    key = []
    for x in arrays:
        if type(x) is not cupy.ndarray:
            return None
        key.append(array_key(x))
    key += [scale, cupy.cuda.runtime.getDevice(), cupy.cuda.get_current_stream().ptr]
    return key


def remember(plans: dict, key, plan, max_plans: int) -> None:
    """Keep ``plan`` under ``key``, dropping the oldest beyond ``max_plans`` (0 or less: keep none)."""
    if max_plans <= 0:
        return
    while len(plans) >= max_plans:
        plans.pop(next(iter(plans)), None)  # the oldest
    plans[key] = plan
