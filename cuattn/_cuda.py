"""Loading, compiling and launching the CUDA sources in ``cuda/``.

Each ``cuda/<op>.cu`` holds templates; Python picks an instantiation by name (a CuPy
``name_expression``). Local headers (``#include "common.cuh"``) are inlined into the source
string before compiling, so CuPy's on-disk cache key (source + options) changes whenever any
header changes: no stale binaries, and no ``-I`` path to get right. The kernels include no
system headers, so NVRTC needs no CUDA include directory either.

``compile_ptx_report`` compiles with NVRTC directly (no driver, no GPU) for the CI checks.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import inspect
import logging
import os
import re
import threading
import time
from pathlib import Path

import numpy as np

from ._backend import require_cupy

_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$', re.MULTILINE)
BASE_OPTIONS = ("-std=c++17",)
_log = logging.getLogger("cuattn")
_clock = time.perf_counter  # (tests replace it)


@functools.lru_cache(maxsize=None)
def source_dir() -> Path:
    """Folder holding the .cu/.cuh files: the checkout's cuda/ or the installed copy."""
    env = os.environ.get("CUATTN_CUDA_DIR")
    if env:
        return Path(env)
    checkout = Path(__file__).resolve().parent.parent / "cuda"
    if (checkout / "common.cuh").is_file():
        return checkout
    installed = Path(__file__).resolve().parent / "_cuda_sources"  # where a wheel puts cuda/
    if (installed / "common.cuh").is_file():
        return installed
    raise FileNotFoundError(f"cuattn's CUDA sources are missing (looked in {checkout} and {installed})")


def kernel_files() -> list[str]:
    return sorted(p.name for p in source_dir().glob("*.cu"))


def kernel_expressions(name: str, arch: str) -> list[str]:
    """The kernel variants of ``cuda/<name>`` (e.g. 'decode.cu') that its op's dispatcher can pick
    on ``arch``: ``cuattn/<op>.py``'s all_kernel_expressions (per arch, where it takes one)."""
    lister = importlib.import_module(f"cuattn.{name[:-3]}").all_kernel_expressions
    return list(lister(arch=arch) if "arch" in inspect.signature(lister).parameters else lister())


@functools.lru_cache(maxsize=None)
def load_source(name: str) -> str:
    """Source text of ``cuda/<name>`` with local includes inlined (each header once)."""
    seen: set[str] = set()

    def expand(fname: str) -> str:
        text = (source_dir() / fname).read_text()

        def repl(m):
            inc = m.group(1)
            if inc in seen:
                return ""
            seen.add(inc)
            return f"// ---- begin {inc}\n{expand(inc)}\n// ---- end {inc}\n"

        return _INCLUDE.sub(repl, text)

    return expand(name)


@functools.lru_cache(maxsize=None)
def _module(name: str, name_expressions: tuple, options: tuple):
    cupy = require_cupy()
    return cupy.RawModule(
        code=load_source(name),
        options=BASE_OPTIONS + tuple(options),
        name_expressions=list(name_expressions),
    )


def get_kernel(name: str, expression: str, options: tuple = (), max_dynamic_smem: int = 0):
    """Compiled kernel ``expression`` (a template instantiation) from ``cuda/<name>``, for the
    current device.

    One module is compiled per (file, expression, options): variants compile lazily, at first
    use, and CuPy caches the binary on disk. Kernels that need more than 48 KB of dynamic
    shared memory get their limit raised here (to the most any caller asked for), once per device
    and limit.
    """
    return _kernel_on(require_cupy().cuda.Device().id, name, expression, tuple(options), max_dynamic_smem)


@functools.lru_cache(maxsize=None)
def _kernel_on(device_id: int, name: str, expression: str, options: tuple, max_dynamic_smem: int):
    start = _clock()
    kernel = _module(name, (expression,), options).get_function(expression)
    seconds = _clock() - start
    # a first use compiles for seconds (NVRTC) unless CuPy's disk cache has the binary: say so
    _log.log(logging.INFO if seconds >= 1.0 else logging.DEBUG,
             "cuattn: %s (cuda/%s%s) ready on device %d in %.1f s (first use in this process: compiled "
             "by NVRTC, or loaded from CuPy's disk cache)", expression, name,
             " " + " ".join(options) if options else "", device_id, seconds)
    if max_dynamic_smem > 48 * 1024:
        # The limit is the module function's, shared by every entry of this cache that has the
        # same (file, expression, options) and another limit (decode.PDL_TRIGGER pads some launches
        # of a kernel, not others): raise it, never lower it under a launch that needs more.
        kernel.max_dynamic_shared_size_bytes = max(int(max_dynamic_smem), int(kernel.max_dynamic_shared_size_bytes))
    return kernel


def device_properties() -> dict:
    """Multiprocessor count, compute capability and shared-memory limit of the current device."""
    return _properties_of(require_cupy().cuda.Device().id)


@functools.lru_cache(maxsize=None)
def _properties_of(device_id: int) -> dict:
    props = require_cupy().cuda.runtime.getDeviceProperties(device_id)
    return {
        "num_sms": int(props["multiProcessorCount"]),
        "cc": int(props["major"]) * 10 + int(props["minor"]),
        "smem_optin": int(props.get("sharedMemPerBlockOptin", 48 * 1024)),
    }


def check_arch(what: str, dtype_name: str, cc: int, tensor_cores: bool) -> None:
    """TypeError where a GPU of compute capability ``cc`` cannot run the call: bfloat16 anywhere,
    and float16 on the tensor-core kernels (``tensor_cores``: attention, GLA's chunk mode), need
    sm_80 (bfloat16 conversions, cp.async, mma.sync m16n8k16); ptxas would reject them with a log
    instead. float32 (and float16 decode and GLA recurrent mode) also run on sm_75."""
    if cc >= 80 or not (dtype_name == "bfloat16" or (dtype_name == "float16" and tensor_cores)):
        return
    raise TypeError(
        f"{dtype_name} {what} on the GPU needs compute capability 8.0 or newer (bfloat16 conversions, "
        f"cp.async, mma.sync); this GPU is {cc // 10}.{cc % 10}. Pass float32 arrays"
        + (", or float16 in GLA's recurrent mode" if what == "gla" and dtype_name == "float16" else "")
        + ", or NumPy arrays for the CPU backend")


def launch(kernel, grid, block, args, shared_mem: int = 0):
    """Launch on CuPy's current stream."""
    kernel(tuple(int(g) for g in grid), tuple(int(b) for b in block), tuple(args), shared_mem=int(shared_mem))


class _LaunchAttribute(ctypes.Structure):  # CUlaunchAttribute: an id, padding, a 64-byte value union
    _fields_ = [("id", ctypes.c_int), ("pad", ctypes.c_char * 4), ("value", ctypes.c_int), ("rest", ctypes.c_char * 60)]


class _LaunchConfig(ctypes.Structure):  # CUlaunchConfig
    _fields_ = [("grid", ctypes.c_uint * 3), ("block", ctypes.c_uint * 3), ("shared_mem", ctypes.c_uint),
                ("stream", ctypes.c_void_p), ("attrs", ctypes.POINTER(_LaunchAttribute)), ("num_attrs", ctypes.c_uint)]


_PROGRAMMATIC_STREAM_SERIALIZATION = 6  # CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION


@functools.lru_cache(maxsize=None)
def driver_function(name: str, argtypes: tuple):
    """A CUDA driver API function CuPy does not wrap, through ctypes (returns its CUresult)."""
    fn = getattr(ctypes.CDLL("libcuda.so.1"), name)
    fn.restype = ctypes.c_int
    fn.argtypes = list(argtypes)
    return fn


@functools.lru_cache(maxsize=None)
def _launch_ex():
    """The driver's cuLaunchKernelEx, and cuGetErrorString for its errors (looked up once: every
    programmatic launch asks)."""
    return (driver_function("cuLaunchKernelEx", (ctypes.POINTER(_LaunchConfig), ctypes.c_void_p, ctypes.c_void_p,
                                                 ctypes.c_void_p)),
            driver_function("cuGetErrorString", (ctypes.c_int, ctypes.POINTER(ctypes.c_char_p))))


class PackedLaunch:
    """A kernel launch whose arguments are packed once into cuLaunchKernel's parameter array.

    ``args`` holds CuPy arrays (their pointers, fixed: the arrays are kept alive here), NumPy
    scalars (their bytes, fixed) and strings: slots, whose values (device pointers or
    non-negative integers of the argument's width, as Python ints; the cell is 8 bytes,
    little-endian) each call passes in ``values``, in slot order.
    A call writes only those slots and launches through the driver, skipping CuPy's conversion of
    every argument (about 0.7 us an argument on a slow host: 25 us for a 36-argument kernel).
    ``programmatic``: launch through cuLaunchKernelEx with programmatic stream serialization
    (programmatic dependent launch, cc 9.0): the launch may begin while the kernel before it in the
    stream ends; the kernel itself must wait for that one (griddepcontrol.wait) before it touches
    global memory.
    """

    def __init__(self, kernel, grid, block, args, shared_mem: int = 0, programmatic: bool = False):
        import cupy
        from cupy.cuda import driver

        self._launch = driver.launchKernel
        self.programmatic = bool(programmatic)
        self.kernel = kernel
        self.function = kernel.kernel.ptr  # CUfunction on the current device
        self.grid = tuple(int(g) for g in grid) + (1,) * (3 - len(grid))
        self.block = tuple(int(b) for b in block) + (1,) * (3 - len(block))
        self.shared_mem = int(shared_mem)
        n = len(args)
        self._values = np.zeros(max(n, 1), dtype=np.uint64)  # one 8-byte cell per argument
        raw = self._values.view(np.uint8)
        self._params = self._values.ctypes.data + 8 * np.arange(max(n, 1), dtype=np.uint64)
        self._params_ptr = self._params.ctypes.data
        self._keep = []
        self.slots, index = [], []
        for i, a in enumerate(args):
            if isinstance(a, str):
                self.slots.append(a)
                index.append(i)
            elif isinstance(a, cupy.ndarray):
                self._values[i] = a.data.ptr
                self._keep.append(a)
            elif isinstance(a, np.generic):
                b = np.frombuffer(a.tobytes(), dtype=np.uint8)
                raw[8 * i:8 * i + b.size] = b
            else:
                raise TypeError(f"kernel argument {i}: {type(a).__name__} (a CuPy array, NumPy scalar or slot name)")
        self._index = np.array(index, dtype=np.intp)
        self._lock = threading.Lock()
        if self.programmatic:
            self._attr = _LaunchAttribute(id=_PROGRAMMATIC_STREAM_SERIALIZATION, value=1)
            self._config = _LaunchConfig(grid=self.grid, block=self.block, shared_mem=self.shared_mem,
                                         attrs=ctypes.pointer(self._attr), num_attrs=1)

    def __call__(self, stream_ptr: int, values=()):
        with self._lock:  # the cells are shared: one launch at a time reads them
            if len(values):
                self._values[self._index] = values
            if self.programmatic:
                self._config.stream = stream_ptr or None
                fn, err = _launch_ex()
                rc = fn(ctypes.byref(self._config), self.function, self._params_ptr, None)
                if rc:
                    text = ctypes.c_char_p()
                    err(rc, ctypes.byref(text))
                    raise RuntimeError(f"cuLaunchKernelEx failed ({rc}): {(text.value or b'').decode()}")
                return
            self._launch(self.function, *self.grid, *self.block, self.shared_mem, stream_ptr,
                                self._params_ptr, 0)


def launch_packed(packed: PackedLaunch, stream_ptr: int, values=()):
    """Launch a PackedLaunch with its slot values (tests wrap this to see what is launched)."""
    packed(stream_ptr, values)


def compile_ptx_report(name: str, name_expressions, arch: str, extra_options=()) -> str:
    """Compile ``cuda/<name>`` with NVRTC for ``arch`` (e.g. 'sm_80', 'sm_90a') and return the log.

    Needs CuPy's NVRTC (no driver, no GPU). The log carries ptxas' resource report
    (registers, spills, shared memory). Raises RuntimeError with the log on failure.
    """
    return _nvrtc_compile(name, name_expressions, arch, extra_options, lambda nvrtc, prog: nvrtc.getProgramLog(prog))


def compile_ptx(name: str, name_expressions, arch: str, extra_options=()) -> str:
    """The PTX of ``cuda/<name>``'s ``name_expressions`` for ``arch``, compiled as
    :func:`compile_ptx_report` does (no GPU): what instructions a variant carries."""
    def read(nvrtc, prog):
        ptx = nvrtc.getPTX(prog)
        return ptx.decode() if isinstance(ptx, bytes) else ptx

    return _nvrtc_compile(name, name_expressions, arch, extra_options, read)


def _nvrtc_compile(name: str, name_expressions, arch: str, extra_options, read):
    """Compile ``cuda/<name>`` with NVRTC (ptxas' report on) and return ``read(nvrtc, program)``."""
    from cupy.cuda import nvrtc

    src = load_source(name)
    prog = nvrtc.createProgram(src, name, [], [])
    try:
        for expr in name_expressions:
            nvrtc.addNameExpression(prog, expr)
        opts = list(BASE_OPTIONS) + [f"-arch={arch}", "--ptxas-options=-v", *extra_options]
        try:
            nvrtc.compileProgram(prog, opts)
        except nvrtc.NVRTCError as exc:
            raise RuntimeError(f"NVRTC failed on {name} for {arch}:\n{nvrtc.getProgramLog(prog)}") from exc
        return read(nvrtc, prog)
    finally:
        nvrtc.destroyProgram(prog)
