# 38th session, call 3: ONE_ROW_MMA_WHOLE the default (one dense row per block on the tensor-core
# kernel where its plan keeps row groups whole): the whole decode GPU suite, then the full decode.py
# (7 interleaved rounds), printed one line a row by report.py --columns
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv
OUT=$OUT TEST_OPS=decode TEST_JOBS=8 TIMEOUT_TESTS=300 bash benchmarks/gpu_session.sh tests
grep -E "passed|failed|error|ENDED" $OUT/tests.log | grep -v "s call" | tail -12
timeout 260 python3 benchmarks/decode.py --out $OUT/bench > $OUT/decode.log 2>&1; echo "decode.py rc=$?"
tail -16 $OUT/decode.log
python3 benchmarks/report.py --columns $OUT/bench/decode.json cuattn_alibi torch ratio 2>&1 | tee $OUT/columns.log
