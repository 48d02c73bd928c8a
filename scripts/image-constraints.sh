#!/usr/bin/env bash
# Rewrites image-constraints.txt: the exact versions the container image installs. Run it after
# changing the dependencies in pyproject.toml (tests/deploy/test_image.py fails until then: every
# package the image installs must be pinned there).
set -euo pipefail
cd "$(dirname "$0")/.."
extras=$(sed -n 's/^ARG CIO_RELAY_EXTRAS=//p' Dockerfile)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet ".[${extras}]"
{
  echo "# The exact versions the container image installs (Dockerfile: pip install --constraint)."
  echo "# Made by scripts/image-constraints.sh for the extras ${extras}; rerun it to upgrade."
  "$work/venv/bin/pip" freeze --exclude cio-relay
} >image-constraints.txt
