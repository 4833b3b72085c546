#!/usr/bin/env bash
# The default run: install, fetch the bundled real PDB corpus (if data/ is not already what data.dvc says), dvc repro.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
export DVC_NO_ANALYTICS=1 MLFLOW_DISABLE_TELEMETRY=true HF_HUB_OFFLINE=1
if [ ! -d data ] || [ "$(dvc status data.dvc --json 2>/dev/null)" != "{}" ]; then
  protalign fetch --source "${PROTALIGN_SOURCE:-bundled}"
fi
dvc repro "$@"
protalign show           # the answer: pairs ranked by headline gain, chance, where the findings and plots are
