# 40th session, first call: tickets (decode.cu, Work: the producers take their row group's ticket as
# they publish an item's last tile; the last ticket's producer waits for the others' partials, its
# consumers merge) against the count as before (-DCUATTN_DECODE_LATE_COUNT). First the new bit-identity
# test (tickets vs late count, three calls in a row, counters zero), then the stream probe's "late
# count" variant beside the default on every decode.py row (cuDNN beside).
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader
timeout 240 python3 -m pytest -m gpu -q -x -p no:cacheprovider tests/test_decode_gpu.py -k "tickets" > $OUT/tickets.log 2>&1
echo "tickets test rc=$?"; tail -15 $OUT/tickets.log
timeout 300 python3 benchmarks/decode_stream_probe.py --variants "late count" --out $OUT/probe > $OUT/probe.log 2>&1
echo "probe rc=$?"
cut -c1-400 $OUT/probe.log | tail -60
