#!/usr/bin/env bash
# Venvs of their own for tools whose pinned dependencies clash with the project's (made once,
# reused; `make clean` removes them). Each scripts/tool-venv-*.sh makes one.
set -euo pipefail
cd "$(dirname "$0")/.."
for maker in scripts/tool-venv-*.sh; do
  [[ -e $maker ]] || continue
  bash "$maker"
done
