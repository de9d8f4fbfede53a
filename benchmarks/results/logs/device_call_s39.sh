# Planned in the 38th session for the next one: the full decode.py (7 rounds) in the rounds' new
# order (common.round_order) on whatever card comes, one line a row by report.py --columns; on an
# H100 it replaces results/decode.json (the README's table: python benchmarks/report.py --readme).
# Look at the D 64 row: cuattn_alibi against cuattn_alibi_wrapped (the same call through the
# variants' settings wrapper), cuattn_alibi_equal_splits and _mma (the same plan; 0.3-0.9% over
# cuattn_alibi in every round of the H100 runs, whatever its place in the round).
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv
timeout 280 python3 benchmarks/decode.py --out $OUT/bench > $OUT/decode.log 2>&1; echo "decode.py rc=$?"
tail -12 $OUT/decode.log
python3 benchmarks/report.py --columns $OUT/bench/decode.json cuattn_alibi torch ratio 2>&1 | tee $OUT/columns.log
