"""The package that would ship: the files .funcignore leaves, with only requirements.txt installed
into a fresh virtualenv, imports function_app and lists its three functions, and holds no dev tool."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pathspec
import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.xdist_group("package")  # one slow install at a time

PROBE = """
import importlib.util, json
import function_app
print(json.dumps({
    "functions": sorted(f.get_function_name() for f in function_app.app.get_functions()),
    "absent": [m for m in ("click", "rich", "pytest", "pipeline_tools", "tests", "matplotlib")
               if importlib.util.find_spec(m) is None],
}))
"""


def package_files(root: Path = ROOT) -> list[Path]:
    """What `func`/azd zip: every file under the project except what .funcignore (gitignore syntax)
    excludes. Directories are matched with a trailing slash, as gitignore does."""
    spec = pathspec.PathSpec.from_lines("gitignore", (root / ".funcignore").read_text().splitlines())
    kept: list[Path] = []
    for directory, dirnames, filenames in os.walk(root):
        rel_dir = Path(directory).relative_to(root)
        dirnames[:] = [d for d in dirnames if d != ".git" and not spec.match_file(f"{(rel_dir / d).as_posix()}/")]
        kept.extend(rel_dir / f for f in filenames if not spec.match_file((rel_dir / f).as_posix()))
    return sorted(kept)


def test_the_package_holds_only_what_the_app_runs() -> None:
    top = {p.parts[0] for p in package_files()}
    assert top == {"function_app.py", "host.json", "requirements.txt", "shared", "sql"}


def test_the_package_installs_from_the_runtime_lock_alone_and_lists_its_three_functions(tmp_path: Path) -> None:
    package = tmp_path / "package"
    for rel in package_files():
        (package / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, package / rel)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    # The outer pip installs into the fresh interpreter: only the hash-locked runtime requirements.
    pip = [sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check"]
    lock = package / "requirements.txt"
    subprocess.run([*pip, "install", "--quiet", "--require-hashes", "-r", str(lock)], check=True, timeout=900)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    completed = subprocess.run(
        [str(python), "-c", PROBE], cwd=package, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    probe = json.loads(completed.stdout.strip().splitlines()[-1])
    assert probe["functions"] == ["build_requested", "crm_snapshot_arrived", "usage_timer"]
    assert probe["absent"] == ["click", "rich", "pytest", "pipeline_tools", "tests", "matplotlib"]
