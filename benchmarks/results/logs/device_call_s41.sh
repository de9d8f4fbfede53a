# 41st session, first call (planned in the 40th): the full decode.py (7 rounds) on the new default
# (MMA_SLABS, the one-block launch bound) -> the README table when on an H100; the decode sanitizer
# sweep (memcheck, racecheck) with slabs; the SASS of the decode kernels of B 1 32/8 and B 16 32/8
# (the tensor-core kernel's item end: its store phase, ~1 us, unexplained).
export PYTHONUNBUFFERED=1 PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv
timeout 280 python3 benchmarks/decode.py --out $OUT/bench > $OUT/decode.log 2>&1; echo "decode.py rc=$?"
tail -12 $OUT/decode.log
python3 benchmarks/report.py --columns $OUT/bench/decode.json cuattn_alibi torch ratio 2>&1 | tee $OUT/columns.log
mv $OUT/bench/decode.json $OUT/decode.json; mv $OUT/bench/decode.png $OUT/decode.png 2>/dev/null; rm -rf $OUT/bench
SANITIZE_OPS=decode TIMEOUT_SANITIZE=200 bash benchmarks/gpu_session.sh sanitize; cat $OUT/sanitize.log
timeout 60 bash benchmarks/results/logs/sass_dump_s41.sh
