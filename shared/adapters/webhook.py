"""Webhook alert sink: posts alerts to a Teams or Slack incoming webhook.

Delivery is short and bounded (a timeout per attempt, a few retries with backoff on 5xx, 429,
timeouts and connection errors; 4xx other than 429 is not retried) and never raises: a
failing webhook must not fail the pipeline step that raised the alert, so the failure is
logged instead.

The same failure alerts once per de-duplication window, across processes: the claim lives in
the state table (PartitionKey ``alert_dedup``), with an in-process fallback while the table
is unreachable.

Payloads (what both services accept, from their documentation):
- Slack incoming webhooks read ``text`` and ignore fields they do not know.
- Teams Office 365 connector webhooks read a MessageCard (``@type``, ``summary``, ``title``,
  ``text``, ``sections[].facts``). The default body is a MessageCard whose ``text`` carries
  every fact, so one body serves Slack and connector webhooks alike.
- Teams Workflows webhooks (Power Automate, replacing the retired connectors) accept only an
  Adaptive Card inside ``attachments``; Slack would read that key as legacy attachments, so
  that body is sent only to Workflows hosts (``*.logic.azure.com``, ``*.powerplatform.com``).

Secrets never reach a body or a log line: the alert is redacted field by field (never the
serialized JSON, which a pattern could corrupt), the webhook URL and its path are registered
as secrets, and transport errors are logged by type, not by their text (requests puts the URL
in its messages).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import quote, urlsplit

import requests
from opentelemetry.trace import SpanKind
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from shared import telemetry
from shared.clock import Clock, naive_utc, utc_now
from shared.errors import ConcurrencyConflict, PermanentError, TransientError, UpstreamUnavailable
from shared.logs import redact, register_secret
from shared.settings import Settings

log = logging.getLogger(__name__)

DEDUP_PARTITION = "alert_dedup"
PayloadFormat = Literal["auto", "message_card", "adaptive_card"]
_WORKFLOW_HOST_SUFFIXES = (".logic.azure.com", ".powerplatform.com", ".powerautomate.com")
_THEME_COLOURS = {"error": "D13438", "warning": "FFB900"}


class AlertMessage(Protocol):
    """What the sink needs from an alert (shared.services.alerts.Alert has these). Read-only
    properties, so a frozen dataclass satisfies it."""

    @property
    def pipeline(self) -> str: ...

    @property
    def step(self) -> str: ...

    @property
    def severity(self) -> str: ...

    @property
    def title(self) -> str: ...

    @property
    def message(self) -> str: ...

    @property
    def run_id(self) -> str | None: ...

    @property
    def date(self) -> dt.date | None: ...

    @property
    def facts(self) -> dict[str, str]: ...

    def dedup_key(self) -> str: ...

    def redacted(self) -> AlertMessage: ...


class AlertDedup(Protocol):
    """Decides whether an alert with a given key may be sent now (and remembers that it was)."""

    def claim(self, key: str, now: dt.datetime, window: dt.timedelta) -> bool: ...

    def release(self, key: str) -> None: ...


DeliveryStatus = Literal["sent", "suppressed", "failed", "log_only"]


@dataclass(frozen=True)
class DeliveryResult:
    """How one send of an alert ended (recorded in ops.alert_deliveries by the wiring)."""

    status: DeliveryStatus
    attempts: int = 0  # HTTP posts made (0 when suppressed)
    error_type: str | None = None  # the last failure's type, never its text


# ---- de-duplication -----------------------------------------------------------------------
class InMemoryAlertDedup:
    """Per-process claims: the fallback when no state table is reachable, and for tests."""

    def __init__(self) -> None:
        self._sent_at: dict[str, dt.datetime] = {}
        self._lock = threading.Lock()

    def claim(self, key: str, now: dt.datetime, window: dt.timedelta) -> bool:
        with self._lock:
            last = self._sent_at.get(key)
            if last is not None and now - last < window:
                return False
            self._sent_at[key] = now
            return True

    def release(self, key: str) -> None:
        with self._lock:
            self._sent_at.pop(key, None)


class TableAlertDedup:
    """Claims kept in the state table so every process (and retry) sees them.

    One entity per alert key (RowKey = SHA-256 of the key: keys hold characters Table Storage
    forbids in keys). An insert or an ETag-conditional update is the claim; losing the race
    (ConcurrencyConflict) means another process is sending the same alert. When the table
    cannot be reached the claim falls back to this process's memory: a duplicate alert is
    better than a lost one.
    """

    def __init__(self, table: Callable[[], Any], fallback: AlertDedup | None = None) -> None:
        self._table_factory = table  # lazy: the table client is built on first alert only
        self._table: Any = None
        self._fallback = fallback or InMemoryAlertDedup()

    def claim(self, key: str, now: dt.datetime, window: dt.timedelta) -> bool:
        try:
            return self._claim_in_table(key, now, window)
        except ConcurrencyConflict:
            return False
        except Exception as exc:  # the alert path must survive any storage failure
            log.warning(
                "alert de-duplication store unavailable (%s); de-duplicating in this process only",
                type(exc).__name__,
            )
            return self._fallback.claim(key, now, window)

    def release(self, key: str) -> None:
        self._fallback.release(key)
        try:
            self._state_table().delete(DEDUP_PARTITION, _row_key(key))
        except Exception as exc:  # best effort: at worst the next alert waits for the window
            log.warning("could not release an alert de-duplication claim (%s)", type(exc).__name__)

    def _state_table(self) -> Any:
        if self._table is None:
            self._table = self._table_factory()
        return self._table

    def _claim_in_table(self, key: str, now: dt.datetime, window: dt.timedelta) -> bool:
        now = naive_utc(now)  # the stored claim times are naive UTC
        table = self._state_table()
        entity = {
            "PartitionKey": DEDUP_PARTITION,
            "RowKey": _row_key(key),
            "alert_key": key[:1000],
            "last_sent_at": now.isoformat(),
        }
        found = table.get(DEDUP_PARTITION, entity["RowKey"])
        if found is None:
            table.insert(entity)
            return True
        stored, etag = found
        last_sent = _parse_timestamp(stored.get("last_sent_at"))
        if last_sent is not None and now - last_sent < window:
            return False
        table.update_if_match(entity, etag)
        return True


def _row_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _parse_timestamp(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    return naive_utc(parsed)


# ---- payloads -----------------------------------------------------------------------------
def run_link(run_id: str | None, template: str) -> str:
    """Where an operator finds the run: RUN_LINK_TEMPLATE with {run_id}, else the ops row."""
    if not run_id:
        return "ops.pipeline_runs (no run id)"
    if template:
        return template.replace("{run_id}", quote(run_id, safe=""))
    return f"ops.pipeline_runs run_id={run_id}"


def alert_facts(alert: AlertMessage, link: str) -> list[tuple[str, str]]:
    """The facts every alert carries, then the alert's own (error type, check, ...)."""
    facts = [
        ("Pipeline", alert.pipeline),
        ("Step", alert.step),
        ("Date", alert.date.isoformat() if alert.date else "-"),
        ("Run id", alert.run_id or "-"),
        ("Severity", alert.severity),
    ]
    facts.extend((name, value) for name, value in alert.facts.items())
    facts.append(("Run", link))
    return facts


def build_payload(alert: AlertMessage, link: str, payload_format: PayloadFormat = "message_card") -> dict[str, Any]:
    """The JSON body for one (already redacted) alert."""
    facts = alert_facts(alert, link)
    heading = f"[{alert.severity.upper()}] {alert.pipeline}: {alert.title}"
    # Slack shows only `text`, so it carries every fact; Teams shows title, text and the facts.
    text = alert.message + "\n\n" + "\n".join(f"{name}: {value}" for name, value in facts)
    if payload_format == "adaptive_card":
        return _adaptive_card(heading, alert.message, facts, link, text)
    card: dict[str, Any] = {
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": heading,
        "title": heading,
        "themeColor": _THEME_COLOURS.get(alert.severity, "0078D7"),
        "text": text,
        "sections": [{"facts": [{"name": name, "value": value} for name, value in facts]}],
    }
    if _is_http_url(link):
        card["potentialAction"] = [
            {"@type": "OpenUri", "name": "Open run", "targets": [{"os": "default", "uri": link}]}
        ]
    return card


def _adaptive_card(heading: str, message: str, facts: list[tuple[str, str]], link: str, text: str) -> dict[str, Any]:
    content: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": heading, "weight": "Bolder", "size": "Medium", "wrap": True},
            {"type": "TextBlock", "text": message, "wrap": True},
            {"type": "FactSet", "facts": [{"title": name, "value": value} for name, value in facts]},
        ],
    }
    if _is_http_url(link):
        content["actions"] = [{"type": "Action.OpenUrl", "title": "Open run", "url": link}]
    return {
        "type": "message",
        "summary": heading,
        "text": text,
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": content}
        ],
    }


def detect_format(url: str) -> PayloadFormat:
    host = (urlsplit(url).hostname or "").lower()
    return "adaptive_card" if host.endswith(_WORKFLOW_HOST_SUFFIXES) else "message_card"


def _is_http_url(value: str) -> bool:
    return value.startswith(("https://", "http://"))


def _redact_strings(value: Any) -> Any:
    """Redact every string inside a payload (belt and braces over Alert.redacted())."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {key: _redact_strings(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_redact_strings(item) for item in value]
    return value


# ---- the sink -----------------------------------------------------------------------------
class WebhookRejected(PermanentError):
    """The webhook answered 4xx (other than 429): the URL or the body is wrong; no retry."""


class WebhookAlertSink:
    """AlertSink that posts to an incoming webhook; de-duplicated; never raises."""

    def __init__(
        self,
        url: str,
        timeout: float = 5.0,
        retries: int = 2,
        dedup: AlertDedup | None = None,
        *,
        dedup_window: dt.timedelta = dt.timedelta(hours=1),
        run_link_template: str = "",
        payload_format: PayloadFormat = "auto",
        backoff_s: float = 0.5,
        clock: Clock = utc_now,
        session: requests.Session | None = None,
    ) -> None:
        self._url = url
        parts = urlsplit(url)
        self._host = parts.hostname or "?"
        # The URL is a credential (Slack/Teams embed the token in the path): mask it, and its
        # path alone, wherever it might surface.
        register_secret(url)
        register_secret(parts.path + (f"?{parts.query}" if parts.query else ""))
        self.timeout = timeout
        self.retries = retries
        self.dedup = dedup if dedup is not None else InMemoryAlertDedup()
        self.dedup_window = dedup_window
        self.run_link_template = run_link_template
        self.payload_format: PayloadFormat = detect_format(url) if payload_format == "auto" else payload_format
        self._backoff_s = backoff_s
        self._clock = clock
        self._session = session or requests.Session()

    @classmethod
    def from_settings(
        cls, settings: Settings, dedup: AlertDedup | None = None, state_table: Callable[[], Any] | None = None
    ) -> WebhookAlertSink:
        """The sink wiring builds when ALERT_WEBHOOK_URL is set; ``state_table`` is a lazy
        factory of the StateTable holding cross-process de-duplication claims."""
        if settings.alert_webhook_url is None:
            raise ValueError("ALERT_WEBHOOK_URL is not set")
        if dedup is None and state_table is not None:
            dedup = TableAlertDedup(state_table)
        return cls(
            settings.alert_webhook_url.get_secret_value(),
            timeout=settings.alert_timeout_s,
            dedup=dedup,
            dedup_window=dt.timedelta(minutes=settings.alert_dedup_minutes),
            run_link_template=settings.run_link_template,
        )

    def send(self, alert: AlertMessage) -> DeliveryResult:
        alert = alert.redacted()
        key = alert.dedup_key()
        if self.dedup_window > dt.timedelta(0) and not self.dedup.claim(key, self._clock(), self.dedup_window):
            log.info("alert %r suppressed: already sent within %s", alert.title, self.dedup_window)
            return DeliveryResult("suppressed")
        payload = _redact_strings(
            build_payload(alert, run_link(alert.run_id, self.run_link_template), self.payload_format)
        )
        attempts = [0]
        try:
            self._post(payload, attempts)
        except Exception as exc:  # never fail the step that raised the alert
            # Free the claim so the next occurrence can try again instead of being suppressed.
            self.dedup.release(key)
            log.error(
                "alert %r not delivered to the webhook at %s after %d attempt(s): %s",
                alert.title,
                self._host,
                self.retries + 1,
                redact(str(exc)) if isinstance(exc, (TransientError, PermanentError)) else type(exc).__name__,
            )
            return DeliveryResult("failed", attempts[0], type(exc).__name__)
        return DeliveryResult("sent", attempts[0])

    def _post(self, payload: dict[str, Any], attempts: list[int]) -> None:
        retrying = Retrying(
            stop=stop_after_attempt(self.retries + 1),
            wait=wait_exponential(multiplier=self._backoff_s, max=max(self._backoff_s * 4, 0.0)),
            retry=retry_if_exception_type(TransientError),
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                attempts[0] += 1
                self._post_once(payload)

    def _post_once(self, payload: dict[str, Any]) -> None:
        # The URL is the secret: the HTTP instrumentation (which records it) is off for this
        # request, and our span names only the host.
        with telemetry.span("webhook.post", kind=SpanKind.CLIENT, attributes={"server.address": self._host}) as span:
            self._post_to_webhook(payload, span)

    def _post_to_webhook(self, payload: dict[str, Any], span: Any) -> None:
        try:
            with telemetry.untraced_http():
                response = self._session.post(self._url, json=payload, timeout=(self.timeout, self.timeout))
        except (requests.Timeout, requests.ConnectionError) as exc:
            # The exception text names the URL: keep only its type.
            raise UpstreamUnavailable(f"{type(exc).__name__} posting the alert") from None
        span.set_attribute("http.response.status_code", response.status_code)
        if response.status_code >= 500 or response.status_code == 429:
            raise UpstreamUnavailable(f"webhook answered HTTP {response.status_code}")
        if response.status_code >= 400:
            raise WebhookRejected(f"webhook answered HTTP {response.status_code}")
