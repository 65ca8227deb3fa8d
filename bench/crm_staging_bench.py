"""Benchmark: stage large CRM snapshots with the embedded engine against Python's own csv.reader.

Generates CRM CSVs (streamed to disk), then stages two consecutive snapshots through the same
path as the blob trigger (shared.services.crm_staging.stage_crm_snapshot: streaming validation,
bulk load, atomic swap, SCD2) with the blob store replaced by local files. The first snapshot
fills an empty dim.companies; the second changes 1 % of the companies, the daily case; the third
is a re-upload of the second's date with other content (2 % changed against the first), which
replaces every staged row of that date.

The baseline is measured in the same run over the same file: a bare ``csv.reader`` loop (the
parsing every CSV validator starts from). Each figure is the median of ``--repeats`` runs (each
staging repeat starts from an empty warehouse) and the ratio ours / bare is printed beside them,
with the process's CPU seconds (all threads) beside the wall seconds.
Each size runs in its own process, because peak RSS (getrusage ru_maxrss) is per process: the
1M and 2M figures side by side show whether memory grows with file size.

    .venv/bin/python bench/crm_staging_bench.py                       # 1M and 2M rows, 3 repeats
    .venv/bin/python bench/crm_staging_bench.py --sizes 20000 --repeats 1   # quick
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.steps import wall_cpu
from shared.adapters.blob_store import BlobInfo
from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse
from shared.services.alerts import RecordingAlertSink
from shared.services.crm_staging import stage_crm_snapshot
from shared.services.readiness import MarkResult
from shared.settings import Settings

HEADER = "company_id,name,country,industry_tag,last_contact_at\n"
COUNTRIES = ["DE", "FR", "US", "GB", "NL", "IT", "ES", "PL", "SE", "JP"]
INDUSTRIES = ["saas", "retail", "fintech", "health", "logistics", "media", ""]
CHUNK = 4 * 1024 * 1024


def generate(path: Path, rows: int, changed_share: float, seed: int) -> None:
    """A snapshot of ``rows`` companies; ``changed_share`` of them renamed (seeded, reproducible).

    About 0.1 % of the lines repeat an earlier company (duplicates) and 0.05 % have a bad
    timestamp (rejected rows), so both paths are exercised at scale.
    """
    rng = random.Random(seed)
    base = dt.datetime(2025, 1, 1)
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(HEADER)
        buffer: list[str] = []
        for i in range(rows):
            renamed = " (renamed)" if rng.random() < changed_share else ""
            name = f'"Company {i}, Ltd{renamed}"' if i % 7 == 0 else f"Company {i}{renamed}"
            contact = "" if i % 5 == 0 else (base + dt.timedelta(minutes=i)).isoformat() + ("+02:00" if i % 3 else "Z")
            if rng.random() < 0.0005:
                contact = "not-a-date"
            buffer.append(f"c{i:08d},{name},{COUNTRIES[i % 10]},{INDUSTRIES[i % 7]},{contact}\n")
            if rng.random() < 0.001 and i:
                buffer.append(f"c{rng.randrange(i):08d},Duplicate {i},DE,saas,\n")
            if len(buffer) >= 10_000:
                out.write("".join(buffer))
                buffer.clear()
        out.write("".join(buffer))


class LocalFiles:
    """The BlobStore calls staging makes, over a directory per container."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, container: str, name: str) -> Path:
        path = self.root / container / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def info(self, container: str, name: str) -> BlobInfo:
        stat = self._path(container, name).stat()
        return BlobInfo(container, name, f'"{stat.st_mtime_ns}"', stat.st_size, None, None, {})

    def iter_chunks(
        self, container: str, name: str, chunk_size: int = CHUNK, *, etag: str | None = None
    ) -> Iterator[bytes]:
        with self._path(container, name).open("rb") as handle:
            while chunk := handle.read(chunk_size):
                yield chunk

    def write(self, container: str, name: str, data: bytes | Iterable[bytes], **_: Any) -> None:
        with self._path(container, name).open("wb") as handle:
            for chunk in [data] if isinstance(data, bytes) else data:
                handle.write(chunk)

    def copy(self, src_container: str, src_name: str, dst_container: str, dst_name: str) -> None:
        shutil.copyfile(self._path(src_container, src_name), self._path(dst_container, dst_name))


class TimedWarehouse(DuckDBWarehouse):
    """Accumulates wall and CPU seconds (the process's, all threads) per SQL file, for the
    landing load (which includes validation, since the validated batches are streamed straight
    into it) and for COMMITs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seconds: dict[str, list[float]] = {}

    def _timed(self, key: str, call: Any) -> Any:
        with wall_cpu(self.seconds.setdefault(key, [0.0, 0.0])):
            return call()

    def _commit_transaction(self) -> None:
        self._timed("COMMIT", super()._commit_transaction)

    def run(self, name: str, params: Any = None) -> Any:
        return self._timed(name, lambda: super(TimedWarehouse, self).run(name, params))

    def bulk_load_columns(self, table: str, columns: Any, batches: Any) -> int:
        parent = super().bulk_load_columns
        return self._timed("validate + load", lambda: parent(table, columns, batches))


class NoReadiness:
    def mark_input_present(self, activity_date: dt.date, *_: Any) -> MarkResult:
        return MarkResult(activity_date, True, False)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def bare_csv_reader_seconds(path: Path) -> tuple[float, int]:
    """The baseline: Python's csv.reader over the same file, doing nothing with the records."""
    start = time.perf_counter()
    records = 0
    with path.open(newline="", encoding="utf-8") as handle:
        for _ in csv.reader(handle):
            records += 1
    return time.perf_counter() - start, records


def stage_all(workdir: Path, blobs: LocalFiles, names: list[str], memory_limit: str | None) -> list[dict[str, Any]]:
    """One repeat: the uploads in order into a fresh warehouse; seconds and phases per upload."""
    settings = Settings(crm_container="crm", quarantine_container="quarantine")
    path = workdir / "warehouse.duckdb"
    for leftover in workdir.glob("warehouse.duckdb*"):
        leftover.unlink()
    warehouse = TimedWarehouse(path, memory_limit=memory_limit)
    warehouse.apply_schema()
    stages = []
    for name in names:
        warehouse.seconds.clear()
        spent = [0.0, 0.0]
        with wall_cpu(spent):
            result = stage_crm_snapshot(
                name,
                settings=settings,
                blobs=blobs,
                warehouse=warehouse,
                readiness=NoReadiness(),
                alerts=RecordingAlertSink(),
            )
        seconds, cpu_seconds = spent
        assert result.status == "staged", result
        stages.append(
            {
                "data_rows": result.data_rows,
                "staged": result.rows_staged,
                "rejected": result.rejected_rows,
                "duplicates": result.duplicate_rows,
                "seconds": seconds,
                "cpu_seconds": cpu_seconds,
                "phases": {k: list(v) for k, v in warehouse.seconds.items()},
            }
        )
    versions = warehouse.run_sql(
        "SELECT COUNT(*) AS n, SUM(CASE WHEN valid_to IS NULL THEN 1 ELSE 0 END) AS o FROM dim.companies"
    )[0]
    warehouse.close()
    stages[-1]["dim"] = f"{versions['n']:,} versions, {versions['o']:,} open"
    return stages


def run_one(rows: int, workdir: Path, memory_limit: str | None, repeats: int) -> dict[str, Any]:
    blobs = LocalFiles(workdir)
    days = [dt.date(2025, 11, 29), dt.date(2025, 11, 30), dt.date(2025, 11, 30)]
    names = [f"crm_{days[0]}.csv", f"crm_{days[1]}.csv", f"crm_{days[2]}_reupload.csv"]
    for index, name in enumerate(names):
        generate(blobs._path("crm", name), rows, changed_share=0.01 * index, seed=index)
    first = blobs._path("crm", names[0])
    bare, records = [], 0
    runs: list[list[dict[str, Any]]] = []
    for _ in range(repeats):  # interleaved, so both see the same machine load
        seconds, records = bare_csv_reader_seconds(first)
        bare.append(seconds)
        runs.append(stage_all(workdir, blobs, names, memory_limit))
    bare_rate = records / statistics.median(bare)
    snapshots = []
    for index, label in enumerate(("initial (empty dim)", "daily (1 % changed)", "re-upload of the date")):
        stages = [run[index] for run in runs]
        seconds = statistics.median(stage["seconds"] for stage in stages)
        cpu_seconds = statistics.median(stage["cpu_seconds"] for stage in stages)
        rate = stages[0]["data_rows"] / seconds
        phases = {
            k: [statistics.median(stage["phases"].get(k, [0.0, 0.0])[i] for stage in stages) for i in (0, 1)]
            for k in stages[0]["phases"]
        }
        snapshots.append(
            {
                "label": label,
                "seconds": round(seconds, 2),
                "cpu_seconds": round(cpu_seconds, 2),
                "rows_per_s": round(rate),
                "ratio": round(rate / bare_rate, 3),
                "counts": {k: stages[0][k] for k in ("data_rows", "staged", "rejected", "duplicates")},
                "phases": {k: [round(v, 2) for v in pair] for k, pair in phases.items() if pair[0] >= 0.05},
                "dim": stages[0].get("dim"),
            }
        )
    return {
        "rows": rows,
        "file_mb": round(first.stat().st_size / 1e6, 1),
        "repeats": repeats,
        "bare_rows_per_s": round(bare_rate),
        "snapshots": snapshots,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 2_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--duckdb-memory-limit",
        default="512MB",
        help="DuckDB's buffer pool cap (it spills beyond it); 'none' for DuckDB's default of 80%% of RAM",
    )
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child process: one size
    args = parser.parse_args()

    if args.one:
        with tempfile.TemporaryDirectory(prefix="crm_bench_") as tmp:
            limit = None if args.duckdb_memory_limit == "none" else args.duckdb_memory_limit
            print(json.dumps(run_one(args.one, Path(tmp), limit, args.repeats)))
        return

    print(f"DuckDB memory limit: {args.duckdb_memory_limit}; medians of {args.repeats} runs")
    peaks = {}
    for rows in args.sizes:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--one",
                str(rows),
                "--repeats",
                str(args.repeats),
                "--duckdb-memory-limit",
                args.duckdb_memory_limit,
            ],
            capture_output=True,
            text=True,
            check=True,
            env=os.environ,
        )
        figures = json.loads(out.stdout.strip().splitlines()[-1])
        peaks[rows] = figures["peak_rss_mb"]
        print(f"\n{rows:,} rows ({figures['file_mb']} MB CSV)")
        print(f"  bare csv.reader          {figures['bare_rows_per_s']:>10,} rows/s")
        for snap in figures["snapshots"]:
            counts = snap["counts"]
            print(
                f"  staging, {snap['label']:<21} {snap['rows_per_s']:>10,} rows/s  {snap['seconds']:>6} s "
                f"(CPU {snap['cpu_seconds']} s)  "
                f"ratio {snap['ratio']:.1%} of bare  (staged {counts['staged']:,}, rejected {counts['rejected']:,}, "
                f"duplicates {counts['duplicates']:,})"
            )
            print("      " + ", ".join(f"{k} {wall} s (CPU {cpu})" for k, (wall, cpu) in snap["phases"].items()))
        print(f"  dim.companies            {figures['snapshots'][-1]['dim']}")
        print(f"  peak RSS                 {figures['peak_rss_mb']} MB")
    if len(peaks) > 1:
        smallest, largest = min(peaks), max(peaks)
        print(f"\npeak RSS {largest:,} rows / {smallest:,} rows: {peaks[largest] / peaks[smallest]:.2f}x")


if __name__ == "__main__":
    main()
