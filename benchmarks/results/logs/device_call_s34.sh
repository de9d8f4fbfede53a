nvidia-smi --query-gpu=name,clocks.max.sm --format=csv
export PYTHONUNBUFFERED=1 PYTHONPATH=.
timeout 200 python3 -m pytest -m gpu -q tests/test_graph.py 2>&1 | tail -15 | tee $OUT/graph.log
timeout 100 python3 -m pytest -m gpu -q tests/test_decode_gpu.py -k "value_checks" 2>&1 | tail -4 | tee -a $OUT/graph.log
timeout 120 compute-sanitizer --tool memcheck python3 -m pytest -m gpu -q tests/test_graph.py -k "checked or failed_check" 2>&1 | tail -6 | tee -a $OUT/graph.log
OUT=$OUT bash benchmarks/gpu_session.sh ncu-sass
ls -la $OUT; tail -5 $OUT/*.log
