# Planned in the 44th session for the next one (either card, then the other kind): the opt-in
# whole-rows rule (cuattn.decode.TMA_WHOLE_ROWS: bulk-copy kernel, one row per block, 1.9 row groups
# per SM up to the resident blocks) against the default's even pieces. H100 (44th): +2-5% at 256 row
# groups; the 12th session's pieces rule came from an H200, where whole rows were never timed.
# 1. its GPU test and the rules' tests; 2. the stream probe's "whole rows rule" on shapes of 256 row
# groups (and 192: below the rule, for the next bound) beside cuDNN; 3. the placement check.
# If whole rows lead on both cards, make TMA_WHOLE_ROWS the default and run the decode GPU suite.
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv
timeout 140 python3 -m pytest -m gpu -q -p no:cacheprovider tests/test_decode_gpu.py \
  -k "whole_rows or one_row_mma_few or even_pieces_default" 2>&1 | tail -4 | tee $OUT/gpu_rules.log
timeout 200 python3 benchmarks/decode_stream_probe.py --out $OUT \
  --shapes "8,32,32,128,8192;16,16,16,256,8192;32,8,8,64,32768;8,32,32,128,33001;6,32,32,128,16384" \
  --variants "whole rows rule/whole rows" 2>&1 | tee $OUT/probe_whole_rows.log
timeout 150 python3 benchmarks/results/logs/whole_rows_placement_s44.py 2>&1 | tail -12 | tee $OUT/placement.log
