"""Amazon MQ (RabbitMQ and ActiveMQ): one unit per message, base64 `data`, a summary answer.

Lambda's MQ event sources have no partial batch response: a raised error returns the whole
batch to the broker. Transient outcomes are therefore dead-lettered, and only a dead letter
that cannot be written raises (handler.runtime does that for non-redelivering sources).
"""

from __future__ import annotations

from typing import Any

from handler.sources.base import SummarySource, Unit
from handler.sources.kafka import base64_parser, odd_record

_parse_data = base64_parser("data", "message")


def _id(value: Any) -> str | None:
    """A message id as text, or None when there is none (missing, null, empty, not scalar)."""
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        return None
    return str(value)


def _not_an_object(record: Any) -> Unit | None:
    """An invalid unit for a message that is not an object, else None."""
    if isinstance(record, dict):
        return None
    detail = f"the message is not an object (got {type(record).__name__})"
    return Unit(id=None, body=record, parse=odd_record(detail))


class RabbitMqSource(SummarySource):
    """An Amazon MQ for RabbitMQ batch; transient outcomes are dead-lettered, not raised."""

    kind = "rabbitmq"

    @classmethod
    def matches(cls, event: Any) -> bool:
        """`eventSource` `aws:rmq` and `rmqMessagesByQueue` an object."""
        return (
            isinstance(event, dict)
            and event.get("eventSource") == "aws:rmq"
            and isinstance(event.get("rmqMessagesByQueue"), dict)
        )

    def units(self, event: Any) -> list[Unit]:
        """One unit per message, named by `basicProperties.messageId` (None when unset)."""
        units: list[Unit] = []
        for name, messages in event["rmqMessagesByQueue"].items():
            queue = str(name)
            if not isinstance(messages, list):
                detail = f"the messages of {queue!r} are not a list"
                units.append(Unit(id=None, body=messages, parse=odd_record(detail), group=queue))
                continue
            for message in messages:
                odd = _not_an_object(message)
                if odd is not None:
                    odd.group = queue
                    units.append(odd)
                    continue
                properties = message.get("basicProperties")
                message_id = (
                    _id(properties.get("messageId")) if isinstance(properties, dict) else None
                )
                units.append(
                    Unit(
                        id=message_id,
                        body=message.get("data"),
                        parse=_parse_data,
                        group=queue,
                        ref=message_id,
                    )
                )
        return units


class ActiveMqSource(SummarySource):
    """An Amazon MQ for ActiveMQ batch; transient outcomes are dead-lettered, not raised."""

    kind = "activemq"

    @classmethod
    def matches(cls, event: Any) -> bool:
        """`eventSource` `aws:amq` and `messages` a list."""
        return (
            isinstance(event, dict)
            and event.get("eventSource") == "aws:amq"
            and isinstance(event.get("messages"), list)
        )

    def units(self, event: Any) -> list[Unit]:
        """One unit per message, named by its `messageID`."""
        units: list[Unit] = []
        for message in event["messages"]:
            odd = _not_an_object(message)
            if odd is not None:
                units.append(odd)
                continue
            destination = message.get("destination")
            queue = destination.get("physicalName") if isinstance(destination, dict) else None
            message_id = _id(message.get("messageID"))
            units.append(
                Unit(
                    id=message_id,
                    body=message.get("data"),
                    parse=_parse_data,
                    group=queue if isinstance(queue, str) else None,
                    ref=message_id,
                )
            )
        return units
