# 39th session, fifth call: which fixed costs make our stream alone trail a bare ring by ~5-7 us a
# call (third call)? The stream probe's existing variants, one part left out at a time, on the two
# B 1 rows (one split-row MHA row of the bulk-copy kernel, one GQA row of the tensor-core kernel) and
# the two short rows: no math, the rows' ends (bulk-copy kernel), the count's wait, the merge, PDL.
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 240 python3 benchmarks/decode_stream_probe.py \
  --shapes "1,32,32,128,33001;1,32,8,128,131072;8,32,8,128,8192;4,32,4,64,32768" \
  --variants "no math/no row ends/no math, no row ends/no count/count no wait/no merge/no pdl" \
  --out $OUT/probe > $OUT/probe.log 2>&1; echo "probe rc=$?"
cut -c1-600 $OUT/probe.log
