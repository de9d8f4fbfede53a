# 44th session, call 7: TMA_WHOLE_ROWS back to opt-in, ONE_ROW_MMA_FEW narrowed (<= half the SMs' row
# groups). 1. the tests of the rules touched; 2. the placement check of the whole-row plan (does it
# depend on where K and V lie?); 3. decode.py on B 16 32/32 L 4096 (3 rounds) with the
# cuattn_alibi_whole_rows column.
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv
timeout 170 python3 -m pytest -m gpu -q -p no:cacheprovider tests/test_decode_gpu.py \
  -k "one_row_mma_few or cache_layouts or whole_rows or even_pieces_default" 2>&1 | tail -4 | tee $OUT/gpu_rules.log
timeout 150 python3 benchmarks/results/logs/whole_rows_placement_s44.py 2>&1 | tail -12 | tee $OUT/placement.log
timeout 120 python3 benchmarks/decode.py --only "B16 32/32 D128 L4096" --rounds 3 --out $OUT/bench > $OUT/decode_b16.log 2>&1
python3 benchmarks/report.py --columns $OUT/bench/decode.json cuattn_alibi torch_cudnn 2>&1 | tail -3 | cut -c1-400
mv $OUT/bench/decode.json $OUT/decode_b16.json; rm -rf $OUT/bench
