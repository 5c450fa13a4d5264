#!/usr/bin/env bash
# Creates .venv and installs dlr-engine with its test extras, building the C++ kernels.
# torch is pinned to the CPU build 2.13.0 (pyproject.toml); nothing here pulls a CUDA torch.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
DLR_ENGINE_REQUIRE_EXTENSION=1 .venv/bin/python -m pip install --quiet -e ".[test,train,bench,ray]"
.venv/bin/python -m dlr_engine info
