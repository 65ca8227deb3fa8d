"""infra/ read statically (no Azure account, no Bicep CLI here): every file parses, the app
settings match what the app reads, nothing deployable holds a key, the Functions doctor passes.

checkov's security scan of the same files runs in scripts/test.sh (its own virtualenv)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from pycep import BicepParser

from shared.settings import Settings, setting_names

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))

# App settings the Functions host or platform reads, not shared/settings.py.
HOST_SETTINGS = {
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__credential",
    "PIPELINE_STORAGE__blobServiceUri",  # the bindings' identity-based connection
    "PIPELINE_STORAGE__queueServiceUri",
    "PIPELINE_STORAGE__tableServiceUri",
    "PIPELINE_STORAGE__credential",
}
# Settings the app reads that Azure leaves unset on purpose, and why.
NOT_READ_IN_AZURE = {
    "PIPELINE_STORAGE": "the connection-string form; Azure uses the identity settings",
    "DUCKDB_PATH": "read only when WAREHOUSE_ENGINE=duckdb; Azure runs azure_sql",
    "DUCKDB_MEMORY_LIMIT": "read only when WAREHOUSE_ENGINE=duckdb; Azure runs azure_sql",
}
# A default that points at this machine is not a safe default in Azure.
LOCAL_ONLY = re.compile(r"127\.0\.0\.1|localhost|local-dev|UseDevelopmentStorage|\.duckdb|^duckdb$|^sql_password$")


@cache
def parsed(path: Path) -> dict[str, Any]:
    return BicepParser().parse(file_path=path)


def function_app_resource() -> dict[str, Any]:
    return parsed(INFRA / "app" / "function-app.bicep")["resources"]["functionApp"]["config"]


def app_settings() -> dict[str, Any]:
    entries = function_app_resource()["properties"]["siteConfig"]["appSettings"]
    return {entry["name"]: entry["value"] for entry in entries}


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_bicep_file_parses(path: Path) -> None:
    assert parsed(path)["resources"]


def test_the_parser_rejects_broken_bicep() -> None:
    """The parse check can fail: an unclosed object is an error, not an empty result."""
    with pytest.raises(Exception):  # noqa: B017 - pycep raises lark's errors, not one type
        BicepParser().parse(text="resource x 'Microsoft.Web/sites@2024-04-01' = {\n  name: 'x'\n")


def test_azd_layout_is_complete() -> None:
    assert (ROOT / "azure.yaml").is_file()
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert {"environmentName", "location"} <= parameters.keys()
    for hook in ("postprovision.sh", "postdeploy.sh"):
        assert (INFRA / "hooks" / hook).stat().st_mode & 0o111, f"{hook} is not executable"


def test_every_app_setting_in_bicep_is_read_by_the_app_or_the_host() -> None:
    unknown = set(app_settings()) - HOST_SETTINGS - set(setting_names())
    assert not unknown, f"app settings nobody reads: {sorted(unknown)}"


def test_every_setting_the_app_reads_is_set_in_bicep_or_has_a_safe_default() -> None:
    defaults = Settings()
    configured = app_settings()
    for field_name, field in Settings.model_fields.items():
        name = str(field.validation_alias.choices[0])  # type: ignore[union-attr]
        if name in configured or name in NOT_READ_IN_AZURE:
            continue
        value = getattr(defaults, field_name)
        shown = value.get_secret_value() if hasattr(value, "get_secret_value") else value
        assert not LOCAL_ONLY.search(str(shown)), f"{name}: default {shown!r} is local-only; set it in Bicep"


def test_secrets_are_key_vault_references_and_connections_use_the_identity() -> None:
    settings = app_settings()
    assert settings["USAGE_API_KEY"].startswith("@Microsoft.KeyVault(SecretUri=")
    assert "@Microsoft.KeyVault(SecretUri=" in json.dumps(settings["ALERT_WEBHOOK_URL"])
    assert settings["WAREHOUSE_ENGINE"] == "azure_sql"
    assert settings["AZURE_SQL_AUTH"] == "managed_identity"
    assert not re.search(r"(?i)password|pwd=|uid=", settings["AZURE_SQL_CONNECTION_STRING"])
    assert "PIPELINE_STORAGE" not in settings and "AzureWebJobsStorage" not in settings  # no connection strings


def test_nothing_deployable_holds_a_key_or_the_emulator() -> None:
    forbidden = re.compile(r"(?i)AccountKey=|UseDevelopmentStorage|SharedAccessSignature|Password=|\.listKeys\(")
    for path in [*INFRA.rglob("*.bicep"), *INFRA.rglob("*.json"), ROOT / "azure.yaml"]:
        assert not forbidden.search(path.read_text()), f"{path.relative_to(ROOT)} holds a credential"
    # The one listKeys reads the Functions host's blobs_extension key for Event Grid, not storage.
    for path in INFRA.rglob("*.bicep"):
        for call in re.findall(r"listKeys\(([^)]*)\)", path.read_text()):
            assert "/host/default" in call, f"{path.name}: listKeys({call})"


def test_identity_only_access_on_storage_sql_and_vault() -> None:
    storage = parsed(INFRA / "app" / "storage.bicep")["resources"]["account"]["config"]["properties"]
    assert storage["allowSharedKeyAccess"] is False
    server = parsed(INFRA / "app" / "sql.bicep")["resources"]["server"]["config"]["properties"]
    assert server["administrators"]["azureADOnlyAuthentication"] is True
    vault = parsed(INFRA / "app" / "keyvault.bicep")["resources"]["vault"]["config"]["properties"]
    assert vault["enableRbacAuthorization"] is True


def test_flex_consumption_python_311_with_identity_deployment_storage() -> None:
    app = function_app_resource()
    assert app["identity"]["type"] == "SystemAssigned"
    config = app["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    assert config["deployment"]["storage"]["authentication"]["type"] == "SystemAssignedIdentity"
    plan = parsed(INFRA / "app" / "function-app.bicep")["resources"]["plan"]["config"]
    assert plan["sku"]["tier"] == "FlexConsumption"


def test_the_app_identity_gets_exactly_the_least_privilege_roles() -> None:
    text = (INFRA / "app" / "roles.bicep").read_text()
    storage_roles = re.search(r"var appStorageRoles = \[([^\]]*)\]", text)
    assert storage_roles is not None
    granted = set(re.findall(r"roles\.(\w+)", storage_roles.group(1)))
    # Every other assignment to the app names its role directly.
    for block in re.findall(r"principalId: appPrincipalId.*?roleDefinitions', ([\w.]+)\)", text, re.S):
        if block != "role":
            granted.add(block.removeprefix("roles."))
    assert granted == {
        "storageBlobDataOwner",
        "storageQueueDataContributor",
        "storageTableDataContributor",
        "keyVaultSecretsUser",
        "monitoringMetricsPublisher",
    }


def test_alert_rules_query_the_agreed_metric_names() -> None:
    text = (INFRA / "app" / "alerts.bicep").read_text()
    for metric in ("pipeline.poison.messages", "pipeline.input.freshness_lag", "pipeline.build.succeeded"):
        assert f'name == "{metric}"' in text
    assert "requests | where success == false" in text
    assert "ago(26h)" in text


def test_event_grid_subscription_targets_the_blob_trigger_of_the_crm_container() -> None:
    text = (INFRA / "app" / "crm-events-subscription.bicep").read_text()
    assert "/runtime/webhooks/blobs?functionName=Host.Functions.${functionName}" in text
    assert "Microsoft.Storage.BlobCreated" in text
    assert "param functionName string = 'crm_snapshot_arrived'" in text


# ---- azure-functions-doctor ----------------------------------------------------------------
# "Functions runtime lifecycle" stays skipped on Flex: the doctor reads it only from
# FUNCTIONS_EXTENSION_VERSION, which Flex Consumption forbids (its own extension-version rule fails
# when the setting is present); the runtime is v4, platform-managed.
DOCTOR_RULES_EVALUATED = {
    "Hosting plan lifecycle",
    "Python runtime lifecycle",
    "Flex Consumption runtime config",
    "Flex Consumption deprecated app settings",
    "Flex Consumption deployment storage",
}


def _doctor_project(tmp_path: Path) -> Path:
    """The app as the doctor should see it: the package files and infra/. The doctor reads nested
    shapes (functionAppConfig.runtime, deployment.storage, appSettings) only from JSON, and there is
    no Bicep CLI here, so the Function App resource is rendered to JSON from pycep's parse of the
    Bicep (values, not a hand-written copy)."""
    project = tmp_path / "app"
    for name in ("function_app.py", "host.json", "requirements.txt", ".funcignore"):
        shutil.copy(ROOT / name, project / name if project.exists() else _mkdir(project) / name)
    shutil.copytree(ROOT / "shared", project / "shared", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(INFRA, project / "infra", ignore=shutil.ignore_patterns("hooks"))
    bicep = parsed(INFRA / "app" / "function-app.bicep")["resources"]
    rendered = {
        "resources": [
            {"type": "Microsoft.Web/serverfarms", "sku": bicep["plan"]["config"]["sku"]},
            {"type": "Microsoft.Web/sites", "properties": bicep["functionApp"]["config"]["properties"]},
        ]
    }
    (project / "infra" / "function-app.rendered.json").write_text(json.dumps(rendered, indent=2))
    return project


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def test_functions_doctor_full_profile_has_no_failure_and_evaluates_the_hosting_rules(tmp_path: Path) -> None:
    doctor = Path(sys.executable).parent / "azure-functions-doctor"
    project = _doctor_project(tmp_path)
    completed = subprocess.run(
        [str(doctor), "doctor", "--path", str(project), "--profile", "full", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = json.loads(completed.stdout)
    items = {item["label"]: item for section in report["results"] for item in section["items"]}
    failed = {label: item.get("value") for label, item in items.items() if item["status"] == "fail"}
    assert not failed, failed
    for label in DOCTOR_RULES_EVALUATED:
        assert items[label]["status"] == "pass", (label, items[label].get("value"))
    assert completed.returncode == 0


def test_every_checkov_skip_in_the_bicep_says_why() -> None:
    for path in BICEP_FILES:
        for check, reason in re.findall(r"checkov:skip=([A-Z0-9_]+):?(.*)", path.read_text()):
            assert len(reason.strip()) >= 30, f"{path.name}: {check} skipped without a reason"
