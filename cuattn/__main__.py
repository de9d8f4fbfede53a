"""Command line: ``python -m cuattn precision [options]`` and ``python -m cuattn info [--json]``.

``precision`` runs :func:`cuattn.precision.precision_sweep`: random inputs ``scale * N(0, 1)``
(drawn in float64) at each ``--scale``, and for each dtype the error of cuattn against the
float64 reference split into input rounding (the floor) and kernel error, next to a plain
same-dtype implementation. See ``python -m cuattn precision --help``.

``info`` prints what cuattn finds on this machine (versions, CPU backend, CUDA sources, kernel
caches, each GPU and the kernels cuattn runs there): paste it into a bug report.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import __version__
from ._backend import gpu_available
from .precision import DEFAULT_DTYPES, precision_sweep


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cuattn", description=f"cuattn {__version__} tools")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = commands.add_parser(
        "precision",
        help="where the error of low-precision attention comes from",
        description=(
            "Random q, k, v = SCALE * N(0, 1) (float64) of shape (BATCH, HEADS, SEQ, DIM). For each "
            "dtype: cuattn on the inputs rounded to it, against the float64 reference (total), the "
            "float64 result on the rounded inputs against the reference (input rounding: the floor no "
            "kernel can beat), cuattn against that (kernel error), and a plain same-dtype "
            "implementation. On the CPU, float16/bfloat16 are emulated (float32 arithmetic on the "
            "rounded inputs, output rounded to the dtype)."
        ),
    )
    p.add_argument("--scale", type=float, nargs="+", default=[1.0, 10.0], metavar="S",
                   help="input scales (default: 1 10)")
    p.add_argument("--seq", type=_positive_int, default=256, help="sequence length, queries and keys (default 256)")
    p.add_argument("--dim", type=_positive_int, default=64, help="head dim (default 64)")
    p.add_argument("--heads", type=_positive_int, default=4, help="heads (default 4)")
    p.add_argument("--batch", type=_positive_int, default=1, help="batch (default 1)")
    p.add_argument("--dtypes", nargs="+", default=list(DEFAULT_DTYPES), metavar="DTYPE",
                   choices=["float16", "bfloat16", "float32", "float64"],
                   help="dtypes to study (default: float16 bfloat16 float32; float64 on the CPU only)")
    p.add_argument("--causal", action="store_true", help="causal mask")
    p.add_argument("--softmax-scale", type=float, default=None, metavar="X",
                   help="score scale (default DIM ** -0.5)")
    p.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto",
                   help="auto: the GPU when CuPy sees one, else the CPU (default auto)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--plot", metavar="FILE.png", help="save error vs input scale per dtype (needs matplotlib)")
    i = commands.add_parser("info", help="what cuattn finds on this machine (for bug reports)",
                            description="Versions, the CPU backend's threads and BLAS, the CUDA sources, the "
                                        "kernel caches, and each GPU CuPy sees with the kernels cuattn runs "
                                        "there. Compiles and launches nothing.")
    i.add_argument("--json", action="store_true", help="print JSON")
    return parser


def run_info(args) -> int:
    from ._info import environment, format_text

    info = environment()
    print(json.dumps(info, indent=2) if args.json else format_text(info))
    return 0


def run_precision(args) -> int:
    device = args.device
    if device == "auto":
        device = "gpu" if gpu_available() else "cpu"
    sweep = precision_sweep(
        args.scale, batch=args.batch, heads=args.heads, seqlen=args.seq, head_dim=args.dim,
        dtypes=tuple(args.dtypes), causal=args.causal, scale=args.softmax_scale, device=device,
        seed=args.seed,
    )
    if args.json:
        json.dump(sweep.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(sweep.table())
    if args.plot:
        sweep.plot(args.plot)
        print(f"plot saved to {args.plot}", file=sys.stderr if args.json else sys.stdout)
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "precision":
            return run_precision(args)
        if args.command == "info":
            return run_info(args)
    except (ValueError, TypeError, RuntimeError) as error:
        parser.exit(2, f"python -m cuattn {args.command}: error: {error}\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
