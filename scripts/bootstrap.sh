#!/usr/bin/env bash
# Installs what the project needs into ./.venv and ./node_modules. Idempotent and quick on a
# second run: it reinstalls only when requirements*.txt or package-lock.json changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
stamp_of() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PYTHON" -m venv .venv
fi
# Installs come from the hash locks only (scripts/lock.sh writes them): requirements-dev.txt
# holds the runtime (requirements.txt), the operator tools (requirements-ops.txt) and the tests.
py_stamp=$(stamp_of requirements.txt requirements-ops.txt requirements-dev.txt pyproject.toml)
if [ "$(cat .venv/.installed 2>/dev/null)" != "$py_stamp" ]; then
  echo "==> installing Python packages (hash-locked)"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.txt
  # The project itself, editable and without dependencies (all locked above): the operator
  # CLI's console entry point `company-activity` (pyproject's [project.scripts]) in .venv/bin.
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
  echo "$py_stamp" > .venv/.installed
fi

# checkov (the Bicep security scan of scripts/test.sh) in a virtualenv of its own: its pins
# would fight the app's.
if [ ! -x .venv-checks/bin/python ]; then
  echo "==> creating .venv-checks"
  "$PYTHON" -m venv .venv-checks
fi
checks_stamp=$(stamp_of requirements-checks.txt)
if [ "$(cat .venv-checks/.installed 2>/dev/null)" != "$checks_stamp" ]; then
  echo "==> installing checkov (hash-locked)"
  .venv-checks/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-checks.txt
  echo "$checks_stamp" > .venv-checks/.installed
fi

node_stamp=$(stamp_of package-lock.json)
if [ "$(cat node_modules/.installed 2>/dev/null)" != "$node_stamp" ]; then
  echo "==> installing Azurite (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$node_stamp" > node_modules/.installed
fi

# The Azure SQL engine's tests load Microsoft's ODBC driver, which needs unixODBC's libodbc.
# Install it where we can (root with apt, as in CI); elsewhere those tests skip with a reason.
if ! ldconfig -p 2>/dev/null | grep -q 'libodbc.so.2'; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing unixodbc (apt)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq unixodbc >/dev/null) \
      || echo "    (could not install unixodbc; Azure SQL driver tests will skip)"
  fi
fi

# The run report's browser test renders the page in headless Chromium (Debian's package).
# Install it where we can (root with apt, as in CI); elsewhere that test skips with a reason.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing chromium (apt)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "    (could not install chromium; the report's browser test will skip)"
  fi
fi
