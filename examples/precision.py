"""Where does low-precision attention error come from? The study of lesson 1, reproduced.

Run:  python examples/precision.py [--device auto|cpu|gpu] [--plot precision.png] [--small]

Lesson 1 (LESSONS.md): a study of FlashAttention in float16 found ~14% element-wise relative
error at input scale 1 and far more at scale 10. Measured properly (B=2, H=8, S=1024, D=64,
against float64), the norm-wise error was 4.6e-4 at scale 1 and 3.2e-3 at scale 10, and at
scale 10 nearly all of it was the rounding of the inputs to float16. This script runs that
study with ``cuattn.precision`` on ``q, k, v = scale * N(0, 1)`` (drawn in float64, the same
draw at both scales) and prints, for each dtype, the error against the float64 reference split
into the input-rounding floor and the kernel's own part, next to a plain same-dtype
implementation (scores, probabilities and output rounded to the dtype). On a GPU the real
float16/bfloat16/float32 kernels run; on the CPU float16/bfloat16 are emulated (float32
arithmetic on the rounded inputs, output rounded to the dtype), so there the kernel part is
almost only the rounding of the output.

How to read the result (the numbers the script prints, on the CPU; a GPU's kernel part is
larger, since tensor cores take the probabilities rounded to the dtype):

* Element-wise relative error is the wrong lens. Every output is a weighted average of values
  of both signs, so some land near zero (|o| ~ 1e-11 here) and an absolute error of 1e-4 over
  such a value is a "relative error" of 1e5 or more, for the exact result on rounded inputs
  just as for any kernel. The table gives the reference value at the peak; the median
  element-wise error (~4e-4 in float16 at scale 1, about the float16 unit roundoff 2**-11)
  is what a typical element sees.
* Norm-wise, float16 at scale 1: total ~4e-4, input rounding ~4e-4, kernel ~2e-4: comparable.
  Rounding q, k and v to 11 significant bits already moves the exact result by about one unit
  roundoff; returning a float16 output adds another.
* Float16 at scale 10: total ~3.2e-3, of which input rounding ~3.2e-3: it dominates. The scores
  ``q.k / sqrt(D)`` grow with the square of the input scale (standard deviation ~100 here),
  and rounding q and k shifts each score by ~0.03 (root mean square) in absolute terms: softmax
  turns that into a ~3% change of the weights of the keys that compete for a query. That happens before any
  arithmetic: no kernel can beat it. The plain float16 implementation is worse (~8e-3) because
  it also rounds the scores themselves, where float16 spacing at 100 is 0.06; fused kernels
  keep scores in float32, so their part stays ~1e-4.
* bfloat16 (8 significant bits against float16's 11) has ~8x the floor: ~3e-3 at scale 1,
  ~2.6e-2 at scale 10.
* float32 on float64 data: the floor is ~5e-8 (scale 1) to ~4e-7 (scale 10) and the kernel's
  own float32 arithmetic dominates, as it should.

What to do when input rounding dominates: a better kernel will not help. Keep q and k small
(normalize them, fold the softmax scale into q before the cast), cast from a higher precision
only once, or compute in a wider dtype. When the kernel part dominates, compare it with the
plain implementation's kernel part: cuattn's GPU tests hold every kernel to no more than that.
"""

import argparse

from cuattn.precision import precision_sweep


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    parser.add_argument("--plot", metavar="FILE.png", help="save error vs input scale (needs matplotlib)")
    parser.add_argument("--small", action="store_true", help="S=256, H=4: seconds on a small CPU")
    args = parser.parse_args()

    batch, heads, seqlen, head_dim = (1, 4, 256, 64) if args.small else (2, 8, 1024, 64)
    sweep = precision_sweep((1.0, 10.0), batch=batch, heads=heads, seqlen=seqlen, head_dim=head_dim,
                            device=args.device)
    print(sweep)
    print()
    print("In short (norm-wise relative error against float64):")
    for s, report in zip(sweep.input_scales, sweep.reports):
        for name, r in report.dtypes.items():
            e = r.errors
            print(f"  scale {s:>4g} {name:>8}: total {e['total'].norm_relative:.1e} | input rounding "
                  f"{e['input_rounding'].norm_relative:.1e} | kernel {e['kernel'].norm_relative:.1e}; "
                  f"element-wise max {e['total'].max_elementwise:.1e} where the reference is "
                  f"{e['total'].peak_reference:.1e}, median {e['total'].median_elementwise:.1e}")
    if args.plot:
        sweep.plot(args.plot)
        print(f"plot saved to {args.plot}")


if __name__ == "__main__":
    main()
