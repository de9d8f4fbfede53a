# 37th session, the last ~400 s of device time: device_call_s37b.sh's tests without the reference
# grid and without the benchmark (63 tests): the D 64 ring of 4 stages (default since c2bd340), the
# deep ring for split rows (35th), the opt-in ONE_ROW_MMA_WHOLE (36th)
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader
TEST_IDS='two_block_stages_d64|deep_ring_for_split|one_row_mma_whole|mma_default_copy|mma_d64_many|cache_layouts\[mma-mha_d64|paged_identical_to_contiguous\[mma-64|kernels_bit_identical\[mma-6-3-2-64' \
    OUT=$OUT TEST_OPS=decode TEST_JOBS=8 TIMEOUT_TESTS=150 bash benchmarks/gpu_session.sh tests
grep -E "TEST_IDS|passed|failed|error|ENDED|FAILED" $OUT/tests.log | tail -24
