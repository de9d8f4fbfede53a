# 34th session, call 4: decode.py (the project's benchmark) on the GQA D 128 rows with the new column
# cuattn_alibi_mma_stages_6 beside the default and torch's backends
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv
export PYTHONUNBUFFERED=1 PYTHONPATH=.
timeout 330 python3 benchmarks/decode.py --quick --only "32/8 D128" --out $OUT 2>&1 | tail -30 | tee $OUT/decode.log
