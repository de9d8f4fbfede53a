# 35th session, call 3: the final ring rule (D 128: one block of 6 stages where row groups are split;
# D 64: two blocks of 4): the decode GPU suite, then decode.py's GQA rows (quick)
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
OUT=$OUT TEST_OPS=decode TEST_JOBS=8 TIMEOUT_TESTS=280 bash benchmarks/gpu_session.sh tests
grep -E "passed|failed|error" $OUT/tests.log | tail -10
timeout 120 python3 benchmarks/decode.py --quick --only "32/8" --out $OUT/bench 2>&1 | tail -7 | tee $OUT/decode.log
timeout 60 python3 benchmarks/decode.py --quick --only "32/4" --out $OUT/bench64 2>&1 | tail -4 | tee -a $OUT/decode.log
python3 -c "
import json
for r in json.load(open('$OUT/bench/decode.json'))['rows'] + json.load(open('$OUT/bench64/decode.json'))['rows']:
  print(r['B'],r['Hq'],r['Hkv'],r['D'],r['L'],r['paged'],{k: round(v,3) for k,v in r.items() if isinstance(v,float) and k in ('cuattn_alibi','cuattn_alibi_mma_two_blocks','cuattn_alibi_mma_stages_6','torch_cudnn','torch_flash','ratio_alibi_vs_best_torch')})" | tee -a $OUT/decode.log
