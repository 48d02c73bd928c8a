#!/usr/bin/env bash
# bqemulator (a BigQuery REST emulator on DuckDB, for tests/lake/test_bigquery_emulator.py) in
# .venv-bqemulator: it needs DuckDB 1.x with the spatial extension bundled as a wheel (it would
# otherwise try to download the extension at start), while the project uses DuckDB 2.
# Made once, reused while the pins hold.
set -euo pipefail
cd "$(dirname "$0")/.."
PINS=(
  "bqemulator==1.4.0"
  "duckdb==1.5.5"
  "duckdb-extension-spatial==1.5.5"
  "duckdb-extensions"
  "numpy"
)
venv=.venv-bqemulator
stamp=$venv/.installed-$(printf '%s\n' "${PINS[@]}" | sha256sum | cut -c1-16)
[[ -e $stamp ]] && exit 0
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q "${PINS[@]}"
touch "$stamp"
