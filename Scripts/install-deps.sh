#!/usr/bin/env bash
# Installs the Debian packages swift-pprof needs, if any are missing:
# libunwind-dev and zlib1g-dev to build, golang-go for `go tool pprof`
# (the tests decode profiles with it, and it is the client users run), and
# strace (a hardening test checks with it that serving writes nothing to disk),
# chromium and curl (the flame graph page is tested in headless Chromium, and
# over a Unix socket with curl), libc6-dbg (glibc's separate debug symbols:
# a test checks that start_thread and friends get their names from it).
set -euo pipefail
needed=(libunwind-dev zlib1g-dev golang-go strace chromium curl libc6-dbg)
missing=()
for pkg in "${needed[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "swift-pprof: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
