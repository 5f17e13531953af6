#!/usr/bin/env bash
# Installs the Debian packages fleetscan needs to build, test and run its demo.
# Idempotent: only missing packages are installed. Usage: scripts/deps.sh [extra-pkg...]
set -euo pipefail
pkgs=(build-essential cmake pkg-config libuv1-dev libssl-dev libmicrohttpd-dev libcjson-dev
      libcurl4-openssl-dev libc-ares-dev libsqlite3-dev libjemalloc-dev openssl prometheus curl iproute2 util-linux chromium
      slapd "$@") # slapd: tests/test_revoke.c runs its own on loopback for ldap:// CDPs
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
echo "deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
