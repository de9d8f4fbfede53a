"""cuattn: exact fused attention for NumPy-style users, on NVIDIA GPUs (CuPy + NVRTC) and CPUs (Numba).

Operations
----------
attention
    Exact softmax attention, fused and tiled (online softmax, O(N) memory).
decode
    A few query tokens against a long (paged) KV cache, ALiBi bias, split-KV on the GPU.
paged_cache
    Contiguous K and V caches cut into (shuffled) pages and a block table, for ``decode``.
gla
    Gated linear attention, chunk (tensor cores) and recurrent modes, packed sequences.
graph_memory
    Holds the device memory of cuattn calls captured in CUDA graphs (attention, gla).
precision_report
    Splits low-precision attention error into input rounding and kernel error (lesson 1);
    also ``python -m cuattn precision``.
reference
    Float64 SciPy references of every operation, for checking any result.

The backend follows the array type: CuPy (GPU) arrays run CUDA kernels compiled at first use,
NumPy arrays run Numba kernels on the CPU. ``backend='cuda'|'cpu'|'reference'`` overrides.
"""

from . import reference
from ._backend import gpu_available
from ._capture import GraphMemory, graph_memory
from .attention import attention
from .decode import alibi_slopes, decode
from .gla import gla
from .paged import paged_cache
from .precision import precision_report

__version__ = "0.1.0"

__all__ = ["attention", "decode", "alibi_slopes", "paged_cache", "gla", "reference", "gpu_available", "graph_memory",
           "GraphMemory", "precision_report", "__version__"]
