"""Settings: typed, validated, every one documented, errors that name the setting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.errors import ConfigurationError
from shared.logs import redact
from shared.settings import Settings, WarehouseEngine, read_local_settings, setting_names

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = json.loads((REPO / "local.settings.example.json").read_text())


def test_defaults_are_safe_for_local_use() -> None:
    settings = Settings.from_values({})
    assert settings.warehouse_engine is WarehouseEngine.DUCKDB
    assert settings.crm_reject_threshold == 0.05
    assert settings.crm_grace_hours == 6
    assert settings.usage_lookback_days == 3
    assert settings.usage_schedule == "0 0 1 * * *"


def test_every_setting_is_in_the_example_with_documentation() -> None:
    names = set(setting_names())
    assert names <= set(EXAMPLE["Values"]), names - set(EXAMPLE["Values"])
    assert names <= set(EXAMPLE["Documentation"]), names - set(EXAMPLE["Documentation"])


def test_every_example_value_is_valid() -> None:
    Settings.from_values(EXAMPLE["Values"])


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    missing = [n for n in setting_names() if f"`{n}`" not in readme]
    assert not missing, f"README does not document: {missing}"


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"CRM_REJECT_THRESHOLD": "lots"}, "CRM_REJECT_THRESHOLD"),
        ({"CRM_REJECT_THRESHOLD": "1.5"}, "CRM_REJECT_THRESHOLD"),
        ({"USAGE_SCHEDULE": "0 1 * * *"}, "USAGE_SCHEDULE"),
        ({"WAREHOUSE_ENGINE": "oracle"}, "WAREHOUSE_ENGINE"),
        ({"CRM_DATE_PATTERN": "no-group"}, "CRM_DATE_PATTERN"),
        ({"USAGE_API_PAGE_SIZE": "0"}, "USAGE_API_PAGE_SIZE"),
    ],
)
def test_malformed_setting_gives_one_clear_error_naming_it(values: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        Settings.from_values(values)


def test_a_retired_setting_still_set_is_refused_naming_its_replacement() -> None:
    # Silently ignored, EVENTS_LOOKBACK_DAYS=5 would run the rollup with the 60-minute default.
    with pytest.raises(ConfigurationError, match="EVENTS_LOOKBACK_DAYS is replaced by EVENTS_LOOKBACK_MINUTES"):
        Settings.from_environment({"EVENTS_LOOKBACK_DAYS": "5"})
    with pytest.raises(ConfigurationError, match="events_lookback_days is replaced by EVENTS_LOOKBACK_MINUTES"):
        Settings.from_values({"events_lookback_days": "5", "EVENTS_LOOKBACK_MINUTES": "90"})
    assert Settings.from_environment({"EVENTS_LOOKBACK_MINUTES": "90"}).events_lookback_minutes == 90


def test_a_retired_setting_in_the_environment_is_refused_beside_a_local_settings_file(tmp_path: Path) -> None:
    file = tmp_path / "local.settings.json"
    file.write_text(json.dumps({"Values": {"EVENTS_LOOKBACK_MINUTES": "90"}}))
    with pytest.raises(ConfigurationError, match="EVENTS_LOOKBACK_DAYS is replaced by EVENTS_LOOKBACK_MINUTES"):
        Settings.from_local_settings(file, environ={"EVENTS_LOOKBACK_DAYS": "5"})


def test_empty_setting_means_not_set() -> None:
    assert (
        Settings.from_values({"AZURE_SQL_CONNECTION_STRING": "", "DUCKDB_PATH": " "}).azure_sql_connection_string
        is None
    )


def test_environment_overrides_local_settings_file(tmp_path: Path) -> None:
    file = tmp_path / "local.settings.json"
    file.write_text(json.dumps({"Values": {"CRM_CONTAINER": "from-file", "BUILD_QUEUE": "q-file"}}))
    settings = Settings.from_local_settings(file, environ={"BUILD_QUEUE": "q-env", "UNRELATED": "x"})
    assert (settings.crm_container, settings.build_queue) == ("from-file", "q-env")


def test_broken_local_settings_file_is_a_configuration_error(tmp_path: Path) -> None:
    file = tmp_path / "local.settings.json"
    file.write_text("{ not json")
    with pytest.raises(ConfigurationError, match=r"local\.settings\.json"):
        Settings.from_local_settings(file, environ={})


def test_local_settings_values_are_read_as_strings(tmp_path: Path) -> None:
    path = tmp_path / "local.settings.json"
    path.write_text('{"IsEncrypted": false, "Values": {"A": "x", "N": 5, "E": null}}', encoding="utf-8")
    assert read_local_settings(path) == {"A": "x", "N": "5", "E": ""}


def test_encrypted_or_missing_local_settings_are_configuration_errors(tmp_path: Path) -> None:
    path = tmp_path / "local.settings.json"
    path.write_text('{"IsEncrypted": true, "Values": {}}', encoding="utf-8")
    with pytest.raises(ConfigurationError, match="IsEncrypted"):
        read_local_settings(path)
    with pytest.raises(ConfigurationError, match="not found"):
        read_local_settings(tmp_path / "absent.json")


def test_a_named_settings_file_must_exist_but_the_default_may_be_absent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert read_local_settings() == {}
    assert Settings.from_local_settings(environ={"BUILD_QUEUE": "q-env"}).build_queue == "q-env"
    with pytest.raises(ConfigurationError, match="not found"):
        Settings.from_local_settings(tmp_path / "typo.json", environ={})
    (tmp_path / "local.settings.json").write_text(json.dumps({"Values": {"BUILD_QUEUE": "q-file"}}))
    assert Settings.from_local_settings(environ={}).build_queue == "q-file"


def test_secrets_are_masked_and_redacted_from_text() -> None:
    settings = Settings.from_values({"USAGE_API_KEY": "sk-live-abcdef123456"})
    assert "sk-live" not in repr(settings)
    assert redact("calling with sk-live-abcdef123456") == "calling with ***"
