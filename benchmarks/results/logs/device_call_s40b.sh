# 40th session, second call: tickets taken by the consumers as their key loop ends (answered while
# they merge their warps and write the partial; decode.cu, Work) against the count after the partial
# as before (-DCUATTN_DECODE_LATE_COUNT). The bit-identity test (tickets vs late count, three calls
# in a row, counters zero), the stream probe's "late count" beside the default on every decode.py
# row (cuDNN beside), then per-item timelines of the split rows.
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader
timeout 240 python3 -m pytest -m gpu -q -x -p no:cacheprovider tests/test_decode_gpu.py -k "tickets" > $OUT/tickets.log 2>&1
echo "tickets test rc=$?"; tail -5 $OUT/tickets.log
timeout 300 python3 benchmarks/decode_stream_probe.py --variants "late count" --out $OUT/probe > $OUT/probe.log 2>&1
echo "probe rc=$?"
cut -c1-400 $OUT/probe.log | tail -12
timeout 200 python3 benchmarks/decode_probe.py --trace --only "D64 mma|L8192 mma|L131072 mma late|L131072 mma|L33001 tma" --out $OUT/trace > $OUT/trace.log 2>&1
echo "trace rc=$?"; grep -E "^B|span|merge_check|write_partial|block_end" $OUT/trace.log | cut -c1-200 | head -40
