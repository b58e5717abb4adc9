#!/usr/bin/env bash
# The whole test set-up and run, on a fresh machine: a virtualenv with nbtrack and its test extras,
# then lint (ruff), types (mypy) and the test suite (pytest). Extra arguments go to pytest.
# Benchmarks live in tests/bench/ and are not part of this run.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=${NBTRACK_VENV:-.venv}
step() { printf '\n== %s\n' "$*"; }

step "virtualenv $VENV"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
export PATH="$PWD/$VENV/bin:$PATH"

step "python packages"
# uv resolves mlflow + dvc + jupyter in seconds where pip takes minutes; pip is the fallback.
if python -m pip install -q uv && uv --version >/dev/null 2>&1; then
  uv pip install -q --python "$VENV/bin/python" -e ".[test]"
else
  python -m pip install -q -e ".[test]"
fi

step "lint (ruff) and types (mypy)"
ruff check nbtrack tests
ruff format --check nbtrack tests
mypy

step "tests (pytest)"
export DVC_NO_ANALYTICS=1
python -m pytest tests --ignore=tests/bench -p no:cacheprovider "$@"
