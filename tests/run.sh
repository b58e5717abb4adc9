#!/usr/bin/env bash
# The whole test set-up and run, on a fresh machine: Debian's chromium (browser tests), a virtualenv
# with nbtrack and its test extras (the install builds the labextension with node), then lint (ruff,
# eslint), types (mypy, tsc) and the test suite (pytest). Extra arguments go to pytest.
# Benchmarks live in tests/bench/ and are not part of this run.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=${NBTRACK_VENV:-.venv}
step() { printf '\n== %s\n' "$*"; }

step "system packages: chromium (for tests/browser), postgresql (for tests/test_team.py), node, prometheus-pushgateway"
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# Debian's server binaries live in /usr/lib/postgresql/<version>/bin, not on the PATH.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
command -v node >/dev/null 2>&1 || need+=(nodejs npm)
[ -x /usr/bin/prometheus-pushgateway ] || need+=(prometheus-pushgateway)  # tests/test_metrics.py starts its own
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  # The tests start their own PostgreSQL cluster: Debian's default one is not created (nor started).
  $SUDO mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.d/nbtrack.conf >/dev/null
  $SUDO apt-get update -qq
  # Nor may any package start its service on install (the pushgateway's): Debian's maintainer
  # scripts ask /usr/sbin/policy-rc.d, and 101 means "not allowed". Only while installing, and only
  # when the machine has no policy of its own.
  policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null && $SUDO chmod +x /usr/sbin/policy-rc.d
    policy=1
  fi
  installed=0
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || installed=$?
  [ -z "$policy" ] || $SUDO rm -f /usr/sbin/policy-rc.d
  [ "$installed" = 0 ]
fi
chromium --version
"$(compgen -G '/usr/lib/postgresql/*/bin/postgres' | sort -V | tail -n 1)" --version
/usr/bin/prometheus-pushgateway --version 2>&1 | sed -n 1p

step "virtualenv $VENV"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
export PATH="$PWD/$VENV/bin:$PATH"

step "python packages"
# uv resolves mlflow + dvc + jupyter in seconds where pip takes minutes; pip is the fallback.
# --compile-bytecode: uv writes no .pyc by default, and with PYTHONDONTWRITEBYTECODE set (as on CI)
# every kernel and subprocess would compile mlflow, pandas and scipy from source again: `import
# mlflow` took 26 s instead of 5 s on a loaded machine. pip compiles on install by itself.
if python -m pip install -q uv && uv --version >/dev/null 2>&1; then
  uv pip install -q --compile-bytecode --python "$VENV/bin/python" -e ".[test]"
else
  python -m pip install -q -e ".[test]"
fi

step "lint (ruff, eslint), types (mypy, tsc) and the package's shape"
# ruff skips labextension/ when it discovers files (pyproject extend-exclude): name the build hook.
ruff check nbtrack tests labextension/build_hook.py
ruff format --check nbtrack tests labextension/build_hook.py
mypy
(cd labextension && jlpm lint)
# Module and function sizes, private imports, mlflow only in the store, the layer arrows (issue 17).
python tests/check_shape.py

step "tests (pytest)"
export DVC_NO_ANALYTICS=1
# Two workers, each taking a whole test file at a time (module fixtures are built once); most tests
# wait on kernels, servers and git/dvc processes. `-n 0` among the extra arguments runs serially.
# NBTRACK_TEST_LOAD=N keeps N processes spinning on the CPU for the whole run: the suite must pass on
# a loaded machine too (no test may depend on the machine's speed).
if [ "${NBTRACK_TEST_LOAD:-0}" -gt 0 ]; then
  load=()
  for _ in $(seq "$NBTRACK_TEST_LOAD"); do python -c 'while True: pass' & load+=($!); done
  trap 'kill "${load[@]}" 2>/dev/null || true' EXIT
  echo "machine loaded: ${#load[@]} busy processes"
fi
python -m pytest tests --ignore=tests/bench -p no:cacheprovider -n 2 --dist loadfile "$@"
