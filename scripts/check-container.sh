#!/usr/bin/env bash
# The container image and the local stack, checked offline: hadolint on the Dockerfile (from the
# dev venv) and Docker Compose's own loader on compose.yaml (.venv-compose, made by
# scripts/tool-venv-compose.sh), every profile included. What the image does is tested by
# tests/deploy/test_image.py, which replays its build in a fresh venv and starts it.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/hadolint Dockerfile
echo "Dockerfile: hadolint clean"
.venv-compose/docker-compose --file compose.yaml --profile '*' config --quiet
echo "compose.yaml: valid for Docker Compose $(.venv-compose/docker-compose version --short)"
