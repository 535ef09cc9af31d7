#!/usr/bin/env bash
# Make sure headless Chromium and its WebDriver are there for the console's browser tests
# (tests/test_console_browser.py), from Debian's packages. Idempotent: installs only when
# /usr/bin/chromedriver is missing.
set -euo pipefail

if [ -x /usr/bin/chromedriver ] && [ -x /usr/bin/chromium ]; then
  echo "chromium: installed"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
echo "chromium: $(/usr/bin/chromium --version 2>/dev/null || echo installed)"
