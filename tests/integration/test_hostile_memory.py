"""Memory stays bounded whatever a CRM file holds: staging runs in a child process against
Azurite and a DuckDB file, and its peak RSS (VmHWM) must stay within a fixed cap of its idle RSS.

Each file is one that used to blow up: a 2 MB gzip that unpacks to 1 GiB (it was decompressed in
memory, ~2 GB peak) and a 52 MB line of commas (52 million fields, ~1.2 GB peak).
"""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient, ContentSettings

from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse
from shared.settings import Settings

pytestmark = pytest.mark.integration

CAP_BYTES = 512 * 1024 * 1024  # above idle
NAME = "crm_2025-11-30.csv"

CHILD = r"""
import json, sys
from shared.services.alerts import RecordingAlertSink
from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse
from shared.settings import Settings
from shared.wiring import Resources


def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(field)


values = json.loads(sys.argv[1])
resources = Resources(Settings.from_values(values), alerts=RecordingAlertSink())
resources.warehouse, resources.blobs, resources.readiness  # connect and apply the schema first
idle = status("VmRSS")
result = resources.stage_crm_blob(sys.argv[2])
alerts = [a.message for a in resources.alerts.alerts]
print(json.dumps({"idle": idle, "peak": status("VmHWM"), "status": result.status, "reason": result.reason,
                  "alerts": alerts}))
"""


def stage_in_child(settings: Settings, tmp_path: Path) -> dict[str, Any]:
    values = {
        "PIPELINE_STORAGE": settings.storage_connection_string(),
        "CRM_CONTAINER": settings.crm_container,
        "QUARANTINE_CONTAINER": settings.quarantine_container,
        "RAW_CONTAINER": settings.raw_container,
        "BUILD_QUEUE": settings.build_queue,
        "STATE_TABLE": settings.state_table,
        "DUCKDB_PATH": str(tmp_path / "w.duckdb"),
    }
    migrated(tmp_path / "w.duckdb")
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(values), NAME],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).parents[2],
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def migrated(path: Path) -> None:
    """Migrations are a deploy step: the app only checks the schema version."""
    warehouse = DuckDBWarehouse(path)
    warehouse.apply_schema()
    warehouse.close()


def upload(settings: Settings, chunks: Iterator[bytes], content_encoding: str | None = None) -> None:
    conn = settings.storage_connection_string()
    assert conn is not None
    blob = BlobServiceClient.from_connection_string(conn).get_blob_client(settings.crm_container, NAME)
    blob.upload_blob(
        b"".join(chunks), overwrite=True, content_settings=ContentSettings(content_encoding=content_encoding)
    )


def gzip_bomb(unpacked: int) -> Iterator[bytes]:
    """A gzip stream of a CSV header followed by ``unpacked`` bytes of 'a'."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    yield packer.compress(b"company_id,name,country,industry_tag,last_contact_at\nc1,")
    block = b"a" * (16 * 1024 * 1024)
    for _ in range(unpacked // len(block)):
        yield packer.compress(block)
    yield packer.flush()


def test_a_gzip_bomb_is_quarantined_unread_and_memory_stays_flat(storage_settings: Settings, tmp_path: Path) -> None:
    upload(storage_settings, gzip_bomb(1024 * 1024 * 1024), content_encoding="gzip")
    seen = stage_in_child(storage_settings, tmp_path)

    assert seen["status"] == "rejected"
    assert "Content-Encoding 'gzip'" in seen["reason"]
    assert any("content_encoding" in message for message in seen["alerts"])
    assert seen["peak"] - seen["idle"] < CAP_BYTES, seen


def test_a_52_megabyte_line_of_commas_is_rejected_and_memory_stays_flat(
    storage_settings: Settings, tmp_path: Path
) -> None:
    line = b"," * (52 * 1024 * 1024)
    upload(storage_settings, iter([b"company_id,name,country,industry_tag,last_contact_at\n", line, b"\n"]))
    seen = stage_in_child(storage_settings, tmp_path)

    assert seen["status"] == "rejected"
    assert "CRM_MAX_LINE_BYTES" in seen["reason"]
    assert seen["peak"] - seen["idle"] < CAP_BYTES, seen
