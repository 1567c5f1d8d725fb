#!/usr/bin/env bash
# Set up (scripts/setup.sh), install the headless browser the report test drives
# (Debian's chromium and chromium-driver), and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        echo "test setup: installing Debian packages chromium and chromium-driver"
        apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null
    elif command -v apt-get >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
        sudo apt-get update -qq && sudo apt-get install -y -qq chromium chromium-driver >/dev/null
    else
        echo "test setup: cannot install chromium and chromium-driver; the browser test will fail" >&2
    fi
fi
exec .venv/bin/python -m pytest "$@"
