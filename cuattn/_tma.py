"""Tensor maps for Hopper's bulk tensor copy engine (TMA), built through the CUDA driver.

``cuTensorMapEncodeTiled`` describes a strided (batch, head, seq, dim) view so the kernel can
copy boxes of it into 128-byte-swizzled shared memory with one instruction, zero-filling what
falls outside. CuPy does not wrap that driver call, so it is reached through ctypes. The maps
(128 bytes each) are uploaded to device memory once per distinct (address, shape, strides) and
the kernel reads them from there; an LRU cache keeps repeated calls free of uploads.
"""

from __future__ import annotations

import collections
import ctypes

import numpy as np

from . import _capture
from ._backend import require_cupy
from ._cuda import driver_function

_DTYPES = {"float16": 6, "bfloat16": 9}  # CUtensorMapDataType
_SWIZZLE_128B = 3
# CUtensorMapL2promotion: 0 none, 1 64 B, 2 128 B, 3 256 B (how much the L2 fetches per request)
L2_PROMOTION = 3
_CACHE_SIZE = 64
_cache: collections.OrderedDict = collections.OrderedDict()


def _encode_fn():
    return driver_function("cuTensorMapEncodeTiled", (
        ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32, ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_uint64), ctypes.POINTER(ctypes.c_uint64),
        ctypes.POINTER(ctypes.c_uint32), ctypes.POINTER(ctypes.c_uint32),
        ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,
    ))


def encode(x, dtype_name: str, box_rows: int) -> bytes:
    """Tensor map of a 4-d view x (B, H, S, D) (last dim contiguous) with boxes of 64 x box_rows."""
    b, h, s, d = x.shape
    dims = (ctypes.c_uint64 * 4)(d, s, h, b)
    strides, extent = [], -(-d * x.itemsize // 16) * 16
    for stride, n in zip(x.strides[2::-1], (s, h, b)):  # seq, head, batch; a size-1 dim's stride is free
        strides.append(int(stride) if n > 1 else extent)
        extent = strides[-1] * n
    strides = (ctypes.c_uint64 * 3)(*strides)
    box = (ctypes.c_uint32 * 4)(64, box_rows, 1, 1)
    elem = (ctypes.c_uint32 * 4)(1, 1, 1, 1)
    out = (ctypes.c_uint8 * 128)()
    status = _encode_fn()(
        ctypes.addressof(out), _DTYPES[dtype_name], 4, ctypes.c_void_p(x.data.ptr), dims, strides,
        box, elem, 0, _SWIZZLE_128B, L2_PROMOTION, 0,
    )
    if status != 0:
        raise RuntimeError(f"cuTensorMapEncodeTiled failed ({status}) for shape {x.shape}, strides {x.strides}")
    return bytes(out)


def tensor_maps(specs):
    """Device array holding the tensor maps of ``specs`` [(array, dtype_name, box_rows), ...]."""
    cupy = require_cupy()
    if _capture.recording():  # a captured call: maps of its own, held by its graph_memory
        return _capture.upload(b"".join(encode(x, name, rows) for x, name, rows in specs))
    # the copy to the device is ordered on the current stream only: reuse a map on that stream
    key = (cupy.cuda.get_current_stream().ptr, L2_PROMOTION) + tuple((x.data.ptr, x.shape, x.strides, name, rows)
                                                       for x, name, rows in specs)
    maps = _cache.get(key)
    if maps is None:
        raw = b"".join(encode(x, name, rows) for x, name, rows in specs)
        maps = cupy.asarray(np.frombuffer(raw, dtype=np.uint8))
        _cache[key] = maps
        if len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    else:
        _cache.move_to_end(key)
    return maps
