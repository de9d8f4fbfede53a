# 40th session, fifth call: does the tensor-core kernel's item end (~1 us from the warps' merge to the
# rows' last store) wait on the output rows' address translation? Finish traces with and without
# -DCUATTN_DECODE_OUT_PREFETCH (thread 0 prefetches the item's output rows as it starts), then the
# stream probe's "out prefetch" variant beside the default on every row.
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader
timeout 200 python3 benchmarks/decode_probe.py --trace --only "finish" --out $OUT/trace > $OUT/trace.log 2>&1
echo "trace rc=$?"; grep -E "^B|span|warp_merge|partial_store|merge_check" $OUT/trace.log | cut -c1-160 | head -40
timeout 300 python3 benchmarks/decode_stream_probe.py --variants "out prefetch" --out $OUT/probe > $OUT/probe.log 2>&1
echo "probe rc=$?"; cut -c1-300 $OUT/probe.log | tail -10
