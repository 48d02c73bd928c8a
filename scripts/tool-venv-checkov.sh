#!/usr/bin/env bash
# checkov (Terraform static analysis, scripts/check-terraform.sh) in .venv-checkov: it pins many
# packages of its own, some clashing with the project's. Made once, reused while the pin holds.
set -euo pipefail
cd "$(dirname "$0")/.."
CHECKOV_VERSION=3.3.30
venv=.venv-checkov
stamp=$venv/.installed-$CHECKOV_VERSION
[[ -e $stamp ]] && exit 0
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q "checkov==$CHECKOV_VERSION"
touch "$stamp"
