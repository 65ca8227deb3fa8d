"""Operator CLI: schema, status, backfill, rebuild, rollback, replay, checks, runs, alerts, report.

    company-activity --settings local.settings.json status --date 2025-11-30 --json

(``company-activity`` is the console entry point; ``python -m pipeline_tools.cli`` is the same.)
Each command parses its options and calls one function of ``shared.services``; the same
commands work against local (Azurite + DuckDB) and Azure settings, whatever the settings file
(plus environment overrides) says. Every command takes ``--json`` (one JSON document on stdout);
every command that changes something takes ``--dry-run`` (prints exactly what it would do and
changes nothing). Exit codes: 0 success, 1 a failure in the work (one line on stderr; the
traceback only with ``--verbose``), 2 bad usage (including a date after yesterday UTC and a
settings file that does not exist), 130 interrupted by Ctrl-C (the command that resumes is printed).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shlex
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
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

import pipeline_tools.report as run_report
from shared.clock import utc_now
from shared.errors import FutureDateRefused, PipelineError
from shared.logs import configure_logging, new_run_id, redact
from shared.rules.backfill_plan import BackfillPlan
from shared.rules.date_ranges import DEFAULT_CHUNK_DAYS, DateRange, contiguous_ranges
from shared.services import events_rollup, poison, quality
from shared.services.backfill import BackfillResult, backfill_dates
from shared.services.check_rerun import ChecksRun, rerun_checks
from shared.services.progress import Interrupted
from shared.services.rebuild import rebuild_dates
from shared.services.recent_records import recent_records
from shared.services.replay import replay_dates
from shared.services.rollback import rollback_date
from shared.services.schema import apply_schema
from shared.services.status import BuildReport, ChecksReport, DateReport, InputReport, status_of
from shared.settings import Settings
from shared.wiring import Resources, connect_warehouse

log = logging.getLogger(__name__)

PROG = "company-activity"
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C


# ======================================================================================
# Context and the one error handler
# ======================================================================================
@dataclass
class CliContext:
    """What every command gets: the resources container (built lazily), the verbosity, whether
    output is JSON, and the arguments that resume the command if it is interrupted."""

    settings_path: str | None = None  # --settings; None: ./local.settings.json if present
    verbose: bool = False
    as_json: bool = False
    resume_args: list[str] = field(default_factory=list)
    resources_factory: Callable[[Settings], Resources] | None = None
    _resources: Resources | None = None

    @property
    def settings(self) -> Settings:
        if self._resources is not None:
            return self._resources.settings
        return Settings.from_local_settings(self.settings_path)

    @property
    def resources(self) -> Resources:
        if self._resources is None:
            settings = Settings.from_local_settings(self.settings_path)
            factory = self.resources_factory or Resources
            self._resources = factory(settings)
        return self._resources

    def resume_command(self) -> str:
        settings = [] if self.settings_path is None else ["--settings", self.settings_path]
        return shlex.join([PROG, *settings, *self.resume_args])


class OperatorGroup(click.Group):
    """The one error handler: a pipeline error becomes one line on stderr and exit code 1.

    Click's own usage errors, and a date after yesterday (UTC), exit 2. Ctrl-C exits 130 with
    the command that resumes. Anything else is a bug: also one line and exit 1, with a hint to
    re-run with --verbose for the traceback. With --json the error is also a JSON document on
    stdout, so a script reads one shape whatever happened.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt as exc:
            _interrupted(ctx, exc)
        except FutureDateRefused as exc:
            _fail(ctx, exc, f"error: {exc}", EXIT_USAGE)
        except PipelineError as exc:
            _fail(ctx, exc, f"error: {type(exc).__name__}: {exc}")
        except Exception as exc:
            _fail(ctx, exc, f"unexpected error: {type(exc).__name__}: {exc} (re-run with --verbose for the traceback)")


def _fail(ctx: click.Context, exc: BaseException, line: str, code: int = EXIT_FAILURE) -> NoReturn:
    obj = ctx.find_object(CliContext)
    if obj is not None and obj.verbose:
        click.echo(redact("".join(traceback.format_exception(exc))), err=True)
    line = redact(" ".join(line.split()))
    click.echo(line, err=True)
    if obj is not None and obj.as_json:
        emit({"error": {"type": type(exc).__name__, "message": line}, "exit_code": code})
    ctx.exit(code)
    raise AssertionError("unreachable")  # ctx.exit raises


def _interrupted(ctx: click.Context, exc: KeyboardInterrupt) -> NoReturn:
    obj = ctx.find_object(CliContext) or CliContext()
    if isinstance(exc, Interrupted) and obj.resume_args:
        obj.resume_args = _with_range(obj.resume_args, exc.remaining)
    resume = obj.resume_command() if obj.resume_args else None
    line = "interrupted: what finished is committed, what was running was rolled back"
    line += f"; resume with: {resume}" if resume else "; nothing was changed"
    click.echo(line, err=True)
    if obj.as_json:
        emit({"error": {"type": "Interrupted", "message": line}, "resume": resume, "exit_code": EXIT_INTERRUPTED})
    ctx.exit(EXIT_INTERRUPTED)
    raise AssertionError("unreachable")


def _with_range(args: list[str], remaining: DateRange) -> list[str]:
    """The resume arguments with the date options replaced by what is left to do."""
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in ("--date", "--start", "--end"):
            skip = True
            continue
        kept.append(arg)
    return [kept[0], "--start", str(remaining.start), "--end", str(remaining.end), *kept[1:]]


def emit(document: Any) -> None:
    """The one JSON document a command prints with --json."""
    click.echo(json.dumps(document, indent=2, sort_keys=True, default=str))


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    ctx.ensure_object(CliContext).as_json = value
    return value


def json_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """--json: one JSON document on stdout instead of text (errors too)."""
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_set_json,
        help='Print one JSON document (the result, run ids, counts); errors as {"error": ...}.',
    )(command)


def dry_run_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--dry-run", is_flag=True, help="Print exactly what would be done; change nothing.")(command)


def chunk_days_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--chunk-days",
        type=click.IntRange(1, 366),
        default=DEFAULT_CHUNK_DAYS,
        show_default=True,
        help="Consecutive days per builder call (each must finish within the builder's functionTimeout).",
    )(command)


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


def range_args(dates: DateRange) -> list[str]:
    return ["--date", str(dates.start)] if len(dates) == 1 else ["--start", str(dates.start), "--end", str(dates.end)]


# ======================================================================================
# The group
# ======================================================================================
@click.group(
    cls=OperatorGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    help=__doc__.split("\n\n")[0] if __doc__ else None,
    epilog="Exit codes: 0 success, 1 the work failed, 2 bad usage (or a future date), 130 interrupted (Ctrl-C).",
)
@click.option(
    "--settings",
    "settings_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="local.settings.json whose Values configure the run; environment variables override them. "
    "A path given explicitly must exist; without the option ./local.settings.json is read if it "
    "exists, else only the environment.",
)
@click.option("--verbose", "-v", is_flag=True, help="Log progress (INFO) and show tracebacks of errors.")
@click.pass_context
def cli(ctx: click.Context, settings_path: str | None, verbose: bool) -> None:
    obj = ctx.ensure_object(CliContext)
    if settings_path is not None and not Path(settings_path).is_file():
        # Falling back to defaults would point the command at another warehouse (or create one).
        raise click.BadParameter(f"{settings_path} does not exist", param_hint="--settings")
    obj.settings_path = settings_path
    obj.verbose = verbose
    configure_logging("INFO" if verbose else "WARNING", json_lines=False)


pass_cli = click.make_pass_decorator(CliContext, ensure=True)


# ---- schema ----------------------------------------------------------------------------------
@cli.group(help="Warehouse schema (sql/schema migrations).")
def schema() -> None:
    pass


@schema.command("apply", help="Apply the migrations not yet applied and print which.")
@dry_run_option
@json_option
@pass_cli
def schema_apply(obj: CliContext, dry_run: bool) -> None:
    obj.resume_args = ["schema", "apply"]
    # Connected without the container: Resources.warehouse refuses a schema that is behind.
    warehouse = connect_warehouse(obj.settings)
    try:
        applied = apply_schema(warehouse, dry_run=dry_run)
    finally:
        warehouse.close()
    if obj.as_json:
        emit({"dry_run": dry_run, "applied" if not dry_run else "would_apply": applied, "count": len(applied)})
        return
    if not applied:
        click.echo("schema is up to date (no migration applied)")
    for name in applied:
        click.echo(f"{'would apply' if dry_run else 'applied'} {name}")


@schema.command(
    "bootstrap",
    help="Deploy step (Azure SQL, as the Entra admin): apply migrations, then create the app's identity "
    "as a contained database user with row access to the pipeline's schemas.",
)
@click.option("--app-principal", required=True, help="The Function App's managed identity name (the app's name).")
@dry_run_option
@json_option
@pass_cli
def schema_bootstrap(obj: CliContext, app_principal: str, dry_run: bool) -> None:
    from pipeline_tools.schema_bootstrap import GRANTED_SCHEMAS, bootstrap

    warehouse = connect_warehouse(obj.settings)
    try:
        result = bootstrap(warehouse, app_principal, dry_run=dry_run)
    finally:
        warehouse.close()
    if obj.as_json:
        emit(
            {
                "dry_run": dry_run,
                "would_apply" if dry_run else "applied": result.applied,
                "principal": result.principal,
                "schemas": list(GRANTED_SCHEMAS),
            }
        )
        return
    for name in result.applied:
        click.echo(f"{'would apply' if dry_run else 'applied'} {name}")
    verb = "would get" if dry_run else "has"
    click.echo(f"database user {result.principal} {verb} row access to {', '.join(GRANTED_SCHEMAS)}")


# ---- status ----------------------------------------------------------------------------------
@cli.command(help="Per date: inputs, last build, checks and quarantined files.")
@date_range_options
@json_option
@pass_cli
def status(obj: CliContext, day: dt.date | None, start: dt.date | None, end: dt.date | None) -> None:
    dates = resolve_range(day, start, end)
    report = status_of(obj.resources, dates)
    if obj.as_json:
        emit([entry.to_dict() for entry in report])
    else:
        # Piped or captured output has no terminal width; do not squeeze the table into 80 columns.
        Console(width=None if sys.stdout.isatty() else 160).print(status_table(report))


def status_table(report: list[DateReport]) -> Table:
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


def _input_cell(item: InputReport) -> str:
    return f"{item.rows} rows, v {str(item.version)[:8]}\n{item.at}"


def _build_cell(build: BuildReport) -> str:
    if not build.built:
        return "[yellow]not built[/]"
    stale = ""
    if not build.inputs_current:
        stale = " [yellow](inputs changed)[/]"
    elif build.checked_at is None:
        stale = " [yellow](checks not run)[/]"
    return f"{build.rows} rows in {build.duration_ms} ms{stale}\nrun {build.run_id}"


def _checks_cell(checks: ChecksReport) -> str:
    if checks.run_id is None:
        return "-"
    parts = [f"[red]failed: {', '.join(c['check'] for c in checks.failed)}[/]"] if checks.failed else []
    parts += [f"[yellow]warned: {', '.join(c['check'] for c in checks.warned)}[/]"] if checks.warned else []
    parts += [f"[red]errored: {', '.join(c['check'] for c in checks.errored)}[/]"] if checks.errored else []
    return "\n".join(parts) or f"[green]{checks.passed} passed[/]"


# ---- backfill --------------------------------------------------------------------------------
@cli.command(
    help="Pull usage for a range (the timer's client and staging), build it in chunks, run missing checks. "
    "Resumable: re-running skips what is done."
)
@click.option("--start", type=ISO_DATE, required=True, help="First date (inclusive).")
@click.option("--end", type=ISO_DATE, required=True, help="Last date (inclusive).")
@dry_run_option
@chunk_days_option
@json_option
@pass_cli
def backfill(obj: CliContext, start: dt.date, end: dt.date, dry_run: bool, chunk_days: int) -> None:
    dates = resolve_range(None, start, end)
    obj.resume_args = ["backfill", "--start", str(start), "--end", str(end), "--chunk-days", str(chunk_days)]
    if dry_run:
        plan = backfill_dates(obj.resources, dates, dry_run=True, chunk_days=chunk_days)
        assert isinstance(plan, BackfillPlan)
        if obj.as_json:
            emit({"dry_run": True, **plan.to_dict()})
        else:
            _print_plan(plan)
        return
    with rich_progress() as progress:
        result = backfill_dates(obj.resources, dates, progress=progress, chunk_days=chunk_days)
    assert isinstance(result, BackfillResult)
    if obj.as_json:
        emit({"dry_run": False, **result.to_dict()})
        return
    click.echo(
        f"backfill {dates}: pulled {len(result.pulled)} dates ({len(result.plan.pull_skipped)} already pulled), "
        f"built {sum(len(c) for c in result.built)} dates in {len(result.built)} chunks "
        f"({len(result.build_skipped_after_pull)} already up to date), "
        f"ran the missing checks of {len(result.checked)} dates; run {result.run_id}"
    )


def _print_plan(plan: BackfillPlan) -> None:
    click.echo(f"dry run: backfill {plan.dates} ({len(plan.dates)} dates); nothing is changed")
    click.echo(f"would pull usage for {len(plan.pull)} dates{_dates_suffix(plan.pull)}")
    click.echo(f"already pulled (skipped): {len(plan.pull_skipped)}{_dates_suffix(plan.pull_skipped)}")
    click.echo(f"would build {plan.build_days} dates in {len(plan.build)} chunks:")
    for chunk in plan.build:
        click.echo(f"  build {chunk} ({len(chunk)} dates)")
    click.echo(f"already built from the same inputs (skipped): {len(plan.build_skipped)}")
    click.echo(f"would run the missing checks of {len(plan.check)} built dates{_dates_suffix(plan.check)}")


def _dates_suffix(days: Sequence[dt.date]) -> str:
    chunks = contiguous_ranges(days)
    return (": " + ", ".join(str(c) for c in chunks)) if chunks else ""


class RichProgress:
    """shared.services.progress.Progress drawn with rich: a bar per phase, dates done / total, elapsed, ETA."""

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
@cli.command(
    help="Queue a forced build of dates, one message per chunk (the builder adds the window neighbours), "
    "or run the chunks now with --now (checks included)."
)
@date_range_options
@click.option("--now", "inline", is_flag=True, help="Build inline through the builder instead of queueing.")
@chunk_days_option
@dry_run_option
@json_option
@pass_cli
def rebuild(
    obj: CliContext,
    day: dt.date | None,
    start: dt.date | None,
    end: dt.date | None,
    inline: bool,
    chunk_days: int,
    dry_run: bool,
) -> None:
    dates = resolve_range(day, start, end)
    obj.resume_args = ["rebuild", *range_args(dates), "--chunk-days", str(chunk_days), *(["--now"] if inline else [])]
    if inline and not dry_run:
        with rich_progress() as progress:
            result = rebuild_dates(obj.resources, dates, inline=True, chunk_days=chunk_days, progress=progress)
    else:
        result = rebuild_dates(obj.resources, dates, inline=inline, chunk_days=chunk_days, dry_run=dry_run)
    if obj.as_json:
        emit(result.to_dict())
        return
    chunks = result.to_dict()["chunks"]
    if dry_run:
        verb = "build now" if inline else f"queue on {obj.settings.build_queue}"
        click.echo(f"dry run: rebuild {dates} would {verb} {len(chunks)} forced build(s); nothing is changed")
        for message in result.messages:
            click.echo(f"  {json.dumps(message, sort_keys=True)}")
        click.echo("the builder also rebuilds each chunk's window neighbours (already built days up to D+6)")
    elif inline:
        click.echo(f"rebuilt {dates} in {len(chunks)} chunk(s): {'; '.join(_describe(o) for o in result.outcomes)}")
    else:
        click.echo(
            f"queued {len(chunks)} build message(s) for {dates} on {obj.settings.build_queue} "
            f"({', '.join(chunks)}; message ids {', '.join(result.message_ids)}); "
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
@cli.command(help="Delete the analytics rows of a date and mark it for rebuild. Needs --yes (or --dry-run).")
@click.option("--date", "day", type=ISO_DATE, required=True, help="The date to roll back.")
@click.option("--yes", is_flag=True, help="Confirm: the date's analytics rows are deleted.")
@dry_run_option
@json_option
@pass_cli
def rollback(obj: CliContext, day: dt.date, yes: bool, dry_run: bool) -> None:
    if not yes and not dry_run:
        raise click.UsageError(f"rollback deletes the analytics rows of {day}; add --yes to confirm")
    obj.resume_args = ["rollback", "--date", str(day), "--yes"]
    result = rollback_date(obj.resources, day, dry_run=dry_run)
    if obj.as_json:
        emit(result.to_dict())
        return
    if result.never_built:
        click.echo(
            f"{day} was never built (or is already rolled back): no analytics rows, no build record; nothing changed"
        )
        return
    if dry_run:
        click.echo(
            f"dry run: rollback of {day} would remove {result.analytics_rows_removed} analytics rows"
            f"{' and the build record' if result.build_record_removed else ''}; nothing is changed"
        )
        return
    click.echo(
        f"rolled back {day}: removed {result.analytics_rows_removed} analytics rows"
        f"{' and the build record' if result.build_record_removed else ''}; "
        "readiness gate keeps its state (its next message for the date rebuilds it); "
        f"rebuild with `rebuild --date {day}` (run {result.run_id})"
    )


# ---- events rollup ---------------------------------------------------------------------------
@cli.group(help="The fact-events rollup (agg.company_daily_events).")
def events() -> None:
    pass


@events.command(
    "refresh", help="Count newly loaded events; recount the company-days of rows loaded within the look-back."
)
@click.option(
    "--lookback-minutes",
    type=click.IntRange(min=0),
    default=None,
    help="How far behind the watermark to recount. Default: the EVENTS_LOOKBACK_MINUTES setting.",
)
@dry_run_option
@json_option
@pass_cli
def events_refresh(obj: CliContext, lookback_minutes: int | None, dry_run: bool) -> None:
    obj.resume_args = [
        "events",
        "refresh",
        *([] if lookback_minutes is None else ["--lookback-minutes", str(lookback_minutes)]),
    ]
    settings = obj.resources.settings
    minutes = settings.events_lookback_minutes if lookback_minutes is None else lookback_minutes
    run_id = None if dry_run else new_run_id()
    result = events_rollup.refresh_company_daily_events(
        obj.resources.warehouse, run_id or "dry-run", utc_now(), dt.timedelta(minutes=minutes), dry_run=dry_run
    )
    first, last = (result.days[0], result.days[-1]) if result.days else (None, None)
    if obj.as_json:
        emit(
            {
                "run_id": run_id,
                "dry_run": dry_run,
                "days": result.days,
                "count": len(result.days),
                "loaded_through": result.loaded_through,
            }
        )
        return
    verb = "dry run: would refresh" if dry_run else "refreshed"
    click.echo(f"{verb} {len(result.days)} day(s) of agg.company_daily_events ({first}..{last})")


# ---- replay ----------------------------------------------------------------------------------
@cli.command(
    "replay",
    help="Compare the staged rows of each date with what landed (usage: raw NDJSON, no API call; CRM: its file) "
    "and re-stage what differs.",
)
@date_range_options
@click.option("--usage/--no-usage", default=True, show_default=True, help="Compare and restore usage.")
@click.option("--crm/--no-crm", default=True, show_default=True, help="Compare and restore the CRM snapshot.")
@dry_run_option
@json_option
@pass_cli
def replay_command(
    obj: CliContext,
    day: dt.date | None,
    start: dt.date | None,
    end: dt.date | None,
    usage: bool,
    crm: bool,
    dry_run: bool,
) -> None:
    if not usage and not crm:
        raise click.UsageError("nothing to replay: --no-usage and --no-crm together")
    dates = resolve_range(day, start, end)
    flags = [*([] if usage else ["--no-usage"]), *([] if crm else ["--no-crm"])]
    obj.resume_args = ["replay", *range_args(dates), *flags]
    result = replay_dates(obj.resources, dates, usage=usage, crm=crm, dry_run=dry_run)
    if obj.as_json:
        emit(result.to_dict())
        return
    if dry_run:
        click.echo(f"dry run: replay {dates}; nothing is changed")
    for entry in result.dates:
        for item in entry.inputs:
            click.echo(f"{item.input} {entry.date}: {item.describe()}")
    restored = sum(len(d.restored) for d in result.dates)
    if not dry_run:
        click.echo(f"restored {restored} input(s) of {len(result.dates)} date(s) (run {result.run_id})")


# ---- checks ----------------------------------------------------------------------------------
@cli.group(help="Data-quality checks (ops.data_quality_results).")
def checks() -> None:
    pass


@checks.command(
    "run", help="Re-run the data-quality checks of built dates: stored, flagged and alerted as after a build."
)
@date_range_options
@click.option(
    "--check",
    "names",
    multiple=True,
    type=click.Choice([c.name for c in quality.CHECKS]),
    help="Only this check (repeatable). Default: all.",
)
@dry_run_option
@json_option
@pass_cli
def checks_run(
    obj: CliContext,
    day: dt.date | None,
    start: dt.date | None,
    end: dt.date | None,
    names: tuple[str, ...],
    dry_run: bool,
) -> None:
    dates = resolve_range(day, start, end)
    obj.resume_args = ["checks", "run", *range_args(dates), *[a for n in names for a in ("--check", n)]]
    result = rerun_checks(obj.resources, dates, names=names, dry_run=dry_run)
    if obj.as_json:
        emit(result.to_dict())
    else:
        _print_checks(result)
    if not result.ok:
        click.echo(
            f"checks failed: {result.counts()['fail']} failed, {result.counts()['error']} could not run", err=True
        )
        raise click.exceptions.Exit(EXIT_FAILURE)


def _print_checks(result: ChecksRun) -> None:
    skipped = f"; not built (skipped): {len(result.not_built)}{_dates_suffix(result.not_built)}"
    if result.dry_run:
        click.echo(
            f"dry run: would run {len(result.checks)} check(s) ({', '.join(result.checks)}) for "
            f"{len(result.checked)} built date(s){_dates_suffix(result.checked)}{skipped}; nothing is changed"
        )
        return
    counts = result.counts()
    click.echo(
        f"checked {len(result.checked)} date(s){_dates_suffix(result.checked)}: {counts['pass']} passed, "
        f"{counts['warn']} warned, {counts['fail']} failed, {counts['error']} could not run{skipped} "
        f"(run {result.run_id})"
    )
    for item in result.results:
        if not item.passed:
            click.echo(f"  {item.check_date} {item.check_name}: {item.status}: {item.message}")


# ---- runs ------------------------------------------------------------------------------------
@cli.command(help="Recent pipeline runs (ops.pipeline_runs), newest first.")
@click.option("--date", "day", type=ISO_DATE, help="Only runs of this date.")
@click.option("--step", help="Only this step (build, usage_pull, usage_staging, crm_staging, quality, rollback, ...).")
@click.option(
    "--status", "run_status", help="Only this status (running, succeeded, failed, rejected, skipped, interrupted)."
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@json_option
@pass_cli
def runs(obj: CliContext, day: dt.date | None, step: str | None, run_status: str | None, limit: int) -> None:
    rows = recent_records(obj.resources, "runs", day=day, step=step, status=run_status, limit=limit)
    if obj.as_json:
        emit({"runs": rows, "count": len(rows)})
        return
    _print_table(
        "Recent runs",
        ("started", "run id", "step", "date", "status", "rows in/out", "ms", "error"),
        (
            (
                str(row["started_at"]),
                row["run_id"],
                row["step"],
                str(row["run_date"] or "-"),
                row["status"],
                f"{_or_dash(row['rows_in'])}/{_or_dash(row['rows_out'])}",
                _or_dash(row["duration_ms"]),
                f"{row['error_type'] or ''} {row['error_message'] or ''}".strip()[:200] or "-",
            )
            for row in rows
        ),
    )


def _or_dash(value: Any) -> str:
    return "-" if value is None else str(value)


def _print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """A rich table on stdout; wide enough not to wrap when piped to a file or another command."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    Console(width=None if sys.stdout.isatty() else 200).print(table)


# ---- alerts ----------------------------------------------------------------------------------
@cli.command(help="Alert deliveries (ops.alert_deliveries): sent, suppressed, failed (retried each tick), log only.")
@click.option("--date", "day", type=ISO_DATE, help="Only alerts about this date.")
@click.option("--step", help="Only alerts raised by this step.")
@click.option(
    "--status",
    "delivery_status",
    type=click.Choice(["sent", "suppressed", "failed", "log_only"]),
    help="Only this status.",
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@json_option
@pass_cli
def alerts(obj: CliContext, day: dt.date | None, step: str | None, delivery_status: str | None, limit: int) -> None:
    rows = recent_records(obj.resources, "alerts", day=day, step=step, status=delivery_status, limit=limit)
    if obj.as_json:
        emit({"alerts": rows, "count": len(rows)})
        return
    _print_table(
        "Alert deliveries",
        ("last attempt", "status", "attempts", "step", "date", "title", "subject", "error"),
        (
            (
                str(row["last_attempt_at"]),
                row["status"],
                str(row["attempts"]),
                row["step"],
                str(row["alert_date"] or "-"),
                row["title"],
                row["subject"] or "-",
                row["last_error_type"] or "-",
            )
            for row in rows
        ),
    )


# ---- report ----------------------------------------------------------------------------------
@cli.command(help="Write the analysts' run report (one HTML page + PNG charts) from the warehouse alone.")
@date_range_options
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where report.html and the PNGs go. Default: reports/<start>_<end>.",
)
@json_option
@pass_cli
def report(
    obj: CliContext, day: dt.date | None, start: dt.date | None, end: dt.date | None, out_dir: Path | None
) -> None:
    now = utc_now()
    # Without dates: the last 28 days that can be built (ending yesterday, UTC).
    dates = resolve_range(day, start, end) if (day or start or end) else DateRange(*run_report.default_range(now))
    written = run_report.write_report(
        obj.resources.warehouse,
        dates.start,
        dates.end,
        out_dir or Path("reports") / f"{dates.start}_{dates.end}",
        now=now,
        freshness_deadline_hours=obj.settings.freshness_deadline_hours,
    )
    if obj.as_json:
        emit(written.to_dict())
    elif written.empty:
        click.echo(f"no data for {dates}: nothing built, no input, no check in the range (page: {written.html})")
    else:
        click.echo(
            f"report {dates}: {written.built_days} of {written.days} days built, "
            f"{written.open_failures} open check failures; {len(written.pngs)} charts"
        )
        click.echo(f"page:   {written.html}")
        click.echo(f"charts: {written.html.parent}/*.png")


# ---- poison (issue 13: kept as one group near the end of the file) -------------------------
@cli.group("poison", help="Inputs that failed past their retries: CRM blob versions and build messages.")
def poison_group() -> None:
    pass


@poison_group.command("list", help="The messages in both poison queues and the latest ops.poison_events records.")
@json_option
@pass_cli
def poison_list(obj: CliContext) -> None:
    items = poison.list_poison(obj.resources)
    events = poison.recent_events(obj.resources.warehouse, limit=20)
    if obj.as_json:
        emit({"messages": [i.to_dict() for i in items], "events": events, "count": len(items)})
        return
    click.echo(f"{len(items)} message(s) in the poison queues")
    for item in items:
        click.echo(f"  {item.message_id}  {item.kind:<10} {item.detail}  (since {item.inserted_on})")
    for event in events:
        click.echo(f"  ops: {event['subject']}: {event['status']} ({event['note'] or '-'})")


@poison_group.command("requeue", help="Retry poisoned inputs now (builds re-queued, CRM blob versions staged).")
@click.option("--id", "message_ids", multiple=True, help="Only this message id (repeatable); default: all.")
@dry_run_option
@json_option
@pass_cli
def poison_requeue(obj: CliContext, message_ids: tuple[str, ...], dry_run: bool) -> None:
    outcomes = poison.requeue(obj.resources, message_ids=message_ids, dry_run=dry_run)
    if obj.as_json:
        emit({"outcomes": [o.to_dict() for o in outcomes], "dry_run": dry_run, "count": len(outcomes)})
        return
    for outcome in outcomes:
        click.echo(f"{outcome.subject}: {'would be ' if dry_run else ''}{outcome.action} ({outcome.note})")
    if not outcomes:
        click.echo("nothing to requeue")


# ======================================================================================
def main() -> None:
    """The console entry point (pyproject [project.scripts] company-activity)."""
    cli(prog_name=PROG)


if __name__ == "__main__":
    main()
