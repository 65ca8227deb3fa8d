"""Analytics builder (queue trigger). Implemented by the builder issue."""

from __future__ import annotations

from typing import Any


def handle_build_message(body: bytes, dequeue_count: int, services: Any) -> Any:
    raise NotImplementedError("the builder is not implemented yet")
