#!/usr/bin/env bash
# Runs ON the H200 machine, from the repo root, after ../shared/device/install-vllm.sh put vLLM 0.26.0
# into /tmp/site: every cell of jobs/h200.yaml that has execution axes (issue 30: cudagraph x prefix
# caching, per method), each through `python -m fleet suite run` as a Job runs it, PARALLEL cells at a
# time on the one GPU (each engine held to GPU_SHARE of its memory, starts staggered by STAGGER s so that
# vLLM's start-up memory profiling of one engine does not see another's allocations). All cells share one
# reference cache: cells differing only in execution compare against one non-speculative reference (the
# first cell computes it alone, before the others start). A cell whose engine failed is retried once
# alone at the end.
#   scripts/h200_axes.sh OUTDIR        writes OUTDIR/<cell id>.json (RunResult), OUTDIR/<cell id>.tail and
#                                      OUTDIR/summary.tsv
set -uo pipefail
OUTDIR=${1:?usage: scripts/h200_axes.sh OUTDIR}
PARALLEL=${PARALLEL:-4}
GPU_SHARE=${GPU_SHARE:-0.2}
STAGGER=${STAGGER:-15}
export PYTHONPATH="/tmp/site:$PWD" VLLM_USE_FLASHINFER_SAMPLER=0 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
W=${WORKDIR:-/root/axes}
export FLEET_VLLM_CACHE_ROOT="$W/vllm-cache"
mkdir -p "$W/cells" "$OUTDIR"
say() { echo "$(date +%T) $*" | tee -a "$OUTDIR/progress.log"; }
python3 -m fleet plan --tier h200 --json > "$W/cells.json" || { say "plan failed"; exit 3; }
# Every cell with execution axes, each engine held to its share of the GPU (an engine option, the same
# for every cell, so cells still pair by contents).
python3 - "$W/cells.json" "$W/cells" "$GPU_SHARE" > "$W/ids.txt" <<'EOF'
import json, sys
cells, folder, share = json.load(open(sys.argv[1])), sys.argv[2], float(sys.argv[3])
for cell in cells:
    if not cell.get("execution"):
        continue
    cell.pop("id")
    cell["engine_options"] = {**cell.get("engine_options", {}), "gpu_memory_utilization": share}
    from fleet.model import Cell
    model = Cell.model_validate(cell)
    open(f"{folder}/{model.id}.json", "w").write(model.model_dump_json())
    print(model.id)
EOF
n=$(wc -l < "$W/ids.txt"); say "$n cells with execution axes"
run_cell() {
  local id=$1 start rc
  start=$(date +%s)
  python3 -m fleet suite run --cell "$W/cells/$id.json" --out "$OUTDIR/$id.json" \
    --reference-cache "$W/refcache" > "$W/$id.log" 2>&1
  rc=$?
  tail -n 40 "$W/$id.log" > "$OUTDIR/$id.tail"
  say "$id rc=$rc $(( $(date +%s) - start )) s"
  return $rc
}
first=$(head -n 1 "$W/ids.txt")
run_cell "$first"
running=0
for id in $(tail -n +2 "$W/ids.txt"); do
  run_cell "$id" &
  running=$((running + 1))
  if [ "$running" -ge "$PARALLEL" ]; then wait -n; running=$((running - 1)); else sleep "$STAGGER"; fi
done
wait
for id in $(cat "$W/ids.txt"); do
  if ! python3 -c "import json,sys; sys.exit(json.load(open(sys.argv[1]))['status'] != 'ok')" "$OUTDIR/$id.json" 2>/dev/null; then
    say "retrying $id alone"; run_cell "$id"
  fi
done
# One line per cell: acceptance, match rate, prefix-cache hit rate, and what vLLM says it ran (a FULL
# CUDA-graph mode asked for may come back as another where the attention backend cannot capture it,
# which is itself a finding).
python3 - "$OUTDIR" <<'EOF' | tee "$OUTDIR/summary.tsv"
import json, pathlib, sys
print("cell\tstatus\tacceptance_length\tmatch_rate\tprefix_hits/queries\thit_rate\tcudagraph_mode\tprefix_caching")
for path in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    result = json.loads(path.read_text())
    metrics, extra = result.get("metrics") or {}, (result.get("provenance") or {}).get("extra") or {}
    cache = result.get("prefix_cache") or {}
    rate = f"{cache['hits'] / cache['queries']:.3f}" if cache.get("queries") else "-"
    status = result["status"] if result["status"] != "error" else "error: " + result["error"]["message"][:120]
    print("\t".join(str(x) for x in (
        path.stem, status, metrics.get("acceptance_length", "-"), metrics.get("match_rate", "-"),
        f"{cache.get('hits', '-')}/{cache.get('queries', '-')}", rate, extra.get("cudagraph_mode", "-"),
        extra.get("enable_prefix_caching", "-"))))
EOF
say "done"
