"""The registered functions are the three of the spec, with settings-named bindings."""

from __future__ import annotations

import functools

import function_app


@functools.cache
def _functions() -> dict[str, dict]:
    """get_functions() may be called once per app (a second call re-validates and fails)."""
    found = {}
    for fn in function_app.app.get_functions():
        found[fn.get_function_name()] = {b.get_dict_repr()["name"]: b.get_dict_repr() for b in fn.get_bindings()}
    return found


def test_exactly_three_functions_are_registered() -> None:
    assert set(_functions()) == {"crm_snapshot_arrived", "usage_timer", "build_requested"}


def test_blob_trigger_watches_the_crm_container_through_settings() -> None:
    binding = _functions()["crm_snapshot_arrived"]["client"]
    assert binding["type"] == "blobTrigger"
    assert binding["path"] == "%CRM_CONTAINER%/{name}"
    assert binding["connection"] == "PIPELINE_STORAGE"


def test_blob_trigger_uses_the_event_grid_source_that_flex_consumption_supports() -> None:
    assert _functions()["crm_snapshot_arrived"]["client"]["source"] == "EventGrid"


def test_timer_schedule_is_a_setting() -> None:
    binding = _functions()["usage_timer"]["timer"]
    assert binding["type"] == "timerTrigger"
    assert binding["schedule"] == "%USAGE_SCHEDULE%"
    assert binding["useMonitor"] is True


def test_queue_trigger_reads_the_build_queue_through_settings() -> None:
    binding = _functions()["build_requested"]["message"]
    assert binding["type"] == "queueTrigger"
    assert binding["queueName"] == "%BUILD_QUEUE%"
    assert binding["connection"] == "PIPELINE_STORAGE"
