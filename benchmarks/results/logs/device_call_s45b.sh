# Planned in the 44th session: the second call after device_call_s45.sh (same warm machine): the
# decode GPU suite on the same code (~230 s with TEST_JOBS=8; the 43rd session's run had 480
# passed and one failure, test_gpu_cache_layouts[tma-mha_d128-dense], fixed since: all 481 must pass).
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv
TEST_OPS=decode TEST_JOBS=8 TIMEOUT_TESTS=400 bash benchmarks/gpu_session.sh tests > /dev/null 2>&1
grep -hE "passed|failed|FAILED" $OUT/tests.log | head -12; rm -f $OUT/watchdog.tar.gz $OUT/watchdog_*
