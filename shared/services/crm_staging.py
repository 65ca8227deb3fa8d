"""CRM snapshot staging (blob trigger). Implemented by the CRM issue."""

from __future__ import annotations

from typing import Any


def stage_crm_blob(blob_name: str, services: Any) -> Any:
    raise NotImplementedError("CRM staging is not implemented yet")
