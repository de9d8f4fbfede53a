# 35th session, call 1: the tensor-core kernel's deeper ring at D 128 (MMA_DEEP_STAGES, now the
# default) measured by the project's benchmark beside the old ring (cuattn_alibi_mma_two_blocks) and
# torch; what paging costs (pages in order, one page a row); then the decode GPU suite on it
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv
export PYTHONUNBUFFERED=1 PYTHONPATH=.
timeout 260 python3 benchmarks/decode.py --out $OUT/bench 2>&1 | tail -16 | tee $OUT/decode.log
python3 - <<'PY' 2>&1 | tee -a $OUT/decode.log
import json, os
rows = json.load(open(os.environ["OUT"] + "/bench/decode.json"))["rows"]
for r in rows:
    cols = {k: round(v, 3) for k, v in r.items() if isinstance(v, float) and (k.startswith("cuattn_alibi") or k.startswith("torch"))}
    print(f"B{r['B']} {r['Hq']}/{r['Hkv']} D{r['D']} L{r['L']}{' paged' if r['paged'] else ''}: x best {r.get('ratio_alibi_vs_best_torch', 0):.3f} {r.get('ratio_alibi_vs_best_torch_rounds')}")
    print("   ", cols)
PY
OUT=$OUT TEST_OPS=decode TEST_JOBS=8 TIMEOUT_TESTS=300 bash benchmarks/gpu_session.sh tests
tail -30 $OUT/tests.log
