"""Event sources: each knows one platform's event shape and the response it expects."""

from __future__ import annotations

from typing import Any

from handler.sources.alb import AlbSource
from handler.sources.apigw import ApiGatewayV1Source, ApiGatewayV2Source
from handler.sources.base import (
    HttpAnswer,
    HttpRequest,
    OnTransient,
    RejectedEvent,
    Source,
    SourceSettings,
    Unit,
    UnitReport,
    UnknownEventError,
)
from handler.sources.cloudevents import CloudEventsSource
from handler.sources.direct import DirectSource
from handler.sources.eventbridge import EventBridgeSource
from handler.sources.fg_apig import FgApigSource
from handler.sources.fg_dms import FG_MESSAGE_SOURCES
from handler.sources.fg_smn import FgSmnSource
from handler.sources.fg_timer import FgTimerSource
from handler.sources.kafka import KafkaSource
from handler.sources.kinesis import KinesisSource
from handler.sources.mq import ActiveMqSource, RabbitMqSource
from handler.sources.served import ServedSource
from handler.sources.sns import SnsSource
from handler.sources.sqs import SqsSource

#: Checked in this order; the first whose `matches` is true handles the event.
SOURCES: tuple[type[Source], ...] = (
    # A request the function's own HTTP server received (an HttpRequest, never a platform's).
    ServedSource,
    # HTTP doors first: API Gateway HTTP API / Function URL, REST API, ALB; FunctionGraph APIG
    # last of them (it is told by what the AWS shapes have and it lacks).
    ApiGatewayV2Source,
    ApiGatewayV1Source,
    AlbSource,
    FgApigSource,
    # AWS: record batches, told apart by their eventSource (SNS spells it EventSource).
    SqsSource,
    SnsSource,
    KinesisSource,
    KafkaSource,
    RabbitMqSource,
    ActiveMqSource,
    EventBridgeSource,
    # Huawei FunctionGraph triggers, told apart by trigger_type (SMN by its `record` list).
    FgTimerSource,
    FgSmnSource,
    *FG_MESSAGE_SOURCES,
    # CloudEvents invoked directly (one structured event, or a batch: a list, so before Direct).
    CloudEventsSource,
    # Last: anything else that is itself a work-item payload (console, SDK, Scheduler input).
    DirectSource,
)

__all__ = [
    "SOURCES",
    "HttpAnswer",
    "HttpRequest",
    "OnTransient",
    "RejectedEvent",
    "Source",
    "SourceSettings",
    "Unit",
    "UnitReport",
    "UnknownEventError",
    "detect",
]


def _shape(event: Any) -> str:
    if isinstance(event, dict):
        keys = sorted(str(k) for k in event)[:12]
        return f"an object with keys {keys}" if keys else "an empty object"
    if event is None:
        return "null"
    return f"a {type(event).__name__}"


def detect(event: Any, settings: SourceSettings | None = None) -> Source:
    """Return the source for an event, or raise UnknownEventError saying what was seen."""
    for source in SOURCES:
        if source.matches(event):
            return source(event, settings)
    kinds = ", ".join(s.kind for s in SOURCES if s not in (ServedSource, DirectSource))
    raise UnknownEventError(
        f"unrecognised event: got {_shape(event)}; expected an event of one of: {kinds}, or a "
        "work-item payload (an object with 'server_id' or 'items', or an array)"
    )
