"""Azure Functions bindings: each function parses its trigger and calls one service.

Connections and names come from app settings (``connection="PIPELINE_STORAGE"``,
``%CRM_CONTAINER%``, ``%BUILD_QUEUE%``, ``%USAGE_SCHEDULE%``), never literals, so the same
code runs against Azurite and Azure. Exceptions rise so the host's retries and poison-queue
handling apply. The local trigger runner (pipeline_tools/runner/) drives these same functions.
"""

from __future__ import annotations

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob

from shared.clock import utc_now
from shared.wiring import resources

app = func.FunctionApp()


@app.function_name("crm_snapshot_arrived")
# source=EventGrid: Flex Consumption has no polling blob trigger; the Event Grid subscription for
# BlobCreated in the CRM container (infra/app/crm-events.bicep) calls the host's blob extension.
@app.blob_trigger(
    arg_name="client", path="%CRM_CONTAINER%/{name}", connection="PIPELINE_STORAGE", source=func.BlobSource.EVENT_GRID
)
def crm_snapshot_arrived(client: blob.BlobClient) -> None:
    """A CRM CSV landed: validate, stage, update dims, mark the date's CRM input present."""
    resources().stage_crm_blob(client.blob_name)


@app.function_name("usage_timer")
@app.timer_trigger(arg_name="timer", schedule="%USAGE_SCHEDULE%", run_on_startup=False, use_monitor=True)
def usage_timer(timer: func.TimerRequest) -> None:
    """Daily: pull usage (yesterday, look-back, missed days), stage it, check CRM grace periods,
    refresh the fact-events rollup, evaluate input freshness."""
    resources().run_timer_tick(now=utc_now(), past_due=timer.past_due)


@app.function_name("build_requested")
@app.queue_trigger(arg_name="message", queue_name="%BUILD_QUEUE%", connection="PIPELINE_STORAGE")
def build_requested(message: func.QueueMessage) -> None:
    """A date (or range) is ready: build its analytics rows and the window neighbours."""
    resources().handle_build_message(
        message.get_body(), dequeue_count=message.dequeue_count or 1, message_id=message.id
    )
