#!/usr/bin/env bash
# Runs ON the H200 machine, from the repo root, after ../shared/device/install-vllm.sh put vLLM 0.26.0
# into /tmp/site. Every suite run is `python -m fleet suite run` (what a Job runs), each engine in its
# own process; progress goes to WORKDIR/progress.log, one line per step.
#
#   scripts/h200_run.sh WORKDIR [STEPS]      STEPS: any of the steps below (default: smoke rest bare fail pack)
#
# smoke: replicate r1 of draft_model-k4 (reference + speculative on tiny-stdlib)
# rest:  r1 ngram-k4, the machinery cell (8B shape, synthetic acceptance), replicates r2..r5 of both
#        tiny cells (a fresh reference cache per replicate: each replicate is a separate run)
# bare:  the same vLLM work as draft_model-k4 without fleet (benchmarks/suite_overhead.py bare)
# fail:  an engine start that fails (a draft path that does not exist), to record its log tail
# series: replicates s1..s$SERIES of both tiny cells (each a fresh reference cache), for the noise model
# machinery2: the machinery cell again (m2), after the batch-size-1 warm-up was added
# mseries: replicates ms1..ms$SERIES of the machinery cell (8B-shaped, GPU-bound): its latency noise per
#          engine start, which judge_power and bisect_efficiency need to say what a GPU-bound cell can catch
# aseries: replicates as1..as$SERIES of the machinery cell with async scheduling asked for (engine option
#          async_scheduling: true), which vLLM 0.26.0 leaves off for draft_model (vLLM #38929)
# pinseries: replicates of the machinery cell, alternately unpinned (pu*) and with the suite and its engines
#          pinned to CPUs $PINCPUS (pp*, taskset), sharing one reference cache so that each replicate
#          starts only the speculative engine: does CPU placement set the per-start TPOT level?
#          PINFROM numbers a later lease's replicates on from an earlier one's (default 1)
# startseries: replicates es1..es$SERIES of the machinery cell with workload.engine_starts 3, sharing one
#          reference cache (PINFROM-style numbering: STARTFROM, default 1), so that each replicate starts
#          three speculative engines and reports their median latency: how a run of three starts spreads
# pack:  analysis, and WORKDIR.tgz beside WORKDIR (results, r1's child logs, no caches)
set -uo pipefail
W=${1:?usage: scripts/h200_run.sh WORKDIR [STEPS]}
STEPS=${2:-"smoke rest bare fail pack"}
REPLICATES=${REPLICATES:-5}
SERIES=${SERIES:-10}
export PYTHONPATH="/tmp/site:$PWD" VLLM_USE_FLASHINFER_SAMPLER=0 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false FLEET_VLLM_CACHE_ROOT="$W/vllm-cache"
TINY="draft_model-k4__tiny-stdlib-target__h200 ngram-k4__tiny-stdlib-target__h200"
MACHINERY=draft_model-synthetic-k4__llama-8b-shape-target__h200
mkdir -p "$W/cells"
stamp() { date +%s.%N; }
say() { echo "$(date +%T) $*" | tee -a "$W/progress.log"; }

if [ ! -f "$W/cells/$MACHINERY.json" ]; then
  python3 -m fleet plan --tier h200 --json > "$W/cells.json" || { say "plan failed"; exit 3; }
  python3 -c "
import json, sys
for cell in json.load(open(sys.argv[1])):
    open(f'{sys.argv[2]}/{cell[\"id\"]}.json', 'w').write(json.dumps(cell))
" "$W/cells.json" "$W/cells"
fi

edited_cell() {  # SOURCE TARGET PYTHON: the cell file SOURCE, changed by PYTHON (on `cell`), as TARGET
  python3 -c "
import json, sys
cell = json.load(open(sys.argv[1]))
exec(sys.argv[3])
json.dump(cell, open(sys.argv[2], 'w'))
" "$@"
}

suite() {  # replicate cell  (CELLS: the folder of cell files, default $W/cells)
  local dir="$W/$1"; mkdir -p "$dir/results" "$dir/keep"
  local start; start=$(stamp)
  FLEET_VLLM_KEEP_DIR="$dir/keep" ${PIN:+taskset -c "$PIN"} python3 -m fleet suite run \
    --cell "${CELLS:-$W/cells}/$2.json" --out "$dir/results/$2.json" \
    --reference-cache "${REFCACHE:-$dir/refcache}" > "$dir/$2.log" 2>&1
  local rc=$?
  printf 'suite\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$start" "$(stamp)" "$rc" >> "$W/timing.tsv"
  say "$1 rc=$rc $(python3 benchmarks/suite_overhead.py show "$dir/results/$2.json" 2>&1 | tail -1)"
}

bare() {  # phase: the same work without fleet, with the suite's compile cache, in a session of its own
  mkdir -p "$W/bare"
  local cell=draft_model-k4__tiny-stdlib-target__h200 start pid rc; start=$(stamp)
  VLLM_CACHE_ROOT=$(ls -d "$FLEET_VLLM_CACHE_ROOT"/*/ | head -1) setsid python3 benchmarks/suite_overhead.py \
    bare --cell "$W/cells/$cell.json" --phase "$1" --out "$W/bare/$1.json" > "$W/bare/$1.log" 2>&1 &
  pid=$!; wait "$pid"; rc=$?
  kill -9 -- "-$pid" 2>/dev/null  # vLLM's engine core outlives the script's os._exit; it holds the GPU
  printf 'bare\tbare\t%s:%s\t%s\t%s\t%s\n' "$cell" "$1" "$start" "$(stamp)" "$rc" >> "$W/timing.tsv"
  say "bare $1 rc=$rc $(cat "$W/bare/$1.json" 2>/dev/null)"
}

for step in $STEPS; do
  case $step in
    smoke) suite r1 draft_model-k4__tiny-stdlib-target__h200 ;;
    rest)
      suite r1 ngram-k4__tiny-stdlib-target__h200
      suite m1 "$MACHINERY"
      for r in $(seq 2 "$REPLICATES"); do for cell in $TINY; do suite "r$r" "$cell"; done; done ;;
    series) for r in $(seq 1 "$SERIES"); do for cell in $TINY; do suite "s$r" "$cell"; done; done ;;
    machinery2) suite m2 "$MACHINERY" ;;
    mseries) for r in $(seq 1 "$SERIES"); do suite "${MPREFIX:-ms}$r" "$MACHINERY"; done ;;
    pinseries)
      for r in $(seq "${PINFROM:-1}" $((${PINFROM:-1} + SERIES - 1))); do
        REFCACHE="$W/pin-refcache" suite "pu$r" "$MACHINERY"
        REFCACHE="$W/pin-refcache" PIN="${PINCPUS:-2,3}" suite "pp$r" "$MACHINERY"
      done ;;
    startseries)
      mkdir -p "$W/starts-cells"
      edited_cell "$W/cells/$MACHINERY.json" "$W/starts-cells/$MACHINERY.json" \
        "cell.pop('id'); cell['workload']['engine_starts'] = 3"
      for r in $(seq "${STARTFROM:-1}" $((${STARTFROM:-1} + SERIES - 1))); do
        CELLS="$W/starts-cells" REFCACHE="$W/starts-refcache" suite "es$r" "$MACHINERY"
      done ;;
    host)
      { nproc; lscpu; cat /sys/fs/cgroup/cpu.max; numactl -H; nvidia-smi topo -m
        nvidia-smi -q -d CLOCK,PERFORMANCE,POWER; python3 -c 'import os; print(sorted(os.sched_getaffinity(0)))'
      } > "$W/host.txt" 2>&1
      say "host $(nproc) cpus, $(lscpu | grep -m1 'Model name' | tr -s ' ')" ;;
    aseries)
      mkdir -p "$W/async-cells"
      edited_cell "$W/cells/$MACHINERY.json" "$W/async-cells/$MACHINERY.json" \
        "cell['engine_options']['async_scheduling'] = True"
      for r in $(seq 1 "$SERIES"); do CELLS="$W/async-cells" suite "as$r" "$MACHINERY"; done ;;
    bare) bare reference; bare speculative ;;
    fail)
      mkdir -p "$W/fail"
      edited_cell "$W/cells/draft_model-k4__tiny-stdlib-target__h200.json" "$W/fail/cell.json" \
        "cell.pop('id'); cell['draft_model'] = '/nonexistent/draft-model'"
      FLEET_VLLM_KEEP_DIR="$W/fail/keep" python3 -m fleet suite run --cell "$W/fail/cell.json" \
        --out "$W/fail/result.json" --reference-cache "$W/r1/refcache" > "$W/fail/suite.log" 2>&1
      say "fail rc=$? $(python3 benchmarks/suite_overhead.py show "$W/fail/result.json" 2>&1 | cut -c1-300)" ;;
    pack)
      python3 benchmarks/suite_overhead.py analyze "$W" --out "$W/overhead.json" > "$W/overhead.txt" 2>&1
      say "analyze rc=$?"
      tar czf "$W.tgz" -C "$(dirname "$W")" --exclude=vllm-cache --exclude=refcache \
        --exclude='r[2-9]/keep' --exclude='s*/keep' --exclude='m[a-z]*/keep' --exclude='as*/keep' --exclude='p[pu]*/keep' --exclude='es*/keep' --exclude=pin-refcache --exclude=starts-refcache "$(basename "$W")"
      say "packed $(du -h "$W.tgz" | cut -f1)" ;;
  esac
done
touch "$W/DONE.$(echo "$STEPS" | tr ' ' '_')"
