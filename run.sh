#!/usr/bin/env bash
# One entry point for a fresh machine:  ./run.sh demo  |  ./run.sh test  |  ./run.sh setup
# Creates .venv (Python >= 3.11) and installs Amanah with its pinned dependencies on first use.
set -euo pipefail
cd "$(dirname "$0")"

PY=${PYTHON:-python3}

setup() {
  if [ ! -x .venv/bin/python ]; then
    "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
      || { echo "Amanah needs Python 3.11 or newer ($PY is older)" >&2; exit 1; }
    "$PY" -m venv .venv
  fi
  .venv/bin/python -m pip install --quiet --upgrade pip >/dev/null
  .venv/bin/python -m pip install --quiet -e '.[test]'
}

case "${1:-}" in
  setup) setup ;;
  demo)  setup; shift; exec bash scripts/demo.sh "$@" ;;
  test)
    setup
    # The browser test drives Debian's Chromium; as root (CI, a fresh machine) install it,
    # otherwise that one test is skipped and says why.
    if [ "$(id -u)" -eq 0 ] && [ ! -x /usr/bin/chromium ]; then bash scripts/install-browser.sh; fi
    shift; exec .venv/bin/python -m pytest "$@" ;;
  lint)  setup; .venv/bin/ruff check . && .venv/bin/ruff format --check . ;;
  bench) setup; shift; exec .venv/bin/python bench/ingest.py "$@" ;;
  *) echo "usage: ./run.sh demo|test|setup|lint|bench [args]" >&2; exit 2 ;;
esac
