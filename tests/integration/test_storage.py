"""Blob, queue and table adapters against a real Azurite (started once per worker by conftest)."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from pipeline_tools.azurite import AzuriteProcess
from shared.adapters.blob_store import BlobStore
from shared.adapters.queue_store import BuildQueue, QueueStore, host_message_encoding
from shared.adapters.storage_common import StorageNotFound
from shared.adapters.table_state import StateTable
from shared.errors import ConcurrencyConflict, MalformedMessage, UpstreamUnavailable
from shared.host_config import queue_config
from shared.settings import Settings

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


@pytest.fixture
def blobs(storage_settings: Settings) -> BlobStore:
    return BlobStore.from_settings(storage_settings)


@pytest.fixture
def table(storage_settings: Settings) -> StateTable:
    return StateTable.from_settings(storage_settings)


def _payload(size: int) -> bytes:
    """Deterministic, non-repeating-looking bytes (so a misplaced chunk changes the content)."""
    block = hashlib.sha256(str(size).encode()).digest() * 2048  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


def _md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def _chunks(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    """``data`` cut into pieces of the given sizes, cycling, like a producer of uneven chunks."""
    offset, i = 0, 0
    while offset < len(data):
        yield data[offset : offset + sizes[i % len(sizes)]]
        offset += sizes[i % len(sizes)]
        i += 1


# ---- blobs ---------------------------------------------------------------------------------


def test_small_blob_round_trip_keeps_content_type_metadata_and_md5(
    blobs: BlobStore, storage_settings: Settings
) -> None:
    container = storage_settings.crm_container
    data = b"company_id,name\n1,Acme\n"

    written = blobs.write(container, "crm_2025-11-30.csv", data, content_type="text/csv", metadata={"run": "r1"})
    info = blobs.info(container, "crm_2025-11-30.csv")

    assert blobs.read_bytes(container, "crm_2025-11-30.csv") == data
    assert info is not None
    assert (info.size, info.metadata, info.etag) == (len(data), {"run": "r1"}, written.etag)
    assert info.content_md5 == written.content_md5 == _md5(data)


def test_multi_mb_blob_written_from_uneven_chunks_streams_back_in_bounded_chunks(
    blobs: BlobStore, storage_settings: Settings
) -> None:
    container = storage_settings.raw_container
    data = _payload(9 * MIB + 12345)

    written = blobs.write(container, "date=2025-11-30/usage.ndjson", _chunks(data, [700_000, 3, 1_500_001]))
    chunks = list(blobs.iter_chunks(container, "date=2025-11-30/usage.ndjson", chunk_size=MIB))

    assert b"".join(chunks) == data
    assert all(len(chunk) <= MIB for chunk in chunks)
    assert len(chunks) == 10
    assert written.size == len(data)
    info = blobs.info(container, "date=2025-11-30/usage.ndjson")
    assert info is not None
    assert info.content_md5 == _md5(data)


def _peak_bytes(action: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_streaming_memory_does_not_grow_with_blob_size(blobs: BlobStore, storage_settings: Settings) -> None:
    container = storage_settings.raw_container

    def write(name: str, mib: int) -> Callable[[], object]:
        return lambda: blobs.write(container, name, (_payload(MIB) for _ in range(mib)))

    def read(name: str) -> Callable[[], object]:
        return lambda: sum(len(chunk) for chunk in blobs.iter_chunks(container, name, chunk_size=MIB))

    write_small, write_large = _peak_bytes(write("small", 8)), _peak_bytes(write("large", 32))
    read_small, read_large = _peak_bytes(read("small")), _peak_bytes(read("large"))

    # Four times the data, (about) the same peak: chunks are not accumulated anywhere.
    assert write_large < write_small + MIB, (write_small, write_large)
    assert read_large < read_small + MIB, (read_small, read_large)
    assert read_large < 32 * MIB / 2


def test_chunked_write_is_invisible_until_the_last_chunk_is_committed(
    blobs: BlobStore, storage_settings: Settings
) -> None:
    container = storage_settings.crm_container
    blobs.write(container, "snapshot.csv", b"old version")
    seen_mid_write: list[bytes] = []

    def producer() -> Iterator[bytes]:
        yield _payload(5 * MIB)  # more than one block is staged before the next check
        seen_mid_write.append(blobs.read_bytes(container, "snapshot.csv"))
        yield b"tail"

    blobs.write(container, "snapshot.csv", producer())

    assert seen_mid_write == [b"old version"]
    assert blobs.read_bytes(container, "snapshot.csv") == _payload(5 * MIB) + b"tail"


def test_chunked_write_that_fails_midway_leaves_the_previous_blob_intact(
    blobs: BlobStore, storage_settings: Settings
) -> None:
    container = storage_settings.crm_container
    blobs.write(container, "snapshot.csv", b"good version")

    def failing_producer() -> Iterator[bytes]:
        yield _payload(5 * MIB)
        raise OSError("source stream broke")

    with pytest.raises(OSError, match="source stream broke"):
        blobs.write(container, "snapshot.csv", failing_producer())

    assert blobs.read_bytes(container, "snapshot.csv") == b"good version"


def test_chunked_write_of_no_chunks_creates_an_empty_blob(blobs: BlobStore, storage_settings: Settings) -> None:
    container = storage_settings.crm_container

    written = blobs.write(container, "empty.csv", iter(()))

    assert written.size == 0
    assert blobs.read_bytes(container, "empty.csv") == b""
    assert list(blobs.iter_chunks(container, "empty.csv")) == []


def test_overwrite_replaces_content_and_changes_etag(blobs: BlobStore, storage_settings: Settings) -> None:
    container = storage_settings.crm_container
    first = blobs.write(container, "a.csv", b"first")

    second = blobs.write(container, "a.csv", b"second, longer")

    assert blobs.read_bytes(container, "a.csv") == b"second, longer"
    assert second.etag != first.etag
    assert second.content_md5 != first.content_md5


@pytest.mark.parametrize("as_chunks", [False, True], ids=["bytes", "chunks"])
def test_write_without_overwrite_conflicts_when_the_blob_exists(
    blobs: BlobStore, storage_settings: Settings, as_chunks: bool
) -> None:
    container = storage_settings.crm_container
    blobs.write(container, "a.csv", b"original")

    with pytest.raises(ConcurrencyConflict):
        blobs.write(container, "a.csv", iter([b"other"]) if as_chunks else b"other", overwrite=False)

    assert blobs.read_bytes(container, "a.csv") == b"original"


def test_blob_replaced_while_being_streamed_raises_conflict_not_mixed_content(
    blobs: BlobStore, storage_settings: Settings
) -> None:
    container = storage_settings.crm_container
    blobs.write(container, "a.csv", _payload(3 * MIB))
    reader = blobs.iter_chunks(container, "a.csv", chunk_size=MIB)
    next(reader)

    blobs.write(container, "a.csv", _payload(3 * MIB + 1))

    with pytest.raises(ConcurrencyConflict):
        list(reader)


def test_copy_duplicates_content_md5_and_metadata_into_another_container(
    blobs: BlobStore, storage_settings: Settings
) -> None:
    data = _payload(2 * MIB)
    source = blobs.write(storage_settings.crm_container, "bad_2025-11-30.csv", data, metadata={"reason": "x"})

    copied = blobs.copy(
        storage_settings.crm_container,
        "bad_2025-11-30.csv",
        storage_settings.quarantine_container,
        "2025-11-30/bad_2025-11-30.csv",
    )

    assert blobs.read_bytes(storage_settings.quarantine_container, "2025-11-30/bad_2025-11-30.csv") == data
    assert (copied.size, copied.content_md5, copied.metadata) == (len(data), source.content_md5, {"reason": "x"})
    assert blobs.read_bytes(storage_settings.crm_container, "bad_2025-11-30.csv") == data


def test_copy_of_a_missing_blob_raises_not_found(blobs: BlobStore, storage_settings: Settings) -> None:
    with pytest.raises(StorageNotFound):
        blobs.copy(storage_settings.crm_container, "nope.csv", storage_settings.quarantine_container, "nope.csv")


def test_list_by_prefix_returns_matching_blobs_in_name_order(blobs: BlobStore, storage_settings: Settings) -> None:
    container = storage_settings.raw_container
    for name in ("date=2025-11-30/part-2.ndjson", "date=2025-11-30/part-1.ndjson", "date=2025-12-01/part-1.ndjson"):
        blobs.write(container, name, name.encode(), metadata={"n": name[-8:-7]})

    listed = blobs.list(container, prefix="date=2025-11-30/")

    assert [b.name for b in listed] == ["date=2025-11-30/part-1.ndjson", "date=2025-11-30/part-2.ndjson"]
    assert [b.metadata for b in listed] == [{"n": "1"}, {"n": "2"}]
    assert len(blobs.list(container)) == 3


def test_listing_a_missing_container_is_empty(blobs: BlobStore) -> None:
    assert blobs.list("no-such-container-here") == []


def test_missing_blob_has_no_info_cannot_be_read_and_deletes_quietly(
    blobs: BlobStore, storage_settings: Settings
) -> None:
    container = storage_settings.crm_container

    assert blobs.info(container, "missing.csv") is None
    with pytest.raises(StorageNotFound):
        blobs.read_bytes(container, "missing.csv")
    with pytest.raises(StorageNotFound):
        list(blobs.iter_chunks(container, "missing.csv"))
    blobs.delete(container, "missing.csv")


def test_delete_removes_the_blob(blobs: BlobStore, storage_settings: Settings) -> None:
    container = storage_settings.crm_container
    blobs.write(container, "a.csv", b"x")

    blobs.delete(container, "a.csv")

    assert blobs.info(container, "a.csv") is None


def test_ensure_container_is_idempotent(blobs: BlobStore) -> None:
    blobs.ensure_container("made-twice")
    blobs.ensure_container("made-twice")

    assert blobs.list("made-twice") == []


def test_unreachable_storage_raises_a_transient_error(azurite: AzuriteProcess) -> None:
    # An address nothing listens on; SDK retries off so the mapping, not the backoff, is tested.
    dead = azurite.connection_string.replace(azurite.blob_endpoint, "http://127.0.0.1:9/devstoreaccount1")
    store = BlobStore(BlobServiceClient.from_connection_string(dead, retry_total=0))

    with pytest.raises(UpstreamUnavailable):
        store.info("any", "blob")


# ---- table state ---------------------------------------------------------------------------


def test_insert_then_get_returns_a_plain_dict_and_its_etag(table: StateTable) -> None:
    entity = {"PartitionKey": "2025-11-30", "RowKey": "crm", "version": "abc", "rows": 3, "big": 2**40}

    etag = table.insert(entity)
    got = table.get("2025-11-30", "crm")

    assert got == (entity, etag)
    assert type(got[0]) is dict


def test_get_of_a_missing_entity_is_none(table: StateTable) -> None:
    assert table.get("2025-11-30", "nothing") is None


def test_insert_of_an_existing_entity_conflicts(table: StateTable) -> None:
    table.insert({"PartitionKey": "p", "RowKey": "r", "v": 1})

    with pytest.raises(ConcurrencyConflict):
        table.insert({"PartitionKey": "p", "RowKey": "r", "v": 2})

    assert table.get("p", "r") is not None
    assert table.get("p", "r")[0]["v"] == 1  # type: ignore[index]


def test_update_if_match_with_the_current_etag_replaces_the_entity(table: StateTable) -> None:
    etag = table.insert({"PartitionKey": "p", "RowKey": "r", "v": 1, "dropped": "x"})

    new_etag = table.update_if_match({"PartitionKey": "p", "RowKey": "r", "v": 2}, etag)

    assert new_etag != etag
    assert table.get("p", "r") == ({"PartitionKey": "p", "RowKey": "r", "v": 2}, new_etag)


def test_update_with_a_stale_etag_loses(table: StateTable) -> None:
    stale = table.insert({"PartitionKey": "p", "RowKey": "r", "v": 1})
    table.update_if_match({"PartitionKey": "p", "RowKey": "r", "v": 2}, stale)

    with pytest.raises(ConcurrencyConflict):
        table.update_if_match({"PartitionKey": "p", "RowKey": "r", "v": 3}, stale)

    assert table.get("p", "r")[0]["v"] == 2  # type: ignore[index]


def test_of_two_concurrent_conditional_updates_exactly_one_wins(table: StateTable) -> None:
    table.insert({"PartitionKey": "p", "RowKey": "r", "writer": "none"})
    first_read, second_read = table.get("p", "r"), table.get("p", "r")
    assert first_read is not None and second_read is not None
    assert first_read[1] == second_read[1]
    start = threading.Barrier(2)

    def update(writer: str, etag: str) -> str:
        start.wait()  # both requests leave at the same moment
        try:
            table.update_if_match({"PartitionKey": "p", "RowKey": "r", "writer": writer}, etag)
        except ConcurrencyConflict:
            return "lost"
        return "won"

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = dict(zip(("a", "b"), pool.map(update, ("a", "b"), (first_read[1], second_read[1])), strict=True))

    assert sorted(outcomes.values()) == ["lost", "won"]
    winner = next(writer for writer, outcome in outcomes.items() if outcome == "won")
    assert table.get("p", "r")[0]["writer"] == winner  # type: ignore[index]


def test_conditional_update_of_a_deleted_entity_conflicts(table: StateTable) -> None:
    etag = table.insert({"PartitionKey": "p", "RowKey": "r"})
    table.delete("p", "r")

    with pytest.raises(ConcurrencyConflict):
        table.update_if_match({"PartitionKey": "p", "RowKey": "r", "v": 1}, etag)


def test_upsert_creates_then_replaces_whole_entity(table: StateTable) -> None:
    table.upsert({"PartitionKey": "receipts", "RowKey": "blob-1", "a": 1, "b": 2})
    etag = table.upsert({"PartitionKey": "receipts", "RowKey": "blob-1", "a": 3})

    assert table.get("receipts", "blob-1") == ({"PartitionKey": "receipts", "RowKey": "blob-1", "a": 3}, etag)


def test_query_returns_one_partition_within_the_row_key_range_in_order(table: StateTable) -> None:
    for day in ("2025-11-28", "2025-11-30", "2025-11-29", "2025-12-01"):
        table.insert({"PartitionKey": "dates", "RowKey": day, "n": int(day[-2:])})
    table.insert({"PartitionKey": "other", "RowKey": "2025-11-29"})

    in_range = table.query("dates", row_key_from="2025-11-29", row_key_to="2025-11-30")

    assert in_range == [
        {"PartitionKey": "dates", "RowKey": "2025-11-29", "n": 29},
        {"PartitionKey": "dates", "RowKey": "2025-11-30", "n": 30},
    ]
    assert [e["RowKey"] for e in table.query("dates")] == ["2025-11-28", "2025-11-29", "2025-11-30", "2025-12-01"]
    assert [e["RowKey"] for e in table.query("dates", row_key_from="2025-11-30")] == ["2025-11-30", "2025-12-01"]


def test_delete_is_idempotent_and_delete_if_match_refuses_a_stale_etag(table: StateTable) -> None:
    stale = table.insert({"PartitionKey": "p", "RowKey": "r", "v": 1})
    table.update_if_match({"PartitionKey": "p", "RowKey": "r", "v": 2}, stale)

    with pytest.raises(ConcurrencyConflict):
        table.delete_if_match("p", "r", stale)
    table.delete("p", "r")
    table.delete("p", "r")

    assert table.get("p", "r") is None


# ---- queues --------------------------------------------------------------------------------


def _raw_queue_client(settings: Settings, queue_name: str) -> QueueClient:
    """A client with no encode/decode policy: it sees the text exactly as stored."""
    conn = settings.storage_connection_string()
    assert conn is not None
    return QueueClient.from_connection_string(conn, queue_name)


def _host_decode(text: str) -> bytes:
    """What the Functions host does with a stored message, per host.json messageEncoding."""
    if queue_config().message_encoding == "base64":
        return base64.b64decode(text, validate=True)
    return text.encode("utf-8")


def test_build_message_reads_back_the_way_the_functions_host_decodes_it(storage_settings: Settings) -> None:
    payload = {"dates": ["2025-11-30"], "reason": "inputs ready", "run_id": "r1", "name": "Zoë"}

    BuildQueue.from_settings(storage_settings).send(payload)
    received = list(_raw_queue_client(storage_settings, storage_settings.build_queue).receive_messages())

    assert len(received) == 1
    assert json.loads(_host_decode(received[0].content)) == payload


def test_build_messages_are_base64_text_because_host_json_says_base64(storage_settings: Settings) -> None:
    # Fails if the producer sent plain JSON while the host decodes base64 (every message would
    # then be rejected by the host), or if host.json stopped saying base64 without this test noticing.
    assert host_message_encoding() == "base64"
    BuildQueue.from_settings(storage_settings).send({"dates": ["2025-11-30"]})

    stored = _raw_queue_client(storage_settings, storage_settings.build_queue).peek_messages()[0].content

    assert not stored.lstrip().startswith("{")
    assert json.loads(base64.b64decode(stored, validate=True)) == {"dates": ["2025-11-30"]}


def test_with_host_json_encoding_none_build_messages_are_plain_json(
    storage_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shared.adapters.queue_store as queue_store
    from shared.host_config import QueueHostConfig

    monkeypatch.setattr(queue_store, "queue_config", lambda: QueueHostConfig(message_encoding="none"))
    BuildQueue.from_settings(storage_settings).send({"dates": ["2025-11-30"]})

    stored = _raw_queue_client(storage_settings, storage_settings.build_queue).peek_messages()[0].content

    assert json.loads(stored) == {"dates": ["2025-11-30"]}


def test_peek_all_shows_visible_payloads_without_consuming_them(storage_settings: Settings) -> None:
    queue = BuildQueue.from_settings(storage_settings)
    queue.send({"dates": ["2025-11-29"]})
    queue.send({"dates": ["2025-11-30"]})

    assert queue.peek_all() == [{"dates": ["2025-11-29"]}, {"dates": ["2025-11-30"]}]
    assert len(queue.peek_all()) == 2


def test_delayed_message_is_invisible_until_its_visibility_timeout(storage_settings: Settings) -> None:
    BuildQueue.from_settings(storage_settings).send({"dates": ["2025-11-30"]}, visibility_timeout_s=60)

    assert BuildQueue.from_settings(storage_settings).peek_all() == []
    assert QueueStore.from_settings(storage_settings).approximate_count() == 1


def test_queue_store_receive_hides_a_message_and_returns_the_host_body(storage_settings: Settings) -> None:
    BuildQueue.from_settings(storage_settings).send({"dates": ["2025-11-30"]})
    store = QueueStore.from_settings(storage_settings)

    [message] = store.receive(visibility_timeout_s=30)

    assert json.loads(store.body(message)) == {"dates": ["2025-11-30"]}
    assert message.dequeue_count == 1
    assert store.receive() == []  # hidden while being processed


def test_released_message_is_delivered_again_with_a_higher_dequeue_count(storage_settings: Settings) -> None:
    store = QueueStore.from_settings(storage_settings)
    store.send_payload(json.dumps({"dates": ["2025-11-30"]}))
    [first] = store.receive(visibility_timeout_s=30)

    store.update_visibility(first, 0)
    [second] = store.receive(visibility_timeout_s=30)

    assert (second.id, second.dequeue_count) == (first.id, 2)


def test_deleted_message_is_gone_and_deleting_again_is_harmless(storage_settings: Settings) -> None:
    store = QueueStore.from_settings(storage_settings)
    store.send_payload(b'{"dates": []}')
    [message] = store.receive()

    store.delete(message)
    store.delete(message)

    assert store.approximate_count() == 0


def test_message_moved_to_the_poison_queue_keeps_its_stored_text(storage_settings: Settings) -> None:
    store = QueueStore.from_settings(storage_settings)
    BuildQueue.from_settings(storage_settings).send({"dates": ["2025-11-30"]})
    [message] = store.receive()
    poison = store.named(f"{store.name}-poison")

    poison.send_text(message.text)
    store.delete(message)

    assert poison.peek() == [message.text]
    assert json.loads(poison.body(poison.receive()[0])) == {"dates": ["2025-11-30"]}


def test_plain_text_message_is_malformed_for_a_base64_host(storage_settings: Settings) -> None:
    store = QueueStore.from_settings(storage_settings)
    store.send_text('{"dates": ["2025-11-30"]}')  # what a producer ignoring host.json would send
    [message] = store.receive()

    with pytest.raises(MalformedMessage):
        store.body(message)


def test_services_create_the_pipelines_storage_on_first_use(azurite) -> None:
    """An operator's CLI (or the first function) reaching a fresh account must not fail with
    'table not found': the wiring provisions containers, queues and the table once."""
    import uuid

    from azure.storage.blob import BlobServiceClient

    from shared.settings import Settings
    from shared.wiring import Resources

    suffix = uuid.uuid4().hex[:10]
    settings = Settings.from_values(
        {
            "PIPELINE_STORAGE": azurite.connection_string,
            "CRM_CONTAINER": f"crm-{suffix}",
            "QUARANTINE_CONTAINER": f"quar-{suffix}",
            "RAW_CONTAINER": f"raw-{suffix}",
            "BUILD_QUEUE": f"build-{suffix}",
            "STATE_TABLE": f"state{suffix}",
        }
    )
    resources = Resources(settings)
    resources.state_table.upsert({"PartitionKey": "p", "RowKey": "r", "n": 1})
    resources.build_queue.send({"dates": ["2025-01-01"]})

    containers = {c.name for c in BlobServiceClient.from_connection_string(azurite.connection_string).list_containers()}
    assert {f"crm-{suffix}", f"quar-{suffix}", f"raw-{suffix}"} <= containers
    assert resources.state_table.get("p", "r") is not None
