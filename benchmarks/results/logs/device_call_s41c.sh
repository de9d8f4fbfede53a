# Planned in the 41st session (not run: no device time left) for the next: the opt-in
# -DCUATTN_DECODE_LEAN_STORE in its final form (no barrier for 1 / total, four columns a thread,
# one loop for whole and padded head dims) on an H100, before it becomes the default:
# 1. test_gpu_lean_store_same_bits (the option against the default, the same bits)
#    and the tensor-core kernel's slab bit tests; compute-sanitizer racecheck and memcheck of
#    rc_lean_s41.py (six calls on the new store phase: split, D 64, straight outputs, D 96, Sq 2, paged);
# 2. stream probe, default vs "lean store", every row;
# Then, if it leads: make it the default and run decode.py (the README table).
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv
timeout 150 python3 -m pytest -m gpu -q -p no:cacheprovider tests/test_decode_gpu.py \
  -k "mma and (lean_store or slabs_same_bits)" 2>&1 | tail -4 | tee $OUT/gpu_lean.log
for tool in racecheck memcheck; do
  timeout 50 compute-sanitizer --tool $tool python3 benchmarks/results/logs/rc_lean_s41.py 2>&1 \
    | grep -E "decode_split|SUMMARY|Error|Traceback" | tail -9 | tee -a $OUT/sanitize_lean.log
done
timeout 120 python3 benchmarks/decode_stream_probe.py --variants "lean store" --out $OUT/probe > $OUT/probe.log 2>&1; echo "probe rc=$?"
cut -c1-220 $OUT/probe.log; mv $OUT/probe/decode_stream_probe.json $OUT/decode_stream_probe.json; rm -rf $OUT/probe
