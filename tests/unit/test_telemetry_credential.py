"""Application Insights with local authentication off (infra/) only accepts telemetry sent with an
Entra token: APPLICATIONINSIGHTS_AUTHENTICATION_STRING tells the exporter to use the identity."""

from __future__ import annotations

from azure.identity import ManagedIdentityCredential

from shared.telemetry import entra_credential


def test_no_authentication_string_means_the_connection_string_alone() -> None:
    assert entra_credential("") is None
    assert entra_credential("Authorization=Key") is None


def test_authorization_aad_sends_with_the_system_assigned_identity() -> None:
    assert isinstance(entra_credential("Authorization=AAD"), ManagedIdentityCredential)


def test_a_client_id_selects_a_user_assigned_identity() -> None:
    credential = entra_credential("Authorization=AAD;ClientId=00000000-0000-0000-0000-000000000001")
    assert isinstance(credential, ManagedIdentityCredential)
