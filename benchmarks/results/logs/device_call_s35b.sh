# 35th session, call 2: D 64 one block per SM with 8 stages (now the default): the decode GPU suite,
# memcheck of the D 64 tensor-core tests, the stream probe of D 64 shapes, decode.py's GQA rows
export PYTHONUNBUFFERED=1 PYTHONPATH=.
OUT=$OUT TEST_OPS=decode TEST_JOBS=8 TIMEOUT_TESTS=300 bash benchmarks/gpu_session.sh tests
grep -E "passed|failed|error" $OUT/tests.log | tail -10
timeout 60 python3 benchmarks/decode_stream_probe.py --out $OUT/probe --shapes "4,32,4,64,32768;4,32,4,64,131072;16,32,4,64,8192" --variants "default/two blocks/stages 4/stages 12" 2>&1 | tail -12 | tee $OUT/probe.log
timeout 100 compute-sanitizer --tool memcheck python3 -m pytest -m gpu -q -x tests/test_decode_gpu.py -k "mma and d64" 2>&1 | tail -4 | tee $OUT/memcheck.log
timeout 100 python3 benchmarks/decode.py --quick --only "D64" --out $OUT/bench 2>&1 | tail -4 | tee $OUT/decode.log
python3 -c "
import json; r=json.load(open('$OUT/bench/decode.json'))['rows'][0]
print({k: round(v,3) for k,v in r.items() if isinstance(v,float) and (k.startswith('cuattn_alibi') or k.startswith('torch'))})" | tee -a $OUT/decode.log
