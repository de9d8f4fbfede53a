"""One decode call inside a CUDA profiler range, for Nsight Compute (DRAM and L2 counters).

Run on a GPU machine with torch, e.g.:

    M=gpu__time_duration.sum,dram__bytes_read.sum,lts__t_sectors_op_read.sum,lts__t_sector_op_read_hit_rate.pct
    ncu --profile-from-start off --metrics $M python benchmarks/decode_ncu_case.py cuattn:16:32:8:128:33001
    ncu --profile-from-start off --metrics $M python benchmarks/decode_ncu_case.py torch_cudnn:16:32:8:128:33001

CASE is IMPL:B:Hq:Hkv:D:L[:OPTION=VALUE ...], IMPL one of cuattn, torch_flash, torch_cudnn (fp16,
one query token, cuattn with ALiBi "default"). Options (cuattn only): kernel=mma|tma|regs
(cuattn.decode.KERNEL), splits=N (plan_persistent's split count forced), promotion=0..3 (the
tensor maps' L2 promotion, cuattn._tma.L2_PROMOTION), define=NAME (a probe build of the persistent
kernels: -DCUATTN_DECODE_NAME, e.g. SKIP_MATH). Five warm-up calls run outside the range.
Where the consumers' time goes (stall reasons, issue slots; gpu_session.sh stage ncu-mma):

    S="--section SpeedOfLight --section WarpStateStats --section SchedulerStats --section InstructionStats"
    ncu --profile-from-start off $S python benchmarks/decode_ncu_case.py cuattn:1:32:8:128:131072
    ncu --profile-from-start off $S python benchmarks/decode_ncu_case.py cuattn:1:32:8:128:131072:define=SKIP_MATH

This is how benchmarks/NOTES.md's L2 promotion finding was measured (the mma kernel's 64-column
boxes read half rows: without 256-byte promotion each 256-byte key row costs two DRAM requests).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cupy  # noqa: E402
from decode import make_inputs, torch_impls  # noqa: E402

import cuattn  # noqa: E402
from cuattn import _tma  # noqa: E402

module = sys.modules["cuattn.decode"]


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    fields = sys.argv[1].split(":")
    impl, (b, hq, hkv, d, length) = fields[0], map(int, fields[1:6])
    t, (q, k, v) = make_inputs(b, hq, hkv, d, length)
    for option in fields[6:]:
        key, value = option.split("=")
        if key == "kernel":
            module.KERNEL = value
        elif key == "splits":
            chunk = module.split_chunk(length, int(value))
            module.plan_persistent = lambda *a, f=(-(-length // chunk), chunk), **kw: f
        elif key == "promotion":
            _tma.L2_PROMOTION = int(value)
        elif key == "define":  # a probe build, e.g. define=SKIP_MATH: -DCUATTN_DECODE_SKIP_MATH
            module.TMA_OPTIONS = (*module.TMA_OPTIONS, f"-DCUATTN_DECODE_{value}")
        else:
            sys.exit(f"unknown option {key}")
    if impl == "cuattn":
        def fn():
            return cuattn.decode(q, k, v, alibi_slopes="default")
    else:
        fn = torch_impls(*t, cuattn.alibi_slopes(hq))[impl][0]
    for _ in range(5):
        fn()
    cupy.cuda.Device().synchronize()
    cupy.cuda.profiler.start()
    fn()
    cupy.cuda.Device().synchronize()
    cupy.cuda.profiler.stop()


if __name__ == "__main__":
    main()
