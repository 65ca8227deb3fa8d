"""The README's first command, small: a real process that starts and stops its own Azurite and API."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def test_local_run_builds_the_sample_through_the_triggers_and_stops_what_it_started(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"PIPELINE_STORAGE", "DUCKDB_PATH", "LOG_LEVEL"}}
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline_tools.local_run",
            "--companies",
            "20",
            "--days",
            "5",
            "--workdir",
            str(tmp_path),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = completed.stdout

    assert completed.returncode == 0, out + completed.stderr
    assert re.search(r"4 of 5 dates, \d+ rows", out), out
    assert re.search(r"crm_\d{4}-\d{2}-\d{2}\.csv \(rejected\): .*country", out), out
    assert (tmp_path / "warehouse.duckdb").exists()
    assert (tmp_path / "local.settings.json").exists()
    assert re.search(r"Run report \(6 charts, PNGs beside it\): .*report\.html", out), out
    assert (tmp_path / "report" / "report.html").exists()
    assert len(list((tmp_path / "report").glob("*.png"))) == 6
    azurite_pid = int(re.search(r"pid (\d+);", out).group(1))  # type: ignore[union-attr]
    assert not _alive(azurite_pid), "Azurite was left running"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
