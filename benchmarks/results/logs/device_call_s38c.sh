# 38th session, last call (~280 s of device time left), quick decode.py rows by card:
# on an H200 the MHA rows with the new default (ONE_ROW_MMA_WHOLE True; H100 numbers only so far:
# cuattn_alibi against cuattn_alibi_tma, the bulk-copy kernel, on B 64 32/32); on an H100 the D 64
# row with the rounds' new order (common.round_order: is the default's ~0.7% deficit to the
# identical cuattn_alibi_equal_splits column of the last five runs the old order's?)
export PYTHONUNBUFFERED=1 PYTHONPATH=.
name=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); echo "$name"
case "$name" in *H200*) only="32/32" ;; *) only="D64" ;; esac
timeout 150 python3 benchmarks/decode.py --quick --only "$only" --out $OUT/quick > $OUT/quick.log 2>&1; echo "rc=$?"
python3 benchmarks/report.py --columns $OUT/quick/decode.json cuattn_alibi torch ratio 2>&1 | tee $OUT/columns.log
