#!/usr/bin/env bash
# Verify and measure everything on a GPU machine in one go (the device time is short: one call).
#
#   OUT=/tmp/out bash benchmarks/gpu_session.sh                 # every stage
#   OUT=/tmp/out bash benchmarks/gpu_session.sh tests bench-decode   # some stages, in this order
#
# Stages: tests (pytest -m gpu, one op at a time, the ten slowest tests listed; a part cut off by its time
# limit names the test it was in; $OUT/watchdog_<op>*, bundled into $OUT/watchdog.tar.gz at the stage's end:
# each test's start, and the stacks of one running over TEST_WATCHDOG seconds (120), every so often:
# tests/conftest.py; ops attention, decode, gla, graph (tests/test_graph.py: CUDA graph capture), precision; TEST_OPS="decode" for
# some ops; TEST_SHARD=i/n runs part i of n of each op's GPU tests, in collection order ("1,3,4/4": those parts);
# TEST_JOBS=n: that many parts (every n-th test) side by side on the one GPU, each its own pytest
# process (the suite is bound by NVRTC compiles and host work: with TEST_JOBS=8 on an H100, decode's 486
# persistent-kernel tests ran in 203 s, attention's 232 and gla's 506 in ~40 s each, 29th-30th sessions;
# TEST_IDS=REGEX: only the collected test ids matching it (grep -E), e.g. TEST_IDS='\[mma' for one kernel's:
# on the device, PYTEST_ADDOPTS='-k "mma and not regs and not tma"' kept only the 9 tests parametrized by
# the kernel alone (36th session): pytest 8 matches -k against a test function's attributes too, and
# "pytestmark", which every decorated test has, holds "tma"; pytest 9 does not), sanitize (compute-sanitizer memcheck and racecheck on the
# tests/sanitize_*.py sweeps; SANITIZE_OPS="decode" for some), bench-decode (DECODE_ARGS="--layers 4": its options), bench-attention,
# bench-attention-short (benchmarks/attention_short.py: short calls with and without launch plans vs torch),
# bench-gla (flash-linear-attention from .whl/fla_core-*.whl when present), launches (benchmarks/decode_launches.py), probe-gla
# (benchmarks/gla_step_probe.py: GPU-only T=1 step time, recurrent tiles), probe-decode
# (benchmarks/decode_probe.py: decode geometry, partition and value-check timings, then --trace:
# per-item timelines of the persistent kernels), timeline-decode (benchmarks/decode_timeline.py:
# CUPTI kernel records of back-to-back calls vs torch cuDNN and flash, and the read ceiling), host
# (benchmarks/host_profile.py: host vs GPU-only time per call of short calls), mma-cp-async (the
# tensor-core decode kernel's cp.async producer: its GPU tests, memcheck and racecheck of the decode
# sweep, benchmarks/decode_stream_probe.py; then run bench-decode), decode-opt-ins (decode's opt-in
# levers EVEN_SPLIT (True: the tensor-core kernel too), PAGE_PREFETCH, STATIC_FIRST: their GPU tests, memcheck and racecheck of the
# decode sweep, per-item timelines of the default and "even" cases; bench-decode times them), pack-lo (MMA_PACK_LO,
# the default since the 16th session: its GPU tests, memcheck and racecheck of the decode sweep (which has
# no-pack-lo passes), then the stream probe of the GQA rows with "no pack lo", "p hi only" and "no math"), pieces-sweep
# (benchmarks/decode_pieces_sweep.py: pieces per SM of the bulk-copy kernel on MHA shapes), stream (benchmarks/
# stream_mechanisms.py: copy mechanisms alone and on decode's items), ncu-mma (Nsight Compute's stall
# reasons and issue slots of the tensor-core kernel on B 1 32/8, with and without its math, and B 8 L 8192:
# benchmarks/decode_ncu_case.py), lean-mask (the opt-in -DCUATTN_DECODE_MMA_LEAN_MASK: its GPU tests, memcheck
# and racecheck of the decode sweep (which has a lean-mask pass), the stream probe of the GQA and D 64 rows
# with and without it), ncu-stream (Nsight Compute's launch, occupancy and memory sections of torch's
# cuDNN decode kernel beside ours without the math on B 1 32/8, B 8 L 8192 and B 1 32/32), ncu-sass (every SASS
# instruction of cuDNN's decode kernel and of ours on B 16 32/8 with its executed count, and ncu's full set), l2-prefetch
# (the stream probe of the tensor-core kernel's cp.async copies with L2 prefetch-size hints), fuzz
# (tests/fuzz.py on the GPU: random shapes, layouts, dtypes and decode settings against the float64
# reference, FUZZ_SECONDS per op, FUZZ_OPS="decode" for some), pdl-steps (tests/pdl_steps.py: the programmatic-launch test's steps with
# PDL_TRIGGER, each waited for with a deadline, PDL_KERNELS="mma,tma"), pace-attention (benchmarks/
# attention_pace_probe.py: attention and torch flash back to back with host busy-waits between calls), power (benchmarks/decode_power.py: SM clock, power and throttle
# reasons sampled while each implementation runs back to back: does the consumers' math cost clock?), layouts
# (benchmarks/decode_layouts.py: dense, FlashAttention-layout and
# paged caches of 16 to 256 keys a page against torch). Each stage runs under
# its own timeout (seconds, per op for tests and sanitize: TIMEOUT_<STAGE> overrides, e.g.
# TIMEOUT_TESTS=600) and writes
# $OUT/<stage>.log; benchmark JSON and plots go to $OUT. NCU_OPTIONS adds options to the ncu stages'
# command (e.g. "--clock-control none": ncu fixes the clocks at base by default). Run from the repository root.
set -uo pipefail
OUT=${OUT:?set OUT to a writable folder}
mkdir -p "$OUT"
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(tests sanitize bench-decode bench-attention bench-gla)

limit() {  # limit STAGE DEFAULT
    local var="TIMEOUT_$(echo "$1" | tr 'a-z-' 'A-Z_')"
    echo "${!var:-$2}"
}

collect_ids() {  # collect_ids FILE TARGETS...: the GPU test ids of TARGETS, one a line, in collection order
    local file=$1 rc
    shift
    python3 -m pytest -m gpu -q --collect-only -p no:cacheprovider "$@" >"$file.raw" 2>&1
    rc=$?
    grep "^tests/.*::" "$file.raw" >"$file"
    if [ "$rc" -ne 0 ]; then  # (a collection error must not pass as "no tests": say it in the log)
        { echo "   COLLECTION FAILED (pytest exit $rc):"; grep -v "^tests/.*::" "$file.raw" | tail -8 | cut -c1-400; } | tee -a "$log" >&2
    fi
    rm -f "$file.raw"
}

last_test() {  # last_test PATH: ", in <the last test started>" from tests/conftest.py's watchdog files PATH.<pid>
    local last
    last=$(cat "$1".* 2>/dev/null | grep -E '^[0-9]{2}:[0-9]{2}:[0-9]{2} tests/' | tail -1)
    [ -n "$last" ] && echo ", in the test started at $last"
}

part_of() {  # part_of FILE I N: the lines of part I of N of FILE, cut into N consecutive parts
    local per=$(( ($(wc -l <"$1") + $3 - 1) / $3 ))
    sed -n "$(( ($2 - 1) * per + 1 )),$(( $2 * per ))p" "$1"
}

decode_checks() {  # decode_checks STAGE PYTEST_K LOG: those decode GPU tests, then memcheck and racecheck of the sweep
    timeout "$(limit "$1" 300)" python3 -m pytest -m gpu -q tests/test_decode_gpu.py -k "$2" 2>&1 | tail -15 >"$3"
    for tool in memcheck racecheck; do
        echo "-- $tool decode" >>"$3"
        timeout "$(limit "$1" 300)" compute-sanitizer --tool "$tool" python3 tests/sanitize_decode.py 2>&1 \
            | grep -E "ERROR SUMMARY|RACECHECK SUMMARY|failures|Error|Race" | tail -20 >>"$3"  # the summary is last
    done
}

for stage in "${stages[@]}"; do
    log="$OUT/$stage.log"
    echo "== $stage ($(date -u +%H:%M:%S))"
    case "$stage" in
        tests)
            for op in ${TEST_OPS:-attention decode gla graph precision}; do
                echo "-- $op ${TEST_SHARD:-}" >>"$log"
                targets=("tests/test_${op}"*.py)
                if [ -n "${TEST_SHARD:-}" ]; then  # part i of n of the op's GPU tests (in collection order)
                    n=${TEST_SHARD#*/} shard_parts=${TEST_SHARD%/*}
                    collect_ids "$OUT/ids_$op.txt" "${targets[@]}"
                    targets=()
                    for i in ${shard_parts//,/ }; do  # "1,3,4/4": parts 1, 3 and 4 of 4
                        readarray -t -O ${#targets[@]} targets < <(part_of "$OUT/ids_$op.txt" "$i" "$n")
                    done
                    echo "   parts $shard_parts of $n: ${#targets[@]} of $(wc -l <"$OUT/ids_$op.txt") tests" >>"$log"
                    [ ${#targets[@]} -eq 0 ] && continue
                fi
                if [ -n "${TEST_IDS:-}" ]; then  # the test ids (of the shard, if any) matching this regex
                    if [ -z "${TEST_SHARD:-}" ]; then
                        collect_ids "$OUT/ids_$op.txt" "${targets[@]}"
                        readarray -t targets <"$OUT/ids_$op.txt"
                    fi
                    readarray -t targets < <(printf '%s\n' "${targets[@]}" | grep -E -- "$TEST_IDS")
                    echo "   TEST_IDS $TEST_IDS: ${#targets[@]} tests" >>"$log"
                    rm -f "$OUT/ids_$op.txt"  # (a device call returns at most 8 files)
                    [ ${#targets[@]} -eq 0 ] && continue
                fi
                jobs=${TEST_JOBS:-1} watch=${TEST_WATCHDOG:-120}
                if [ "$jobs" -gt 1 ] && [ ${#targets[@]} -gt 0 ]; then  # parts side by side on the one GPU
                    if [ -n "${TEST_SHARD:-}${TEST_IDS:-}" ]; then  # targets are test ids already
                        printf '%s\n' "${targets[@]}" >"$OUT/jobs_$op.txt"
                    else
                        collect_ids "$OUT/jobs_$op.txt" "${targets[@]}"
                    fi
                    for j in $(seq 1 "$jobs"); do
                        # every jobs-th test from the j-th: the slow long-context tests, which come
                        # together in collection order, spread over the parts (the 27th session's
                        # consecutive parts ran 196-450 s)
                        readarray -t part < <(awk -v n="$jobs" -v j="$j" 'NR % n == j % n' "$OUT/jobs_$op.txt")
                        [ ${#part[@]} -eq 0 ] && continue
                        CUATTN_TEST_WATCHDOG="$watch:$OUT/watchdog_${op}_$j" timeout "$(limit tests 400)" \
                            python3 -m pytest -m gpu -q -p no:cacheprovider --durations=5 "${part[@]}" \
                            >"$OUT/job_${op}_$j.txt" 2>&1 \
                            || echo "   PART $j OF $jobs ENDED WITH EXIT $? (124: timed out)$(last_test "$OUT/watchdog_${op}_$j")" \
                            >>"$OUT/job_${op}_$j.txt" &
                    done
                    wait
                    for j in $(seq 1 "$jobs"); do
                        [ -f "$OUT/job_${op}_$j.txt" ] && { echo "   part $j of $jobs:"; tail -12 "$OUT/job_${op}_$j.txt"; rm "$OUT/job_${op}_$j.txt"; }
                    done >>"$log"
                    rm -f "$OUT/jobs_$op.txt"
                    continue
                fi
                { CUATTN_TEST_WATCHDOG="$watch:$OUT/watchdog_$op" timeout "$(limit tests 400)" \
                    python3 -m pytest -m gpu -q -p no:cacheprovider --durations=10 "${targets[@]}" 2>&1 \
                    || echo "   ENDED WITH EXIT $? (124: timed out)$(last_test "$OUT/watchdog_$op")"; } | tail -30 >>"$log"
            done
            # one archive for the watchdog files (one a test process): a device call returns at most
            # 8 files, and 20 watchdog files once crowded out a benchmark's results (31st session)
            if compgen -G "$OUT/watchdog_*" >/dev/null; then
                (cd "$OUT" && tar -czf watchdog.tar.gz watchdog_* && rm -f watchdog_*)
            fi ;;
        sanitize)
            for op in ${SANITIZE_OPS:-attention decode gla}; do
                for tool in memcheck racecheck; do
                    echo "-- $tool $op ($(date -u +%T))" >>"$log"
                    timeout "$(limit sanitize 300)" compute-sanitizer --tool "$tool" python3 "tests/sanitize_$op.py" 2>&1 \
                        | grep -E "ERROR SUMMARY|RACECHECK SUMMARY|failures|Error|Race" | tail -20 >>"$log"  # the summary is last
                done
            done ;;
        bench-decode) timeout "$(limit bench-decode 300)" python3 benchmarks/decode.py --out "$OUT" ${DECODE_ARGS:-} >"$log" 2>&1 ;;
        bench-attention) timeout "$(limit bench-attention 400)" python3 benchmarks/attention.py --out "$OUT" >"$log" 2>&1 ;;
        bench-attention-short) timeout "$(limit bench-attention-short 200)" python3 benchmarks/attention_short.py --out "$OUT" >"$log" 2>&1 ;;
        bench-gla)
            if ls .whl/fla_core-*.whl >/dev/null 2>&1; then
                python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/fla_site .whl/fla_core-*.whl >/dev/null 2>&1
                export PYTHONPATH=$PYTHONPATH:/tmp/fla_site
            fi
            timeout "$(limit bench-gla 400)" python3 benchmarks/gla.py --out "$OUT" >"$log" 2>&1 ;;
        launches) timeout "$(limit launches 200)" python3 benchmarks/decode_launches.py >"$log" 2>&1 ;;
        host) timeout "$(limit host 200)" python3 benchmarks/host_profile.py --out "$OUT" >"$log" 2>&1 ;;
        probe-decode)
            timeout "$(limit probe-decode 200)" python3 benchmarks/decode_probe.py --out "$OUT" >"$log" 2>&1
            timeout "$(limit probe-decode 200)" python3 benchmarks/decode_probe.py --trace --out "$OUT" >>"$log" 2>&1 ;;
        timeline-decode)
            timeout "$(limit timeline-decode 200)" python3 benchmarks/decode_timeline.py --out "$OUT" >"$log" 2>&1 ;;
        mma-cp-async)
            decode_checks "$stage" "mma_cop or mma_cp" "$log"
            timeout "$(limit mma-cp-async 300)" python3 benchmarks/decode_stream_probe.py --out "$OUT" >>"$log" 2>&1 ;;
        decode-opt-ins)
            decode_checks "$stage" "even or repeated_layout or prefetch or static_first" "$log"
            timeout "$(limit decode-opt-ins 200)" python3 benchmarks/decode_probe.py --trace --only "L" --out "$OUT" >>"$log" 2>&1 ;;
        pack-lo)
            decode_checks "$stage" "pack_lo" "$log"
            timeout "$(limit pack-lo 200)" python3 benchmarks/decode_stream_probe.py --only "/8 D128" \
                --variants "no pack lo/p hi only/no math" --out "$OUT" >>"$log" 2>&1 ;;
        lean-mask)  # the opt-in -DCUATTN_DECODE_MMA_LEAN_MASK (run in the 21st session): its tests, sanitizers, probe
            decode_checks "$stage" "lean_mask" "$log"
            timeout "$(limit lean-mask 250)" python3 benchmarks/decode_stream_probe.py --only "/8 D128" \
                --variants "lean mask/no math" --out "$OUT" >>"$log" 2>&1
            timeout "$(limit lean-mask 200)" python3 benchmarks/decode_stream_probe.py \
                --shapes "4,32,4,64,32768;4,32,4,64,131072" --variants "lean mask/no math" --out "$OUT/d64" >>"$log" 2>&1 ;;
        ncu-stream)  # how cuDNN streams the rows where our stream alone trails its whole kernel (21st session's plan)
            # NCU_STREAM_CASES (space-separated decode_ncu_case.py cases) replaces the list, e.g. the MHA
            # short rows: "torch_cudnn:64:32:32:128:2048 cuattn:64:32:32:128:2048:define=SKIP_MATH"
            for case in ${NCU_STREAM_CASES:-torch_cudnn:1:32:8:128:131072 cuattn:1:32:8:128:131072:define=SKIP_MATH \
                        torch_cudnn:8:32:8:128:8192 cuattn:8:32:8:128:8192:define=SKIP_MATH \
                        torch_cudnn:1:32:32:128:33001 cuattn:1:32:32:128:33001:define=SKIP_MATH}; do
                echo "-- $case" >>"$log"
                timeout "$(limit ncu-stream 90)" ncu ${NCU_OPTIONS:-} --profile-from-start off --section LaunchStats \
                    --section Occupancy --section SpeedOfLight --section MemoryWorkloadAnalysis \
                    python3 benchmarks/decode_ncu_case.py "$case" >>"$log" 2>&1
            done ;;
        ncu-sass)  # the instruction stream itself: every SASS instruction of torch's cuDNN decode kernel and
            # of ours, with its executed count (Nsight Compute's source page), and the full set of sections;
            # NCU_SASS_CASES as NCU_STREAM_CASES. Written gzipped: $OUT/ncu_sass_<n>.txt.gz, details in the log.
            n=0
            for case in ${NCU_SASS_CASES:-torch_cudnn:16:32:8:128:33001 cuattn:16:32:8:128:33001}; do
                n=$((n + 1))
                echo "-- $case (ncu_sass_$n.txt.gz)" >>"$log"
                rep=/tmp/ncu_sass_$n
                timeout "$(limit ncu-sass 150)" ncu ${NCU_OPTIONS:-} --profile-from-start off --set full \
                    --import-source no -f -o "$rep" python3 benchmarks/decode_ncu_case.py "$case" >>"$log" 2>&1
                ncu --import "$rep.ncu-rep" --page details >>"$log" 2>&1
                ncu --import "$rep.ncu-rep" --page source --print-source sass 2>&1 | gzip >"$OUT/ncu_sass_$n.txt.gz"
            done ;;
        l2-prefetch)  # the cp.async producer with PTX's L2 prefetch-size hint (22nd session's probe option)
            timeout "$(limit l2-prefetch 400)" python3 benchmarks/decode_stream_probe.py \
                --variants "l2 128/l2 256/no math/l2 256, no math" --out "$OUT" >"$log" 2>&1 ;;
        pdl-steps)  # test_gpu_programmatic_launch's steps, each with a deadline: a hang (where) or a slow test?
            timeout "$(limit pdl-steps 300)" python3 tests/pdl_steps.py --kernels "${PDL_KERNELS:-mma,tma}" >"$log" 2>&1 ;;
        fuzz)  # random cases of every op against the float64 reference (tests/fuzz.py), FUZZ_SECONDS per op
            timeout "$(limit fuzz 400)" python3 tests/fuzz.py --device cuda --seconds "${FUZZ_SECONDS:-90}" \
                ${FUZZ_OPS:+--ops "$FUZZ_OPS"} >"$log" 2>&1 ;;
        pace-attention)  # does the host's pace change attention's back-to-back GPU time? (30th session)
            timeout "$(limit pace-attention 300)" python3 benchmarks/attention_pace_probe.py --out "$OUT" >"$log" 2>&1 ;;
        power) timeout "$(limit power 200)" python3 benchmarks/decode_power.py --out "$OUT" >"$log" 2>&1 ;;
        layouts) timeout "$(limit layouts 300)" python3 benchmarks/decode_layouts.py --out "$OUT" >"$log" 2>&1 ;;
        pieces-sweep) timeout "$(limit pieces-sweep 300)" python3 benchmarks/decode_pieces_sweep.py --out "$OUT" >"$log" 2>&1 ;;
        stream) timeout "$(limit stream 200)" python3 benchmarks/stream_mechanisms.py --out "$OUT" >"$log" 2>&1 ;;
        ncu-mma)  # the tensor-core kernel's stall reasons and issue slots on B 1 32/8, with and without its math
            for case in cuattn:1:32:8:128:131072 cuattn:1:32:8:128:131072:define=SKIP_MATH \
                        cuattn:8:32:8:128:8192; do
                echo "-- $case" >>"$log"
                timeout "$(limit ncu-mma 200)" ncu ${NCU_OPTIONS:-} --profile-from-start off --section SpeedOfLight \
                    --section WarpStateStats --section SchedulerStats --section InstructionStats \
                    --section ComputeWorkloadAnalysis python3 benchmarks/decode_ncu_case.py "$case" >>"$log" 2>&1
            done ;;
        probe-gla)
            if ls .whl/fla_core-*.whl >/dev/null 2>&1; then
                python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/fla_site .whl/fla_core-*.whl >/dev/null 2>&1
                export PYTHONPATH=$PYTHONPATH:/tmp/fla_site
            fi
            timeout "$(limit probe-gla 200)" python3 benchmarks/gla_step_probe.py --out "$OUT" >"$log" 2>&1 ;;
        *) echo "unknown stage $stage" >&2; exit 2 ;;
    esac
    echo "   exit $? ; last lines of $log:"
    tail -4 "$log" | sed 's/^/   /'
done
