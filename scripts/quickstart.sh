#!/usr/bin/env bash
# The main job: install, start `ollama serve` with the bundled models, and answer a prompt.
# The server keeps running afterwards (its pid and log are printed); `kill <pid>` stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export PATH="$PWD/.venv/bin:$PATH"
PROMPT=${1:-"Why is the sky blue? Answer in one sentence."}

if ! ollama list >/dev/null 2>&1; then
  echo ">>> starting ollama serve (log: $PWD/ollama-serve.log)"
  nohup ollama serve >ollama-serve.log 2>&1 &
  echo $! > .ollama-serve.pid
  for _ in $(seq 1 100); do ollama list >/dev/null 2>&1 && break; sleep 0.2; done
fi
python scripts/bundle_models.py create
ollama list
ollama show smollm2:135m
echo ">>> ollama run smollm2:135m \"$PROMPT\""
ollama run smollm2:135m "$PROMPT"
echo ">>> chat and manage models in your browser: $(python -c 'from ollamapy.config import Config
from ollamapy.server.app import page_address
print(page_address(Config.from_env()))')"
if [ -f .ollama-serve.pid ]; then
  echo ">>> the server is still running (pid $(cat .ollama-serve.pid)); stop it with: kill $(cat .ollama-serve.pid)"
fi
