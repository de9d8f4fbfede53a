# 36th session, call 1: D 64's two-block ring of 4 stages made the default (MMA_TWO_BLOCK_STAGES
# ((64, 4),)): every tensor-core decode test on it (with the 6-stage ring against it bit for bit, and
# the deep ring where row groups are split: neither GPU-run before), then the full decode.py
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv
PYTEST_ADDOPTS='-k "mma and not regs and not tma"' OUT=$OUT TEST_OPS=decode TEST_JOBS=8 TIMEOUT_TESTS=220 bash benchmarks/gpu_session.sh tests
grep -E "passed|failed|error" $OUT/tests.log | tail -12
timeout 60 python3 benchmarks/decode.py --quick --only D64 --out $OUT/d64 2>&1 | tail -4 | tee $OUT/d64.log
python3 -c "import json,os; r=json.load(open(os.environ['OUT']+'/d64/decode.json'))['rows'][0]; print({k: round(v, 3) for k, v in r.items() if isinstance(v, float)})" 2>&1 | tee -a $OUT/d64.log
timeout 300 python3 benchmarks/decode.py --out $OUT/bench 2>&1 | tail -16 | tee $OUT/decode.log
python3 - <<'PY' 2>&1 | tee -a $OUT/decode.log
import json, os
rows = json.load(open(os.environ["OUT"] + "/bench/decode.json"))["rows"]
for r in rows:
    cols = {k: round(v, 3) for k, v in r.items() if isinstance(v, float) and (k.startswith("cuattn_alibi") or k.startswith("torch"))}
    print(f"B{r['B']} {r['Hq']}/{r['Hkv']} D{r['D']} L{r['L']}{' paged' if r['paged'] else ''}: x best {r.get('ratio_alibi_vs_best_torch', 0):.3f} {r.get('ratio_alibi_vs_best_torch_rounds')}")
    print("   ", cols)
PY
