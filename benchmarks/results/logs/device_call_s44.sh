# Planned in the 43rd session for the next one's first call (any card; again on the other kind when
# one comes): ONE_ROW_MMA_FEW is the default since the 43rd session, measured on B 1 32/32 L 33001
# only; its scope (mma_splits_few_rows) covers every dense MHA one-row call with fewer row groups
# than SMs whose tensor-core plan splits them (e.g. B 2 8/8 L 3200, B 3 32/32 L 33001).
# 1. the fixed test_gpu_cache_layouts (failed on the 43rd session's H100 before the fix: its
#    mha_d128-dense case now runs the tensor-core kernel) and the one-row rules' tests;
# 2. benchmarks/decode_one_row_scope.py: tma vs mma vs auto on 12 shapes in and next to the rules'
#    scope (5 interleaved rounds). Where mma trails tma inside the scope, narrow mma_splits_few_rows.
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv
timeout 200 python3 -m pytest -m gpu -q -p no:cacheprovider tests/test_decode_gpu.py \
  -k "cache_layouts or one_row_mma_few or one_row_mma_whole" 2>&1 | tail -4 | tee $OUT/gpu_rules.log
timeout 240 python3 benchmarks/decode_one_row_scope.py --out $OUT 2>&1 | tee $OUT/scope.log | tail -14
# 3. the decode GPU suite on the same code (~230 s with TEST_JOBS=8): the 43rd session's run had
#    480 passed and the one failure fixed since.
TEST_OPS=decode TEST_JOBS=8 TIMEOUT_TESTS=250 bash benchmarks/gpu_session.sh tests > /dev/null 2>&1
grep -hE "passed|failed|FAILED" $OUT/tests.log | head -12; rm -f $OUT/watchdog.tar.gz $OUT/watchdog_*
