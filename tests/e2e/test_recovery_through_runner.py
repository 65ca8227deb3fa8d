"""No poison is final, through the local trigger runner (Azurite + mock API + DuckDB): an input
that fails past the host's retries while the warehouse is down ends in a poison queue, and the
next timer tick after the warehouse is back stages or re-queues it. Exactly one alert per
poisoning, an ops record of the poisoning and of its recovery, and the same rows as a pipeline
that never failed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from pipeline_tools.cli import CliContext
from pipeline_tools.cli import cli as cli_group
from shared.errors import WarehouseTransientError
from shared.rules.date_ranges import DateRange
from shared.services import poison
from shared.services.status import date_reports

from .conftest import PipelineFactory

pytestmark = pytest.mark.e2e


class Outage:
    """A warehouse that is unreachable while ``down`` (every call fails as a dropped connection
    would) or whose builds alone fail while ``builds_down``."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.down = False
        self.builds_down = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def run(self, name: str, params: Any = None, **kwargs: Any) -> Any:
        if self.down or (self.builds_down and name.startswith("analytics/company_daily_activity__build")):
            raise WarehouseTransientError("warehouse unreachable (connection dropped)")
        return self._inner.run(name, params, **kwargs)

    def bulk_load(self, *args: Any, **kwargs: Any) -> Any:
        if self.down:
            raise WarehouseTransientError("warehouse unreachable (connection dropped)")
        return self._inner.bulk_load(*args, **kwargs)


def test_a_crm_file_poisoned_during_an_outage_is_staged_by_the_next_tick(make_pipeline: PipelineFactory) -> None:
    outages: list[Outage] = []
    pipeline = make_pipeline(
        companies=10,
        days=3,
        include_bad_file=False,
        warehouse_wrapper=lambda w: outages.append(Outage(w)) or outages[-1],
    )
    reference = make_pipeline(companies=10, days=3, include_bad_file=False)
    reference.run_everything()
    (outage,) = outages
    files = list(pipeline.sample.files())
    pipeline.upload_crm(files[:-1])
    pipeline.process()
    outage.down = True
    pipeline.upload_crm(files[-1:])  # arrives during the outage
    pipeline.process()
    crm_runs = [i for i in pipeline.runner.history if i.function == "crm_snapshot_arrived" and not i.succeeded]
    assert len(crm_runs) == 5  # host.json maxDequeueCount, then the blob-trigger poison queue
    assert [i.kind for i in poison.list_poison(pipeline.resources)] == ["crm_blob"]

    outage.down = False
    pipeline.tick()  # the warehouse is back: the sweep stages the file, its date builds

    assert pipeline.rows_per_date() == reference.rows_per_date()
    assert pipeline.table("analytics.company_daily_activity") == reference.table("analytics.company_daily_activity")
    poisoned = [a for a in pipeline.alerts.alerts if "poison" in a.title.lower()]
    assert len(poisoned) == 1 and poisoned[0].run_id and files[-1].blob_name in poisoned[0].subject
    events = poison.recent_events(pipeline.resources.warehouse)
    assert [(e["kind"], e["status"]) for e in events] == [("crm_blob", "recovered")]
    assert poison.list_poison(pipeline.resources) == []
    last = pipeline.dates[-1]
    (status,) = date_reports(pipeline.resources.warehouse, DateRange.single(last))
    assert [(r["kind"], r["status"]) for r in status.recovery] == [("crm_blob", "recovered")]

    pipeline.tick()  # nothing left to recover: no further alert, no change
    assert len([a for a in pipeline.alerts.alerts if "poison" in a.title.lower()]) == 1


def test_a_build_poisoned_during_an_outage_is_requeued_and_built_by_the_next_tick(
    make_pipeline: PipelineFactory,
) -> None:
    outages: list[Outage] = []
    pipeline = make_pipeline(
        companies=10,
        days=2,
        include_bad_file=False,
        warehouse_wrapper=lambda w: outages.append(Outage(w)) or outages[-1],
    )
    (outage,) = outages
    outage.builds_down = True
    pipeline.run_everything()
    assert pipeline.rows_per_date() == {}
    assert {i.kind for i in poison.list_poison(pipeline.resources)} == {"build"}
    assert pipeline.alert_titles().count("Build message moved to poison") == len(poison.list_poison(pipeline.resources))

    outage.builds_down = False
    pipeline.tick()

    assert set(pipeline.rows_per_date()) == set(pipeline.dates)
    assert poison.list_poison(pipeline.resources) == []
    statuses = {e["status"] for e in poison.recent_events(pipeline.resources.warehouse)}
    assert statuses <= {"requeued", "recovered"} and "requeued" in statuses


def test_an_operator_lists_and_requeues_poison_from_the_cli(make_pipeline: PipelineFactory) -> None:
    outages: list[Outage] = []
    pipeline = make_pipeline(
        companies=10,
        days=2,
        include_bad_file=False,
        warehouse_wrapper=lambda w: outages.append(Outage(w)) or outages[-1],
    )
    (outage,) = outages
    outage.builds_down = True
    pipeline.run_everything()

    listed = json.loads(cli(pipeline, "poison", "list", "--json").stdout)
    assert listed["messages"] and {m["kind"] for m in listed["messages"]} == {"build"}
    assert {e["status"] for e in listed["events"]} == {"poisoned"}

    dry = json.loads(cli(pipeline, "poison", "requeue", "--dry-run", "--json").stdout)["outcomes"]
    assert {o["action"] for o in dry} == {"requeued"}
    assert len(poison.list_poison(pipeline.resources)) == len(listed["messages"])  # the dry run changed nothing

    outage.builds_down = False
    done = json.loads(cli(pipeline, "poison", "requeue", "--json").stdout)["outcomes"]
    assert [o["action"] for o in done] == ["requeued"] * len(listed["messages"])
    pipeline.process()

    assert set(pipeline.rows_per_date()) == set(pipeline.dates)
    assert poison.list_poison(pipeline.resources) == []
    day = str(pipeline.dates[-1])
    status = json.loads(cli(pipeline, "status", "--date", day, "--json").stdout)
    assert {r["status"] for r in status[0]["recovery"]} == {"requeued"}


def cli(pipeline: Any, *args: str) -> Any:
    result = CliRunner().invoke(cli_group, list(args), obj=CliContext(_resources=pipeline.resources))
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.output}"
    return result
