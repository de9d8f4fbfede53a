"""``python -m cuattn info``: what cuattn finds on this machine."""

import json
import subprocess
import sys

import cuattn
from cuattn import _info
from cuattn.__main__ import main
from cuattn._backend import gpu_available


def test_info_json(capsys):
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["cuattn"] == cuattn.__version__
    assert info["packages"]["numpy"] and info["packages"]["numba"]
    assert "decode.cu" in info["cuda_sources"]["files"] and "common.cuh" in info["cuda_sources"]["files"]
    assert info["cpu"]["cores"] >= 1 and info["cpu"]["numba_threads"] >= 1
    assert info["gpu"]["available"] == gpu_available()
    if not gpu_available():
        assert "why" in info["gpu"] and "devices" not in info["gpu"]
    else:
        assert info["gpu"]["devices"] and all("kernels" in d for d in info["gpu"]["devices"])


def test_info_text_runs_as_a_command():
    out = subprocess.run([sys.executable, "-m", "cuattn", "info"], capture_output=True, text=True, check=True).stdout
    assert out.startswith(f"cuattn: {cuattn.__version__}\n")
    for key in ("packages:", "  numba: ", "cuda_sources:", "cpu:", "  numba_threads: ", "gpu:", "  available: "):
        assert f"\n{key}" in out, key


def test_info_kernels_match_the_dispatch():
    """The kernels info names per compute capability are those the dispatchers pick: the
    persistent decode kernels and wgmma attention on cc 9.0 only (sm_90a cubins)."""
    decode = sys.modules["cuattn.decode"]
    sizes = dict(num_q_heads=32, num_kv_heads=8, seqlen_q=1, cache_len=4096, paged=False, page_size=0)
    for cc in (80, 86, 89, 90, 100, 120):
        paths = _info._gpu_paths(cc)
        persistent = decode.pick_kernel("mma", cc, "half_t", 128, sizes) != "regs"
        assert ("persistent" in paths["decode"]) == persistent == (cc == 90)
        assert ("wgmma" in paths["attention"]) == (cc == 90)


def test_format_text_nests():
    text = _info.format_text({"a": 1, "b": {"c": None, "d": [1, 2]}, "e": [{"f": "x"}], "g": []})
    assert text == "a: 1\nb:\n  c: -\n  d: 1, 2\ne:\n  f: x\ng: -"


def test_check_arch_rules():
    """Before sm_80: bfloat16 anywhere and float16 on tensor cores raise a TypeError that says
    what to pass instead; float32, float16 decode and float16 GLA recurrent mode pass (they compile
    for sm_75: test_compile.py's test_sm75_kernels_match_check_arch)."""
    import pytest

    from cuattn._cuda import check_arch

    for cc in (80, 86, 89, 90, 100, 120):
        for dtype in ("float16", "bfloat16", "float32"):
            check_arch("attention", dtype, cc, tensor_cores=True)
    check_arch("attention", "float32", 75, tensor_cores=True)
    check_arch("decode", "float16", 75, tensor_cores=False)
    check_arch("gla", "float16", 75, tensor_cores=False)
    with pytest.raises(TypeError, match=r"bfloat16 decode on the GPU needs compute capability 8\.0.*this GPU is 7\.5"):
        check_arch("decode", "bfloat16", 75, tensor_cores=False)
    with pytest.raises(TypeError, match="float16 attention .*Pass float32 arrays, or NumPy arrays"):
        check_arch("attention", "float16", 75, tensor_cores=True)
    with pytest.raises(TypeError, match="float16 in GLA's recurrent mode"):
        check_arch("gla", "float16", 75, tensor_cores=True)
