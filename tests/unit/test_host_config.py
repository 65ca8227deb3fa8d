"""host.json is valid for the Functions host and is what producer and runner read."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from shared.host_config import HOST_JSON, queue_config


def test_host_json_is_version_2_with_an_extension_bundle() -> None:
    host = json.loads(HOST_JSON.read_text())
    assert host["version"] == "2.0"
    assert host["extensionBundle"]["id"] == "Microsoft.Azure.Functions.ExtensionBundle"


def test_queue_settings_are_read_from_host_json() -> None:
    config = queue_config()
    assert config.message_encoding == "base64"
    assert config.max_dequeue_count == 5
    assert config.visibility_timeout == dt.timedelta(seconds=30)


def test_defaults_match_the_host_when_host_json_is_silent(tmp_path: Path) -> None:
    path = tmp_path / "host.json"
    path.write_text(json.dumps({"version": "2.0"}))
    config = queue_config(path)
    assert (config.message_encoding, config.max_dequeue_count) == ("base64", 5)


def test_malformed_timespan_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "host.json"
    path.write_text(json.dumps({"version": "2.0", "extensions": {"queues": {"visibilityTimeout": "30s"}}}))
    with pytest.raises(ValueError, match="timespan"):
        queue_config(path)
