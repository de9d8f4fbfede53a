# 40th session, seventh call: what the tensor-core kernel's serial warp merge at an item's end costs a
# call: the stream probe's "warps at once" (-DCUATTN_DECODE_SKIP_WARP_MERGE: every warp adds its
# columns at once, one step, wrong sums; at D 128 that build spills 8 bytes, at D 64 none) beside
# the default on every row.
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader
timeout 300 python3 benchmarks/decode_stream_probe.py --variants "warps at once" --out $OUT/probe > $OUT/probe.log 2>&1
echo "probe rc=$?"; cut -c1-300 $OUT/probe.log | tail -10
