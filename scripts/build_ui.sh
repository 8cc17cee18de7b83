#!/usr/bin/env bash
# Rebuilds the chat and model page (`webui/` -> `src/ollamapy/server/ui/`) and records the
# sources' hash there, which tests/ui/test_build.py checks. Needs Node 20+ and npm; the built
# files are committed, so nobody installing ollamapy needs Node.
set -euo pipefail
cd "$(dirname "$0")/.."
(cd webui && npm ci --no-audit --no-fund && npx vite build)
python3 scripts/ui_source_hash.py > src/ollamapy/server/ui/SOURCE_HASH
echo "built src/ollamapy/server/ui ($(cat src/ollamapy/server/ui/SOURCE_HASH))"
