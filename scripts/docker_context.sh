#!/usr/bin/env bash
# Prepares a Docker build context for deploy/Dockerfile from what this machine already has,
# so the build needs no Python package index (only Debian's packages):
#   DIR/Dockerfile            deploy/Dockerfile
#   DIR/wheels/               ollamapy and every runtime dependency as wheels, including the
#                             llama-cpp-python wheel that scripts/install.sh built (taken
#                             from pip's cache: it is never rebuilt here)
#   DIR/bundle/               the bundled model files and scripts/bundle_models.py, which
#                             creates them in the image's store at build time
# Usage: scripts/docker_context.sh DIR [MODEL_KEY...]   (keys: smollm2 all-minilm gemma3;
#        default all of them). Then: docker build -t ollamapy DIR
# PYTHON (default .venv/bin/python) is the Python whose pip builds and finds the wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
[ $# -ge 1 ] || { echo "usage: $0 DIR [MODEL_KEY...]" >&2; exit 2; }
out=$1
shift
keys=("$@")
[ ${#keys[@]} -gt 0 ] || keys=(smollm2 all-minilm gemma3)
python=${PYTHON:-$repo/.venv/bin/python}

rm -rf "$out"
mkdir -p "$out/wheels" "$out/bundle/scripts" "$out/bundle/src/ollamapy/template" "$out/bundle/models"
cp deploy/Dockerfile "$out/Dockerfile"

# The llama-cpp-python wheel this install built: pip keeps it in its wheel cache.
version=$("$python" -c 'import importlib.metadata as m; print(m.version("llama_cpp_python"))')
cache=$("$python" -m pip cache dir)
llama=$(find "$cache/wheels" -name "llama_cpp_python-$version-*.whl" -printf '%T@ %p\n' 2>/dev/null \
  | sort -rn | head -1 | cut -d' ' -f2-)
if [ -z "$llama" ]; then
  echo "no llama_cpp_python-$version wheel in $cache/wheels: run scripts/install.sh first" >&2
  exit 1
fi
cp "$llama" "$out/wheels/"
echo ">>> wheels (llama-cpp-python from $llama)"
"$python" -m pip wheel -q --prefer-binary --find-links "$out/wheels" -w "$out/wheels" "$repo"

echo ">>> bundled models: ${keys[*]}"
cp scripts/bundle_models.py "$out/bundle/scripts/"
cp -r scripts/templates "$out/bundle/scripts/"
cp -r src/ollamapy/template/named "$out/bundle/src/ollamapy/template/"
for key in "${keys[@]}"; do
  path=$("$python" scripts/bundle_models.py path "$key")
  cp -r "$path" "$out/bundle/models/"
done
printf '%s\n' "${keys[@]}" > "$out/bundle/models/KEYS"
du -sh "$out" | cut -f1 | sed 's/^/>>> context size: /'
