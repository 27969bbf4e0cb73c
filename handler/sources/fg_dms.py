"""FunctionGraph message-queue triggers: DMS for Kafka, open-source Kafka, DMS for RabbitMQ and
DMS for RocketMQ. All share one shape, `records[].messages` (a list of strings, each a payload),
and `trigger_type` tells them apart. Huawei documents DMS for Kafka and open-source Kafka with the
same `trigger_type: "KAFKA"`, so one source reads both.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, ClassVar

from handler.model import parse_body
from handler.sources.base import Source, SummarySource, Unit
from handler.sources.fg_common import odd_unit, text_or_none


def _records(event: Any) -> list[Any]:
    records = event.get("records") if isinstance(event, dict) else None
    return records if isinstance(records, list) else []


class FgMessagesSource(SummarySource):
    """A batch of queue messages pulled by FunctionGraph; each message string is one unit."""

    kind = "fg-messages"
    #: The `trigger_type` values this source answers to.
    trigger_types: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def matches(cls, event: Any) -> bool:
        """`trigger_type` is one of ours and `records` is a list holding a `messages` list."""
        trigger = event.get("trigger_type") if isinstance(event, dict) else None
        if not isinstance(trigger, str) or trigger not in cls.trigger_types:
            return False
        return any(
            isinstance(r, dict) and isinstance(r.get("messages"), list) for r in _records(event)
        )

    def units(self, event: Any) -> list[Unit]:
        """One unit per message, named `<topic>-<n>` (n counts that topic's messages)."""
        units: list[Unit] = []
        seen: Counter[str] = Counter()
        for index, record in enumerate(_records(event)):
            messages = record.get("messages") if isinstance(record, dict) else None
            if not isinstance(messages, list):
                units.append(odd_unit(None, record, f"record {index} has no 'messages' list"))
                continue
            topic = text_or_none(record.get("topic_id")) or f"record{index}"
            for message in messages:
                units.append(Unit(id=f"{topic}-{seen[topic]}", body=message, parse=parse_body))
                seen[topic] += 1
        return units


class FgKafkaSource(FgMessagesSource):
    """DMS for Kafka or open-source Kafka (`trigger_type: "KAFKA"`; both are documented so)."""

    kind = "fg-kafka"
    # OPENSOURCEKAFKA is the open-source Kafka trigger's type in Huawei's trigger API; accepted
    # in case an event ever carries it instead of KAFKA.
    trigger_types = frozenset({"KAFKA", "OPENSOURCEKAFKA"})


class FgRabbitMqSource(FgMessagesSource):
    """DMS for RabbitMQ (`trigger_type: "RABBITMQ"`)."""

    kind = "dms-rabbitmq"
    trigger_types = frozenset({"RABBITMQ"})


class FgRocketMqSource(FgMessagesSource):
    """DMS for RocketMQ (`trigger_type: "ROCKETMQ"`)."""

    kind = "dms-rocketmq"
    trigger_types = frozenset({"ROCKETMQ"})


#: The FunctionGraph message-queue sources, in no particular order (their trigger types differ).
FG_MESSAGE_SOURCES: tuple[type[Source], ...] = (FgKafkaSource, FgRabbitMqSource, FgRocketMqSource)
