# 38th session, last call (387 s of device time left): the MHA rows with the new default
# (ONE_ROW_MMA_WHOLE True) on whatever card comes (an H200 wanted: the rule has H100 numbers only)
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv
timeout 150 python3 benchmarks/decode.py --quick --only "32/32" --out $OUT/mha > $OUT/mha.log 2>&1; echo "rc=$?"
python3 benchmarks/report.py --columns $OUT/mha/decode.json cuattn_alibi torch ratio 2>&1 | tee $OUT/columns.log
