"""SPEC section 10 end to end: one local run (runner + Azurite + mock API + DuckDB) traced and
measured through shared/telemetry.py, read back from in-memory exporters."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # the fixtures come from the conftest files; only their types are named here
    from tests.conftest import OtelCapture
    from tests.e2e.conftest import Pipeline, PipelineFactory

pytestmark = pytest.mark.e2e

FUNCTIONS = {"crm_snapshot_arrived", "usage_timer", "build_requested"}


def test_one_local_run_is_traced_measured_and_free_of_secrets(
    make_pipeline: PipelineFactory, otel: OtelCapture
) -> None:
    """One run (CRM files, a timer tick, the builds it queued), checked four ways below; one
    test rather than four so the pipeline runs once."""
    pipeline = make_pipeline(companies=12, days=5)
    pipeline.upload_crm()
    invocations = pipeline.process().invocations
    invocations += pipeline.runner.fire_timer("usage_timer")
    invocations += pipeline.process().invocations
    run = (pipeline, invocations, otel)
    each_invocation_is_one_trace_with_the_run_attributes(run)
    a_build_links_to_the_trace_that_queued_it(run)
    metric_values_equal_the_figures_in_ops(run)
    no_secret_reaches_a_span_or_a_log_record(run)


def each_invocation_is_one_trace_with_the_run_attributes(traced_run: tuple[Pipeline, list[Any], OtelCapture]) -> None:
    pipeline, invocations, otel = traced_run
    spans = otel.spans()
    roots = [s for s in spans if s.parent is None and s.name in FUNCTIONS]
    assert sorted(s.name for s in roots) == sorted(i.function for i in invocations)
    assert len({s.context.trace_id for s in roots}) == len(roots), "one trace per invocation"
    run_ids = {r["run_id"] for r in pipeline.resources.warehouse.run_sql("SELECT run_id FROM ops.pipeline_runs")}
    for root in roots:
        attributes = dict(root.attributes)
        assert attributes["function"] == root.name
        assert attributes["pipeline"] == pipeline.settings.pipeline_name
        assert attributes["run_id"] in run_ids, root.name
        assert "step" in attributes
        if root.name == "crm_snapshot_arrived":
            assert attributes["blob_name"].endswith(".csv") and "activity_date" in attributes
        if root.name == "build_requested":
            assert attributes["activity_date"] and attributes["step"] == "build"

    by_trace: dict[int, list[Any]] = defaultdict(list)
    for span in spans:
        by_trace[span.context.trace_id].append(span)
    for root in roots:
        children = [s for s in by_trace[root.context.trace_id] if s is not root]
        names = {s.name.split(" ")[0] for s in children}
        run_id = root.attributes["run_id"]
        stepped = [s for s in children if s.name.startswith("sql ") and s.attributes.get("run_id")]
        assert stepped and all(s.attributes["run_id"] == run_id for s in stepped), root.name
        if root.name == "crm_snapshot_arrived":
            assert "blob.read" in names and "sql" in names
            assert all(s.attributes.get("blob_name") for s in children if s.name.startswith("blob."))
        if root.name == "usage_timer":
            assert {"usage_api.page", "GET", "blob.write", "blob.read", "sql", "freshness.evaluate"} <= names
            pages = [s for s in children if s.name == "usage_api.page"]
            assert all(s.attributes["activity_date"] == s.attributes["usage_api.date"] for s in pages)
            api_calls = [s for s in children if s.name == "GET" and "/v1/usage/daily" in _url(s)]
            assert api_calls and {g.parent.span_id for g in api_calls} <= {p.context.span_id for p in pages}
        if root.name == "build_requested" and not root.attributes.get("affected_only"):
            # (an affected-only message, a CRM file before its usage, may find no built day to rebuild)
            assert any(s.attributes.get("db.sql_file") == "analytics/company_daily_activity__build" for s in children)


def a_build_links_to_the_trace_that_queued_it(traced_run: tuple[Pipeline, list[Any], OtelCapture]) -> None:
    _, _, otel = traced_run
    spans = otel.spans()
    queuers = {s.context.trace_id: s.name for s in spans if s.parent is None and s.name != "build_requested"}
    builds = [s for s in spans if s.parent is None and s.name == "build_requested"]
    assert builds
    for build in builds:
        [link] = build.links
        assert queuers[link.context.trace_id] in {"crm_snapshot_arrived", "usage_timer"}


def metric_values_equal_the_figures_in_ops(traced_run: tuple[Pipeline, list[Any], OtelCapture]) -> None:
    pipeline, _, otel = traced_run
    wh = pipeline.resources.warehouse

    def one(sql: str) -> int:
        return int(next(iter(wh.run_sql(sql)[0].values())) or 0)

    def total(values: list[tuple[dict[str, Any], Any]]) -> Any:
        return sum(value for _, value in values)

    metrics = otel.metrics()
    assert total(metrics["pipeline.crm.rows_staged"]) == one(
        "SELECT SUM(rows_out) FROM ops.pipeline_runs WHERE step = 'crm_staging'"
    )
    assert total(metrics["pipeline.crm.rows_rejected"]) == one(
        "SELECT SUM(rejected_row_count) FROM ops.quarantined_files"
    )
    assert total(metrics["pipeline.usage.rows_staged"]) == one("SELECT SUM(staged_row_count) FROM stg.usage_pulls")
    assert total(metrics.get("pipeline.usage.rows_rejected", [])) == one(
        "SELECT SUM(rejected_record_count) FROM stg.usage_pulls"
    )
    assert total(metrics["pipeline.api.requests"]) == len(pipeline.api.requests)
    builds = "FROM ops.pipeline_runs WHERE step = 'build' AND status = 'succeeded'"
    assert total(metrics["pipeline.build.rows_written"]) == one(f"SELECT SUM(rows_out) {builds}")
    assert total(metrics["pipeline.build.succeeded"]) == one(f"SELECT COUNT(*) {builds}") > 0
    [(_, (durations, seconds))] = metrics["pipeline.build.duration"]
    assert durations == one(f"SELECT COUNT(*) {builds}") and seconds > 0
    assert total(metrics.get("pipeline.checks.failed", [])) == one(
        "SELECT COUNT(*) FROM ops.data_quality_results WHERE status = 'fail'"
    )
    lag = {attributes["input"]: value for attributes, value in metrics["pipeline.input.freshness_lag"]}
    assert set(lag) == {"crm", "usage"} and lag["usage"] == 0.0


def no_secret_reaches_a_span_or_a_log_record(traced_run: tuple[Pipeline, list[Any], OtelCapture]) -> None:
    pipeline, _, otel = traced_run
    secrets = [pipeline.settings.usage_api_key.get_secret_value(), *_credentials(pipeline)]
    texts = []
    for span in otel.spans():
        texts.append(span.name)
        texts.extend(str(v) for v in span.attributes.values())
        texts.extend(str(v) for event in span.events for v in event.attributes.values())
    records = otel.logs()
    assert records, "log records are exported"
    for record in records:
        texts.append(str(record.body))
        texts.extend(str(v) for v in (record.attributes or {}).values())
    leaked = [secret for secret in secrets if any(secret in text for text in texts)]
    assert not leaked
    with_run = [r for r in records if (r.attributes or {}).get("run_id")]
    assert len(with_run) > len(records) / 2, "the run id is a dimension of the pipeline's records"


def _url(span: Any) -> str:
    return str(span.attributes.get("url.full") or span.attributes.get("http.url") or "")


def _credentials(pipeline: Pipeline) -> list[str]:
    from shared.settings import connection_string_credentials

    storage = pipeline.settings.pipeline_storage
    return connection_string_credentials(storage.get_secret_value()) if storage else []


class RefusesBuilds:
    """A warehouse whose analytics build always fails, so build messages end in poison."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def run(self, name: str, params: Any = None, **kwargs: Any) -> Any:
        if name.startswith("analytics/company_daily_activity__build"):
            raise RuntimeError("the warehouse refuses this build")
        return self._inner.run(name, params, **kwargs)


def test_poisoned_build_messages_are_counted_and_their_traces_failed(
    make_pipeline: PipelineFactory, otel: OtelCapture
) -> None:
    from shared.adapters.queue_store import QueueStore

    pipeline = make_pipeline(companies=6, days=2, include_bad_file=False, warehouse_wrapper=RefusesBuilds)
    pipeline.run_everything()

    poison_queue = f"{pipeline.settings.build_queue}-poison"
    poisoned = QueueStore.from_settings(pipeline.settings).named(poison_queue).peek()
    [(attributes, count)] = otel.metrics()["pipeline.poison.messages"]
    assert attributes == {"queue": poison_queue} and count == len(poisoned) > 0
    builds = [
        s
        for s in otel.spans()
        if s.parent is None and s.name == "build_requested" and not s.attributes.get("affected_only")
    ]
    assert builds and all(s.status.status_code.name == "ERROR" for s in builds)
    assert all("refuses this build" in s.status.description for s in builds)
