"""cuattn.precision: the floor on hand-computed cases, the verdict, the CLI (CPU; GPU part marked).

The floor (input rounding) is exact arithmetic on exactly known numbers, so those tests compare
with equality or to float64 rounding (1e-12 relative). Kernel parts are bounded by the dtype's
rounding (2**-11 relative for float16: the output is rounded once, the rest is float32).
"""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

import cuattn
from cuattn._checks import BFLOAT16
from cuattn.precision import (DEFAULT_DTYPES, DtypeReport, ErrorStats, plain_attention, precision_report,
                              precision_sweep, round_to)

needs_bf16 = pytest.mark.skipif(BFLOAT16 is None, reason="bfloat16 needs ml_dtypes")


# --- rounding ---------------------------------------------------------------------------------

@needs_bf16
def test_round_to_bfloat16_rounds_once():
    # float64 -> float32 -> bfloat16 would give 1 (a tie after the first rounding, to even).
    x = np.array([1 + 2**-8 + 2**-30, 1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8 + 2**-30), 0.0, np.inf, np.nan])
    r = round_to(x, "bfloat16").astype(np.float64)
    assert r[:5].tolist() == [1 + 2**-7, 1.0, 1 + 2**-6, -(1 + 2**-7), 0.0]
    assert r[5] == np.inf and np.isnan(r[6])


@needs_bf16
def test_round_to_bfloat16_is_nearest(rng):
    x = rng.standard_normal(100_000) * np.exp2(rng.integers(-20, 20, 100_000))
    r = round_to(x, "bfloat16").astype(np.float64)
    half_ulp = np.exp2(np.floor(np.log2(np.abs(x))) - 8)  # bfloat16 keeps 8 significant bits
    assert np.all(np.abs(x - r) <= half_ulp)


# --- the floor on hand-computed cases -------------------------------------------------------

def test_floor_is_zero_for_inputs_exact_in_the_dtype(rng):
    # Multiples of 1/4 in [-4, 4): exact in float16, bfloat16 and float32.
    q, k, v = (rng.integers(-16, 16, (1, 2, 40, 16)) / 4.0 for _ in range(3))
    report = precision_report(q, k, v, dtypes=("float16", "float32"), causal=True, device="cpu")
    for name in ("float16", "float32"):
        errors = report.dtypes[name].errors
        floor = errors["input_rounding"]
        assert floor.norm_relative == 0 and floor.max_absolute == 0 and floor.max_elementwise == 0
        assert errors["kernel"] == errors["total"]  # all of the error is the kernel's
    assert "no input rounding" in report.dtypes["float32"].verdict


def test_floor_single_key_is_the_rounding_of_v(rng):
    # One key: every weight is exactly 1, so the output is v and the floor is round(v) - v.
    # float16 by hand: 1 + 2**-12 -> 1 (the spacing at 1 is 2**-10), 3 and -2.5 are exact,
    # 0.1 -> 0.0999755859375 (1.1001100110 * 2**-4, the rest rounds down).
    v = np.array([1 + 2**-12, 3.0, 0.1, -2.5]).reshape(1, 1, 1, 4)
    q = rng.standard_normal((1, 1, 5, 4))
    k = rng.standard_normal((1, 1, 1, 4))
    report = precision_report(q, k, v, dtypes=("float16",), device="cpu")
    floor = report.dtypes["float16"].errors["input_rounding"]
    rounded_v = [1.0, 3.0, 0.0999755859375, -2.5]
    diff = [2**-12, 0.0, 0.1 - 0.0999755859375, 0.0]
    expected_norm = math.hypot(*diff) / math.sqrt((1 + 2**-12) ** 2 + 3**2 + 0.1**2 + 2.5**2)
    assert floor.norm_relative == pytest.approx(expected_norm, rel=1e-12)
    assert floor.max_absolute == 2**-12
    # The peak of the element-wise error is at 0.1: 2.44140625e-5 / 0.1 beats 2**-12 / (1 + 2**-12).
    assert floor.max_elementwise == pytest.approx((0.1 - 0.0999755859375) / 0.1, rel=1e-12)
    assert floor.peak_index[-1] == 2
    assert floor.peak_reference == 0.1 and floor.peak_result == rounded_v[2]
    assert floor.median_elementwise == pytest.approx(2**-12 / (1 + 2**-12) / 2, rel=1e-12)  # of 0, 0, a, b
    kernel = report.dtypes["float16"].errors["kernel"]
    assert kernel.max_elementwise <= 2**-11


@needs_bf16
def test_floor_single_key_bfloat16_rounds_once():
    v = np.full((1, 1, 1, 8), 1 + 2**-8 + 2**-30)  # correctly rounded: 1 + 2**-7
    q = np.ones((1, 1, 3, 8))
    report = precision_report(q, q[:, :, :1], v, dtypes=("bfloat16",), device="cpu")
    floor = report.dtypes["bfloat16"].errors["input_rounding"]
    assert floor.max_absolute == 2**-8 - 2**-30


# --- measures and the verdict ----------------------------------------------------------------

def stats(norm):
    return ErrorStats(norm, norm, norm, norm, (0,), 1.0, 1.0)


@pytest.mark.parametrize("floor,kernel,dominant", [
    (3.2e-3, 1e-4, "input rounding"),
    (1e-4, 3.2e-3, "kernel"),
    (1e-3, 1.5e-3, "comparable"),
    (0.0, 1e-7, "kernel"),
    (0.0, 0.0, "none"),
])
def test_verdict_names_the_dominant_part(floor, kernel, dominant):
    errors = {"total": stats(floor + kernel), "input_rounding": stats(floor), "kernel": stats(kernel),
              "output_rounding": stats(kernel / 2), "plain_total": stats(2 * kernel), "plain_kernel": stats(kernel)}
    report = DtypeReport("bfloat16", "test", False, errors)
    assert report.dominant == dominant
    assert report.verdict.startswith("bfloat16: ")
    words = {"input rounding": "input rounding dominates", "kernel": "kernel error",
             "comparable": "comparable", "none": "no error"}
    assert words[dominant] in report.verdict


def test_verdict_on_real_runs():
    # Input scale 10 in float16: scores ~ 100, so rounding q and k moves them by ~0.05 and the
    # floor (~3e-3) dwarfs the kernel part (~1e-4, mostly output rounding).
    sweep = precision_sweep((10.0,), heads=2, seqlen=128, dtypes=("float16", "float32"), device="cpu")
    report = sweep.reports[0]
    assert report.dtypes["float16"].dominant == "input rounding"
    assert report.dtypes["float16"].verdict.startswith("float16: input rounding dominates (")
    # float32 on float64 inputs: rounding the inputs costs ~2**-24 each, the float32 kernel more.
    assert report.dtypes["float32"].dominant == "kernel"
    assert report.dtypes["float16"].emulated and not report.dtypes["float32"].emulated


def test_error_stats_edge_values():
    s = ErrorStats.measure(np.array([0.0, 1e-3, np.nan, 2.0]), np.array([0.0, 0.0, np.nan, 1.0]))
    assert s.max_elementwise == np.inf and s.peak_index == (1,) and s.peak_reference == 0.0
    assert s.max_absolute == 1.0 and s.norm_relative == pytest.approx(math.hypot(1e-3, 1.0))
    assert s.to_dict()["max_elementwise"] is None  # strict JSON has no inf
    assert ErrorStats.measure(np.array([np.nan]), np.array([1.0])).max_absolute == np.inf


def test_parts_add_up():
    # total = input rounding + kernel, element by element, so the norms obey the triangle inequality.
    sweep = precision_sweep((1.0, 10.0), heads=2, seqlen=64, dtypes=("float16",), causal=True)
    for report in sweep.reports:
        e = {n: s.norm_relative for n, s in report.dtypes["float16"].errors.items()}
        assert e["total"] <= (e["input_rounding"] + e["kernel"]) * (1 + 1e-6)
        assert e["input_rounding"] <= (e["total"] + e["kernel"]) * (1 + 1e-6)


# --- plain same-dtype implementation ---------------------------------------------------------

def test_plain_float64_and_masked_rows(rng):
    q, k, v = (rng.standard_normal(s) for s in ((1, 2, 9, 8), (1, 2, 4, 8), (1, 2, 4, 8)))
    o = plain_attention(q, k, v, causal=True)
    assert o.dtype == np.float64
    assert np.all(o[..., :5, :] == 0)  # Sq > Sk: the first 5 rows see no key
    assert np.allclose(o, cuattn.reference.attention(q, k, v, causal=True), rtol=1e-12, atol=1e-14)


# --- the report object and the CLI -----------------------------------------------------------

def test_report_table_and_dict(rng):
    q, k, v = (rng.standard_normal((1, 2, 20, 8)) for _ in range(3))
    report = cuattn.precision_report(q, k, v)
    assert report.device == "cpu" and list(report.dtypes) == list(DEFAULT_DTYPES)
    text = str(report)
    for part in ("total: cuattn vs float64", "input rounding (the floor)", "kernel: cuattn vs exact on rounded",
                 "plain float16: vs float64", "emulated", "verdict"):
        assert part in text
    json.dumps(report.to_dict(), allow_nan=False)


def test_report_bad_arguments(rng):
    q = rng.standard_normal((1, 1, 4, 8))
    with pytest.raises(ValueError, match="device"):
        precision_report(q, q, q, device="tpu")
    with pytest.raises(ValueError, match="int8"):
        precision_report(q, q, q, dtypes=("int8",), device="cpu")
    with pytest.raises(TypeError, match="float17"):
        precision_report(q, q, q, dtypes=("float17",), device="cpu")
    with pytest.raises(ValueError, match="head dim"):
        precision_report(q, q[..., :4], q, device="cpu")


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "cuattn", "precision", *args], capture_output=True, text=True,
                          timeout=300)


def test_cli_table():
    result = run_cli("--seq", "32", "--dim", "16", "--heads", "2", "--device", "cpu", "--causal")
    assert result.returncode == 0, result.stderr
    assert "=== input scale 1:" in result.stdout and "=== input scale 10:" in result.stdout
    assert "float16: input rounding dominates" in result.stdout  # at scale 10


def test_cli_json_parses():
    result = run_cli("--seq", "32", "--dim", "16", "--heads", "2", "--scale", "0.5", "2",
                     "--dtypes", "float16", "float64", "--device", "cpu", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [r["input_scale"] for r in data["results"]] == [0.5, 2.0]
    first = data["results"][0]
    assert set(first["dtypes"]) == {"float16", "float64"}
    errors = first["dtypes"]["float16"]["errors"]
    assert set(errors) == {"total", "input_rounding", "kernel", "output_rounding", "plain_total", "plain_kernel"}
    assert set(errors["total"]) >= {"norm_relative", "max_absolute", "max_elementwise", "median_elementwise",
                                    "peak_index", "peak_reference"}
    assert first["dtypes"]["float64"]["errors"]["input_rounding"]["norm_relative"] == 0.0


def test_cli_plot(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "precision.png"
    result = run_cli("--seq", "16", "--dim", "8", "--heads", "1", "--scale", "1", "3", "10",
                     "--device", "cpu", "--plot", str(path))
    assert result.returncode == 0, result.stderr
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_bad_arguments():
    result = run_cli("--seq", "0")
    assert result.returncode == 2 and "positive" in result.stderr
    result = run_cli("--dtypes", "float64", "--device", "gpu")
    assert result.returncode == 2 and "error" in result.stderr


# --- GPU: the real kernels (marked gpu; skipped without one) -----------------------------------

@pytest.mark.gpu
def test_gpu_report_real_kernels(cp, rng):
    q, k, v = (cp.asarray(10 * rng.standard_normal((2, 4, 300, 64))) for _ in range(3))
    report = precision_report(q, k, v, causal=True)  # CuPy arrays: device 'auto' -> the GPU
    assert report.device == "gpu"
    for name, r in report.dtypes.items():
        assert not r.emulated and "GPU kernel" in r.kernel
        e = {n: s.norm_relative for n, s in r.errors.items()}
        if name == "float32":  # scores ~100 at input scale 10: as tests/test_attention_gpu.py, 1e-4
            assert e["kernel"] < 1e-4
        else:  # the fused kernel is no worse than plain same-dtype attention (5% slack, as the GPU tests)
            assert e["kernel"] <= 1.05 * e["plain_kernel"] + 1e-6, (name, e)
            assert r.dominant == "input rounding", r.verdict


@pytest.mark.gpu
def test_gpu_cli_json():
    result = run_cli("--device", "gpu", "--json", "--seq", "128")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert all(r["device"] == "gpu" for r in data["results"])
    assert not any(d["emulated"] for r in data["results"] for d in r["dtypes"].values())
