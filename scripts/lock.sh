#!/usr/bin/env bash
# Re-locks the dependencies with hashes (pip-tools) after an edit of requirements/*.in:
#   requirements.txt          runtime only: what Azure installs with the Functions package
#   requirements-ops.txt      the operator tools (pipeline_tools/), constrained to the runtime lock
#   requirements-dev.txt      tests and linters, with runtime and ops
#   requirements-checks.txt   checkov, installed into .venv-checks of its own
# Needs pip-tools (`.venv/bin/python -m pip install pip-tools==7.6.2`). Linux, CPython 3.11: the
# platform Azure Functions runs, and the one CI uses.
set -euo pipefail
cd "$(dirname "$0")/.."
compile() {
  .venv/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
    --no-emit-find-links --output-file "$1" "$2"
}
compile requirements.txt requirements/runtime.in
compile requirements-ops.txt requirements/ops.in
compile requirements-dev.txt requirements/dev.in
compile requirements-checks.txt requirements/checks.in
