#!/usr/bin/env bash
# Install the Debian packages the tests need, only when they are missing (CI starts clean).
set -euo pipefail
declare -A probe=([redis-server]=redis-server [postgresql]=/usr/lib/postgresql [chromium]=chromium)
missing=()
for pkg in "$@"; do
  check=${probe[$pkg]:-$pkg}
  if [[ $check == /* ]]; then [[ -e $check ]] || missing+=("$pkg")
  else command -v "$check" >/dev/null 2>&1 || missing+=("$pkg"); fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0
echo "installing: ${missing[*]}"
SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
