# 37th session, the last ~600 s of device time after eleven refused starts: device_call_s37.sh cut to
# the tests that bear on this session's open questions (89 of its 263): the D 64 ring of 4 stages
# (default since c2bd340) against 6 bit for bit and on the float64 reference, the deep ring for split
# rows (35th), the opt-in ONE_ROW_MMA_WHOLE (36th), the reference grid of the tensor-core kernel;
# then B 64 32/32 L 2048 quick (60 s at most)
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader
TEST_IDS='two_block_stages_d64|deep_ring_for_split|one_row_mma_whole|mma_default_copy|cache_layouts\[mma-mha_d64|paged_identical_to_contiguous\[mma-64|kernels_bit_identical\[mma-6-3-2-64|matches_reference\[mma' \
    OUT=$OUT TEST_OPS=decode TEST_JOBS=8 TIMEOUT_TESTS=180 bash benchmarks/gpu_session.sh tests
grep -E "TEST_IDS|passed|failed|error|ENDED|FAILED" $OUT/tests.log | tail -24
timeout 60 python3 benchmarks/decode.py --quick --rounds 2 --only "B64 32/32" --out $OUT/mha 2>&1 | tail -3 | tee $OUT/mha.log
python3 benchmarks/report.py --columns $OUT/mha/decode.json cuattn_alibi torch ratio 2>&1 | tee -a $OUT/mha.log
