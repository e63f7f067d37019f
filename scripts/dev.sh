#!/usr/bin/env bash
# One entry point for a fresh machine: sets up .venv (and redis-server for the tests) on first use.
#   bash scripts/dev.sh demo [--scenario barge_in]   hold a whole call locally
#   bash scripts/dev.sh test [pytest args]           run the test suite
set -euo pipefail
cd "$(dirname "$0")/.."

ensure_venv() {
  if [ ! -x .venv/bin/python ] || [ pyproject.toml -nt .venv/.installed ]; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --upgrade pip
    .venv/bin/pip install --quiet -e '.[dev]'
    touch .venv/.installed
  fi
}

ensure_test_services() {
  # The tests start their own redis-server and PostgreSQL on loopback; they need the binaries.
  if ! command -v redis-server >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
    else
      echo "redis-server is missing: sudo apt-get install redis-server" >&2; exit 1
    fi
  fi
}

cmd="${1:-}"; shift || true
case "$cmd" in
  demo) ensure_venv; exec .venv/bin/python -m scripts.demo "$@" ;;
  test) ensure_venv; ensure_test_services; exec .venv/bin/python -m pytest -q "$@" ;;
  *) echo "usage: bash scripts/dev.sh demo|test [args]" >&2; exit 2 ;;
esac
