"""Start and stop a private Azurite (Blob, Queue, Table emulator) on free loopback ports.

Used by the test fixtures (one Azurite per pytest worker) and by the local-run tool. The
server is ``node_modules/.bin/azurite`` run directly, not through ``npx``, so the PID we hold
is the server's and stopping it by PID cannot leave an orphan behind. Data lives in memory
only: nothing is written to the repository, and every start begins empty.

    with AzuriteProcess.start() as azurite:
        settings = Settings(pipeline_storage=azurite.connection_string)

``python -m pipeline_tools.azurite`` runs one in the foreground and prints its connection string.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

from shared.settings import Settings
from shared.wiring import provision_storage

REPO_ROOT = Path(__file__).resolve().parents[1]
AZURITE_BIN = REPO_ROOT / "node_modules" / ".bin" / "azurite"

# Azurite's fixed development account: public, documented by Microsoft, not a secret.
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

HOST = "127.0.0.1"
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>

logger = logging.getLogger(__name__)


class AzuriteError(RuntimeError):
    """Azurite is not installed, did not start, or did not become ready in time."""


@dataclass
class AzuriteProcess:
    """A running Azurite; stop it with ``stop()`` or use it as a context manager."""

    process: subprocess.Popen[bytes]
    blob_port: int
    queue_port: int
    table_port: int
    workdir: Path
    log_path: Path
    _log_file: IO[bytes] | None = field(default=None, repr=False)
    _owns_workdir: bool = field(default=False, repr=False)

    # ---- start ---------------------------------------------------------------------------
    @classmethod
    def start(
        cls, workdir: str | Path | None = None, *, ready_timeout_s: float = 30.0, attempts: int = 3
    ) -> AzuriteProcess:
        """Start Azurite on three free ports and return once all three services answer.

        Free ports are found by binding port 0 and releasing it, so another process may take
        one before Azurite binds it; such a start fails fast (Azurite exits) and is retried on
        new ports, up to ``attempts`` times.
        """
        _require_installed()
        owns_workdir = workdir is None
        base = Path(tempfile.mkdtemp(prefix="azurite-")) if workdir is None else Path(workdir)
        base.mkdir(parents=True, exist_ok=True)
        last_error: AzuriteError | None = None
        for attempt in range(1, attempts + 1):
            instance = cls._spawn(base, attempt, owns_workdir)
            try:
                instance._wait_until_ready(ready_timeout_s)
            except AzuriteError as exc:
                last_error = exc
                logger.warning("Azurite start attempt %d/%d failed: %s", attempt, attempts, exc)
                instance._terminate()
                continue
            logger.info(
                "Azurite ready (pid %d; blob %d, queue %d, table %d); its output is in %s",
                instance.pid,
                instance.blob_port,
                instance.queue_port,
                instance.table_port,
                instance.log_path,
            )
            return instance
        raise AzuriteError(f"Azurite did not start after {attempts} attempts: {last_error}")

    @classmethod
    def _spawn(cls, workdir: Path, attempt: int, owns_workdir: bool) -> AzuriteProcess:
        blob_port, queue_port, table_port = _free_ports(3)
        log_path = workdir / f"azurite-{attempt}.log"
        log_file = log_path.open("wb")
        command = [
            str(AZURITE_BIN),
            "--silent",
            "--skipApiVersionCheck",
            "--inMemoryPersistence",  # cannot be combined with --location; cwd is the workdir instead
            "--disableProductStyleUrl",
            "--disableTelemetry",
            "--blobHost",
            HOST,
            "--blobPort",
            str(blob_port),
            "--queueHost",
            HOST,
            "--queuePort",
            str(queue_port),
            "--tableHost",
            HOST,
            "--tablePort",
            str(table_port),
        ]
        process = subprocess.Popen(  # noqa: S603 - fixed executable inside the repository
            command,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        return cls(process, blob_port, queue_port, table_port, workdir, log_path, log_file, owns_workdir)

    def _wait_until_ready(self, timeout_s: float) -> None:
        """Poll until Blob, Queue and Table each answer a real list request (not just a TCP accept)."""
        deadline = time.monotonic() + timeout_s
        pending = self._probes()
        while pending:
            if self.process.poll() is not None:
                raise AzuriteError(f"exited with code {self.process.returncode}; see {self.log_path}")
            for name, probe in list(pending.items()):
                with contextlib.suppress(Exception):  # not listening yet, or still initialising
                    probe()
                    del pending[name]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise AzuriteError(f"{', '.join(pending)} not ready within {timeout_s:.0f}s; see {self.log_path}")
            time.sleep(0.05)

    def _probes(self) -> dict[str, Callable[[], object]]:
        """One cheap list call per service, with SDK retries off: the polling loop is the retry."""
        from azure.data.tables import TableServiceClient
        from azure.storage.blob import BlobServiceClient
        from azure.storage.queue import QueueServiceClient

        options = {"retry_total": 0, "connection_timeout": 1, "read_timeout": 1}  # a slow answer is retried by the loop
        blobs = BlobServiceClient.from_connection_string(self.connection_string, **options)
        queues = QueueServiceClient.from_connection_string(self.connection_string, **options)
        tables = TableServiceClient.from_connection_string(self.connection_string, **options)
        return {
            "blob": lambda: next(iter(blobs.list_containers(results_per_page=1)), None),
            "queue": lambda: next(iter(queues.list_queues(results_per_page=1)), None),
            "table": lambda: next(iter(tables.list_tables(results_per_page=1)), None),
        }

    # ---- what callers use ----------------------------------------------------------------
    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def blob_endpoint(self) -> str:
        return f"http://{HOST}:{self.blob_port}/{ACCOUNT_NAME}"

    @property
    def queue_endpoint(self) -> str:
        return f"http://{HOST}:{self.queue_port}/{ACCOUNT_NAME}"

    @property
    def table_endpoint(self) -> str:
        return f"http://{HOST}:{self.table_port}/{ACCOUNT_NAME}"

    @property
    def connection_string(self) -> str:
        """Explicit endpoints (not UseDevelopmentStorage=true, which means the default ports)."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.blob_endpoint};QueueEndpoint={self.queue_endpoint};"
            f"TableEndpoint={self.table_endpoint};"
        )

    def is_running(self) -> bool:
        return self.process.poll() is None

    # ---- stop ----------------------------------------------------------------------------
    def stop(self, timeout_s: float = 5.0) -> None:
        """Terminate by PID (SIGTERM lets Azurite close its servers), kill if it does not exit."""
        self._terminate(timeout_s)
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _terminate(self, timeout_s: float = 5.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                logger.warning("Azurite (pid %d) ignored SIGTERM; killing it", self.pid)
                self.process.kill()
                self.process.wait(timeout=timeout_s)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> AzuriteProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def provision(settings: Settings) -> None:
    """Create the pipeline's containers, queues and table in a fresh Azurite (idempotent)."""
    provision_storage(settings)


def _require_installed() -> None:
    if shutil.which("node") is None:
        raise AzuriteError("Node.js is not on PATH; Azurite needs Node 20 (see README)")
    if not AZURITE_BIN.exists():
        raise AzuriteError(f"{AZURITE_BIN.relative_to(REPO_ROOT)} not found; run `npm ci` in the repository root")


def _die_with_parent() -> None:
    """Runs in the child before exec (Linux): have the kernel SIGTERM Azurite when the thread
    that started it dies, so a test run killed with SIGKILL leaves no server behind. Start
    Azurite from a thread that lives as long as you need it (the main thread, normally)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _free_ports(count: int) -> list[int]:
    """Ports the OS considers free right now; all held open together so the three differ."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in sockets:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]


def main() -> None:
    """Run Azurite in the foreground until Ctrl+C, printing the connection string to use."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)  # the SDK logs every request at INFO
    with AzuriteProcess.start() as azurite:
        print(f"PIPELINE_STORAGE={azurite.connection_string}")
        with contextlib.suppress(KeyboardInterrupt):
            azurite.process.wait()


if __name__ == "__main__":
    main()
