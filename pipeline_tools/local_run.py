"""The one-command local run (``scripts/run-local.sh``): the pipeline end to end, through its triggers.

1. starts Azurite and the mock Product Usage API on free loopback ports;
2. writes ``.local-run/local.settings.json`` for this run (DuckDB file under ``.local-run/`` too);
3. generates the sample CRM snapshots (default 200 companies x 30 days ending yesterday UTC,
   with renames, late and departed companies and one bad file) and uploads them;
4. lets the local trigger runner deliver them to the blob-triggered function, fires the usage
   timer, then makes a late correction in the API and fires the timer again, processing every
   build message the functions queue;
5. prints what was built (dates, rows, churn risk, data-quality findings, quarantined files) and
   how to query the DuckDB warehouse, then writes the analysts' run report (``report/report.html``
   and its PNG charts) and prints its path.

Every process it starts is stopped at the end, also on Ctrl-C or SIGTERM. ``--serve`` keeps
everything running afterwards so more files can be dropped in.

The timer pulls yesterday plus ``USAGE_LOOKBACK_DAYS`` days; this run sets the look-back to reach
the sample's first day, so one tick covers the whole sample (a first deployment in Azure would
be backfilled with the operator CLI instead). That is why the sample must end by yesterday and
start at most 61 days ago.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pipeline_tools.azurite import AzuriteError, AzuriteProcess, provision
from pipeline_tools.report import write_report
from pipeline_tools.runner import (
    DrainResult,
    Invocation,
    Runner,
    load_app,
    sigterm_as_interrupt,
)
from pipeline_tools.sample_data import CrmSample
from pipeline_tools.schema_bootstrap import apply_migrations
from shared.adapters.storage_common import storage_errors
from shared.clock import utc_now, utc_today
from shared.errors import PipelineError
from shared.logs import ContextFilter, JsonFormatter
from shared.rules.dates import as_date
from shared.settings import Settings, read_local_settings

if TYPE_CHECKING:
    from shared.wiring import Resources

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WORKDIR = REPO_ROOT / ".local-run"
EXAMPLE_SETTINGS = REPO_ROOT / "local.settings.example.json"
MAX_LOOKBACK_DAYS = 60  # the Settings bound of USAGE_LOOKBACK_DAYS
TIMER_FUNCTION = "usage_timer"

Echo = Callable[[str], None]


# ======================================================================================
# The plan: dates and settings of this run (pure, tested)
# ======================================================================================
@dataclass(frozen=True)
class RunPlan:
    companies: int
    start: dt.date
    end: dt.date
    today: dt.date
    seed: int
    workdir: Path

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def lookback_days(self) -> int:
        """Days before yesterday the timer must re-pull so that its first tick reaches ``start``."""
        return (self.today - dt.timedelta(days=1) - self.start).days

    @property
    def duckdb_path(self) -> Path:
        return self.workdir / "warehouse.duckdb"

    @property
    def report_dir(self) -> Path:
        return self.workdir / "report"

    @property
    def bad_file_date(self) -> dt.date:
        """The day whose CRM file the sample breaks on purpose (mid-range)."""
        return self.start + dt.timedelta(days=self.days // 2)

    @property
    def correction_date(self) -> dt.date:
        """A day a few days back that the API corrects late (not the bad file's day, which waits
        for its CRM file, so that the rebuild of the day and its neighbours shows)."""
        candidates = [self.end - dt.timedelta(days=back) for back in (2, 1, 0, 3)]
        return next(
            (d for d in candidates if d >= self.start and d != self.bad_file_date),
            self.end,
        )


def plan_run(
    *,
    today: dt.date,
    companies: int = 200,
    days: int = 30,
    start: dt.date | None = None,
    end: dt.date | None = None,
    seed: int = 7,
    workdir: Path = DEFAULT_WORKDIR,
) -> RunPlan:
    """The dates of the run; refuses ranges one timer tick cannot reach, saying why."""
    yesterday = today - dt.timedelta(days=1)
    if days < 1:
        raise click.BadParameter("must be at least 1", param_hint="--days")
    end = end or (yesterday if start is None else min(yesterday, start + dt.timedelta(days=days - 1)))
    start = start or (end - dt.timedelta(days=days - 1))
    if start > end:
        raise click.BadParameter(f"start {start} is after end {end}", param_hint="--start/--end")
    if end > yesterday:
        raise click.BadParameter(
            f"the timer pulls usage up to yesterday ({yesterday}); end {end} has no usage yet", param_hint="--end"
        )
    plan = RunPlan(companies, start, end, today, seed, workdir)
    if plan.lookback_days > MAX_LOOKBACK_DAYS:
        raise click.BadParameter(
            f"the first day may be at most {MAX_LOOKBACK_DAYS + 1} days before today (one timer tick reaches "
            "that far); backfill longer histories with the operator CLI",
            param_hint="--start/--days",
        )
    return plan


def run_values(
    example: Mapping[str, str], *, storage: str, api_url: str, api_key: str, plan: RunPlan
) -> dict[str, str]:
    """local.settings.example.json's Values with what this run owns filled in."""
    return {
        **example,
        "AzureWebJobsStorage": storage,
        "PIPELINE_STORAGE": storage,
        "PIPELINE_STORAGE__accountName": "",
        "USAGE_API_BASE_URL": api_url,
        "USAGE_API_KEY": api_key,
        "WAREHOUSE_ENGINE": "duckdb",
        "DUCKDB_PATH": str(plan.duckdb_path),
        "USAGE_LOOKBACK_DAYS": str(plan.lookback_days),
        "ALERT_WEBHOOK_URL": "",
    }


# Where this run's data goes must be this run's Azurite, API and DuckDB file, whatever the shell
# says: a PIPELINE_STORAGE exported for real work must never receive sample data.
OWNED_BY_THE_RUN = (
    "AzureWebJobsStorage",
    "PIPELINE_STORAGE",
    "PIPELINE_STORAGE__accountName",
    "USAGE_API_BASE_URL",
    "USAGE_API_KEY",
    "WAREHOUSE_ENGINE",
    "DUCKDB_PATH",
    "USAGE_LOOKBACK_DAYS",
    "ALERT_WEBHOOK_URL",
)


def claim_owned_settings(values: Mapping[str, str], environ: MutableMapping[str, str]) -> list[str]:
    """Set the run's own settings in the environment; returns the names whose shell value it replaced.
    Every other setting follows Core Tools' rule (the shell wins), applied by the runner."""
    replaced = [name for name in OWNED_BY_THE_RUN if environ.get(name) not in (None, values[name])]
    for name in OWNED_BY_THE_RUN:
        environ[name] = values[name]
    return replaced


# ======================================================================================
# The run
# ======================================================================================
@dataclass
class Stage:
    title: str
    result: DrainResult


def run(plan: RunPlan, echo: Echo, *, serve: bool = False) -> int:
    """Do the whole local run; returns the process exit code. Stops what it started, always."""
    _fresh_workdir(plan.workdir)
    log_path = _log_to_file(plan.workdir / "local-run.log")
    echo(f"Logs (one JSON object a line): {_shown(log_path)}")
    stages: list[Stage] = []
    with contextlib.ExitStack() as started, sigterm_as_interrupt():
        try:
            # Storage SDK errors of the runner's own clients become one line naming the setting.
            with storage_errors("local run"):
                runner, api, resources = _start_everything(plan, echo, started)
                stages += _drive(plan, runner, api, echo)
            echo("")
            for line in summarize(resources.warehouse, plan, stages):
                echo(line)
            _write_report(plan, resources, echo)
            if serve:
                _serve(runner, plan, echo)
        except KeyboardInterrupt:
            echo("\nInterrupted: stopping everything this run started.")
            return 130
        except (PipelineError, AzuriteError) as exc:
            echo(f"error: {exc}")
            return 1
        except Exception:
            logging.getLogger(__name__).exception("local run failed")
            echo(f"error: the local run failed unexpectedly; the traceback is in {_shown(log_path)}")
            return 1
        finally:
            echo("Stopping Azurite and the mock API.")
    return _exit_code(stages, echo)


def _start_everything(plan: RunPlan, echo: Echo, started: contextlib.ExitStack) -> tuple[Runner, Any, Resources]:
    from pipeline_tools.mock_usage_api import MockUsageApi

    echo("==> Starting Azurite (in memory, free loopback ports)")
    azurite = started.enter_context(AzuriteProcess.start(workdir=plan.workdir / "azurite"))
    echo(f"    pid {azurite.pid}; blob {azurite.blob_port}, queue {azurite.queue_port}, table {azurite.table_port}")
    api = started.enter_context(MockUsageApi(plan.companies, seed=plan.seed, start=plan.start, end=plan.end))
    echo(f"==> Mock Product Usage API at {api.base_url} ({plan.companies} companies, {plan.start}..{plan.end})")

    example = read_local_settings(EXAMPLE_SETTINGS)
    values = run_values(
        example, storage=azurite.connection_string, api_url=api.base_url, api_key=api.state.key, plan=plan
    )
    settings_path = plan.workdir / "local.settings.json"
    settings_path.write_text(json.dumps({"IsEncrypted": False, "Values": values}, indent=2), encoding="utf-8")
    echo(f"==> Settings for this run: {_shown(settings_path)}")
    for name in claim_owned_settings(values, os.environ):
        echo(f"    note: {name} from your environment is replaced for this run")

    settings = Settings.from_environment()
    provision(settings)
    applied = apply_migrations(settings)  # the deploy step: the app only checks the schema version
    echo(f"==> Warehouse schema: {len(applied)} migration(s) applied" if applied else "==> Warehouse schema current")
    _upload_sample(plan, settings, echo)

    runner = Runner.from_app(load_app("function_app:app"), values)
    echo("==> Local trigger runner (the stand-in for `func start`) drives:")
    for line in runner.describe():
        echo(f"    {line}")

    from shared.wiring import resources

    container = resources()  # the same process-wide container the functions use
    started.callback(container.warehouse.close)  # DuckDB writes its file completely on close
    return runner, api, container


def _upload_sample(plan: RunPlan, settings: Settings, echo: Echo) -> None:
    from shared.adapters.blob_store import BlobStore

    sample = CrmSample(plan.companies, plan.start, plan.end, seed=plan.seed, bad_date=plan.bad_file_date)
    sample_dir = plan.workdir / "sample" / "crm"
    paths = sample.write(sample_dir)
    blobs = BlobStore.from_settings(settings)
    for path in paths:
        blobs.write(settings.crm_container, path.name, path.read_bytes(), content_type="text/csv")
    echo(
        f"==> Sample: {len(paths)} CRM files ({plan.companies} companies) in {_shown(sample_dir)}, "
        f"uploaded to container '{settings.crm_container}'; bad file on purpose: crm_{sample.bad_date}.csv"
    )


def _drive(plan: RunPlan, runner: Runner, api: Any, echo: Echo) -> list[Stage]:
    """CRM files first, then the timer, then a late correction picked up by the next tick."""

    def fire_timer() -> None:
        runner.fire_timer(TIMER_FUNCTION)

    def correct_then_fire_timer() -> None:
        api.correct(plan.correction_date)
        runner.fire_timer(TIMER_FUNCTION)

    return [
        _stage("CRM files delivered by the blob trigger", runner, echo),
        _stage(f"Usage timer fired (pulls {plan.start}..yesterday); builds queued and run", runner, echo, fire_timer),
        _stage(
            f"Late correction of {plan.correction_date} in the API; timer fired again",
            runner,
            echo,
            correct_then_fire_timer,
        ),
    ]


def _stage(title: str, runner: Runner, echo: Echo, kickoff: Callable[[], None] | None = None) -> Stage:
    """Optionally start something (fire the timer), then process until no trigger has work."""
    echo(f"==> {title} ...")
    before = len(runner.history)
    if kickoff is not None:
        kickoff()
    drained = runner.drain(timeout_s=900)
    result = DrainResult(runner.history[before:], drained.idle, drained.elapsed_s)  # the timer's call included
    echo(f"    {_describe_invocations(result.invocations)} in {result.elapsed_s:.1f}s")
    return Stage(title, result)


def _describe_invocations(invocations: Sequence[Invocation]) -> str:
    if not invocations:
        return "no invocations"
    by_function: dict[str, list[int]] = {}
    for invocation in invocations:
        ok_failed = by_function.setdefault(invocation.function, [0, 0])
        ok_failed[0 if invocation.succeeded else 1] += 1
    parts = [f"{name} {ok} ok" + (f", {failed} failed" if failed else "") for name, (ok, failed) in by_function.items()]
    return "; ".join(parts)


def _write_report(plan: RunPlan, resources: Resources, echo: Echo) -> None:
    """The analysts' run report of the sample's dates, from the warehouse just built."""
    written = write_report(
        resources.warehouse,
        plan.start,
        plan.end,
        plan.report_dir,
        now=utc_now(),
        freshness_deadline_hours=resources.settings.freshness_deadline_hours,
    )
    echo("")
    echo(f"Run report ({len(written.pngs)} charts, PNGs beside it): {_shown(written.html)}")


def _serve(runner: Runner, plan: RunPlan, echo: Echo) -> None:
    echo("")
    echo(f"Serving until Ctrl-C: drop CRM files into the container (settings in {_shown(plan.workdir)}).")
    runner.run_forever(threading.Event())


def _exit_code(stages: Sequence[Stage], echo: Echo) -> int:
    """0 when every invocation worked and every stage finished its work."""
    failures = [i for s in stages for i in s.result.failures]
    unfinished = [s.title for s in stages if not s.result.idle]
    if failures or unfinished:
        echo(f"{len(failures)} invocation(s) failed; unfinished: {', '.join(unfinished) or 'none'}. See the log.")
        return 1
    return 0


# ======================================================================================
# Summary
# ======================================================================================
def summarize(warehouse: Any, plan: RunPlan, stages: Sequence[Stage]) -> list[str]:
    """Short, human-readable facts about what the run built, read back from the warehouse."""
    lines = ["Summary", "-------"]
    lines += _section("Dates built", lambda: _dates_built(warehouse, plan))
    lines += _section("Churn risk", lambda: _churn_risk(warehouse))
    lines += _section("Data-quality findings", lambda: _quality_findings(warehouse))
    lines += _section("Quarantined files", lambda: _quarantined(warehouse))
    lines += [
        "",
        f"DuckDB warehouse: {_shown(plan.duckdb_path)}",
        "Query it, e.g.:",
        "  .venv/bin/python -c \"import duckdb; duckdb.connect('"
        + _shown(plan.duckdb_path)
        + "', read_only=True).sql('SELECT activity_date, company_id, company_name, active_users_7d, "
        "is_churn_risk, data_quality_flags FROM analytics.company_daily_activity "
        "ORDER BY activity_date DESC, company_id LIMIT 20').show()\"",
    ]
    return lines


def _section(title: str, body: Callable[[], list[str]]) -> list[str]:
    try:
        content = body()
    except Exception as exc:  # a summary must not hide the run's outcome behind a query error
        content = [f"not available ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"]
    return [f"{title}:", *(f"  {line}" for line in content)]


def _dates_built(warehouse: Any, plan: RunPlan) -> list[str]:
    rows = warehouse.run_sql(
        "SELECT activity_date, COUNT(*) AS row_count FROM analytics.company_daily_activity "
        "GROUP BY activity_date ORDER BY activity_date"
    )
    built = {as_date(r["activity_date"]): int(r["row_count"]) for r in rows}
    expected = [plan.start + dt.timedelta(days=i) for i in range(plan.days)]
    missing = [d for d in expected if d not in built]
    if not built:
        return [f"none of {plan.days} ({plan.start}..{plan.end})"]
    total = sum(built.values())
    lines = [f"{len(built)} of {plan.days} dates, {total} rows ({min(built)}..{max(built)})"]
    if missing:
        lines.append(f"not built: {', '.join(str(d) for d in missing)}")
        lines.append(
            "(a date without a valid CRM file waits CRM_GRACE_HOURS for one, then builds with the "
            "previous snapshot, flagged crm_stale)"
        )
    return lines


def _churn_risk(warehouse: Any) -> list[str]:
    rows = warehouse.run_sql(
        "SELECT TOP 5 activity.company_id, activity.company_name, activity.days_since_last_activity "
        "FROM analytics.company_daily_activity AS activity "
        "WHERE activity.activity_date = (SELECT MAX(activity_date) FROM analytics.company_daily_activity) "
        "AND activity.is_churn_risk = 1 ORDER BY activity.company_id"
    )
    count = warehouse.run_sql(
        "SELECT COUNT(*) AS companies FROM analytics.company_daily_activity "
        "WHERE activity_date = (SELECT MAX(activity_date) FROM analytics.company_daily_activity) "
        "AND is_churn_risk = 1"
    )[0]["companies"]
    lines = [f"{count} companies at risk on the latest date"]
    lines += [f"{r['company_id']} {r['company_name'] or '(not in CRM)'}" for r in rows]
    return lines


def _quality_findings(warehouse: Any) -> list[str]:
    rows = warehouse.run_sql(
        "SELECT check_name, status, COUNT(*) AS findings FROM ops.data_quality_results "
        "WHERE status <> 'pass' GROUP BY check_name, status ORDER BY check_name, status"
    )
    flags = warehouse.run_sql(
        "SELECT data_quality_flags, COUNT(*) AS row_count FROM analytics.company_daily_activity "
        "WHERE data_quality_flags <> '' GROUP BY data_quality_flags ORDER BY row_count DESC"
    )
    lines = [f"{r['check_name']}: {r['findings']} x {r['status']}" for r in rows] or ["every check passed"]
    lines += [f"rows flagged {r['data_quality_flags']}: {r['row_count']}" for r in flags[:5]]
    return lines


def _quarantined(warehouse: Any) -> list[str]:
    rows = warehouse.run_sql(
        "SELECT source_blob, status, reason FROM ops.quarantined_files ORDER BY source_blob, quarantined_at"
    )
    return [f"{r['source_blob']} ({r['status']}): {r['reason']}" for r in rows] or ["none"]


# ======================================================================================
# Plumbing
# ======================================================================================
def _fresh_workdir(workdir: Path) -> None:
    """Each run starts empty (Azurite is in memory, so the warehouse must start empty too)."""
    workdir.mkdir(parents=True, exist_ok=True)
    for name in ("warehouse.duckdb", "warehouse.duckdb.wal", "local.settings.json", "local-run.log"):
        (workdir / name).unlink(missing_ok=True)
    shutil.rmtree(workdir / "sample", ignore_errors=True)
    shutil.rmtree(workdir / "report", ignore_errors=True)


def _log_to_file(path: Path) -> Path:
    """Structured logs go to a file; the console gets the short story."""
    root = logging.getLogger()
    root.setLevel(os.environ.get("LOG_LEVEL", "INFO"))
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.addFilter(ContextFilter())  # also tells configure_logging() a handler is installed
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    logging.getLogger("azure").setLevel(logging.WARNING)
    return path


def _shown(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(Path.cwd()))
    return str(path)


@click.command(
    help=(
        "Run the pipeline locally end to end: Azurite + mock usage API + sample data, driven through "
        "the functions' triggers by the local runner, into a DuckDB warehouse under .local-run/."
    )
)
@click.option("--companies", default=200, show_default=True, type=click.IntRange(min=1))
@click.option("--days", default=30, show_default=True, type=click.IntRange(min=1), help="Days ending yesterday.")
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), default=None, help="First day (YYYY-MM-DD).")
@click.option("--end", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Last day (default: yesterday UTC).")
@click.option("--seed", default=7, show_default=True, help="Seed of the sample (CRM files and API).")
@click.option("--workdir", default=str(DEFAULT_WORKDIR), show_default=True, type=click.Path(file_okay=False))
@click.option("--serve", is_flag=True, help="Keep Azurite, the API and the runner going after the summary.")
def main(
    companies: int,
    days: int,
    start: dt.datetime | None,
    end: dt.datetime | None,
    seed: int,
    workdir: str,
    serve: bool,
) -> None:
    plan = plan_run(
        today=utc_today(),
        companies=companies,
        days=days,
        start=start.date() if start else None,
        end=end.date() if end else None,
        seed=seed,
        workdir=Path(workdir).resolve(),
    )
    started = time.monotonic()
    code = run(plan, click.echo, serve=serve)
    click.echo(f"Done in {time.monotonic() - started:.0f}s (exit code {code}).")
    raise SystemExit(code)


if __name__ == "__main__":
    main()
