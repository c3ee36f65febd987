#!/usr/bin/env bash
# Runs ON the GPU machine (H200 or H100), from the repo root, after ../shared/device/install-vllm.sh put
# vLLM 0.26.0 and its torch/transformers into /tmp/site: trains the EAGLE-1 head and the Medusa heads for
# the bundled tiny-stdlib target with the scripts' defaults (seed 0), then a quick check of each on the
# reference engine (8 shipped prompts x 64 tokens, CPU fp32: lossless and its acceptance length).
#   scripts/h200_train_drafters.sh EAGLE_DIR MEDUSA_DIR LOGDIR
#   ONLY=eagle|medusa scripts/h200_train_drafters.sh ...   # one of the two (e.g. one per device call)
#   QUICK_CHECK=0 ...                                       # skip the reference-engine check
#   TRAIN_ARGS="--sequences 8 --new-tokens 16 --steps 3 --batch 4" CHECK_PROMPTS=1 CHECK_TOKENS=8 ...
#                                                           # a smoke run (anywhere, CPU too)
# Writes EAGLE_DIR and MEDUSA_DIR (config.json, model.safetensors, train_log.json: copy them to
# fleet/assets/tiny-stdlib/eagle and .../medusa) and LOGDIR/{eagle1,medusa}.{log,tail,check.json}.
# Runtime, from EAGLE-3's 125 s for the same data and schedule on an H100 (34 s of it the data): about
# 2-3 min for EAGLE-1 (its loss scores the full 4096-token vocabulary, EAGLE-3's 2048) and 1-2 min for
# Medusa, plus under a minute per quick check: 4-7 min in all, so split it with ONLY under a 10-min limit.
set -uo pipefail
EAGLE_DIR=${1:?usage: scripts/h200_train_drafters.sh EAGLE_DIR MEDUSA_DIR LOGDIR}
MEDUSA_DIR=${2:?usage: scripts/h200_train_drafters.sh EAGLE_DIR MEDUSA_DIR LOGDIR}
LOGDIR=${3:?usage: scripts/h200_train_drafters.sh EAGLE_DIR MEDUSA_DIR LOGDIR}
ONLY=${ONLY:-both}
export PYTHONPATH="/tmp/site:$PWD" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$LOGDIR"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$LOGDIR/gpu.txt" 2>&1

train() {  # name script out
  local start rc
  start=$(date +%s)
  # shellcheck disable=SC2086  # TRAIN_ARGS is a list of options
  python3 "scripts/$2" --out "$3" ${TRAIN_ARGS:-} > "$LOGDIR/$1.log" 2>&1
  rc=$?
  tail -n 40 "$LOGDIR/$1.log" > "$LOGDIR/$1.tail"
  echo "$1: rc=$rc $(( $(date +%s) - start )) s"
  return $rc
}

check() {  # name method folder
  [ "${QUICK_CHECK:-1}" = 1 ] || return 0
  local start
  start=$(date +%s)
  python3 - "$2" "$3" "${CHECK_PROMPTS:-8}" "${CHECK_TOKENS:-64}" > "$LOGDIR/$1.check.json" 2> "$LOGDIR/$1.check.err" <<'EOF'
import json, sys
from fleet.model import Cell
from fleet.suite.engines.reference import ReferenceEngine
from fleet.suite.prompts import load_prompts
method, folder, prompts, tokens = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
cell = Cell.model_validate({
    "tier": "check", "variant": {"name": f"{method}-k4", "method": method, "num_speculative_tokens": 4},
    "model": "bundled:tiny-stdlib/target", "draft_model": folder,
    "hardware": {"name": "cpu", "vendor": "cpu", "gpu_count": 0},
    "workload": {"num_prompts": prompts, "max_tokens": tokens, "warmup_prompts": 0}, "engine": "reference"})
prompts = load_prompts(cell.workload)
engine = ReferenceEngine()
spec, ref = engine.run_speculative(cell, prompts), engine.run_reference(cell, prompts)
c = spec.counters
print(json.dumps({"method": method, "lossless": spec.measurement.token_ids == ref.measurement.token_ids,
                  "acceptance_length": 1 + c.num_accepted_tokens / c.num_drafts, **c.model_dump()}))
EOF
  echo "$1 check: $(cat "$LOGDIR/$1.check.json") $(( $(date +%s) - start )) s"
}

status=0
if [ "$ONLY" != medusa ]; then
  train eagle1 train_eagle1.py "$EAGLE_DIR" && check eagle1 eagle "$EAGLE_DIR" || status=1
fi
if [ "$ONLY" != eagle ]; then
  train medusa train_medusa.py "$MEDUSA_DIR" && check medusa medusa "$MEDUSA_DIR" || status=1
fi
exit $status
