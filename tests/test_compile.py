"""Every CUDA kernel variant compiles with NVRTC for sm_80 and sm_90a, without a GPU.

Runs everywhere CuPy's NVRTC is installed (the 'test' extra brings cupy-cuda13x[ctk]); in CI
(CI=true) a missing NVRTC is a failure, not a skip. The ptxas report must show no spills.
"""

import importlib
import os
import re

import pytest

from cuattn import _cuda

ARCHS = ["sm_80", "sm_90a"]


def _nvrtc_available():
    try:
        from cupy.cuda import nvrtc

        nvrtc.getVersion()
        return True
    except Exception:
        return False


if not _nvrtc_available():
    if os.environ.get("CI"):
        raise RuntimeError("CI must compile every CUDA kernel, but CuPy's NVRTC is not installed")
    pytest.skip("CuPy's NVRTC is not installed", allow_module_level=True)


def _variants():
    """(source, expression) for every variant: cuda/<op>.cu pairs with cuattn/<op>.py, whose
    all_kernel_expressions() lists what its dispatcher can pick."""
    out = []
    for source in _cuda.kernel_files():
        module = importlib.import_module(f"cuattn.{source[:-3]}")
        out += [(source, e) for e in module.all_kernel_expressions()]
    return out


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("source,expression", _variants())
def test_kernel_compiles(source, expression, arch):
    log = _cuda.compile_ptx_report(source, [expression], arch)
    spills = [int(x) for x in re.findall(r"(\d+) bytes spill stores", log)]
    assert spills and max(spills) == 0, f"{expression} on {arch} spills registers:\n{log}"


def test_every_source_file_is_covered():
    covered = {source for source, _ in _variants()}
    assert covered == set(_cuda.kernel_files())
