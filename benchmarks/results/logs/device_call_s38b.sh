# 38th session, call 3 for less device time (device_call_s38.sh without the whole suite): the
# tests of the default's one-row rule (test_gpu_one_row_mma_whole, every kernel's zero lengths and
# errors), then the full decode.py (7 interleaved rounds), one line a row by report.py --columns
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv
TEST_IDS='one_row_mma_whole|zero_lengths|test_gpu_errors' OUT=$OUT TEST_OPS=decode TEST_JOBS=4 TIMEOUT_TESTS=120 bash benchmarks/gpu_session.sh tests
grep -E "TEST_IDS|passed|failed|error|ENDED" $OUT/tests.log | grep -v "s call" | tail -8
timeout 260 python3 benchmarks/decode.py --out $OUT/bench > $OUT/decode.log 2>&1; echo "decode.py rc=$?"
tail -16 $OUT/decode.log
python3 benchmarks/report.py --columns $OUT/bench/decode.json cuattn_alibi torch ratio 2>&1 | tee $OUT/columns.log
