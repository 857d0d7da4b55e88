#!/usr/bin/env bash
# Debian's chromium for tests/browser/ (and CI, through .ci/run): installed when /usr/bin/chromium is missing.
#
#   tests/browser/chromium.sh    exit 0 when /usr/bin/chromium runs headless (installing it first if needed)
#
# Needs root and apt-get to install; it exits non-zero, saying what is missing, otherwise. The tests then
# skip with the reason. The apt log is kept in $LTH_BROWSER_LOG (default /tmp/lth-chromium-apt.log).
set -euo pipefail

CHROMIUM=/usr/bin/chromium
LOG=${LTH_BROWSER_LOG:-/tmp/lth-chromium-apt.log}

die() {
  echo "chromium.sh: $*" >&2
  exit 1
}

if [ ! -x "$CHROMIUM" ]; then
  [ "$(id -u)" -eq 0 ] || die "needs root to install Debian's chromium ($CHROMIUM is missing)"
  command -v apt-get >/dev/null || die "$CHROMIUM is missing and this machine has no apt-get to install it"
  echo "installing chromium (missing: $CHROMIUM)"
  export DEBIAN_FRONTEND=noninteractive
  # a fresh machine may have no package lists yet: update once, only when the first try fails
  if ! apt-get install -y -q chromium >"$LOG" 2>&1; then
    apt-get update -q >>"$LOG" 2>&1 || true
    apt-get install -y -q chromium >>"$LOG" 2>&1 ||
      die "'apt-get install -y chromium' failed:
$(tail -n 5 "$LOG")"
  fi
fi
"$CHROMIUM" --version >/dev/null 2>&1 || die "$CHROMIUM is installed but does not run: see '$CHROMIUM --version'"
echo "chromium: $("$CHROMIUM" --version 2>/dev/null)"  # its wrapper script warns on stderr
