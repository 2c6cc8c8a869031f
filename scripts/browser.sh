#!/usr/bin/env bash
# Make Chromium available for tests/e2e/browser (JupyterLab in a real browser, driven by
# Playwright from .venv): install Debian's chromium when there is none. Used by CI; elsewhere
# the browser tests skip with one reason when Chromium is missing (CI=true: they fail instead).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  echo "browser: $(chromium --version 2>/dev/null | head -1)"
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "browser: cannot install chromium (needs root and apt-get)" >&2
  [ "${CI:-}" != true ] || exit 1
  exit 0
fi
echo "browser: installing chromium"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
echo "browser: $(chromium --version 2>/dev/null | head -1)"
