# 40th session, eighth call: MMA_SLABS (default now: the tensor-core kernel's item end merges the warps'
# rows through slabs at once where shared memory allows, the same bits) and the one-block launch bound
# (DecodeMmaShape::min_blocks: up to 255 registers where a ring leaves one block per SM). First the
# stream probe against "no slabs" and "no slabs, bound 2" (the kernels as before this session) on
# every row, then the whole decode GPU suite (incl. test_gpu_mma_slabs_same_bits).
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader
timeout 150 python3 benchmarks/decode_stream_probe.py --variants "no slabs/no slabs, bound 2" --out $OUT/probe > $OUT/probe.log 2>&1
echo "probe rc=$?"; cut -c1-300 $OUT/probe.log | tail -10
OUT=$OUT TEST_OPS=decode TEST_JOBS=8 TIMEOUT_TESTS=260 bash benchmarks/gpu_session.sh tests > $OUT/session.log 2>&1
echo "gpu_session rc=$?"
grep -h -E "passed|failed|error" $OUT/tests*.log $OUT/session.log 2>/dev/null | tail -12
