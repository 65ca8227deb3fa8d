"""The local trigger runner against a real Azurite, with a tiny app whose functions record calls.

Each test uses its own container, queue and host id, so the session's Azurite serves them all.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import Callable
from typing import Any

import azure.functions as func
import pytest
from azure.storage.blob import BlobClient, BlobServiceClient
from azure.storage.queue import QueueServiceClient

from pipeline_tools.azurite import AzuriteProcess
from pipeline_tools.runner import BLOB_POISON_QUEUE, Runner
from shared.host_config import queue_config

pytestmark = pytest.mark.integration

# host.json's queue settings, with no visibility delay so retries happen within the test.
HOST_CONFIG = dataclasses.replace(queue_config(), visibility_timeout=dt.timedelta(0))
MAX_DEQUEUE = HOST_CONFIG.max_dequeue_count


@pytest.fixture
def connection_string(azurite: AzuriteProcess) -> str:
    """The session's Azurite (tests/conftest.py)."""
    return azurite.connection_string


@dataclasses.dataclass
class Recorder:
    """What the tiny app's functions saw; ``failing`` makes a function raise on demand."""

    blobs: list[tuple[str, bytes]] = dataclasses.field(default_factory=list)
    messages: list[func.QueueMessage] = dataclasses.field(default_factory=list)
    ticks: list[func.TimerRequest] = dataclasses.field(default_factory=list)
    failing: set[str] = dataclasses.field(default_factory=set)
    after_blob: Callable[[str], None] | None = None  # e.g. queue a message, as our CRM function does


def _tiny_app(recorder: Recorder) -> func.FunctionApp:
    app = func.FunctionApp()

    @app.function_name("on_blob")
    @app.blob_trigger(arg_name="client", path="%IN_CONTAINER%/{name}", connection="STORE")
    def on_blob(client: BlobClient) -> None:
        recorder.blobs.append((client.blob_name, client.download_blob().readall()))
        if "blob" in recorder.failing:
            raise RuntimeError("blob function fails on demand")
        if recorder.after_blob is not None:
            recorder.after_blob(client.blob_name)

    @app.function_name("on_message")
    @app.queue_trigger(arg_name="message", queue_name="%JOBS_QUEUE%", connection="STORE")
    def on_message(message: func.QueueMessage) -> None:
        recorder.messages.append(message)
        if "queue" in recorder.failing:
            raise RuntimeError("queue function fails on demand")

    @app.function_name("on_tick")
    @app.timer_trigger(arg_name="timer", schedule="%TICK_SCHEDULE%", use_monitor=True)
    def on_tick(timer: func.TimerRequest) -> None:
        recorder.ticks.append(timer)

    return app


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


@dataclasses.dataclass
class Harness:
    recorder: Recorder
    values: dict[str, str]
    blobs: BlobServiceClient
    queues: QueueServiceClient
    clock: Clock

    def runner(self, deliver_twice: bool = False) -> Runner:
        """A fresh runner process, as after a restart (a new app object, same storage)."""
        return Runner.from_app(
            _tiny_app(self.recorder),
            self.values,
            environ={},
            host_config=HOST_CONFIG,
            clock=self.clock,
            deliver_twice=deliver_twice,
        )

    @property
    def container(self) -> str:
        return self.values["IN_CONTAINER"]

    @property
    def queue(self) -> str:
        return self.values["JOBS_QUEUE"]

    def upload(self, name: str, data: bytes) -> None:
        self.blobs.get_container_client(self.container).upload_blob(name, data, overwrite=True)

    def send(self, payload: dict[str, Any]) -> None:
        """As our producer sends: JSON, base64-encoded per host.json."""
        client = self.queues.get_queue_client(self.queue)
        client.send_message(base64.b64encode(json.dumps(payload).encode()).decode())

    def raw_messages(self, queue: str) -> list[str]:
        return [m.content for m in self.queues.get_queue_client(queue).peek_messages(max_messages=32)]


@pytest.fixture
def harness(connection_string: str) -> Harness:
    suffix = uuid.uuid4().hex[:10]
    values = {
        "STORE": connection_string,
        "AzureWebJobsStorage": connection_string,
        "IN_CONTAINER": f"in-{suffix}",
        "JOBS_QUEUE": f"jobs-{suffix}",
        "TICK_SCHEDULE": "0 0 1 * * *",
        # Each test gets its own receipts and timer status, as if it were its own host.
        "AzureFunctionsWebHost__hostid": f"host-{suffix}",
    }
    blobs = BlobServiceClient.from_connection_string(connection_string)
    queues = QueueServiceClient.from_connection_string(connection_string)
    blobs.create_container(values["IN_CONTAINER"])
    queues.create_queue(values["JOBS_QUEUE"])
    return Harness(Recorder(), values, blobs, queues, Clock())


# ---- blob trigger -------------------------------------------------------------------------
def test_a_blob_is_processed_once_per_etag_also_after_a_restart(harness: Harness) -> None:
    harness.upload("crm_2025-01-01.csv", b"a,b\n1,2\n")

    first = harness.runner()
    assert first.drain(timeout_s=30).idle
    assert first.drain(timeout_s=30).invocations == []
    assert harness.runner().drain(timeout_s=30).invocations == []  # receipts live in storage

    assert harness.recorder.blobs == [("crm_2025-01-01.csv", b"a,b\n1,2\n")]


def test_a_changed_blob_triggers_again(harness: Harness) -> None:
    runner = harness.runner()
    harness.upload("crm_2025-01-01.csv", b"v1")
    runner.drain(timeout_s=30)
    harness.upload("crm_2025-01-01.csv", b"v2")
    runner.drain(timeout_s=30)

    assert harness.recorder.blobs == [("crm_2025-01-01.csv", b"v1"), ("crm_2025-01-01.csv", b"v2")]


def test_every_new_blob_in_the_container_is_delivered(harness: Harness) -> None:
    for day in (1, 2, 3):
        harness.upload(f"crm_2025-01-0{day}.csv", b"x")
    harness.runner().drain(timeout_s=30)
    assert sorted(name for name, _ in harness.recorder.blobs) == [f"crm_2025-01-0{d}.csv" for d in (1, 2, 3)]


def test_a_blob_that_keeps_failing_goes_to_the_blob_poison_queue_and_is_not_retried(harness: Harness) -> None:
    harness.recorder.failing.add("blob")
    harness.upload("bad.csv", b"x")
    runner = harness.runner()

    result = runner.drain(timeout_s=30)
    assert result.idle
    assert len(result.failures) == MAX_DEQUEUE
    assert harness.runner().drain(timeout_s=30).invocations == []

    poison = [json.loads(base64.b64decode(m)) for m in harness.raw_messages(BLOB_POISON_QUEUE)]
    ours = [m for m in poison if m["ContainerName"] == harness.container]
    assert len(ours) == 1
    assert ours[0]["BlobName"] == "bad.csv"
    assert ours[0]["FunctionId"] == "Host.Functions.on_blob"
    assert ours[0]["ETag"]


def test_a_blob_that_fails_then_succeeds_is_done(harness: Harness) -> None:
    harness.recorder.failing.add("blob")
    harness.upload("flaky.csv", b"x")
    runner = harness.runner()
    assert len(runner.poll_once()) == 1
    assert runner.has_pending()
    harness.recorder.failing.clear()

    result = runner.drain(timeout_s=30)
    assert [r.succeeded for r in result.invocations] == [True]
    assert not runner.has_pending()


# ---- queue trigger ------------------------------------------------------------------------
def test_a_queue_message_is_decoded_per_host_json_and_deleted_after_success(harness: Harness) -> None:
    harness.send({"dates": ["2025-01-01"]})

    result = harness.runner().drain(timeout_s=30)

    assert [r.succeeded for r in result.invocations] == [True]
    [message] = harness.recorder.messages
    assert json.loads(message.get_body()) == {"dates": ["2025-01-01"]}
    assert message.dequeue_count == 1
    assert message.id and message.pop_receipt
    assert message.insertion_time is not None and message.expiration_time is not None
    assert harness.raw_messages(harness.queue) == []


def test_a_failing_message_is_retried_up_to_max_dequeue_count_then_moved_to_poison(harness: Harness) -> None:
    harness.recorder.failing.add("queue")
    harness.send({"dates": ["2025-01-02"]})

    result = harness.runner().drain(timeout_s=60)

    assert result.idle
    assert [m.dequeue_count for m in harness.recorder.messages] == list(range(1, MAX_DEQUEUE + 1))
    assert harness.raw_messages(harness.queue) == []
    [poisoned] = harness.raw_messages(f"{harness.queue}-poison")
    assert json.loads(base64.b64decode(poisoned)) == {"dates": ["2025-01-02"]}  # same encoding as the original


def test_a_message_not_in_the_declared_encoding_goes_to_poison_without_an_invocation(harness: Harness) -> None:
    harness.queues.get_queue_client(harness.queue).send_message('{"not": "base64"}')

    harness.runner().drain(timeout_s=30)

    assert harness.recorder.messages == []
    assert harness.raw_messages(f"{harness.queue}-poison") == ['{"not": "base64"}']


def test_messages_sent_during_a_drain_are_processed_by_the_same_drain(harness: Harness) -> None:
    harness.recorder.after_blob = lambda name: harness.send({"from": name})
    harness.upload("a.csv", b"x")

    result = harness.runner().drain(timeout_s=30)

    assert [r.function for r in result.invocations] == ["on_blob", "on_message"]
    assert json.loads(harness.recorder.messages[0].get_body()) == {"from": "a.csv"}


# ---- timer trigger ------------------------------------------------------------------------
def test_fire_timer_calls_the_timer_function_now(harness: Harness) -> None:
    [result] = harness.runner().fire_timer("on_tick")
    assert result.succeeded
    assert [t.past_due for t in harness.recorder.ticks] == [False]


def test_an_occurrence_missed_while_stopped_fires_once_as_past_due_after_a_restart(harness: Harness) -> None:
    harness.clock.now = dt.datetime(2025, 3, 4, 0, 59, 59, tzinfo=dt.UTC)
    first = harness.runner()
    harness.clock.now = dt.datetime(2025, 3, 4, 1, 0, 0, tzinfo=dt.UTC)
    assert len(first.poll_once()) == 1  # the 01:00 tick; status says next is 03-05 01:00

    harness.clock.now = dt.datetime(2025, 3, 6, 9, 0, 0, tzinfo=dt.UTC)  # stopped over the 03-05 tick
    restarted = harness.runner()
    assert len(restarted.poll_once()) == 1
    assert restarted.poll_once() == []

    assert [t.past_due for t in harness.recorder.ticks] == [False, True]
    assert restarted.timers[0].next_due == dt.datetime(2025, 3, 7, 1, 0, tzinfo=dt.UTC)


# ---- at-least-once drill ------------------------------------------------------------------
def test_deliver_twice_repeats_every_successful_delivery_once(harness: Harness) -> None:
    harness.upload("a.csv", b"x")
    harness.send({"n": 1})
    runner = harness.runner(deliver_twice=True)

    runner.drain(timeout_s=30)
    runner.fire_timer("on_tick")

    assert [name for name, _ in harness.recorder.blobs] == ["a.csv", "a.csv"]
    assert [m.id for m in harness.recorder.messages] == [harness.recorder.messages[0].id] * 2
    assert len(harness.recorder.ticks) == 2
    assert [r.trigger.get("duplicate", False) for r in runner.history] == [False, True] * 3
    assert harness.raw_messages(harness.queue) == []


def test_deliver_twice_does_not_repeat_a_failed_delivery(harness: Harness) -> None:
    harness.recorder.failing.add("queue")
    harness.send({"n": 1})
    harness.runner(deliver_twice=True).drain(timeout_s=60)
    assert [m.dequeue_count for m in harness.recorder.messages] == list(range(1, MAX_DEQUEUE + 1))
