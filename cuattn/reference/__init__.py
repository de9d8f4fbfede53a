"""Float64 references for every cuattn operation (NumPy/SciPy on the host).

They take NumPy or GPU arrays (copied to the host), compute in float64 and return NumPy
float64 arrays, so anyone can check a result of any backend:

>>> import numpy as np, cuattn
>>> q, k, v = (np.random.default_rng(0).standard_normal((2, 4, 16, 32)) for _ in range(3))
>>> o = cuattn.attention(q.astype(np.float32), k.astype(np.float32), v.astype(np.float32))
>>> bool(np.allclose(o, cuattn.reference.attention(q, k, v), atol=1e-5))
True
"""

from .attention import attention
from .decode import decode
from .gla import gla

__all__ = ["attention", "decode", "gla"]
