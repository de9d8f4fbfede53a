# 43rd session, the short form of device_call_s43b.sh (too little device time left for the full decode.py): ONE_ROW_MMA_FEW the default (B 1 32/32 on the tensor-core kernel), the
# fixed test_gpu_one_row_mma_few (whole-rows rule off inside it) and the device's pip install with
# pyproject's SPDX license (setuptools >= 77); the decode GPU suite (TEST_JOBS=8), then the full
# decode.py (7 rounds) -> the README table when on an H100.
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv
pip wheel -q --no-build-isolation --no-deps -w $OUT/whl . > $OUT/pip.log 2>&1; echo "pip wheel rc=$?"; tail -3 $OUT/pip.log; ls $OUT/whl; rm -rf $OUT/whl
TEST_OPS=decode TEST_JOBS=8 TIMEOUT_TESTS=250 bash benchmarks/gpu_session.sh tests > /dev/null 2>&1
tail -8 $OUT/tests.log; rm -f $OUT/watchdog.tar.gz $OUT/watchdog_*
timeout 150 python3 benchmarks/decode.py --only "32/32 D128" --rounds 7 --out $OUT/bench > $OUT/decode.log 2>&1; echo "decode.py rc=$?"
tail -12 $OUT/decode.log | cut -c1-200
python3 benchmarks/report.py --columns $OUT/bench/decode.json cuattn_alibi torch ratio 2>&1 | tee $OUT/columns.log
mv $OUT/bench/decode.json $OUT/decode.json; mv $OUT/bench/decode.png $OUT/decode.png 2>/dev/null; rm -rf $OUT/bench
