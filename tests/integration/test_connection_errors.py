"""Storage and warehouse connection errors, as an operator meets them: one line naming the
setting and the cause, no key in it, exit code 1 (CLI and runner), and the runner's ``--once``
exits non-zero when any invocation failed, fired timers included."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from pipeline_tools.azurite import AzuriteProcess
from pipeline_tools.cli import CliContext, cli
from pipeline_tools.mock_usage_api import MockUsageApi
from shared.settings import Settings
from shared.wiring import Resources

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
WRONG_KEY = base64.b64encode(b"this is not the account key at all!!").decode()


def wrong_key(connection_string: str) -> str:
    parts = [p for p in connection_string.split(";") if p and not p.startswith("AccountKey=")]
    return ";".join([*parts, f"AccountKey={WRONG_KEY}"])


def unreachable(connection_string: str) -> str:
    return ";".join(
        f"{k}=http://127.0.0.1:9/devstoreaccount1" if k.endswith("Endpoint") else f"{k}={v}"
        for k, v in (p.split("=", 1) for p in connection_string.split(";") if p)
    )


def run_cli(settings: Settings, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), obj=CliContext(_resources=Resources(settings)))
    return result.exit_code, result.stderr


@pytest.mark.parametrize("break_it", [wrong_key, unreachable], ids=["wrong key", "unreachable"])
def test_a_bad_storage_connection_is_one_line_naming_the_setting(
    azurite: AzuriteProcess, tmp_path: Path, break_it: object
) -> None:
    connection = break_it(azurite.connection_string)  # type: ignore[operator]
    settings = Settings.from_values({"PIPELINE_STORAGE": connection, "DUCKDB_PATH": str(tmp_path / "w.duckdb")})

    code, stderr = run_cli(settings, "poison", "list")  # reads two queues: storage is needed

    assert code == 1
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert "PIPELINE_STORAGE" in stderr and WRONG_KEY not in stderr and "AccountKey" not in stderr


def test_a_locked_warehouse_is_one_line_naming_the_setting(azurite: AzuriteProcess, tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    holder = subprocess.Popen(  # another process holds the only write lock, as a running runner does
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({str(path)!r}); print('ok', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ok"
        settings = Settings.from_values({"PIPELINE_STORAGE": azurite.connection_string, "DUCKDB_PATH": str(path)})
        code, stderr = run_cli(settings, "status", "--date", "2025-03-09")
    finally:
        holder.kill()
        holder.wait()
    assert code == 1
    assert stderr.strip().splitlines() == [stderr.strip()]
    assert "DUCKDB_PATH" in stderr and "locked by another process" in stderr
    duckdb.connect(str(path)).close()  # the lock went with its process


def runner_once(tmp_path: Path, values: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    settings_file = tmp_path / "local.settings.json"
    settings_file.write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    return subprocess.run(
        [sys.executable, "-m", "pipeline_tools.runner", "--settings", str(settings_file), "--once", *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )


def base_values(connection: str, tmp_path: Path) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:10]
    return {
        "CRM_CONTAINER": f"crm-{suffix}",
        "QUARANTINE_CONTAINER": f"quarantine-{suffix}",
        "RAW_CONTAINER": f"raw-{suffix}",
        "BUILD_QUEUE": f"build-{suffix}",
        "STATE_TABLE": f"state{suffix}",
        "USAGE_SCHEDULE": "0 0 1 * * *",
        "AzureFunctionsWebHost__hostid": f"conn-{suffix}",
        "AzureWebJobsStorage": connection,
        "PIPELINE_STORAGE": connection,
        "DUCKDB_PATH": str(tmp_path / "w.duckdb"),
        "USAGE_API_BASE_URL": "http://127.0.0.1:9",
        "USAGE_API_KEY": "a-wrong-key",
        "USAGE_API_MAX_ATTEMPTS": "1",
        "LOG_LEVEL": "CRITICAL",
    }


def test_the_runner_once_exits_non_zero_when_a_fired_timer_failed(azurite: AzuriteProcess, tmp_path: Path) -> None:
    values = base_values(azurite.connection_string, tmp_path)
    with MockUsageApi(5, key="the-right-key") as api:  # the tick's key is wrong: 401 fails the invocation
        done = runner_once(tmp_path, {**values, "USAGE_API_BASE_URL": api.base_url}, "--fire-timer")
    assert done.returncode == 1, done.stderr[-2000:]
    assert "1 failed" in done.stderr.splitlines()[-1]


def test_the_runner_with_a_wrong_storage_key_says_so_in_one_line(azurite: AzuriteProcess, tmp_path: Path) -> None:
    done = runner_once(tmp_path, base_values(wrong_key(azurite.connection_string), tmp_path))
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert "PIPELINE_STORAGE" in last or "AzureWebJobsStorage" in last, done.stderr[-2000:]
    assert WRONG_KEY not in done.stderr and "Traceback" not in done.stderr
