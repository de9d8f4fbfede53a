# Planned in the 42nd session for the next one's first call (any card; run it again on the other
# kind when one comes): the opt-in ONE_ROW_MMA_FEW (B 1 32/32 on the tensor-core kernel) and the
# device's setuptools (pyproject's license table is deprecated: the SPDX string needs setuptools >= 77,
# and `pip install --no-build-isolation -e .` on the device uses the device's own).
# 1. test_gpu_one_row_mma_few (never GPU-run) and the whole-rows rule's test;
# 2. decode.py on the MHA rows, 7 rounds: the "mma" column (what ONE_ROW_MMA_FEW picks on B 1 32/32)
#    against the default (bulk-copy kernel) and cuDNN. If "mma" leads on both an H100 and an H200,
#    make ONE_ROW_MMA_FEW the default (then the full decode.py for the README table).
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv
python3 -c "import setuptools, pip; print('setuptools', setuptools.__version__, 'pip', pip.__version__)"
timeout 150 python3 -m pytest -m gpu -q -p no:cacheprovider tests/test_decode_gpu.py \
  -k "one_row_mma_few or one_row_mma_whole" 2>&1 | tail -4 | tee $OUT/gpu_few.log
timeout 200 python3 benchmarks/decode.py --only "32/32 D128" --rounds 7 --out $OUT/b > $OUT/decode_mha.log 2>&1; echo "decode.py rc=$?"
grep -E "^ +(1|16|64) " $OUT/decode_mha.log | cut -c1-330 | head -3
mv $OUT/b/decode.json $OUT/decode_mha.json; rm -rf $OUT/b
