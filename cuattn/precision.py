"""Precision report: where the error of low-precision attention comes from.

A user who sees "13% relative error" in float16 attention cannot tell the kernel's error from
the rounding of their own inputs (lesson 1 of LESSONS.md). For each dtype this module runs the
cuattn kernel on the inputs rounded to that dtype and splits its error against the float64
reference on the original inputs (the total) into two parts::

    total           = kernel(round(q, k, v))            vs  exact(q, k, v)
    input rounding  = exact(round(q, k, v))             vs  exact(q, k, v)    (the floor)
    kernel          = kernel(round(q, k, v))            vs  exact(round(q, k, v))

``exact`` is :func:`cuattn.reference.attention` (float64). The input-rounding part is the floor
no kernel can beat: it is there before any arithmetic happens. Two more rows help read the
kernel part: ``output rounding`` (exact result on the rounded inputs, rounded to the dtype: the
part of the kernel error no kernel returning that dtype avoids) and the same measures for a
plain same-dtype implementation (:func:`plain_attention`: materialized attention rounding
scores, probabilities and output to the dtype, float32 arithmetic inside).

Entry points: :func:`precision_report` (your arrays), :func:`precision_sweep` (random inputs
at several input scales, as ``python -m cuattn precision`` runs) and :func:`plain_attention`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from . import _checks
from ._backend import array_kind, require_cupy, to_numpy

# bfloat16 needs ml_dtypes (an extra of the GPU installs); a CPU-only install studies the others.
DEFAULT_DTYPES = ("float16", "bfloat16", "float32") if _checks.BFLOAT16 is not None else ("float16", "float32")
DEVICES = ("auto", "cpu", "gpu")
# A part "dominates" when its norm-wise error is at least this many times the other part's.
DOMINANCE_RATIO = 2.0

PARTS = {
    "total": "total: cuattn vs float64",
    "input_rounding": "input rounding (the floor)",
    "kernel": "kernel: cuattn vs exact on rounded",
    "output_rounding": "  output rounding alone (unavoidable)",
    "plain_total": "plain {dtype}: vs float64",
    "plain_kernel": "plain {dtype}: vs exact on rounded",
}


# --- rounding and the plain implementation -------------------------------------------------

def round_to(x, dtype) -> np.ndarray:
    """Round a NumPy array to ``dtype`` once, to nearest (ties to even).

    ``astype`` does this for float16 and float32. ml_dtypes casts float64 to bfloat16 through
    float32, rounding twice (1 + 2**-8 + 2**-30 becomes 1, not 1 + 2**-7); here the float32
    step rounds to odd instead, which makes the second rounding exact.
    """
    dtype = _checks.parse_dtype(dtype)
    x = np.asarray(x)
    if dtype != _checks.BFLOAT16 or x.dtype.itemsize <= 4:
        return x.astype(dtype)
    x = x.astype(np.float64)
    r = x.astype(np.float32)
    with np.errstate(invalid="ignore"):
        inexact = np.isfinite(x) & (r.astype(np.float64) != x)
    even = (r.view(np.uint32) & 1) == 0
    fix = inexact & even
    if fix.any():
        toward = np.where(x > r.astype(np.float64), np.float32(np.inf), np.float32(-np.inf))
        r = np.where(fix, np.nextafter(r, toward), r)
    return r.astype(dtype)


def plain_attention(q, k, v, *, causal=False, scale=None, dtype=None) -> np.ndarray:
    """Plain same-dtype attention: materialized, each stage rounded to ``dtype``.

    What a straightforward low-precision implementation does: ``s = round(round(q @ k^T) *
    scale)``, ``p = round(softmax(s))``, ``o = round(p @ v)``, with float32 arithmetic inside
    (float64 when ``dtype`` is float64). It is the yardstick the GPU tests hold the kernels to.
    The inputs are used as given (cast to float32 for the arithmetic): to study a dtype, pass
    them rounded to it, as :func:`precision_report` does.

    Parameters
    ----------
    q, k, v : array_like, shapes (..., Hq, Sq, D), (..., Hkv, Sk, D), (..., Hkv, Sk, Dv)
        As for :func:`cuattn.attention` (GQA and broadcast leading dims included). GPU arrays
        are copied to the host.
    causal : bool, default False
        Causal mask aligned bottom-right.
    scale : float, optional
        Score scale; None means ``D ** -0.5``.
    dtype : dtype or str, optional
        The dtype to round to ('float16', 'bfloat16', 'float32', 'float64'); None means
        the dtype of ``q``.

    Returns
    -------
    numpy.ndarray, shape (..., Hq, Sq, Dv), float32 holding values of ``dtype``
        (float64 when ``dtype`` is float64). Rows that see no key are zeros.
    """
    q, k, v = (np.asarray(to_numpy(x)) for x in (q, k, v))
    sizes = _checks.attention_shapes(q, k, v)
    scale = _checks.check_scale(scale, sizes["head_dim"])
    causal = _checks.check_bool(causal, "causal")
    dtype = _checks.parse_dtype(q.dtype if dtype is None else dtype)
    work = np.float64 if dtype == _checks.FLOAT64 else np.float32

    def rnd(x):
        return round_to(np.asarray(x, work), dtype).astype(work)

    q, k, v = (x.astype(work) for x in (q, k, v))
    group = sizes["num_q_heads"] // sizes["num_kv_heads"]
    k, v = np.repeat(k, group, -3), np.repeat(v, group, -3)
    s = rnd(rnd(q @ np.swapaxes(k, -1, -2)) * work(scale))
    sq, sk = s.shape[-2:]
    if causal:
        s = np.where(np.arange(sk)[None] <= np.arange(sq)[:, None] + sk - sq, s, -np.inf)
    m = s.max(-1, keepdims=True, initial=-np.inf)
    m = np.where(np.isfinite(m), m, 0)
    p = np.exp(s - m)
    denom = p.sum(-1, keepdims=True)
    p = rnd(p / np.where(denom > 0, denom, 1))
    return rnd(p @ v)


# --- error measures --------------------------------------------------------------------------

def _finite_or_none(x):
    return float(x) if math.isfinite(x) else None


@dataclass(frozen=True)
class ErrorStats:
    """Errors of one result against one target (both float64 on the host).

    Attributes
    ----------
    norm_relative : float
        ``||result - target||_F / ||target||_F``.
    max_absolute : float
        ``max |result - target|``.
    max_elementwise : float
        ``max |result - target| / |target|`` over the elements (0/0 counts as 0, x/0 as inf).
        Near-zero targets dominate it: read it with ``peak_reference``.
    median_elementwise : float
        The median of the same ratio: what a typical element sees.
    peak_index : tuple of int
        Where the element-wise relative error peaks.
    peak_reference : float
        The target value there.
    peak_result : float
        The result value there.
    """

    norm_relative: float
    max_absolute: float
    max_elementwise: float
    median_elementwise: float
    peak_index: tuple
    peak_reference: float
    peak_result: float

    @classmethod
    def measure(cls, result, target) -> "ErrorStats":
        result = np.asarray(result, dtype=np.float64)
        target = np.asarray(target, dtype=np.float64)
        if result.shape != target.shape:
            raise ValueError(f"result shape {result.shape} differs from target shape {target.shape}")
        if result.size == 0:
            return cls(0.0, 0.0, 0.0, 0.0, (), 0.0, 0.0)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            same = (result == target) | (np.isnan(result) & np.isnan(target))
            diff = np.where(same, 0.0, np.abs(result - target))
            diff = np.where(np.isnan(diff), np.inf, diff)  # NaN against a number: infinitely wrong
            elementwise = np.where(diff == 0, 0.0, diff / np.abs(target))
            denom = np.linalg.norm(target[np.isfinite(target)])
            norm = float(np.sqrt(np.sum(diff * diff)) / (denom if denom > 0 else 1.0))
        peak = np.unravel_index(int(np.argmax(elementwise)), elementwise.shape)
        return cls(
            norm_relative=norm,
            max_absolute=float(diff.max()),
            max_elementwise=float(elementwise[peak]),
            median_elementwise=float(np.median(elementwise)),
            peak_index=tuple(int(i) for i in peak),
            peak_reference=float(target[peak]),
            peak_result=float(result[peak]),
        )

    def to_dict(self) -> dict:
        """Plain JSON-ready dict; non-finite numbers become None."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else _finite_or_none(value)
        return out


@dataclass(frozen=True)
class DtypeReport:
    """The error decomposition for one dtype (see the module docstring).

    Attributes
    ----------
    dtype : str
        'float16', 'bfloat16', 'float32' or 'float64'.
    kernel : str
        What ran as "the kernel" (GPU kernel, or CPU kernel with low precision emulated).
    emulated : bool
        True when the dtype's arithmetic was not run natively (CPU, float16/bfloat16: the CPU
        kernel computes in float32 on the rounded inputs and rounds its output to the dtype).
    errors : dict of str -> ErrorStats
        ``total``, ``input_rounding``, ``kernel``, ``output_rounding``, ``plain_total``,
        ``plain_kernel`` (see the module docstring).
    """

    dtype: str
    kernel: str
    emulated: bool
    errors: dict = field(default_factory=dict)

    @property
    def dominant(self) -> str:
        """'input rounding', 'kernel', 'comparable' (within DOMINANCE_RATIO) or 'none' (no error)."""
        floor = self.errors["input_rounding"].norm_relative
        kernel = self.errors["kernel"].norm_relative
        if floor == 0 and kernel == 0:
            return "none"
        if floor >= DOMINANCE_RATIO * kernel:
            return "input rounding"
        if kernel >= DOMINANCE_RATIO * floor:
            return "kernel"
        return "comparable"

    @property
    def verdict(self) -> str:
        """One line: which part dominates the norm-wise error, with the numbers."""
        e = {name: stats.norm_relative for name, stats in self.errors.items()}
        if self.dominant == "none":
            head = "no error: the kernel returns the exact result"
        elif e["input_rounding"] == 0:
            head = f"no input rounding (inputs exact in {self.dtype}): all {e['total']:.1e} is kernel error"
        elif self.dominant == "input rounding":
            head = (f"input rounding dominates ({e['input_rounding']:.1e} of {e['total']:.1e}; "
                    f"kernel part {e['kernel']:.1e})")
        elif self.dominant == "kernel":
            head = (f"kernel error dominates ({e['kernel']:.1e} of {e['total']:.1e}; "
                    f"input rounding {e['input_rounding']:.1e})")
        else:
            head = (f"input rounding ({e['input_rounding']:.1e}) and kernel error ({e['kernel']:.1e}) "
                    f"are comparable (total {e['total']:.1e})")
        return (f"{self.dtype}: {head}; output rounding alone {e['output_rounding']:.1e}; "
                f"plain {self.dtype}: kernel part {e['plain_kernel']:.1e}, total {e['plain_total']:.1e}")

    def to_dict(self) -> dict:
        return {
            "dtype": self.dtype,
            "kernel": self.kernel,
            "emulated": self.emulated,
            "dominant": self.dominant,
            "verdict": self.verdict,
            "errors": {name: stats.to_dict() for name, stats in self.errors.items()},
        }


_COLUMNS = ("part", "norm rel", "max abs", "elem rel max", "reference there", "at index", "elem rel median")


def _row(cells, widths):
    return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))


def _table(rows) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [_row(rows[0], widths), _row(["-" * w for w in widths], widths)]
    lines += [_row(r, widths) for r in rows[1:]]
    return lines


@dataclass(frozen=True)
class PrecisionReport:
    """:func:`precision_report`'s result: one :class:`DtypeReport` per dtype.

    ``str(report)`` is a table per dtype with the one-line verdicts; :meth:`to_dict` is the
    same for machines (JSON-ready).

    Attributes
    ----------
    shapes : dict
        Shapes of ``q``, ``k``, ``v``.
    input_dtype : str
        dtype of the inputs as given (taken as exact).
    causal : bool
    scale : float
        The score scale used.
    device : str
        'cpu' or 'gpu'.
    dtypes : dict of str -> DtypeReport
    """

    shapes: dict
    input_dtype: str
    causal: bool
    scale: float
    device: str
    dtypes: dict

    @property
    def verdicts(self) -> list[str]:
        return [r.verdict for r in self.dtypes.values()]

    def table(self) -> str:
        shapes = ", ".join(f"{n} {tuple(s)}" for n, s in self.shapes.items())
        lines = [
            f"cuattn precision report: {shapes}, inputs {self.input_dtype} (taken as exact), "
            f"causal={self.causal}, scale={self.scale:.4g}, device {self.device}",
        ]
        for report in self.dtypes.values():
            lines += ["", f"{report.dtype}: {report.kernel}"]
            rows = [list(_COLUMNS)]
            for name, stats in report.errors.items():
                rows.append([
                    PARTS[name].format(dtype=report.dtype),
                    f"{stats.norm_relative:.2e}",
                    f"{stats.max_absolute:.2e}",
                    f"{stats.max_elementwise:.2e}",
                    f"{stats.peak_reference:.2e}",
                    "(" + ",".join(map(str, stats.peak_index)) + ")",
                    f"{stats.median_elementwise:.2e}",
                ])
            lines += ["  " + line for line in _table(rows)]
        lines += [
            "",
            "norm rel = ||o - ref|| / ||ref||; elem rel = |o - ref| / |ref| per element, largest where ref is",
            "near zero ('reference there': ref at the peak, with ref = float64 on the original inputs for",
            "'vs float64' rows and float64 on the rounded inputs for 'vs exact on rounded' rows).",
            "verdict (norm-wise relative error):",
        ] + ["  " + v for v in self.verdicts]
        return "\n".join(lines)

    __str__ = table

    def to_dict(self) -> dict:
        return {
            "shapes": {n: list(s) for n, s in self.shapes.items()},
            "input_dtype": self.input_dtype,
            "causal": self.causal,
            "scale": self.scale,
            "device": self.device,
            "dtypes": {name: r.to_dict() for name, r in self.dtypes.items()},
        }


# --- the report ------------------------------------------------------------------------------

def _resolve_device(arrays, device) -> str:
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}; got {device!r}")
    kinds = {array_kind(x, name) for name, x in arrays.items()}
    if len(kinds) > 1:
        raise TypeError("q, k and v mix NumPy and GPU arrays; move them to one side first")
    if device == "auto":
        return "gpu" if kinds == {"cupy"} else "cpu"
    if device == "gpu":
        require_cupy()
    return device


def _kernel_description(device: str, dtype: np.dtype) -> tuple[str, bool]:
    name = _checks.dtype_name(dtype)
    if device == "gpu":
        inside = "float32 FFMA" if dtype == _checks.FLOAT32 else "tensor cores, float32 accumulation"
        return f"cuattn GPU kernel in {name} ({inside})", False
    if dtype in (_checks.FLOAT32, _checks.FLOAT64):
        return f"cuattn CPU kernel in {name}", False
    return (f"cuattn CPU kernel on the inputs rounded to {name}, float32 arithmetic, output rounded "
            f"to {name} (emulated: run on a GPU for the real {name} kernel)"), True


def _run_kernel(q, k, v, causal, scale, device):
    from .attention import attention

    if device == "gpu":
        cupy = require_cupy()
        o = attention(*(cupy.asarray(x) for x in (q, k, v)), causal=causal, scale=scale)
        return to_numpy(o)
    return attention(q, k, v, causal=causal, scale=scale, backend="cpu")


def precision_report(q, k, v, *, dtypes=DEFAULT_DTYPES, causal=False, scale=None, device="auto"):
    """Split the error of low-precision attention into input rounding and kernel error.

    For each dtype the inputs are rounded to it (to nearest), the cuattn kernel runs on them,
    and its output is compared with the float64 reference on the original inputs (``total``),
    the float64 reference on the rounded inputs is compared with that on the originals
    (``input_rounding``: the floor no kernel can beat) and the kernel is compared with the
    float64 reference on the rounded inputs (``kernel``). The same is measured for the plain
    same-dtype implementation :func:`plain_attention`, for comparison.

    Parameters
    ----------
    q, k, v : arrays, shapes (..., Hq, Sq, D), (..., Hkv, Sk, D), (..., Hkv, Sk, Dv)
        The inputs at the precision you have them (float64 or float32 data before any cast
        to a low-precision dtype): they are taken as exact. NumPy or CuPy arrays.
    dtypes : sequence of str or dtype, default ('float16', 'bfloat16', 'float32')
        The dtypes to study (bfloat16 needs ml_dtypes; the default leaves it out without it).
        float64 runs on the CPU only.
    causal : bool, default False
        Causal mask aligned bottom-right, as in :func:`cuattn.attention`.
    scale : float, optional
        Score scale; None means ``D ** -0.5``.
    device : {'auto', 'cpu', 'gpu'}, default 'auto'
        Where the kernels run. 'auto' follows the arrays (CuPy -> GPU, NumPy -> CPU). 'gpu'
        runs the real kernel of each dtype (NumPy inputs are copied to the GPU, as asked).
        'cpu' runs the CPU kernel: float32 and float64 natively, float16 and bfloat16 emulated
        (float32 arithmetic on the rounded inputs, output rounded to the dtype; the report says
        so). References, rounding and the plain implementation always run on the host.

    Returns
    -------
    PrecisionReport
        ``print(report)`` shows a table per dtype and one-line verdicts;
        ``report.dtypes['float16'].errors['kernel'].norm_relative`` and so on for code;
        ``report.to_dict()`` for JSON.

    Raises
    ------
    TypeError
        Mixed NumPy/GPU inputs, an unknown dtype.
    ValueError
        Shapes that do not fit, a bad ``device``, float64 with ``device='gpu'``.
    RuntimeError
        ``device='gpu'`` without CuPy or a GPU.

    Notes
    -----
    The parts add up as vectors (``total = input_rounding + kernel``, element by element), so
    their norm-wise errors obey the triangle inequality; a part "dominates" when it is at least
    twice the other. Element-wise relative errors peak where the reference is near zero: a tiny
    absolute error over a tiny value. The table gives the reference value at the peak and the
    median, which is what a typical element sees.

    Examples
    --------
    >>> import numpy as np, cuattn
    >>> rng = np.random.default_rng(0)
    >>> q, k, v = (10 * rng.standard_normal((1, 2, 64, 32)) for _ in range(3))
    >>> report = cuattn.precision_report(q, k, v, dtypes=("float16", "float32"), device="cpu")
    >>> report.dtypes["float16"].dominant
    'input rounding'
    """
    device = _resolve_device({"q": q, "k": k, "v": v}, device)
    causal = _checks.check_bool(causal, "causal")
    host = [np.asarray(to_numpy(x)) for x in (q, k, v)]
    sizes = _checks.attention_shapes(*host)
    scale = _checks.check_scale(scale, sizes["head_dim"])
    if isinstance(dtypes, (str, np.dtype)) or not hasattr(dtypes, "__iter__"):
        dtypes = (dtypes,)
    parsed = []
    for d in dtypes:
        try:
            dt = _checks.parse_dtype(d)
        except TypeError:
            raise TypeError(f"dtypes: unknown dtype {d!r}") from None
        allowed = _checks.GPU_DTYPES if device == "gpu" else _checks.CPU_DTYPES
        if dt not in allowed:
            where = ", ".join(_checks.dtype_name(a) for a in allowed)
            raise ValueError(f"dtypes: {_checks.dtype_name(dt)} does not run on the {device}; it takes {where}")
        parsed.append(dt)

    from .reference import attention as reference

    exact = reference(*host, causal=causal, scale=scale)
    reports = {}
    for dt in parsed:
        name = _checks.dtype_name(dt)
        rounded = [round_to(x, dt) for x in host]
        exact_rounded = reference(*rounded, causal=causal, scale=scale)
        out = _run_kernel(*rounded, causal, scale, device)
        plain = plain_attention(*rounded, causal=causal, scale=scale, dtype=dt)
        kernel, emulated = _kernel_description(device, dt)
        errors = {
            "total": ErrorStats.measure(out, exact),
            "input_rounding": ErrorStats.measure(exact_rounded, exact),
            "kernel": ErrorStats.measure(out, exact_rounded),
            "output_rounding": ErrorStats.measure(round_to(exact_rounded, dt), exact_rounded),
            "plain_total": ErrorStats.measure(plain, exact),
            "plain_kernel": ErrorStats.measure(plain, exact_rounded),
        }
        reports[name] = DtypeReport(dtype=name, kernel=kernel, emulated=emulated, errors=errors)
    return PrecisionReport(
        shapes={"q": tuple(host[0].shape), "k": tuple(host[1].shape), "v": tuple(host[2].shape)},
        input_dtype=_checks.dtype_name(host[0].dtype),
        causal=causal,
        scale=scale,
        device=device,
        dtypes=reports,
    )


# --- sweeps over input scales (the CLI and examples/precision.py) ---------------------------

@dataclass(frozen=True)
class PrecisionSweep:
    """Precision reports on random inputs at several input scales.

    Attributes
    ----------
    input_scales : tuple of float
        Each report's inputs are ``input_scale * z`` for one float64 draw ``z ~ N(0, 1)``.
    reports : tuple of PrecisionReport
        One per input scale.
    seed : int
    """

    input_scales: tuple
    reports: tuple
    seed: int

    def table(self) -> str:
        blocks = []
        for s, report in zip(self.input_scales, self.reports):
            blocks.append(f"=== input scale {s:g}: q, k, v = {s:g} * N(0, 1), drawn in float64 (seed {self.seed}) ===")
            blocks.append(report.table())
        return "\n\n".join(blocks)

    __str__ = table

    def to_dict(self) -> dict:
        return {
            "seed": self.seed,
            "results": [dict(input_scale=s, **r.to_dict()) for s, r in zip(self.input_scales, self.reports)],
        }

    def plot(self, path) -> None:
        """Save error vs input scale per dtype (needs matplotlib: pip install 'cuattn[plot]').

        Left: norm-wise relative error, split into total, input rounding (floor), kernel part
        and the plain same-dtype total. Right: element-wise relative error, max and median.
        """
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            raise RuntimeError("--plot needs matplotlib: pip install matplotlib (or 'cuattn[plot]')") from None
        names = list(self.reports[0].dtypes)
        colors = dict(zip(names, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
        fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
        x = list(self.input_scales)

        def series(name, part, attr):
            return [max(getattr(r.dtypes[name].errors[part], attr), 1e-17) for r in self.reports]

        from matplotlib.lines import Line2D

        left_styles = {"total": "-", "input_rounding": "--", "kernel": ":", "plain_total": "-."}
        left_labels = ["total (cuattn vs float64)", "input rounding (the floor)",
                       "kernel part (vs exact on rounded)", "plain same-dtype total"]
        right_styles = {"max_elementwise": "-", "median_elementwise": "--"}
        for name in names:
            for part, style in left_styles.items():
                left.plot(x, series(name, part, "norm_relative"), style, marker="o", color=colors[name])
            for attr, style in right_styles.items():
                right.plot(x, series(name, "total", attr), style, marker="o", color=colors[name])
        dtype_handles = [Line2D([], [], color=colors[n], marker="o", label=n) for n in names]
        first = self.reports[0]
        shape = f"q {tuple(first.shapes['q'])}, device {first.device}, causal={first.causal}"
        if any(r.emulated for r in first.dtypes.values()):
            shape += " (float16/bfloat16 emulated on the CPU)"
        for ax, title, styles, labels in (
            (left, "norm-wise relative error", left_styles, left_labels),
            (right, "element-wise relative error of cuattn vs float64", right_styles, ["max", "median"]),
        ):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("input scale (q, k, v ~ scale * N(0, 1))")
            ax.set_title(title, fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
            style_handles = [Line2D([], [], color="gray", linestyle=st, label=lab)
                             for st, lab in zip(styles.values(), labels)]
            ax.add_artist(ax.legend(handles=dtype_handles, fontsize=7, loc="upper left"))
            ax.legend(handles=style_handles, fontsize=7, loc="lower right")
        fig.suptitle(f"cuattn precision: {shape}", fontsize=10)
        fig.savefig(path, dpi=120)
        plt.close(fig)


def precision_sweep(input_scales=(1.0, 10.0), *, batch=1, heads=4, seqlen=256, head_dim=64,
                    dtypes=DEFAULT_DTYPES, causal=False, scale=None, device="cpu", seed=0):
    """:func:`precision_report` on random inputs ``input_scale * N(0, 1)`` at several scales.

    Parameters
    ----------
    input_scales : sequence of float, default (1, 10)
        Multipliers of the standard normal inputs (lesson 1 used 1 and 10).
    batch, heads, seqlen, head_dim : int
        q, k and v all have shape (batch, heads, seqlen, head_dim); drawn in float64.
    dtypes, causal, scale
        As for :func:`precision_report`.
    device : {'cpu', 'gpu', 'auto'}, default 'cpu'
        'gpu' moves the inputs to the GPU and runs the real kernels; 'auto' picks the GPU when
        one is available.
    seed : int, default 0
        Seed of the one standard normal draw of q, k and v; every input scale multiplies the
        same draw, so a scale's result does not depend on the other scales asked for.

    Returns
    -------
    PrecisionSweep
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}; got {device!r}")
    if device == "auto":
        from ._backend import gpu_available

        device = "gpu" if gpu_available() else "cpu"
    for name, value in (("batch", batch), ("heads", heads), ("seqlen", seqlen), ("head_dim", head_dim)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")
    scales = tuple(float(s) for s in input_scales)
    if not scales or not all(math.isfinite(s) for s in scales):
        raise ValueError(f"input scales must be finite numbers, at least one; got {input_scales!r}")
    rng = np.random.default_rng(seed)
    shape = (batch, heads, seqlen, head_dim)
    draw = [rng.standard_normal(shape) for _ in range(3)]
    reports = []
    for s in scales:
        q, k, v = (s * x for x in draw)
        reports.append(precision_report(q, k, v, dtypes=dtypes, causal=causal, scale=scale, device=device))
    return PrecisionSweep(input_scales=scales, reports=tuple(reports), seed=seed)
