"""The seed: credentials, servers, queues and topics the sandbox starts with; the demo seed."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from handler.sandbox.config_io import read_json_file
from handler.sandbox.errors import SandboxConfigError, describe_validation_error

DEMO_PROJECT_ID = "0123456789abcdef0123456789abcdef"
DEMO_OTHER_PROJECT_ID = "fedcba9876543210fedcba9876543210"

#: The demo seed's servers, by name: the one place the demo ids are written.
DEMO_WEB1 = "6a4e1a2c-1d4f-4a47-9d0b-1b2f3c4d5e6f"
DEMO_WEB2 = "3f1c2b9e-8a7d-4c6b-9e5f-0a1b2c3d4e5f"
DEMO_BUILD1 = "9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
DEMO_DB1 = "c0ffee00-1234-4abc-8def-0123456789ab"
DEMO_OTHER1 = "0badc0de-0000-4000-8000-000000000001"

VmState = Literal[
    "active",
    "building",
    "paused",
    "suspended",
    "stopped",
    "rescued",
    "resized",
    "soft_deleted",
    "deleted",
    "error",
    "shelved",
    "shelved_offloaded",
]

#: The demo seed's queues and topic (issue 10): a work queue, a dead-letter queue, an SMN topic.
DEMO_WORK_QUEUE = "janitor-work"
DEMO_DLQ = "janitor-dlq"
DEMO_DLQ_TOPIC = "janitor-dlq-topic"
DEMO_AWS_ACCOUNT = "000000000000"
#: The region of a topic's URN when the seed names none.
DEFAULT_TOPIC_REGION = "sandbox-1"

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_PROJECT = r"^[A-Za-z0-9_-]{1,64}$"

NonEmpty = Annotated[str, Field(min_length=1)]
ProjectId = Annotated[str, Field(pattern=_PROJECT)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class CredentialsSeed(BaseModel):
    """The credentials the sandbox accepts: an AK/SK pair, a token, or both."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    ak: NonEmpty | None = None
    sk: NonEmpty | None = None
    security_token: NonEmpty | None = None
    token: NonEmpty | None = None

    @model_validator(mode="after")
    def _complete(self) -> CredentialsSeed:
        if (self.ak is None) != (self.sk is None):
            raise ValueError("ak and sk must be given together")
        if self.ak is None and self.token is None:
            raise ValueError("give an ak/sk pair, a token, or both")
        return self


class KeystoneUserSeed(BaseModel):
    """A Keystone user the sandbox accepts for password tokens."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: NonEmpty
    password: NonEmpty
    domain: NonEmpty = "Default"


class KeystoneProjectSeed(BaseModel):
    """A project a sandbox token may be scoped to (by id, or by name in its domain)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    id: ProjectId
    name: NonEmpty
    domain: NonEmpty = "Default"


class KeystoneSeed(BaseModel):
    """The sandbox's Keystone: users, projects (default: the seed's, named by id), the
    catalog's region and how long a token lives."""

    model_config = ConfigDict(extra="forbid", strict=True)

    users: Annotated[list[KeystoneUserSeed], Field(min_length=1)]
    projects: list[KeystoneProjectSeed] = Field(default_factory=list)
    region: NonEmpty = "sandbox-1"
    token_ttl_s: Annotated[float, Field(gt=0)] = 3600.0


class AwsSeed(BaseModel):
    """The AWS identity the sandbox's SQS accepts (SigV4, service `sqs`), and its account."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    access_key_id: Annotated[str, Field(pattern=r"^[A-Z0-9]{16,128}$")]
    secret_access_key: NonEmpty
    #: When set, every SQS request must carry it as X-Amz-Security-Token.
    session_token: NonEmpty | None = None
    #: The only region a signature may be scoped to; None: any region.
    region: Annotated[str, Field(pattern=r"^[a-z0-9-]{1,32}$")] | None = None
    account_id: Annotated[str, Field(pattern=r"^[0-9]{12}$")] = DEMO_AWS_ACCOUNT


class MessageSeed(BaseModel):
    """A message waiting in a seeded queue (`GET /_sandbox/state` shows them the same way)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    body: Annotated[str, Field(min_length=1)]
    message_id: NonEmpty | None = None
    #: SQS message attributes: {"name": {"DataType": "String", "StringValue": "..."}}.
    message_attributes: dict[str, dict[str, str]] = Field(default_factory=dict)
    message_group_id: NonEmpty | None = None
    message_deduplication_id: NonEmpty | None = None
    receive_count: Annotated[int, Field(ge=0)] = 0
    sent_timestamp_ms: Annotated[int, Field(ge=0)] | None = None
    #: In flight (or delayed) for this many more seconds; None: visible now.
    visible_after_s: Annotated[float, Field(ge=0)] | None = None


class QueueSeed(BaseModel):
    """An SQS queue the sandbox creates at start; a name ending in `.fifo` is a FIFO queue."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: NonEmpty
    #: SQS queue attributes as CreateQueue takes them: {"VisibilityTimeout": "30", ...}.
    attributes: dict[str, str] = Field(default_factory=dict)
    messages: list[MessageSeed] = Field(default_factory=list)
    # What GET /_sandbox/state adds, so that a state seeds a sandbox again; ignored here.
    url: str | None = None
    arn: str | None = None
    visible: int | None = None
    in_flight: int | None = None
    delayed: int | None = None

    @model_validator(mode="after")
    def _valid(self) -> QueueSeed:
        from handler.sandbox.sqs import check_queue_seed  # sqs.py imports this module

        self.attributes = check_queue_seed(self)
        return self


class TopicSeed(BaseModel):
    """An SMN topic; its URN is `urn:smn:{region}:{project_id}:{name}`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,254}$")]
    project_id: ProjectId | None = None
    region: Annotated[str, Field(pattern=r"^[A-Za-z0-9-]{1,64}$")] = DEFAULT_TOPIC_REGION
    #: What was published to it (as GET /_sandbox/state shows it), kept as it is.
    messages: list[dict[str, Any]] = Field(default_factory=list)
    #: What GET /_sandbox/state adds; ignored here.
    urn: str | None = None

    @property
    def topic_urn(self) -> str:
        """The topic's URN (the project must be filled in)."""
        return f"urn:smn:{self.region}:{self.project_id}:{self.name}"


class QueueFaultsSeed(BaseModel):
    """Faults of the sandbox's SQS and SMN (the fault file's `rates` are for DELETEs only)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    #: The same seed and the same requests give the same faults.
    seed: int | None = None
    #: The share of SendMessageBatch entries answered in `Failed` (InternalError, not stored).
    sqs_failed_ratio: Probability = 0.0
    #: The share of SQS requests answered 400 RequestThrottled.
    sqs_throttle: Probability = 0.0
    #: The share of SMN publishes answered 429 (the gateway's APIGW.0308).
    smn_throttle: Probability = 0.0


class ServerSeed(BaseModel):
    """One server of the seed."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: str
    project_id: ProjectId | None = None
    name: str = ""
    vm_state: VmState = "active"
    locked: bool = False
    active_after_s: Annotated[float, Field(ge=0)] | None = None
    unlock_after_s: Annotated[float, Field(ge=0)] | None = None
    metadata: dict[str, str] = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _uuid(cls, value: str) -> str:
        if not _UUID.match(value):
            raise ValueError("must be a UUID like 6a4e1a2c-1d4f-4a47-9d0b-1b2f3c4d5e6f")
        return value.lower()

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            if not 1 <= len(key) <= 255:
                raise ValueError(f"metadata key {key!r} must have 1 to 255 characters")
            if len(item) > 255:
                raise ValueError(f"metadata value of {key!r} is longer than 255 characters")
        return value


class Seed(BaseModel):
    """A whole seed: default project, credentials and servers."""

    model_config = ConfigDict(extra="forbid", strict=True)

    project_id: ProjectId | None = None
    credentials: CredentialsSeed
    servers: list[ServerSeed] = Field(default_factory=list)
    #: Keystone v3 password tokens (`POST /v3/auth/tokens`); None: no Keystone.
    keystone: KeystoneSeed | None = None
    #: The identity SQS requests are signed with; None: every SQS request is refused.
    aws: AwsSeed | None = None
    queues: list[QueueSeed] = Field(default_factory=list)
    topics: list[TopicSeed] = Field(default_factory=list)
    queue_faults: QueueFaultsSeed = Field(default_factory=QueueFaultsSeed)

    @model_validator(mode="after")
    def _consistent(self) -> Seed:
        seen: set[str] = set()
        for index, server in enumerate(self.servers):
            if server.id in seen:
                raise ValueError(f"servers.{index}: duplicate server id {server.id}")
            seen.add(server.id)
            if server.project_id is None:
                if self.project_id is None:
                    raise ValueError(
                        f"servers.{index}: no project_id (set it on the server or at the top level)"
                    )
                server.project_id = self.project_id
        keystone = self.keystone
        if keystone is not None and not keystone.projects:
            ids = [self.project_id] if self.project_id is not None else []
            ids += [s.project_id for s in self.servers if s.project_id is not None]
            keystone.projects = [
                KeystoneProjectSeed(id=pid, name=pid) for pid in dict.fromkeys(ids)
            ]
        names = [queue.name for queue in self.queues]
        for index, name in enumerate(names):
            if name in names[:index]:
                raise ValueError(f"queues.{index}: duplicate queue name {name}")
        urns: set[str] = set()
        for index, topic in enumerate(self.topics):
            if topic.project_id is None:
                if self.project_id is None:
                    raise ValueError(
                        f"topics.{index}: no project_id (set it on the topic or at the top level)"
                    )
                topic.project_id = self.project_id
            if topic.topic_urn in urns:
                raise ValueError(f"topics.{index}: duplicate topic {topic.topic_urn}")
            urns.add(topic.topic_urn)
        return self

    @property
    def default_project_id(self) -> str | None:
        """The project a client most likely wants: the top-level one, else the first server's."""
        if self.project_id is not None:
            return self.project_id
        return self.servers[0].project_id if self.servers else None


def _server(
    server_id: str,
    name: str,
    metadata: dict[str, str],
    *,
    project_id: str = DEMO_PROJECT_ID,
    vm_state: str = "active",
    locked: bool = False,
    active_after_s: float | None = None,
) -> dict[str, Any]:
    return {
        "id": server_id,
        "project_id": project_id,
        "name": name,
        "vm_state": vm_state,
        "locked": locked,
        "active_after_s": active_after_s,
        "metadata": metadata,
    }


DEMO_SEED: dict[str, Any] = {
    "project_id": DEMO_PROJECT_ID,
    "credentials": {
        "ak": "SANDBOXACCESSKEY0001",
        "sk": "sandbox-secret-key-do-not-use-in-prod",
        "security_token": None,
        "token": "sandbox-token",
    },
    "keystone": {
        "users": [{"name": "demo", "password": "sandbox-password-do-not-use", "domain": "Default"}],
        "projects": [
            {"id": DEMO_PROJECT_ID, "name": "demo", "domain": "Default"},
            {"id": DEMO_OTHER_PROJECT_ID, "name": "other", "domain": "Default"},
        ],
        "region": "sandbox-1",
        "token_ttl_s": 3600,
    },
    "aws": {
        "access_key_id": "AKIASANDBOX000000001",
        "secret_access_key": "sandbox/aws-secret-key/do-not-use-in-prod",
        "session_token": None,
        "region": None,
        "account_id": DEMO_AWS_ACCOUNT,
    },
    "queues": [
        {"name": DEMO_WORK_QUEUE, "attributes": {"VisibilityTimeout": "30"}},
        {"name": DEMO_DLQ},
    ],
    "topics": [{"name": DEMO_DLQ_TOPIC}],
    "servers": [
        _server(
            DEMO_WEB1,
            "web-1",
            {
                "lease-owner": "batch-7",
                "lease-expires": "2026-11-27T10:00:00Z",
                "env:stage": "blue",
                "team name": "core",
                "owner": "ops",
            },
        ),
        _server(
            DEMO_WEB2,
            "web-2",
            {"lease-owner": "batch-9", "lease-expires": "2026-11-27T11:00:00Z"},
            locked=True,
        ),
        _server(
            DEMO_BUILD1,
            "build-1",
            {"lease-owner": "batch-3"},
            vm_state="building",
            active_after_s=2,
        ),
        _server(
            DEMO_DB1,
            "db-1",
            {
                "lease-owner": "batch-1",
                "lease-expires": "2026-11-27T09:00:00Z",
                "backup-policy": "daily",
            },
        ),
        _server(
            DEMO_OTHER1,
            "other-1",
            {"lease-owner": "batch-2"},
            project_id=DEMO_OTHER_PROJECT_ID,
        ),
    ],
}
"""The documented demo seed used when no seed is given (fake credentials, safe to print)."""


def parse_seed(data: Mapping[str, Any] | None, *, source: str = "seed") -> Seed:
    """Validate seed data (None means the demo seed) or raise SandboxConfigError."""
    raw = copy.deepcopy(dict(DEMO_SEED if data is None else data))
    try:
        return Seed.model_validate(raw)
    except ValidationError as exc:
        raise SandboxConfigError(f"{source}: {describe_validation_error(exc)}") from None


def seed_to_dict(seed: Seed) -> dict[str, Any]:
    """Return a validated seed in the seed file format (plain JSON types)."""
    return seed.model_dump(mode="json", exclude_none=False)


def read_seed(path: Path | str) -> Seed:
    """Read and validate a seed file or raise SandboxConfigError naming the file."""
    data = read_json_file(path, "seed")
    if not isinstance(data, dict):
        raise SandboxConfigError(f"seed file {path}: must be a JSON object")
    return parse_seed(data, source=f"seed file {path}")


def load_seed(path: Path | str) -> dict[str, Any]:
    """Read and validate a seed file; return it in the seed format or raise SandboxConfigError."""
    return seed_to_dict(read_seed(path))
