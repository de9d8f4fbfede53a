# 39th session, third call: can any way of issuing the stream beat cuDNN's whole kernel on decode's
# own items? Rings with no math (one producer lane's bulk copies; all 128 threads' cp.async, as
# cuDNN's sm80 kernel) on the items of B 1 32/32, B 16 32/8, B 1 32/8 and B 16 32/32, beside
# cuattn.decode, its stream alone and torch's cuDNN on the same arrays.
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv
timeout 300 python3 benchmarks/stream_mechanisms.py --items-only --out $OUT/sm > $OUT/sm.log 2>&1; echo "rc=$?"
cat $OUT/sm.log
