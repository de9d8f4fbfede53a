# Planned in the 44th session (no device call ran: the loans were paused) for the next one's first
# call, any card; then device_call_s45b.sh on the same warm machine (the decode GPU suite).
# 1. the fixed test_gpu_cache_layouts and the one-row rules' tests (device_call_s44.sh's part 1:
#    both fixed in the 43rd session, not GPU-run in that form);
# 2. benchmarks/decode_one_row_scope.py: tma vs mma vs auto on 12 dense MHA one-row shapes in and
#    next to ONE_ROW_MMA_FEW's scope (5 interleaved rounds). Where mma trails tma inside the scope,
#    narrow mma_splits_few_rows;
# 3. the stream probe's "whole rows" variants (44th session: bulk-copy kernel, one split per row
#    group, no even pieces, 3 / 2 / 1 blocks per SM) on B 16 32/32 L 4096 (0.990x, a target-2 row)
#    and two neighbours, beside cuDNN; "no math" as the stream's bound.
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv
timeout 170 python3 -m pytest -m gpu -q -p no:cacheprovider tests/test_decode_gpu.py \
  -k "cache_layouts or one_row_mma_few or one_row_mma_whole" 2>&1 | tail -4 | tee $OUT/gpu_rules.log
timeout 230 python3 benchmarks/decode_one_row_scope.py --out $OUT 2>&1 | tee $OUT/scope.log | tail -14
timeout 170 python3 benchmarks/decode_stream_probe.py --out $OUT \
  --shapes "16,32,32,128,4096;8,32,32,128,8192;32,32,32,128,4096" \
  --variants "whole rows/whole rows, stages 6/whole rows, stages 8/no math" 2>&1 | tee $OUT/probe_whole_rows.log
