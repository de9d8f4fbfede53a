# 39th session, fourth call: the whole decode GPU suite on this session's code (decode.cu gained the
# probe-only -DCUATTN_DECODE_L2_AHEAD blocks and a no-math trace stamp; the default build's kernels
# are unchanged in behaviour: this checks it on the GPU).
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
OUT=$OUT TEST_OPS=decode TEST_JOBS=8 TIMEOUT_TESTS=400 bash benchmarks/gpu_session.sh tests > $OUT/session.log 2>&1
echo "gpu_session rc=$?"
tail -25 $OUT/tests.log 2>/dev/null || tail -40 $OUT/session.log
grep -h -E "passed|failed|error" $OUT/*.log | tail -20
