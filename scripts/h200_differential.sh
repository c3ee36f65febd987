#!/usr/bin/env bash
# Runs ON the H200 machine, from the repo root, with vLLM 0.26.0 in /tmp/site (as scripts/h200_run.sh):
# every differential cell of jobs/h200.yaml (issue 30: execution axes cudagraph x prefix_caching on the
# shared-prefix prompts), each through `python -m fleet suite run` as a Job runs it, one reference cache
# for all (the cells of an entry share their non-speculative run), then one line per cell.
#
#   scripts/h200_differential.sh WORKDIR [FILTER]     FILTER: a grep -E pattern on cell ids (default: all)
#
# Each line: cell id, status, acceptance length, match rate, prefix-cache hits/queries (hit rate), and what
# vLLM says it ran (compilation_config.cudagraph_mode, enable_prefix_caching): a FULL asked for may come
# back as another mode where the attention backend cannot capture it, which is itself a finding.
set -uo pipefail
W=${1:?usage: scripts/h200_differential.sh WORKDIR [FILTER]}
FILTER=${2:-.}
export PYTHONPATH="/tmp/site:$PWD" VLLM_USE_FLASHINFER_SAMPLER=0 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false FLEET_VLLM_CACHE_ROOT="$W/vllm-cache"
mkdir -p "$W/cells" "$W/results" "$W/logs" "$W/keep"
python3 -m fleet plan --tier h200 --json > "$W/cells.json" || { echo "plan failed"; exit 3; }
python3 -c "
import json, sys
for cell in json.load(open(sys.argv[1])):
    if cell['execution']:
        open(f'{sys.argv[2]}/{cell[\"id\"]}.json', 'w').write(json.dumps(cell))
" "$W/cells.json" "$W/cells"
for path in "$W"/cells/*.json; do
  id=$(basename "$path" .json)
  echo "$id" | grep -Eq -- "$FILTER" || continue
  FLEET_VLLM_KEEP_DIR="$W/keep" python3 -m fleet suite run --cell "$path" --out "$W/results/$id.json" \
    --reference-cache "$W/refcache" > "$W/logs/$id.log" 2>&1
  rc=$?
  echo "$(date +%T) $id rc=$rc" | tee -a "$W/progress.log"
done
python3 - "$W/results" <<'EOF' | tee "$W/summary.tsv"
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
