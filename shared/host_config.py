"""What host.json says about queue delivery, read by the producer, the builder and the runner.

The Functions host decodes queue messages per ``extensions.queues.messageEncoding`` (base64 by
default) and moves a message to ``<queue>-poison`` after ``maxDequeueCount`` deliveries. Our
producer and the local runner read the same file so the three can never disagree.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path

HOST_JSON = Path(__file__).resolve().parents[1] / "host.json"


@dataclass(frozen=True)
class QueueHostConfig:
    message_encoding: str = "base64"  # "base64" or "none"
    max_dequeue_count: int = 5
    visibility_timeout: dt.timedelta = dt.timedelta(0)
    batch_size: int = 16
    max_polling_interval: dt.timedelta = dt.timedelta(minutes=1)


@functools.cache
def queue_config(path: Path = HOST_JSON) -> QueueHostConfig:
    queues = json.loads(path.read_text(encoding="utf-8")).get("extensions", {}).get("queues", {})
    defaults = QueueHostConfig()
    return QueueHostConfig(
        message_encoding=str(queues.get("messageEncoding", defaults.message_encoding)).lower(),
        max_dequeue_count=int(queues.get("maxDequeueCount", defaults.max_dequeue_count)),
        visibility_timeout=_timespan(queues.get("visibilityTimeout"), defaults.visibility_timeout),
        batch_size=int(queues.get("batchSize", defaults.batch_size)),
        max_polling_interval=_timespan(queues.get("maxPollingInterval"), defaults.max_polling_interval),
    )


def _timespan(value: str | None, default: dt.timedelta) -> dt.timedelta:
    """host.json timespans are 'hh:mm:ss' (optionally 'd.hh:mm:ss')."""
    if not value:
        return default
    match = re.fullmatch(r"(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})", value)
    if not match:
        raise ValueError(f"host.json: not a timespan: {value!r}")
    days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return dt.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
