# 35th session, call 4 (device time nearly spent): the final ring rule's GPU tests only: every
# tensor-core decode test (the D 64 ring of 4 stages, the deep ring where row groups are split)
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
PYTEST_ADDOPTS='-k "mma and not regs and not tma"' OUT=$OUT TEST_OPS=decode TEST_JOBS=8 TIMEOUT_TESTS=200 bash benchmarks/gpu_session.sh tests
grep -E "passed|failed|error" $OUT/tests.log | tail -10
