# Planned in the 38th session for the next one: the full decode.py (7 rounds) in the rounds' new
# order (common.round_order) on whatever card comes, one line a row by report.py --columns; on an
# H100 it replaces results/decode.json (the README's table: python benchmarks/report.py --readme).
# Look at the D 64 row: cuattn_alibi against cuattn_alibi_wrapped (the same call through the
# variants' settings wrapper), cuattn_alibi_equal_splits and _mma (the same plan; 0.3-0.9% over
# cuattn_alibi in every round of the H100 runs, whatever its place in the round).
# 39th session: then per-item timelines (decode_probe.py --trace) of D 64's short row, B 16 32/8
# and B 8 L 8192 with and without the consumers' math: where the math's 1-5% of a call goes.
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv
timeout 280 python3 benchmarks/decode.py --out $OUT/bench > $OUT/decode.log 2>&1; echo "decode.py rc=$?"
tail -12 $OUT/decode.log
python3 benchmarks/report.py --columns $OUT/bench/decode.json cuattn_alibi torch ratio 2>&1 | tee $OUT/columns.log
timeout 150 python3 benchmarks/decode_probe.py --trace --only "D64|B16 32/8 L33001 mma|B8 32/8" --out $OUT/trace \
  > $OUT/trace.log 2>&1; echo "trace rc=$?"
grep -v "^ *slowest" $OUT/trace.log | cut -c1-400
