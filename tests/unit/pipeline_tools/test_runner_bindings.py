"""The runner reads bindings from the registered functions and settings the way the host does."""

from __future__ import annotations

import azure.functions as func
import pytest

from pipeline_tools.runner import (
    BlobTrigger,
    QueueTrigger,
    TimerTrigger,
    export_values,
    read_functions,
    resolve_connection,
    resolve_setting_references,
)
from shared.errors import ConfigurationError


def _tiny_app() -> func.FunctionApp:
    app = func.FunctionApp()

    @app.function_name("on_blob")
    @app.blob_trigger(arg_name="client", path="%IN_CONTAINER%/incoming/{name}.csv", connection="STORE")
    def on_blob(client: object) -> None: ...

    @app.function_name("on_message")
    @app.queue_trigger(arg_name="msg", queue_name="%QUEUE%", connection="STORE")
    def on_message(msg: func.QueueMessage) -> None: ...

    @app.function_name("on_tick")
    @app.timer_trigger(arg_name="timer", schedule="%SCHEDULE%", run_on_startup=True, use_monitor=False)
    def on_tick(timer: func.TimerRequest) -> None: ...

    return app


ENV = {"IN_CONTAINER": "landing", "QUEUE": "jobs", "SCHEDULE": "*/10 * * * * *"}


def test_each_trigger_kind_is_read_with_setting_references_resolved() -> None:
    functions = {f.name: f for f in read_functions(_tiny_app(), ENV)}

    assert functions["on_blob"].trigger == BlobTrigger("landing", "incoming/{name}.csv", "STORE")
    assert functions["on_blob"].arg_name == "client"
    assert functions["on_message"].trigger == QueueTrigger("jobs", "STORE")
    assert functions["on_message"].arg_name == "msg"
    assert functions["on_tick"].trigger == TimerTrigger("*/10 * * * * *", run_on_startup=True, use_monitor=False)


def test_an_event_grid_blob_trigger_is_read_like_a_polled_one_with_its_source() -> None:
    app = func.FunctionApp()

    @app.function_name("on_event")
    @app.blob_trigger(
        arg_name="client", path="%IN_CONTAINER%/{name}", connection="STORE", source=func.BlobSource.EVENT_GRID
    )
    def on_event(client: object) -> None: ...

    (function,) = read_functions(app, ENV)
    assert function.trigger == BlobTrigger("landing", "{name}", "STORE", source="EventGrid")
    assert function.trigger.matches("2025-01-01.csv")


def test_functions_of_one_app_can_be_read_more_than_once() -> None:
    app = _tiny_app()
    first = read_functions(app, ENV)
    second = read_functions(app, ENV)  # app.get_functions() itself fails on a second call
    assert [f.name for f in first] == [f.name for f in second]


def test_a_binding_naming_an_unset_setting_is_a_configuration_error_naming_it() -> None:
    with pytest.raises(ConfigurationError, match="QUEUE"):
        read_functions(_tiny_app(), {**ENV, "QUEUE": ""})


def test_setting_references_are_replaced_anywhere_in_the_expression() -> None:
    assert resolve_setting_references("%A%/in/%B%-{name}", {"A": "box", "B": "x"}) == "box/in/x-{name}"


def test_a_schedule_that_is_not_six_field_ncrontab_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="NCRONTAB"):
        read_functions(_tiny_app(), {**ENV, "SCHEDULE": "0 1 * * *"})


def test_an_unsupported_trigger_type_is_refused_by_name() -> None:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.function_name("web")
    @app.route(route="x")
    def web(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("")

    with pytest.raises(ConfigurationError, match="httpTrigger"):
        read_functions(app, {})


def test_blob_pattern_matches_only_names_under_its_literal_parts() -> None:
    trigger = BlobTrigger("landing", "incoming/{name}.csv", "STORE")
    assert trigger.list_prefix == "incoming/"
    assert trigger.matches("incoming/crm_2025-01-01.csv")
    assert trigger.matches("incoming/sub/dir/file.csv")
    assert not trigger.matches("incoming/crm_2025-01-01.txt")
    assert not trigger.matches("other/crm.csv")
    assert BlobTrigger("c", "{name}", "S").matches("any/thing.csv")


def test_values_never_override_variables_already_in_the_environment() -> None:
    environ = {"PIPELINE_STORAGE": "from-shell"}
    export_values({"PIPELINE_STORAGE": "from-file", "CRM_CONTAINER": "crm"}, environ)
    assert environ == {"PIPELINE_STORAGE": "from-shell", "CRM_CONTAINER": "crm"}


def test_connection_lookup_follows_the_host_order() -> None:
    assert resolve_connection("STORE", {"STORE": "cs1", "AzureWebJobsSTORE": "cs2"}).connection_string == "cs1"
    assert resolve_connection("STORE", {"STORE": "", "AzureWebJobsSTORE": "cs2"}).connection_string == "cs2"
    identity = resolve_connection("STORE", {"STORE__accountName": "acct"})
    assert identity.connection_string is None
    assert identity.account_name == "acct"
    with pytest.raises(ConfigurationError, match="STORE"):
        resolve_connection("STORE", {})
