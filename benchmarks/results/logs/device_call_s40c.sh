# 40th session, fourth call: where the tensor-core kernel's item end spends its 1.5-1.9 us from the
# last warp's key loop to the partial's last store (decode_probe.py --trace cases "finish":
# -DCUATTN_DECODE_TRACE_FINISH stamps the warps' serial merge into shared memory done).
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader
timeout 200 python3 benchmarks/decode_probe.py --trace --only "finish" --out $OUT/trace > $OUT/trace.log 2>&1
echo "trace rc=$?"; grep -E "^B|span|warps_done|warp_merge|partial_store|write_partial|merge_check|block_end" $OUT/trace.log | cut -c1-200 | head -40
