#!/usr/bin/env bash
# Offline checks of what deploys cio-relay: each scripts/check-*.sh checks one part.
set -euo pipefail
cd "$(dirname "$0")/.."
for check in scripts/check-*.sh; do
  [[ -e $check ]] || continue
  bash "$check"
done
