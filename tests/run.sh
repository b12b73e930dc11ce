#!/usr/bin/env bash
# Install everything the tests need into .venv and run them.
#
# Usage: bash tests/run.sh [pytest arguments]
#
# The end-to-end tests start rotel, a real OTLP collector shipped in a PyPI wheel
# that runs on CPython 3.11 only, and the alert-rule tests run promtool from
# Debian's prometheus package; both are installed here when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-}
if [ -z "$python" ]; then
    if command -v python3.11 >/dev/null; then python=python3.11; else python=python3; fi
fi

if ! command -v promtool >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "Installing promtool (Debian package prometheus)..." >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    else
        echo "promtool not found and cannot be installed here; the alert-rule tests will be skipped" >&2
    fi
fi

if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
exec .venv/bin/python -m pytest "$@"
