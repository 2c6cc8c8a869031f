#!/usr/bin/env bash
# `bash scripts/apt-install.sh LABEL PACKAGE...`: install Debian packages for CI's set-up
# scripts (docker-engine.sh, browser.sh). Without root or apt-get it says so and exits 0, or 1
# with CI=true (what CI needs must be there); nothing to install, nothing done.
set -euo pipefail
label=$1
shift
[ "$#" -gt 0 ] || exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "$label: cannot install $* (needs root and apt-get)" >&2
  [ "${CI:-}" != true ] || exit 1
  exit 0
fi
echo "$label: installing $*"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
