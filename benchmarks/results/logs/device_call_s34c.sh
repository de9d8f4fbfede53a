# 34th session, call 3: the tensor-core kernel's ring depth again (call 2: stages 2 and 6 both +0.2-1.1% over the default 3)
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv
export PYTHONUNBUFFERED=1 PYTHONPATH=.
timeout 400 python3 benchmarks/decode_stream_probe.py --out $OUT \
  --shapes "1,32,8,128,131072;8,32,8,128,8192;16,32,8,128,33001;4,32,4,64,32768" \
  --variants "stages 2/stages 4/stages 6/no math/many items" 2>&1 | tail -8 | tee $OUT/probe.log
