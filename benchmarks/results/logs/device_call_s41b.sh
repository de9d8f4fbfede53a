# 41st session, call 3: the tensor-core kernel's rows' store phase (~1 us an item end):
# 1. test_gpu_lean_store_same_bits (-DCUATTN_DECODE_LEAN_STORE: no barrier for 1 / total, four
#    columns a thread; the same bits as the default);
# 2. traces: the finish stamp moved to k = 1 (warp 0's 1 / total and lse written) and 2 (past the
#    barrier after them), and the lean store's phase (decode_probe.py --trace --only "mma finish");
# 3. stream probe, default vs "lean store", every row;
# 4. memcheck and racecheck of tests/sanitize_decode.py --lean-store (the option's passes alone).
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv
timeout 120 python3 -m pytest -m gpu -q -x -p no:cacheprovider tests/test_decode_gpu.py -k "lean_store and mma" 2>&1 | tail -4 | tee $OUT/gpu_lean.log
timeout 150 python3 benchmarks/decode_probe.py --trace --only "mma finish" --out $OUT/trace > $OUT/trace.log 2>&1; echo "trace rc=$?"
grep -E "^B|warp_merge|partial_store|span" $OUT/trace.log | cut -c1-160
mv $OUT/trace/decode_trace.json $OUT/decode_trace.json; rm -rf $OUT/trace
timeout 120 python3 benchmarks/decode_stream_probe.py --variants "lean store" --out $OUT/probe > $OUT/probe.log 2>&1; echo "probe rc=$?"
cat $OUT/probe.log | cut -c1-220; mv $OUT/probe/decode_stream_probe.json $OUT/decode_stream_probe.json; rm -rf $OUT/probe
for tool in memcheck racecheck; do
  echo "-- $tool decode --lean-store ($(date -u +%T))" >> $OUT/sanitize_lean.log
  timeout 100 compute-sanitizer --tool $tool python3 tests/sanitize_decode.py --lean-store 2>&1 \
    | grep -E "ERROR SUMMARY|RACECHECK SUMMARY|failures|Error|Race" | tail -8 >> $OUT/sanitize_lean.log
done; cat $OUT/sanitize_lean.log
