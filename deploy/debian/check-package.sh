#!/usr/bin/env bash
# Builds the Debian package with cargo-deb and checks it on this machine (CI, as root):
# what the package holds and its maintainer scripts; `dpkg -i`; the installed unit through
# `systemd-analyze verify` and `systemd-analyze security` (exposure at most 2.0);
# `tunnelkeeper check-config` on the installed example; install without start (no
# /etc/tunnelkeeper/config.toml, and the unit's ConditionPathExists= fails without it, as
# systemd-analyze evaluates it); a reinstall (the upgrade path) that keeps the operator's
# config; `dpkg --purge`, after which
# nothing of the package is left. Then once more the way deploy/terraform installs it: a
# config written before the package, kept by --force-confold, kept by `dpkg -r`, removed
# by `dpkg --purge`.
#
# It installs and purges the package, so it refuses to run where tunnelkeeper is installed
# or configured (/etc/tunnelkeeper; under CI=true a package left by a killed earlier run is
# purged first). A plain /var/lib/tunnelkeeper (a daemon run as root without a state_dir)
# is kept aside and put back. systemd need not be running: the maintainer scripts start,
# restart and stop the service only where it is, and nothing here starts the daemon (the
# example config would have it call AWS). The postinst applies the sysctl drop-in; the
# value net.ipv4.ping_group_range had before is put back at the end.
#
# Last line: "package checks: N passed, M failed"; exits non-zero on any failure.
#
#   deploy/debian/check-package.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

CARGO_DEB_VERSION=3.8.0
PKG=tunnelkeeper
UNIT=/usr/lib/systemd/system/tunnelkeeper.service
SYSCTL_DROPIN=/usr/lib/sysctl.d/60-tunnelkeeper.conf
CONFIG=/etc/tunnelkeeper/config.toml
EXAMPLE=/usr/share/doc/tunnelkeeper/examples/config.toml
BIN=/usr/bin/tunnelkeeper
WANTS=/etc/systemd/system/multi-user.target.wants/tunnelkeeper.service
PING_RANGE=/proc/sys/net/ipv4/ping_group_range
STATE=/var/lib/tunnelkeeper
STATE_SAVED=/var/lib/tunnelkeeper.saved-by-check-package

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/tunnelkeeper-ci/target}"
export CARGO_TERM_COLOR=never
export DEBIAN_FRONTEND=noninteractive

passed=0
failed=0
summary_printed=0
we_installed=0
work=$(mktemp -d)
original_ping_range=$(cat "$PING_RANGE")

pass() {
  passed=$((passed + 1))
  echo "ok: $*"
}
fail() {
  failed=$((failed + 1))
  echo "FAILED: $*" >&2
}
# check DESCRIPTION COMMAND...: one counted check.
check() {
  local what=$1
  shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}
# must DESCRIPTION COMMAND...: a counted step that the rest depends on; stops on failure.
must() {
  local what=$1
  shift
  if "$@"; then
    pass "$what"
  else
    fail "$what"
    exit 1
  fi
}
# quietly COMMAND...: runs it without input; shows what it said only when it fails.
quietly() {
  local out
  if out=$("$@" </dev/null 2>&1); then return 0; fi
  printf '%s\n' "$out" >&2
  return 1
}
summary() {
  summary_printed=1
  echo "package checks: $passed passed, $failed failed"
}
dpkg_status() { dpkg-query -W -f='${db:Status-Status}' "$PKG" 2>/dev/null || true; }
installed() { [ "$(dpkg_status)" = installed ]; }
known_to_dpkg() {
  case "$(dpkg_status)" in
    "" | not-installed) return 1 ;;
    *) return 0 ;;
  esac
}
not_known_to_dpkg() { ! known_to_dpkg; }
absent() {
  local p
  for p in "$@"; do
    if [ -e "$p" ] || [ -L "$p" ]; then
      echo "  still there: $p" >&2
      return 1
    fi
  done
}
cleanup() {
  local status=$?
  if [ "$we_installed" = 1 ] && known_to_dpkg; then
    echo "cleanup: purging the package this check installed" >&2
    dpkg --purge "$PKG" >/dev/null 2>&1 || true
  fi
  printf '%s\n' "$original_ping_range" >"$PING_RANGE" 2>/dev/null || true
  if [ -e "$STATE_SAVED" ] && [ ! -e "$STATE" ] && [ ! -L "$STATE" ]; then
    mv "$STATE_SAVED" "$STATE"
  fi
  rm -rf "$work"
  if [ "$summary_printed" = 0 ]; then
    [ "$status" = 0 ] || [ "$failed" -gt 0 ] || failed=$((failed + 1))
    summary
  fi
  [ "$failed" = 0 ] || exit 1
  exit "$status"
}
trap cleanup EXIT

if [ "$(id -u)" != 0 ]; then
  fail "run as root (dpkg -i, dpkg --purge)"
  exit 1
fi

# Never take over a real installation.
if known_to_dpkg; then
  if [ "${CI:-}" = true ]; then
    echo "note: purging a $PKG package left by an earlier run" >&2
    dpkg --purge "$PKG" >/dev/null
  else
    fail "$PKG is installed here (dpkg status $(dpkg_status)); this check installs and purges it: run it on a test machine"
    exit 1
  fi
fi
must "no tunnelkeeper config or service state on this machine before the check" \
  absent /etc/tunnelkeeper /var/lib/private/tunnelkeeper "$STATE_SAVED"
# A daemon started as root without a state_dir (a test, a try by hand) leaves a plain
# /var/lib/tunnelkeeper; the purge would delete it, so it is kept aside and put back.
if [ -L "$STATE" ]; then
  fail "$STATE is a link (the state of a service that ran here): not touching it"
  exit 1
elif [ -e "$STATE" ]; then
  echo "note: keeping $STATE aside as $STATE_SAVED during the check"
  mv "$STATE" "$STATE_SAVED"
fi

# The package's unit is the repository's with the binary in /usr/bin: every setting equal.
settings() { grep -v -e '^[[:space:]]*[#;]' -e '^[[:space:]]*$' "$1"; }
check "deploy/debian/tunnelkeeper.service has the settings of systemd/tunnelkeeper.service (binary in /usr/bin)" \
  diff -u <(settings systemd/tunnelkeeper.service | sed 's#/usr/local/bin/tunnelkeeper#/usr/bin/tunnelkeeper#g') \
  <(settings deploy/debian/tunnelkeeper.service)

# cargo-deb, pinned; it computes Depends: ($auto) with dpkg-shlibdeps.
if ! command -v dpkg-shlibdeps >/dev/null; then
  apt-get install -y -qq --no-install-recommends dpkg-dev >/dev/null
fi
if [ "$(cargo deb --version 2>/dev/null || true)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
  echo "installing cargo-deb $CARGO_DEB_VERSION"
  # Its own temporary target directory, not the project's.
  env -u CARGO_TARGET_DIR cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked --quiet
fi
must "cargo-deb $CARGO_DEB_VERSION is installed" test "$(cargo deb --version)" = "cargo-deb $CARGO_DEB_VERSION"

# The release build and the package.
started=$(date +%s)
build_package() { cargo deb --locked >"$work/cargo-deb.out"; }
must "cargo deb --locked builds the package" build_package
echo "cargo deb took $(($(date +%s) - started)) s"
deb=$(tail -n 1 "$work/cargo-deb.out")
must "cargo deb names its package ($deb)" test -f "$deb"
echo "package: $deb, $(stat -c %s "$deb") bytes"
dpkg-deb --info "$deb" | sed -n '/Package:/,$p'

# What the package holds.
dpkg-deb --contents "$deb" | awk '{print $1, $NF}' >"$work/contents"
has_file() { grep -q -E "^$1 \./${2#/}\$" "$work/contents"; }
check "the package has the binary $BIN (0755)" has_file -rwxr-xr-x "$BIN"
check "the package has the unit $UNIT" has_file -rw-r--r-- "$UNIT"
check "the package has the sysctl drop-in $SYSCTL_DROPIN" has_file -rw-r--r-- "$SYSCTL_DROPIN"
check "the package has the example config $EXAMPLE" has_file -rw-r--r-- "$EXAMPLE"
no_config() { ! grep -q ' \./etc/tunnelkeeper/config.toml' "$work/contents"; }
check "the package does not install $CONFIG (the service waits for the operator's)" no_config
nothing_in_usr_local() { ! grep -q ' \./usr/local' "$work/contents"; }
check "the package installs nothing under /usr/local" nothing_in_usr_local
dpkg-deb --control "$deb" "$work/control"
check "the package depends on libc6 (\$auto, from dpkg-shlibdeps)" grep -q '^Depends:.*libc6' "$work/control/control"
check "the package has no conffile" test ! -s "$work/control/conffiles"
# packaged PATH FILE: the package's PATH is FILE of the repository.
packaged() { dpkg-deb --fsys-tarfile "$deb" | tar -xO ".$1" | cmp -s - "$2"; }
check "the packaged example is config/example.toml" packaged "$EXAMPLE" config/example.toml
check "the packaged unit is deploy/debian/tunnelkeeper.service" packaged "$UNIT" deploy/debian/tunnelkeeper.service
for script in postinst prerm postrm; do
  check "the $script script is valid sh" sh -n "$work/control/$script"
done
check "postinst applies the sysctl drop-in" grep -q 'systemd-sysctl 60-tunnelkeeper.conf' "$work/control/postinst"
check "postinst enables the unit" grep -q 'deb-systemd-helper enable tunnelkeeper.service' "$work/control/postinst"
# shellcheck disable=SC2016 # '$_dh_action' is the postinst's own variable, not ours
starts_and_restarts() {
  local f=$work/control/postinst
  awk '/-d \/run\/systemd\/system/,/^fi/' "$f" | grep -q '_dh_action=restart' &&
    awk '/-d \/run\/systemd\/system/,/^fi/' "$f" | grep -q '_dh_action=start' &&
    grep -q 'deb-systemd-invoke $_dh_action tunnelkeeper.service' "$f"
}
check "postinst starts it on install and restarts it on upgrade, only where systemd runs" starts_and_restarts
check "prerm stops it on removal only (not on upgrade), only where systemd runs" \
  grep -q "if \[ -d /run/systemd/system \] && \[ \"\$1\" = remove \]; then" "$work/control/prerm"
check "prerm stops tunnelkeeper.service" grep -q 'deb-systemd-invoke stop tunnelkeeper.service' "$work/control/prerm"
purges_state() {
  grep -q 'rm -rf /var/lib/private/tunnelkeeper' "$work/control/postrm" &&
    grep -q 'deb-systemd-helper purge' "$work/control/postrm"
}
check "postrm purges the state directory and the enablement" purges_state

# Install.
we_installed=1
must "dpkg -i installs the package" quietly dpkg -i "$deb"
check "dpkg says $PKG is installed" installed
check "$BIN is installed and executable" test -x "$BIN"
check "the unit is at $UNIT" test -f "$UNIT"
check "the sysctl drop-in is at $SYSCTL_DROPIN" cmp -s "$SYSCTL_DROPIN" systemd/60-tunnelkeeper.conf
check "the example is at $EXAMPLE" cmp -s "$EXAMPLE" config/example.toml
check "no config at $CONFIG after the install" absent "$CONFIG"
documented() {
  local doc
  doc=$(sed -n 's#^Documentation=file://##p' "$UNIT")
  [ -n "$doc" ] && [ -f "$doc" ] || { echo "Documentation= names '$doc', not installed" >&2; return 1; }
}
check "the unit's Documentation= is a file the package installed" documented
# Install without start: the installed unit's conditions, evaluated by systemd, fail while
# the config is missing (so postinst's start leaves it inactive) and pass once it is there.
conditions() { sed -n 's/^\(Condition[A-Za-z]*=.*\)$/\1/p' "$UNIT"; }
not_startable() {
  local c
  mapfile -t c < <(conditions)
  [ "${#c[@]}" -gt 0 ] || { echo "the unit has no Condition*=" >&2; return 1; }
  ! systemd-analyze condition "${c[@]}"
}
startable() {
  local c
  mapfile -t c < <(conditions)
  systemd-analyze condition "${c[@]}"
}
check "installed without a config, the unit does not start (its conditions fail)" not_startable
if [ -d /run/systemd/system ]; then
  inactive() { ! systemctl is-active --quiet tunnelkeeper.service; }
  check "systemd runs: the service is not active after the install" inactive
fi
# deb-systemd-helper links to /lib/systemd/system/..., the same file on a merged /usr.
enabled() { [ -L "$WANTS" ] && [ "$(readlink -f "$WANTS")" = "$(readlink -f "$UNIT")" ]; }
check "the unit is enabled ($WANTS)" enabled
check "postinst applied net.ipv4.ping_group_range (now $(tr '\t' ' ' <"$PING_RANGE"))" \
  test "$(tr -s '\t ' ' ' <"$PING_RANGE")" = "0 2147483647"

# The installed unit, as systemd sees it.
verify_clean() {
  local said
  said=$(systemd-analyze verify "$UNIT" 2>&1) || { echo "$said" >&2; return 1; }
  [ -z "$said" ] || { echo "$said" >&2; return 1; }
}
check "systemd-analyze verify $UNIT is clean" verify_clean
exposure=$(systemd-analyze security --offline=true "$UNIT" 2>&1 |
  sed -n 's/.*Overall exposure level for tunnelkeeper\.service: \([0-9.]*\).*/\1/p')
echo "systemd-analyze security: overall exposure ${exposure:-not found}"
check "the exposure level ${exposure:-(none)} is at most 2.0" \
  awk -v e="$exposure" 'BEGIN { exit !(e != "" && e + 0 <= 2.0) }'

# The installed example, by the installed binary (as ExecStartPre= does).
check "tunnelkeeper check-config $EXAMPLE" quietly "$BIN" check-config "$EXAMPLE"

# The operator writes the config: now the unit may start.
install -d -m 0755 /etc/tunnelkeeper
{ echo "# the operator's"; cat config/example.toml; } >"$CONFIG"
check "with $CONFIG written, the unit's conditions pass" startable

# The upgrade path (postinst configure with the old version): the operator's config
# survives it, and the unit stays enabled.
check "dpkg -i again (the upgrade path) succeeds" quietly dpkg -i "$deb"
check "the operator's $CONFIG survives the upgrade" grep -q "^# the operator's$" "$CONFIG"
check "the unit is still enabled after the upgrade" enabled

# Purge: nothing left. State as systemd's DynamicUser=/StateDirectory= leaves it.
install -d -m 0700 /var/lib/private/tunnelkeeper
echo '{}' >/var/lib/private/tunnelkeeper/alerts.json
ln -s private/tunnelkeeper "$STATE"
check "dpkg --purge succeeds" quietly dpkg --purge "$PKG"
check "dpkg no longer knows $PKG" not_known_to_dpkg
check "after the purge: no binary, unit, sysctl drop-in, config, docs" \
  absent "$BIN" "$UNIT" "$SYSCTL_DROPIN" "$CONFIG" /etc/tunnelkeeper /usr/share/doc/tunnelkeeper
check "after the purge: not enabled, not masked, no deb-systemd-helper state" \
  absent "$WANTS" /etc/systemd/system/tunnelkeeper.service \
  /var/lib/systemd/deb-systemd-helper-enabled/tunnelkeeper.service.dsh-also \
  /var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/tunnelkeeper.service \
  /var/lib/systemd/deb-systemd-helper-masked/tunnelkeeper.service
check "after the purge: no state directory" absent "$STATE" /var/lib/private/tunnelkeeper

# As deploy/terraform installs it: the config is written first and kept (--force-confold
# is harmless now that the package has no conffile), `dpkg -r` keeps it, `dpkg --purge`
# removes it.
install -d -m 0755 /etc/tunnelkeeper
{ echo "# written before the package"; cat config/example.toml; } >"$CONFIG"
check "dpkg -i --force-confold over a config written first succeeds" \
  quietly dpkg -i --force-confdef --force-confold "$deb"
check "the config written first is kept" grep -q '^# written before the package$' "$CONFIG"
check "dpkg -r succeeds" quietly dpkg -r "$PKG"
check "after dpkg -r: no binary, unit or sysctl drop-in" absent "$BIN" "$UNIT" "$SYSCTL_DROPIN"
config_kept() { grep -q '^# written before the package$' "$CONFIG" && [ "$(dpkg_status)" = config-files ]; }
check "after dpkg -r: the config is kept, and dpkg knows it (config-files)" config_kept
check "dpkg --purge after dpkg -r succeeds" quietly dpkg --purge "$PKG"
check "after the purge: no config, not enabled, not masked" \
  absent /etc/tunnelkeeper "$WANTS" /etc/systemd/system/tunnelkeeper.service \
  /var/lib/systemd/deb-systemd-helper-masked/tunnelkeeper.service
we_installed=0

summary
