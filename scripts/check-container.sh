#!/usr/bin/env bash
# The container image, checked offline: hadolint on the Dockerfile (from the dev venv). What the
# image does is tested by tests/deploy/test_image.py, which replays its build in a fresh venv.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/hadolint Dockerfile
echo "Dockerfile: hadolint clean"
