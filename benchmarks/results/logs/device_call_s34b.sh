# 34th session, call 2: does the cp.async producer's K-then-V order, or a shallower ring, close cuDNN's lead?
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv
export PYTHONUNBUFFERED=1 PYTHONPATH=.
timeout 120 python3 benchmarks/results/logs/s34_k_then_v.py 2>&1 | tee $OUT/k_then_v_bits.log
timeout 420 python3 benchmarks/decode_stream_probe.py --out $OUT \
  --shapes "16,32,8,128,33001;1,32,8,128,131072;8,32,8,128,8192" \
  --variants "no math/stages 2/stages 6/k then v/k then v, no math/k then v, stages 2/k then v, stages 6" 2>&1 | tail -8 | tee $OUT/probe.log
