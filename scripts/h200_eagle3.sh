#!/usr/bin/env bash
# Runs ON the H200 machine, from the repo root, after ../shared/device/install-vllm.sh put vLLM 0.26.0
# into /tmp/site: the eagle3-k4 cell of jobs/h200.yaml (the bundled target with its trained EAGLE-3 head,
# fleet/assets/tiny-stdlib/eagle3) through `python -m fleet suite run`, as a Job runs it, REPLICATES
# times (each a fresh reference and speculative engine). Writes small JSON for evidence/h200/eagle3/:
#   OUTDIR/eagle3-rN.json   the RunResult of replicate N (counters, vLLM's own counters, outputs)
#   OUTDIR/eagle3-rN.tail   the last lines of that run's log
#   scripts/h200_eagle3.sh OUTDIR [REPLICATES]
set -uo pipefail
OUTDIR=${1:?usage: scripts/h200_eagle3.sh OUTDIR [REPLICATES]}
REPLICATES=${2:-2}
export PYTHONPATH="/tmp/site:$PWD" VLLM_USE_FLASHINFER_SAMPLER=0 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
W=${WORKDIR:-/root/eagle3}
export FLEET_VLLM_CACHE_ROOT="$W/vllm-cache"
CELL=eagle3-k4__tiny-stdlib-target__h200
mkdir -p "$W/cells" "$OUTDIR"
python3 -m fleet plan --tier h200 --json > "$W/cells.json" || { echo "plan failed"; exit 3; }
python3 -c "
import json, sys
for cell in json.load(open(sys.argv[1])):
    open(f'{sys.argv[2]}/{cell[\"id\"]}.json', 'w').write(json.dumps(cell))
" "$W/cells.json" "$W/cells"
for r in $(seq 1 "$REPLICATES"); do
  start=$(date +%s)
  python3 -m fleet suite run --cell "$W/cells/$CELL.json" --out "$OUTDIR/eagle3-r$r.json" \
    --reference-cache "$W/refcache-r$r" > "$W/eagle3-r$r.log" 2>&1
  rc=$?
  tail -n 60 "$W/eagle3-r$r.log" > "$OUTDIR/eagle3-r$r.tail"
  echo "replicate r$r rc=$rc $(( $(date +%s) - start )) s"
done
# The same cell on the reference engine (CPU, fp32, transformers) on this machine's CPUs: the
# CPU-vs-vLLM comparison on one workload (50 prompts x 128 tokens).
python3 -c "
import json, sys
cell = json.load(open(sys.argv[1]))
cell.pop('id', None)
cell['engine'] = 'reference'
json.dump(cell, open(sys.argv[2], 'w'))
" "$W/cells/$CELL.json" "$W/reference-cell.json"
start=$(date +%s)
python3 -m fleet suite run --cell "$W/reference-cell.json" --out "$OUTDIR/eagle3-cpu-reference.json" \
  --reference-cache "$W/refcache-cpu" > "$W/eagle3-cpu.log" 2>&1
rc=$?
tail -n 30 "$W/eagle3-cpu.log" > "$OUTDIR/eagle3-cpu-reference.tail"
echo "reference engine rc=$rc $(( $(date +%s) - start )) s"
