"""Operator CLI: schema, backfill, rebuild, rollback, replay, status.

    python -m pipeline_tools.cli --settings local.settings.json status --date 2025-11-30

Each command parses its options and calls one function of ``shared.services.operations``; the
same commands work against local (Azurite + DuckDB) and Azure settings, whatever the settings
file (plus environment overrides) says. Exit codes: 0 success, 1 a failure in the work (one line
on stderr; the traceback only with ``--verbose``), 2 bad usage.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from shared.errors import PipelineError
from shared.logs import configure_logging, new_run_id, redact
from shared.services import events_rollup, operations, poison
from shared.services.operations import DateRange, DateStatus
from shared.settings import Settings
from shared.wiring import Services, connect_warehouse

log = logging.getLogger(__name__)

EXIT_FAILURE = 1


# ======================================================================================
# Context and the one error handler
# ======================================================================================
@dataclass
class CliContext:
    """What every command gets: the services container (built lazily) and the verbosity."""

    settings_path: str = "local.settings.json"
    verbose: bool = False
    services_factory: Callable[[Settings], Services] | None = None
    _services: Services | None = None

    @property
    def settings(self) -> Settings:
        if self._services is not None:
            return self._services.settings
        return Settings.from_local_settings(self.settings_path)

    @property
    def services(self) -> Services:
        if self._services is None:
            settings = Settings.from_local_settings(self.settings_path)
            factory = self.services_factory or Services
            self._services = factory(settings)
        return self._services


class OperatorGroup(click.Group):
    """The one error handler: a pipeline error becomes one line on stderr and exit code 1.

    Click's own usage errors keep exit code 2. Anything else is a bug: also one line and exit 1,
    with a hint to re-run with --verbose for the traceback.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except PipelineError as exc:
            _fail(ctx, exc, f"error: {type(exc).__name__}: {exc}")
        except Exception as exc:
            _fail(ctx, exc, f"unexpected error: {type(exc).__name__}: {exc} (re-run with --verbose for the traceback)")


def _fail(ctx: click.Context, exc: BaseException, line: str) -> NoReturn:
    obj = ctx.find_object(CliContext)
    if obj is not None and obj.verbose:
        click.echo(redact("".join(traceback.format_exception(exc))), err=True)
    click.echo(redact(" ".join(line.split())), err=True)
    ctx.exit(EXIT_FAILURE)
    raise AssertionError("unreachable")  # ctx.exit raises


# ======================================================================================
# Option types
# ======================================================================================
class IsoDate(click.ParamType):
    name = "YYYY-MM-DD"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> dt.date:
        if isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not a date (YYYY-MM-DD)", param, ctx)


ISO_DATE = IsoDate()


def date_range_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--date D, or --start D1 --end D2 (inclusive)."""
    command = click.option("--end", type=ISO_DATE, help="Last date of the range (inclusive).")(command)
    command = click.option("--start", type=ISO_DATE, help="First date of the range.")(command)
    command = click.option("--date", "day", type=ISO_DATE, help="One date (instead of --start/--end).")(command)
    return command


def resolve_range(day: dt.date | None, start: dt.date | None, end: dt.date | None) -> DateRange:
    """The range the options name; a usage error (exit 2) when they do not name exactly one."""
    if day is not None:
        if start is not None or end is not None:
            raise click.UsageError("give either --date or --start/--end, not both")
        return DateRange.single(day)
    if start is None or end is None:
        raise click.UsageError("give --date D, or both --start D1 and --end D2")
    if start > end:
        raise click.UsageError(f"--start {start} is after --end {end}")
    return DateRange(start, end)


# ======================================================================================
# The group
# ======================================================================================
@click.group(
    cls=OperatorGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    help=__doc__.split("\n\n")[0] if __doc__ else None,
    epilog="Exit codes: 0 success, 1 the work failed, 2 bad usage.",
)
@click.option(
    "--settings",
    "settings_path",
    default="local.settings.json",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="local.settings.json whose Values configure the run; environment variables override them.",
)
@click.option("--verbose", "-v", is_flag=True, help="Log progress (INFO) and show tracebacks of errors.")
@click.pass_context
def cli(ctx: click.Context, settings_path: str, verbose: bool) -> None:
    obj = ctx.ensure_object(CliContext)
    obj.settings_path = settings_path
    obj.verbose = verbose
    configure_logging("INFO" if verbose else "WARNING", json_lines=False)


pass_cli = click.make_pass_decorator(CliContext, ensure=True)


# ---- schema ----------------------------------------------------------------------------------
@cli.group(help="Warehouse schema (sql/schema migrations).")
def schema() -> None:
    pass


@schema.command("apply", help="Apply the migrations not yet applied and print which.")
@pass_cli
def schema_apply(obj: CliContext) -> None:
    # Connected without the container: Services.warehouse applies migrations itself on first use.
    warehouse = connect_warehouse(obj.settings)
    try:
        applied = operations.apply_schema(warehouse)
    finally:
        warehouse.close()
    if not applied:
        click.echo("schema is up to date (no migration applied)")
    for name in applied:
        click.echo(f"applied {name}")


# ---- status ----------------------------------------------------------------------------------
@cli.command(help="Per date: inputs, last build, checks and quarantined files.")
@date_range_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (a list of per-date objects).")
@pass_cli
def status(obj: CliContext, day: dt.date | None, start: dt.date | None, end: dt.date | None, as_json: bool) -> None:
    dates = resolve_range(day, start, end)
    report = operations.status_with(obj.services, dates)
    if as_json:
        click.echo(json.dumps([entry.to_dict() for entry in report], indent=2, sort_keys=True))
    else:
        # Piped or captured output has no terminal width; do not squeeze the table into 80 columns.
        Console(width=None if sys.stdout.isatty() else 160).print(status_table(report))


def status_table(report: list[DateStatus]) -> Table:
    table = Table(title="Pipeline status", show_lines=False)
    table.add_column("date", no_wrap=True)
    for column in ("CRM", "usage", "last build", "rows now", "checks", "quarantined", "recovery"):
        table.add_column(column)
    for entry in report:
        crm, usage, build, checks = entry.inputs["crm"], entry.inputs["usage"], entry.build, entry.checks
        table.add_row(
            entry.date,
            _input_cell(crm) if crm.present else f"[yellow]missing[/] (in force: {entry.crm_snapshot_in_force or '-'})",
            _input_cell(usage) if usage.present else "[yellow]missing[/]",
            _build_cell(build),
            str(build.current_rows),
            _checks_cell(checks),
            "\n".join(f"{q['source_blob']} ({q['status']})" for q in entry.quarantined_files) or "-",
            "\n".join(f"{r['kind']}: {r['status']}" for r in entry.recovery) or "-",
        )
    return table


def _input_cell(item: operations.InputStatus) -> str:
    return f"{item.rows} rows, v {str(item.version)[:8]}\n{item.at}"


def _build_cell(build: operations.BuildStatus) -> str:
    if not build.built:
        return "[yellow]not built[/]"
    stale = "" if build.up_to_date else " [yellow](inputs changed)[/]"
    return f"{build.rows} rows in {build.duration_ms} ms{stale}\nrun {build.run_id}"


def _checks_cell(checks: operations.CheckStatus) -> str:
    if checks.run_id is None:
        return "-"
    parts = [f"[red]failed: {', '.join(c['check'] for c in checks.failed)}[/]"] if checks.failed else []
    parts += [f"[yellow]warned: {', '.join(c['check'] for c in checks.warned)}[/]"] if checks.warned else []
    parts += [f"[red]errored: {', '.join(c['check'] for c in checks.errored)}[/]"] if checks.errored else []
    return "\n".join(parts) or f"[green]{checks.passed} passed[/]"


# ---- backfill --------------------------------------------------------------------------------
@cli.command(help="Pull usage for a range (the timer's client and staging), then build it in chunks. Resumable.")
@click.option("--start", type=ISO_DATE, required=True, help="First date (inclusive).")
@click.option("--end", type=ISO_DATE, required=True, help="Last date (inclusive).")
@click.option("--dry-run", is_flag=True, help="List what would be pulled and built; change nothing.")
@click.option(
    "--chunk-days",
    type=click.IntRange(1, 366),
    default=operations.DEFAULT_CHUNK_DAYS,
    show_default=True,
    help="Days per builder call.",
)
@pass_cli
def backfill(obj: CliContext, start: dt.date, end: dt.date, dry_run: bool, chunk_days: int) -> None:
    dates = resolve_range(None, start, end)
    if dry_run:
        plan = operations.backfill_with(obj.services, dates, dry_run=True, chunk_days=chunk_days)
        assert isinstance(plan, operations.BackfillPlan)
        _print_plan(plan)
        return
    with rich_progress() as progress:
        result = operations.backfill_with(obj.services, dates, progress=progress, chunk_days=chunk_days)
    assert isinstance(result, operations.BackfillResult)
    click.echo(
        f"backfill {dates}: pulled {len(result.pulled)} dates ({len(result.plan.pull_skipped)} already pulled), "
        f"built {sum(len(c) for c in result.built)} dates in {len(result.built)} chunks "
        f"({len(result.build_skipped_after_pull)} already up to date); run {result.run_id}"
    )


def _print_plan(plan: operations.BackfillPlan) -> None:
    click.echo(f"dry run: backfill {plan.dates} ({len(plan.dates)} dates); nothing is changed")
    click.echo(f"would pull usage for {len(plan.pull)} dates{_dates_suffix(plan.pull)}")
    click.echo(f"already pulled (skipped): {len(plan.pull_skipped)}{_dates_suffix(plan.pull_skipped)}")
    click.echo(f"would build {plan.build_days} dates in {len(plan.build)} chunks:")
    for chunk in plan.build:
        click.echo(f"  build {chunk} ({len(chunk)} dates)")
    click.echo(f"already built from the same inputs (skipped): {len(plan.build_skipped)}")


def _dates_suffix(days: list[dt.date]) -> str:
    chunks = operations.contiguous_chunks(days, max_days=10_000)
    return (": " + ", ".join(str(c) for c in chunks)) if chunks else ""


class RichProgress:
    """operations.Progress drawn with rich: a bar per phase, dates done / total, elapsed, ETA."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task: TaskID | None = None

    def start_phase(self, name: str, total: int) -> None:
        self._task = self._progress.add_task(name, total=total, skipped=0)

    def advance(self, dates: int, *, skipped: bool = False) -> None:
        if self._task is None or dates == 0:
            return
        if skipped:
            # Skipped dates leave the bar's total (not its done count), so the ETA is that of the
            # work left rather than looking faster than it is.
            task = self._progress.tasks[self._task]
            self._progress.update(
                self._task, total=(task.total or 0) - dates, skipped=task.fields.get("skipped", 0) + dates
            )
        else:
            self._progress.advance(self._task, dates)


@contextmanager
def rich_progress() -> Iterator[RichProgress]:
    progress = Progress(
        TextColumn("{task.description:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("dates ({task.fields[skipped]} skipped)"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(file=sys.stderr),
    )
    with progress:
        yield RichProgress(progress)


# ---- rebuild ---------------------------------------------------------------------------------
@cli.command(help="Queue a build of dates (and their window neighbours), or run it now with --now.")
@date_range_options
@click.option("--now", "inline", is_flag=True, help="Build inline through the builder instead of queueing.")
@pass_cli
def rebuild(obj: CliContext, day: dt.date | None, start: dt.date | None, end: dt.date | None, inline: bool) -> None:
    dates = resolve_range(day, start, end)
    result = operations.rebuild_with(obj.services, dates, inline=inline)
    if inline:
        click.echo(f"rebuilt {dates}: {_describe(result.outcome)}")
    else:
        click.echo(
            f"queued a build of {dates} on {obj.settings.build_queue} (message {result.message_id}); "
            "the builder also rebuilds the window neighbours"
        )


def _describe(outcome: Any) -> str:
    """A builder.BuildOutcome in one phrase."""
    plan = outcome.plan
    if outcome.skipped:
        return f"nothing to build (run {outcome.run_id})"
    return (
        f"{len(plan.targets)} dates in {len(plan.ranges)} ranges ({len(plan.changed)} requested, "
        f"{len(plan.neighbours)} window neighbours), {outcome.rows_written} rows in {outcome.seconds:.1f} s "
        f"(run {outcome.run_id})"
    )


# ---- rollback --------------------------------------------------------------------------------
@cli.command(help="Delete the analytics rows of a date and mark it for rebuild. Needs --yes.")
@click.option("--date", "day", type=ISO_DATE, required=True, help="The date to roll back.")
@click.option("--yes", is_flag=True, help="Confirm: the date's analytics rows are deleted.")
@pass_cli
def rollback(obj: CliContext, day: dt.date, yes: bool) -> None:
    if not yes:
        raise click.UsageError(f"rollback deletes the analytics rows of {day}; add --yes to confirm")
    result = operations.rollback_with(obj.services, day)
    readiness = {
        True: "readiness build state reset",
        False: "readiness build state unchanged",
        None: "readiness gate keeps its state (its next message for the date rebuilds it)",
    }[result.readiness_reset]
    click.echo(
        f"rolled back {day}: removed {result.analytics_rows_removed} analytics rows"
        f"{' and the build record' if result.build_record_removed else ''}; {readiness}; "
        f"rebuild with `rebuild --date {day}` (run {result.run_id})"
    )


# ---- events rollup ---------------------------------------------------------------------------
@cli.group(help="The fact-events rollup (agg.company_daily_events).")
def events() -> None:
    pass


@events.command("refresh", help="Recompute the days touched by newly loaded events plus the look-back window.")
@click.option(
    "--lookback-days", type=click.IntRange(min=0), default=None, help="Default: the EVENTS_LOOKBACK_DAYS setting."
)
@pass_cli
def events_refresh(obj: CliContext, lookback_days: int | None) -> None:
    settings = obj.services.settings
    lookback = settings.events_lookback_days if lookback_days is None else lookback_days
    result = events_rollup.refresh_company_daily_events(
        obj.services.warehouse, new_run_id(), dt.datetime.now(dt.UTC), lookback
    )
    first, last = (result.days[0], result.days[-1]) if result.days else (None, None)
    click.echo(f"refreshed {len(result.days)} day(s) of agg.company_daily_events ({first}..{last})")


# ---- replay ----------------------------------------------------------------------------------
@cli.command(help="Re-stage a date from what already landed: usage from raw NDJSON (no API call), CRM from its blob.")
@click.option("--date", "day", type=ISO_DATE, required=True, help="The date to re-stage.")
@click.option("--usage/--no-usage", default=True, show_default=True, help="Re-stage usage from the raw NDJSON.")
@click.option("--crm/--no-crm", default=True, show_default=True, help="Re-run staging of the date's CRM blob.")
@pass_cli
def replay(obj: CliContext, day: dt.date, usage: bool, crm: bool) -> None:
    if not usage and not crm:
        raise click.UsageError("nothing to replay: --no-usage and --no-crm together")
    result = operations.replay_with(obj.services, day, usage=usage, crm=crm)
    if result.usage is not None:
        staged = result.usage
        click.echo(
            f"usage {day}: {staged.rows} rows, version {staged.version[:12]} "
            f"({'re-staged' if staged.changed else 'unchanged'})"
        )
    for item in result.crm:
        click.echo(f"crm {day}: {item.blob_name}: {item.status}, {item.rows_staged} rows staged")


# ---- poison (issue 13: kept as one group near the end of the file) -------------------------
@cli.group("poison", help="Inputs that failed past their retries: CRM blob versions and build messages.")
def poison_group() -> None:
    pass


@poison_group.command("list", help="The messages in both poison queues and the latest ops.poison_events records.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document {messages, events}.")
@pass_cli
def poison_list(obj: CliContext, as_json: bool) -> None:
    items = poison.list_poison(obj.services)
    events = poison.recent_events(obj.services.warehouse, limit=20)
    if as_json:
        document = {"messages": [i.to_dict() for i in items], "events": [_json_row(e) for e in events]}
        click.echo(json.dumps(document, indent=2, sort_keys=True))
        return
    click.echo(f"{len(items)} message(s) in the poison queues")
    for item in items:
        click.echo(f"  {item.message_id}  {item.kind:<10} {item.detail}  (since {item.inserted_on})")
    for event in events:
        click.echo(f"  ops: {event['subject']}: {event['status']} ({event['note'] or '-'})")


@poison_group.command("requeue", help="Retry poisoned inputs now (builds re-queued, CRM blob versions staged).")
@click.option("--id", "message_ids", multiple=True, help="Only this message id (repeatable); default: all.")
@click.option("--dry-run", is_flag=True, help="Say what would be retried; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (a list of outcomes).")
@pass_cli
def poison_requeue(obj: CliContext, message_ids: tuple[str, ...], dry_run: bool, as_json: bool) -> None:
    outcomes = poison.requeue(obj.services, message_ids=message_ids, dry_run=dry_run)
    if as_json:
        click.echo(json.dumps([o.to_dict() for o in outcomes], indent=2, sort_keys=True))
        return
    for outcome in outcomes:
        click.echo(f"{outcome.subject}: {'would be ' if dry_run else ''}{outcome.action} ({outcome.note})")
    if not outcomes:
        click.echo("nothing to requeue")


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, dt.date | dt.datetime) else v for k, v in row.items()}


# ======================================================================================
def main() -> None:
    cli(prog_name="python -m pipeline_tools.cli")


if __name__ == "__main__":
    main()
