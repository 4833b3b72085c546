#!/usr/bin/env bash
# The test command: install (if needed), lint, run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
export DVC_NO_ANALYTICS=1 MLFLOW_DISABLE_TELEMETRY=true HF_HUB_OFFLINE=1
ruff check src tests benchmarks
python -m pytest -q "$@"
