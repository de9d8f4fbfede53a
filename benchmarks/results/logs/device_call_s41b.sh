# 41st session, call 3: where the tensor-core kernel's rows' store phase (~1 us) goes: the finish
# stamp moved to k = 1 (warp 0's 1 / total and lse written) and 2 (past the barrier after them)
# on B 1 32/8, D 64 and B 16 32/8 (decode_probe.py --trace, -DCUATTN_DECODE_TRACE_FINISH_AT=k);
# then the decode memcheck sweep that call 1 cut off at 200 s.
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv
timeout 150 python3 benchmarks/decode_probe.py --trace --only "mma finish" --out $OUT/trace > $OUT/trace.log 2>&1; echo "trace rc=$?"
grep -E "^B|warp_merge|partial_store|span" $OUT/trace.log | cut -c1-200
mv $OUT/trace/decode_trace.json $OUT/decode_trace.json; rm -rf $OUT/trace
echo "-- memcheck decode ($(date -u +%T))" > $OUT/memcheck.log
timeout 400 compute-sanitizer --tool memcheck python3 tests/sanitize_decode.py 2>&1 \
  | grep -E "ERROR SUMMARY|failures|Error" | tail -20 >> $OUT/memcheck.log
echo "-- done ($(date -u +%T))" >> $OUT/memcheck.log; cat $OUT/memcheck.log
