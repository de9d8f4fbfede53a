# 36th session, call 2 (not run: the session's device time was spent on refused starts; the plan for
# the next session's first call): every tensor-core ("mma") decode GPU test, selected by test id
# (TEST_IDS; call 1's PYTEST_ADDOPTS -k "mma and not regs and not tma" kept only the 9 tests
# parametrized by the kernel alone on the device), on the D 64 ring of 4 stages (the default since
# c2bd340), and the opt-in ONE_ROW_MMA_WHOLE's test (3201235); then the one-row (MHA) rows, where the
# tensor-core kernel (cuattn_alibi_mma, now also cuattn_alibi_one_row_mma_whole) was +1.7% over the
# default bulk-copy kernel on B 64 32/32 L 2048 (H100, 35th session and call 1)
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv
python3 -m pytest --version
TEST_IDS='\[mma|one_row_mma_whole' OUT=$OUT TEST_OPS=decode TEST_JOBS=8 TIMEOUT_TESTS=240 bash benchmarks/gpu_session.sh tests
grep -E "TEST_IDS|passed|failed|error|ENDED" $OUT/tests.log | tail -12
timeout 100 python3 benchmarks/decode.py --quick --only "32/32" --out $OUT/mha 2>&1 | tail -5 | tee $OUT/mha.log
python3 -c "
import json, os
for r in json.load(open(os.environ['OUT'] + '/mha/decode.json'))['rows']:
    print(r['B'], r['L'], {k: round(v, 3) for k, v in r.items() if isinstance(v, float) and k.startswith(('cuattn_alibi', 'torch'))})" 2>&1 | tee -a $OUT/mha.log
