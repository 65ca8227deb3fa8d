"""Storage adapters without a network: how settings become clients, how SDK errors map."""

from __future__ import annotations

import pytest
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from shared.adapters.blob_store import BlobStore
from shared.adapters.queue_store import BuildQueue, QueueStore, decode_body, encode_text, host_message_encoding
from shared.adapters.storage_common import (
    StorageNotFound,
    StorageRequestFailed,
    connection_string,
    storage_errors,
)
from shared.adapters.table_state import StateTable
from shared.errors import (
    AuthenticationFailed,
    ConcurrencyConflict,
    ConfigurationError,
    MalformedMessage,
    RateLimited,
    TransientError,
    UpstreamUnavailable,
)
from shared.host_config import QueueHostConfig
from shared.settings import Settings

# ---- managed identity ----------------------------------------------------------------------


@pytest.fixture
def identity_settings() -> Settings:
    return Settings.from_values({"PIPELINE_STORAGE__accountName": "pipelineacct", "STATE_TABLE": "pipelinestate"})


def test_managed_identity_blob_client_targets_the_account_url_with_a_token_credential(
    identity_settings: Settings,
) -> None:
    client = BlobStore.from_settings(identity_settings)._service

    assert client.url == "https://pipelineacct.blob.core.windows.net/"
    assert isinstance(client.credential, TokenCredential)


def test_managed_identity_queue_client_targets_the_account_url_with_a_token_credential(
    identity_settings: Settings,
) -> None:
    client = BuildQueue.from_settings(identity_settings)._queue

    assert client.url == "https://pipelineacct.queue.core.windows.net/build-requests"
    assert isinstance(client.credential, TokenCredential)


def test_managed_identity_table_client_targets_the_account_url_with_a_token_credential(
    identity_settings: Settings,
) -> None:
    client = StateTable.from_settings(identity_settings)._table

    assert client.url == "https://pipelineacct.table.core.windows.net"
    assert client.table_name == "pipelinestate"
    assert isinstance(client.credential, TokenCredential)


def test_managed_identity_clients_share_one_credential(identity_settings: Settings) -> None:
    blob = BlobStore.from_settings(identity_settings)._service.credential
    table = StateTable.from_settings(identity_settings)._table.credential

    assert blob is table


def test_a_connection_string_wins_over_the_account_name() -> None:
    settings = Settings.from_values(
        {"PIPELINE_STORAGE": "UseDevelopmentStorage=true", "PIPELINE_STORAGE__accountName": "pipelineacct"}
    )

    assert BlobStore.from_settings(settings)._service.url.startswith("http://127.0.0.1:10000/")


def test_no_storage_setting_at_all_is_a_configuration_error_naming_both_settings() -> None:
    with pytest.raises(ConfigurationError, match=r"PIPELINE_STORAGE.*PIPELINE_STORAGE__accountName"):
        BlobStore.from_settings(Settings())


# ---- development storage shorthand ---------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["UseDevelopmentStorage=true", "UseDevelopmentStorage=true;", " usedevelopmentstorage=TRUE "]
)
def test_development_storage_shorthand_reaches_azurite_default_ports_for_every_service(value: str) -> None:
    settings = Settings(pipeline_storage=value)

    assert connection_string(settings) == "UseDevelopmentStorage=true"
    assert BlobStore.from_settings(settings)._service.url == "http://127.0.0.1:10000/devstoreaccount1/"
    assert BuildQueue.from_settings(settings)._queue.url == "http://127.0.0.1:10001/devstoreaccount1/build-requests"
    assert StateTable.from_settings(settings)._table.url == "http://127.0.0.1:10002/devstoreaccount1"


# ---- queue encoding follows host.json ------------------------------------------------------


def test_build_queue_encodes_base64_when_host_json_says_base64(monkeypatch: pytest.MonkeyPatch) -> None:
    import shared.adapters.queue_store as queue_store

    monkeypatch.setattr(queue_store, "queue_config", lambda: QueueHostConfig(message_encoding="base64"))
    client = BuildQueue.from_settings(Settings(pipeline_storage="UseDevelopmentStorage=true"))._queue

    assert type(client._message_encode_policy).__name__ == "TextBase64EncodePolicy"
    assert type(client._message_decode_policy).__name__ == "TextBase64DecodePolicy"


def test_build_queue_sends_plain_text_when_host_json_says_none(monkeypatch: pytest.MonkeyPatch) -> None:
    import shared.adapters.queue_store as queue_store

    monkeypatch.setattr(queue_store, "queue_config", lambda: QueueHostConfig(message_encoding="none"))
    client = BuildQueue.from_settings(Settings(pipeline_storage="UseDevelopmentStorage=true"))._queue

    assert type(client._message_encode_policy).__name__ == "NoEncodePolicy"


def test_unknown_host_json_message_encoding_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import shared.adapters.queue_store as queue_store

    monkeypatch.setattr(queue_store, "queue_config", lambda: QueueHostConfig(message_encoding="utf8"))

    with pytest.raises(ConfigurationError, match="messageEncoding"):
        host_message_encoding()


def test_queue_store_has_no_sdk_encoding_so_moved_messages_keep_their_text() -> None:
    client = QueueStore.from_settings(Settings(pipeline_storage="UseDevelopmentStorage=true"))._queue

    assert type(client._message_encode_policy).__name__ == "NoEncodePolicy"
    assert type(client._message_decode_policy).__name__ == "NoDecodePolicy"


@pytest.mark.parametrize("encoding", ["base64", "none"])
def test_encode_then_decode_gives_back_the_utf8_payload(encoding: str) -> None:
    text = '{"dates":["2025-11-30"],"name":"Zoë"}'

    assert decode_body(encode_text(text, encoding), encoding) == text.encode("utf-8")


def test_base64_host_rejects_a_message_that_is_not_base64() -> None:
    with pytest.raises(MalformedMessage):
        decode_body('{"dates": ["2025-11-30"]}', "base64")


# ---- error mapping -------------------------------------------------------------------------


def _http_error(status: int, cls: type[HttpResponseError] = HttpResponseError) -> HttpResponseError:
    error = cls(message="request to https://acct.blob.core.windows.net/c/b?sig=SECRETSIG failed")
    error.status_code = status
    return error


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (ClientAuthenticationError(message="no token"), AuthenticationFailed),
        (_http_error(412, ResourceModifiedError), ConcurrencyConflict),
        (_http_error(409, ResourceExistsError), ConcurrencyConflict),
        (_http_error(404, ResourceNotFoundError), StorageNotFound),
        (ServiceRequestError(message="connection refused"), UpstreamUnavailable),
        (ServiceResponseError(message="read timed out"), UpstreamUnavailable),
        (_http_error(503), UpstreamUnavailable),
        (_http_error(500), UpstreamUnavailable),
        (_http_error(408), UpstreamUnavailable),
        (_http_error(429), RateLimited),
        (_http_error(400), StorageRequestFailed),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else v.__name__,
)
def test_sdk_errors_map_to_pipeline_error_types(raised: Exception, expected: type[Exception]) -> None:
    with pytest.raises(expected) as caught, storage_errors("read c/b"):
        raise raised

    assert str(caught.value).startswith("read c/b: ")
    assert caught.value.__cause__ is raised


def test_transient_storage_failures_are_retryable_and_client_errors_are_not() -> None:
    for status, retryable in ((503, True), (429, True), (400, False), (403, False)):
        error = _http_error(status, ClientAuthenticationError if status == 403 else HttpResponseError)
        with pytest.raises(Exception) as caught, storage_errors("op"):
            raise error
        assert isinstance(caught.value, TransientError) is retryable, status


def test_mapped_error_messages_never_repeat_the_sdk_text_which_may_carry_a_sas() -> None:
    with pytest.raises(UpstreamUnavailable) as caught, storage_errors("read c/b"):
        raise _http_error(503)

    assert "SECRETSIG" not in str(caught.value)
    assert "HTTP 503" in str(caught.value)
