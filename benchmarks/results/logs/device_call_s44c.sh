# 44th session, call 5: TMA_WHOLE_ROWS the default (bulk-copy kernel, one row per block, >= 1.9 row
# groups per SM: one split per row group, no even pieces). The decode GPU suite (TEST_JOBS=8; the new
# test_gpu_tma_whole_rows; all must pass), then the full decode.py (7 rounds; the MHA rows carry the
# cuattn_alibi_pieces column: the rule off) -> the README table when on an H100.
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv
TEST_OPS=decode TEST_JOBS=8 TIMEOUT_TESTS=290 bash benchmarks/gpu_session.sh tests > /dev/null 2>&1
grep -hE "passed|failed|FAILED" $OUT/tests.log | head -20; rm -f $OUT/watchdog.tar.gz $OUT/watchdog_*
timeout 240 python3 benchmarks/decode.py --out $OUT/bench > $OUT/decode.log 2>&1; echo "decode.py rc=$?"
tail -12 $OUT/decode.log | cut -c1-200
python3 benchmarks/report.py --columns $OUT/bench/decode.json cuattn_alibi cuattn_alibi_pieces torch ratio 2>&1 | tee $OUT/columns.log
mv $OUT/bench/decode.json $OUT/decode.json; mv $OUT/bench/decode.png $OUT/decode.png 2>/dev/null; rm -rf $OUT/bench
