#!/usr/bin/env bash
# Runs the pipeline end to end on this machine: installs what it needs, starts Azurite and the
# mock Product Usage API on free loopback ports, generates sample data, drives the registered
# functions through the local trigger runner, and prints a summary. See README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/python -m pipeline_tools.local_run "$@"
