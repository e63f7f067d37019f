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
  # The tests start their own redis-server and PostgreSQL on loopback and drive Debian's chromium;
  # a missing one fails its tests rather than skipping them, so install what is missing.
  local missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
  [ ${#missing[@]} -eq 0 ] && return
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "missing for the tests: sudo apt-get install ${missing[*]}" >&2; exit 1
  fi
}

check_code() {
  # The same checks CI enforces: lint, format, and types where the code is typed through.
  .venv/bin/ruff check .
  .venv/bin/ruff format --check .
  .venv/bin/mypy models prompts services after_call call_queue
}

cmd="${1:-}"; shift || true
case "$cmd" in
  demo) ensure_venv; exec .venv/bin/python -m scripts.demo "$@" ;;
  test) ensure_venv; ensure_test_services; check_code; exec .venv/bin/python -m pytest -q "$@" ;;
  *) echo "usage: bash scripts/dev.sh demo|test [args]" >&2; exit 2 ;;
esac
