# 39th session, second call: L2 prefetch ahead (-DCUATTN_DECODE_L2_AHEAD=n, probe option, the same
# bits) against the default and the stream alone, every contiguous decode.py row, cuDNN beside;
# then the traces of D 64, B 16 32/8 and B 8 L 8192 with it (and the no-math runs' first tiles).
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv
timeout 330 python3 benchmarks/decode_stream_probe.py --variants "no math/l2 ahead 2/l2 ahead 4/l2 ahead 8" \
  --out $OUT/probe > $OUT/probe.log 2>&1; echo "probe rc=$?"
cat $OUT/probe.log | cut -c1-400
timeout 150 python3 benchmarks/decode_probe.py --trace --only "D64|B16 32/8 L33001 mma|B8 32/8" --out $OUT/trace \
  > $OUT/trace.log 2>&1; echo "trace rc=$?"
grep -v "^ *slowest" $OUT/trace.log | grep -v "percentiles" | cut -c1-300
