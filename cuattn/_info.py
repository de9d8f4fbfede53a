"""``python -m cuattn info``: what cuattn finds on this machine (for bug reports and set-up checks).

Versions of Python and the packages cuattn uses, the CPU backend's threads, BLAS and float16
conversion, where the CUDA sources and the kernel caches are, and for each GPU CuPy sees its
name, compute capability and which kernels cuattn runs there. Nothing is compiled or launched.
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
from pathlib import Path

from . import __version__


def _version(module_name):
    try:
        module = importlib.import_module(module_name)
    except Exception:  # not installed, or broken at import
        return None
    return str(getattr(module, "__version__", "installed"))


def _gpu_paths(cc: int) -> dict:
    """The kernels cuattn picks on a GPU of compute capability ``cc`` (README's table)."""
    if cc == 90:
        attention = "wgmma + TMA (float16/bfloat16), exact FFMA (float32)"
        decode = "persistent split-KV: bulk-copy kernel; tensor-core kernel for GQA groups"
    else:  # the sm_90a kernels load on Hopper only
        attention = "mma.sync (float16/bfloat16: sm_80 and later), exact FFMA (float32)"
        decode = "split-KV register kernel"
    return {"attention": attention, "decode": decode,
            "gla": "tensor-core chunk kernel (sm_80 and later), recurrent and one-token step kernels"}


def environment() -> dict:
    """A dict of what cuattn finds: versions, CPU backend, CUDA sources, caches, GPUs."""
    from . import _cuda

    info = {
        "cuattn": __version__,
        "package": str(Path(__file__).resolve().parent),
        "python": sys.version.split()[0],
        "platform": f"{platform.system()} {platform.machine()}",
        "packages": {name: _version(name) for name in
                     ("numpy", "scipy", "numba", "ml_dtypes", "cupy", "threadpoolctl", "matplotlib")},
    }
    try:
        cu = sorted(p.name for p in _cuda.source_dir().glob("*.cu*"))
        info["cuda_sources"] = {"dir": str(_cuda.source_dir()), "files": cu}
    except Exception as exc:
        info["cuda_sources"] = {"error": repr(exc)}
    info["cpu"] = _cpu()
    info["gpu"] = _gpu()
    return info


def _cpu() -> dict:
    out = {"cores": os.cpu_count()}
    try:
        import numba

        out["numba_threads"] = int(numba.get_num_threads())
    except Exception as exc:
        out["numba_threads"] = repr(exc)
    try:
        from ._bits16 import HARDWARE_HALF

        out["float16_conversion"] = "F16C instructions" if HARDWARE_HALF else "bit arithmetic"
    except Exception as exc:
        out["float16_conversion"] = repr(exc)
    try:
        from threadpoolctl import threadpool_info

        out["blas"] = [f"{x.get('internal_api')} {x.get('version')} ({x.get('num_threads')} threads)"
                       for x in threadpool_info() if x.get("user_api") == "blas"]
    except Exception:
        out["blas"] = None  # (threadpoolctl not installed: numpy.show_config() tells)
    try:
        from ._cpu_decode import _partials

        out["numba_cache"] = str(_partials._cache.cache_path)
    except Exception as exc:
        out["numba_cache"] = repr(exc)
    return out


def _gpu() -> dict:
    from ._backend import cupy_module, gpu_available

    cupy = cupy_module()
    if cupy is None:
        return {"available": False, "why": "CuPy is not installed (pip install 'cuattn[cuda13]' or [cuda12])"}
    out = {"available": gpu_available(), "kernel_cache": os.environ.get(
        "CUPY_CACHE_DIR", str(Path.home() / ".cupy" / "kernel_cache"))}
    def cuda_version(v):  # 13020 -> "13.2"; 0: no driver
        return f"{v // 1000}.{v % 1000 // 10}" if v else "none"

    for key, call in (("cuda_runtime", lambda: cuda_version(cupy.cuda.runtime.runtimeGetVersion())),
                      ("cuda_driver", lambda: cuda_version(cupy.cuda.runtime.driverGetVersion())),
                      ("nvrtc", lambda: ".".join(map(str, cupy.cuda.nvrtc.getVersion())))):
        try:
            out[key] = call()
        except Exception as exc:
            out[key] = f"unavailable ({type(exc).__name__})"
    if not out["available"]:
        out["why"] = "CuPy sees no CUDA device"
        return out
    devices = []
    for i in range(cupy.cuda.runtime.getDeviceCount()):
        try:
            from ._cuda import _properties_of  # (what the dispatchers read: cc, SMs)

            p, known = cupy.cuda.runtime.getDeviceProperties(i), _properties_of(i)
            name = p["name"].decode() if isinstance(p["name"], bytes) else str(p["name"])
            cc = known["cc"]
            devices.append({"id": i, "name": name, "compute_capability": f"{cc // 10}.{cc % 10}",
                            "sms": known["num_sms"], "memory_gib": round(int(p["totalGlobalMem"]) / 2**30, 1),
                            "kernels": _gpu_paths(cc)})
        except Exception as exc:
            devices.append({"id": i, "error": repr(exc)})
    out["devices"] = devices
    return out


def format_text(info: dict, indent: int = 0) -> str:
    """``info`` as indented ``key: value`` lines."""
    lines = []
    pad = "  " * indent
    for key, value in info.items():
        if isinstance(value, dict):
            lines.append(f"{pad}{key}:")
            lines.append(format_text(value, indent + 1))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            lines.append(f"{pad}{key}:")
            for item in value:
                lines.append(format_text(item, indent + 1))
        elif isinstance(value, list):
            lines.append(f"{pad}{key}: {', '.join(map(str, value)) or '-'}")
        else:
            lines.append(f"{pad}{key}: {'-' if value is None else value}")
    return "\n".join(lines)
