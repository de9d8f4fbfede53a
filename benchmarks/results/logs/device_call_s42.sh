# 42nd session, second call: the full decode.py (7 rounds) on the new default (the tensor-core
# kernel's store phase without the barrier, four columns a thread) -> the README table when on an
# H100; then the decode GPU suite (TEST_JOBS=8).
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv
timeout 280 python3 benchmarks/decode.py --out $OUT/bench > $OUT/decode.log 2>&1; echo "decode.py rc=$?"
tail -12 $OUT/decode.log
python3 benchmarks/report.py --columns $OUT/bench/decode.json cuattn_alibi torch ratio 2>&1 | tee $OUT/columns.log
mv $OUT/bench/decode.json $OUT/decode.json; mv $OUT/bench/decode.png $OUT/decode.png 2>/dev/null; rm -rf $OUT/bench
TEST_OPS=decode TEST_JOBS=8 TIMEOUT_TESTS=270 bash benchmarks/gpu_session.sh tests > /dev/null 2>&1
tail -15 $OUT/tests.log; rm -f $OUT/watchdog.tar.gz $OUT/watchdog_*
