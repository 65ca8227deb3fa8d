"""Imports point one way: function_app, pipeline_tools -> services -> adapters -> rules, settings, errors, logs,
telemetry.

``pipeline_tools`` (operator CLI, local runner, mock API, sample data, Azurite) is not deployed, so
nothing under ``shared/`` or ``function_app.py`` may import it.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / "shared"
# A module may import from its own layer and the layers to its right.
LAYERS = ["services", "adapters", "rules"]
BASE = {"settings", "errors", "logs", "telemetry", "host_config", "clock"}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "shared" or len(parts) < 2:
        return None
    return parts[1]


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
    return found


def test_imports_point_one_way() -> None:
    violations = []
    for path in SHARED.rglob("*.py"):
        own = path.relative_to(SHARED).parts[0].removesuffix(".py")
        if own == "wiring":  # builds adapters for services: allowed to see everything
            allowed = set(LAYERS) | BASE | {"wiring"}
        elif own in LAYERS:
            allowed = set(LAYERS[LAYERS.index(own) :]) | BASE
        else:
            allowed = BASE
        for module in _imports(path):
            layer = _layer(module)
            if layer is not None and layer not in allowed:
                violations.append(f"{path.relative_to(SHARED)} imports {module}")
    assert not violations, "\n".join(violations)


def test_deployed_code_never_imports_the_tools() -> None:
    deployed = [ROOT / "function_app.py", *SHARED.rglob("*.py")]
    violations = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in deployed
        for module in _imports(path)
        if module.split(".")[0] == "pipeline_tools"
    ]
    assert not violations, "\n".join(violations)
