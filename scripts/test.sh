#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what it needs, then runs pytest in parallel.
# Extra arguments go to pytest, e.g. scripts/test.sh tests/unit -k crm
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -n "${PYTEST_WORKERS:-auto}" --dist loadgroup "$@"
