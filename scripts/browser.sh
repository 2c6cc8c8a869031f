#!/usr/bin/env bash
# Make Chromium available for tests/e2e/browser (JupyterLab in a real browser, driven by
# Playwright from .venv): install Debian's chromium when there is none. Used by CI; elsewhere
# the browser tests skip with one reason when Chromium is missing (CI=true: they fail instead).
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
  bash "$(dirname "$0")/apt-install.sh" browser chromium
  command -v chromium >/dev/null 2>&1 || exit 0  # could not install (CI=true: failed above)
fi
echo "browser: $(chromium --version 2>/dev/null | head -1)"
