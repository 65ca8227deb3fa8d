"""The Azurite process manager: free ports, readiness, retry on a port race, stop by PID."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

import pipeline_tools.azurite as azurite_module
from pipeline_tools.azurite import AzuriteProcess

pytestmark = pytest.mark.integration


def test_the_session_azurite_answers_on_three_distinct_loopback_ports(azurite: AzuriteProcess) -> None:
    ports = {azurite.blob_port, azurite.queue_port, azurite.table_port}

    assert azurite.is_running()
    assert len(ports) == 3
    for endpoint in (azurite.blob_endpoint, azurite.queue_endpoint, azurite.table_endpoint):
        assert endpoint.startswith("http://127.0.0.1:")
        assert f"{endpoint};" in azurite.connection_string


def test_start_retries_on_new_ports_when_a_chosen_port_is_taken(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        real_free_ports = azurite_module._free_ports
        calls: list[list[int]] = []

        def first_time_taken(count: int) -> list[int]:
            ports = real_free_ports(count)
            if not calls:
                ports[0] = taken  # another process won the race for the blob port
            calls.append(ports)
            return ports

        monkeypatch.setattr(azurite_module, "_free_ports", first_time_taken)

        with AzuriteProcess.start(tmp_path, ready_timeout_s=20) as process:
            assert len(calls) == 2
            assert process.blob_port != taken
            assert process.is_running()

    assert "EADDRINUSE" in (tmp_path / "azurite-1.log").read_text()


def test_stop_ends_the_server_process_and_removes_its_temporary_directory() -> None:
    process = AzuriteProcess.start()

    process.stop()

    assert not process.is_running()
    assert process.process.returncode is not None
    assert not process.workdir.exists()
