# 44th session, a shorter call 7 (the budget after refused starts): the rules' tests on the code as
# committed (whole rows opt-in, the few-rows rule narrowed) and the placement check of the
# whole-row plan. device_call_s44d.sh adds decode.py on B 16 32/32 L 4096.
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv
timeout 140 python3 -m pytest -m gpu -q -p no:cacheprovider tests/test_decode_gpu.py \
  -k "one_row_mma_few or whole_rows or even_pieces_default" 2>&1 | tail -4 | tee $OUT/gpu_rules.log
timeout 110 python3 benchmarks/results/logs/whole_rows_placement_s44.py 2>&1 | tail -12 | tee $OUT/placement.log
