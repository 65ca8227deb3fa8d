"""Benchmark: stage large CRM snapshots with the embedded engine; rows/s and peak memory.

Generates CRM CSVs (streamed to disk), then stages two consecutive snapshots through the same
path as the blob trigger (shared.services.crm_staging.stage_crm_snapshot: streaming validation,
bulk load, atomic swap, SCD2) with the blob store replaced by local files. The second snapshot
changes 1 % of the companies, which is the daily case for dim.companies.

Each size runs in its own process, because peak RSS (getrusage ru_maxrss) is per process: the
figures for 100k and 1M rows side by side show whether memory grows with file size.

    .venv/bin/python bench/crm_staging_bench.py                 # 100k and 1M rows
    .venv/bin/python bench/crm_staging_bench.py --sizes 20000   # quick
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse
from shared.rules.crm_rows import CrmCsvParser
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

    def iter_chunks(self, container: str, name: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
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
    """Accumulates wall time per SQL file and for the bulk load (which includes validation,
    since the validated rows are streamed straight into it)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seconds: dict[str, float] = {}

    def _timed(self, key: str, call: Any) -> Any:
        start = time.perf_counter()
        try:
            return call()
        finally:
            self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - start

    def run(self, name: str, params: Any = None) -> Any:
        return self._timed(name, lambda: super(TimedWarehouse, self).run(name, params))

    def bulk_load(self, table: str, columns: Any, rows: Any) -> int:
        return self._timed("validate + bulk load", lambda: super(TimedWarehouse, self).bulk_load(table, columns, rows))


class NoReadiness:
    def mark_input_present(self, activity_date: dt.date, *_: Any) -> MarkResult:
        return MarkResult(activity_date, True, False)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_one(rows: int, workdir: Path, memory_limit: str | None) -> dict[str, Any]:
    settings = Settings(crm_container="crm", quarantine_container="quarantine")
    blobs = LocalFiles(workdir)
    days = [dt.date(2025, 11, 29), dt.date(2025, 11, 30)]
    for index, day in enumerate(days):
        generate(blobs._path("crm", f"crm_{day}.csv"), rows, changed_share=0.01 * index, seed=index)
    size_mb = blobs._path("crm", f"crm_{days[0]}.csv").stat().st_size / 1e6
    rss_before = peak_rss_mb()

    start = time.perf_counter()
    parser = CrmCsvParser(blobs.iter_chunks("crm", f"crm_{days[0]}.csv"))
    for _ in parser:
        pass
    validate_s = time.perf_counter() - start
    rss_after_validation = peak_rss_mb()

    warehouse = TimedWarehouse(workdir / "warehouse.duckdb", memory_limit=memory_limit)
    warehouse.apply_schema()
    stages = []
    for day in days:
        warehouse.seconds.clear()
        start = time.perf_counter()
        result = stage_crm_snapshot(
            f"crm_{day}.csv",
            settings=settings,
            blobs=blobs,
            warehouse=warehouse,
            readiness=NoReadiness(),
            alerts=RecordingAlertSink(),
        )
        seconds = time.perf_counter() - start
        stages.append(
            {
                "date": str(day),
                "status": result.status,
                "data_rows": result.data_rows,
                "staged": result.rows_staged,
                "rejected": result.rejected_rows,
                "duplicates": result.duplicate_rows,
                "seconds": round(seconds, 2),
                "rows_per_s": round(result.data_rows / seconds),
                "phases": {k: round(v, 2) for k, v in warehouse.seconds.items() if v >= 0.05},
            }
        )
    versions = warehouse.run_sql(
        "SELECT COUNT(*) AS n, SUM(CASE WHEN valid_to IS NULL THEN 1 ELSE 0 END) AS o FROM dim.companies"
    )
    warehouse.close()
    return {
        "rows": rows,
        "file_mb": round(size_mb, 1),
        "validate_only_rows_per_s": round(parser.stats.data_rows / validate_s),
        "stages": stages,
        "dim_versions": versions[0]["n"],
        "dim_open_versions": versions[0]["o"],
        "peak_rss_mb_before_staging": round(rss_before, 1),
        "peak_rss_mb_after_validation": round(rss_after_validation, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
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
            print(json.dumps(run_one(args.one, Path(tmp), limit)))
        return

    print(f"DuckDB memory limit: {args.duckdb_memory_limit}")
    for rows in args.sizes:
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(rows), "--duckdb-memory-limit", args.duckdb_memory_limit],
            capture_output=True,
            text=True,
            check=True,
            env=os.environ,
        )
        figures = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"\n{rows:,} rows ({figures['file_mb']} MB CSV)")
        print(f"  validation only      {figures['validate_only_rows_per_s']:>10,} rows/s")
        for stage in figures["stages"]:
            print(
                f"  stage {stage['date']}     {stage['rows_per_s']:>10,} rows/s  {stage['seconds']:>6} s  "
                f"staged {stage['staged']:,}, rejected {stage['rejected']:,}, duplicates {stage['duplicates']:,}"
            )
            print("    " + ", ".join(f"{k} {v} s" for k, v in stage["phases"].items()))
        print(f"  dim.companies        {figures['dim_versions']:,} versions, {figures['dim_open_versions']:,} open")
        print(
            f"  peak RSS             {figures['peak_rss_mb']} MB (after validation only: "
            f"{figures['peak_rss_mb_after_validation']} MB; at start: {figures['peak_rss_mb_before_staging']} MB)"
        )


if __name__ == "__main__":
    main()
