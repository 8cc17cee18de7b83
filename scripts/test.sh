#!/usr/bin/env bash
# Installs everything and runs the whole test suite: lint, types, import rules, then pytest
# (unit tests, API tests through a real server and the official clients, and integration
# tests with the bundled real models).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
echo ">>> ruff"; ruff check src tests scripts bench && ruff format --check src tests scripts bench
echo ">>> mypy"; mypy
echo ">>> import-linter"; lint-imports
echo ">>> pytest"
set +e
pytest "$@"
status=$?
set -e
if [ "$status" = 5 ]; then
  echo "pytest collected no tests" >&2
  exit 1
fi
exit "$status"
