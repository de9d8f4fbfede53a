# 40th session, sixth call: the committed bit-identity test of the tickets probe option
# (-DCUATTN_DECODE_TICKETS against the default count; it ran as "tickets default vs
# -DCUATTN_DECODE_LATE_COUNT" in the second call, the same ticket code), then memcheck and racecheck
# of the decode sanitizer sweep's tickets passes (tests/sanitize_decode.py --tickets).
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader
timeout 240 python3 -m pytest -m gpu -q -p no:cacheprovider tests/test_decode_gpu.py -k "tickets" > $OUT/tickets.log 2>&1
echo "tickets test rc=$?"; tail -3 $OUT/tickets.log
for tool in memcheck racecheck; do
  timeout 150 compute-sanitizer --tool $tool python3 tests/sanitize_decode.py --tickets > $OUT/sanitize_tickets_$tool.log 2>&1
  echo "$tool rc=$?"; tail -3 $OUT/sanitize_tickets_$tool.log
done
