# 37th session: device_call_s36b.sh, leaner (the session's start attempts were refused six times):
# every tensor-core ("mma") decode GPU test and the opt-in ONE_ROW_MMA_WHOLE's, selected by test id, on
# the D 64 ring of 4 stages (the default since c2bd340); then the one MHA row where the whole-rows
# tensor-core launch led on the H100 (B 64 32/32 L 2048), its columns printed by report.py --columns
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv
python3 -m pytest --version
TEST_IDS='\[mma|one_row_mma_whole' OUT=$OUT TEST_OPS=decode TEST_JOBS=8 TIMEOUT_TESTS=240 bash benchmarks/gpu_session.sh tests
grep -E "TEST_IDS|passed|failed|error|ENDED" $OUT/tests.log | tail -12
timeout 90 python3 benchmarks/decode.py --quick --only "B64 32/32" --out $OUT/mha 2>&1 | tail -4 | tee $OUT/mha.log
python3 benchmarks/report.py --columns $OUT/mha/decode.json cuattn_alibi torch ratio 2>&1 | tee -a $OUT/mha.log
