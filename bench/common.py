"""What the benchmarks share: seeds, a sandbox in a pinned subprocess, CPU and memory readings."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

PROJECT = "0123456789abcdef0123456789abcdef"
AK = "BENCHACCESSKEY000001"
SK = "bench-secret-key"
TOKEN = "bench-token"
ROOT = Path(__file__).resolve().parent.parent
CAN_PIN = bool(shutil.which("taskset")) and (os.cpu_count() or 1) > 1


def server_id(index: int) -> str:
    """The id of the bench's `index`-th server."""
    return str(uuid.UUID(int=index + 1, version=4))


def make_seed(servers: int, keys: int, key_name: str = "k{}") -> dict[str, Any]:
    """A seed with `servers` active servers of `keys` metadata keys (`k0`, `k1`, …) each."""
    return {
        "project_id": PROJECT,
        "credentials": {"ak": AK, "sk": SK, "security_token": None, "token": TOKEN},
        "servers": [
            {
                "id": server_id(n),
                "project_id": PROJECT,
                "name": f"bench-{n}",
                "vm_state": "active",
                "locked": False,
                "metadata": {key_name.format(i): "v" for i in range(keys)},
            }
            for n in range(servers)
        ],
    }


def pairs_event(servers: int, keys: int) -> dict[str, Any]:
    """A direct-invocation event naming every key of a `make_seed(servers, keys)` seed."""
    names = [f"k{i}" for i in range(keys)]
    return {"items": [{"server_id": server_id(n), "keys": names} for n in range(servers)]}


#: The queue of `sqs_event`'s records: a standard queue (a FIFO queue's name ends in `.fifo`).
SQS_QUEUE_ARN = "arn:aws:sqs:eu-west-1:123456789012:ecs-metadata-janitor"


def sqs_event(servers: int, keys: int) -> dict[str, Any]:
    """An SQS batch of one message per pair (`{"server_id", "key"}`) of a `make_seed` seed."""
    records = []
    for n in range(servers):
        server = server_id(n)
        for i in range(keys):
            number = n * keys + i
            message_id = str(uuid.UUID(int=(1 << 64) + number, version=4))
            body = json.dumps({"server_id": server, "key": f"k{i}"})
            sent = str(1_767_225_600_000 + number)
            records.append(
                {
                    "messageId": message_id,
                    # Real receipt handles are opaque strings of a few hundred characters.
                    "receiptHandle": "AQEB" + 2 * hashlib.sha512(message_id.encode()).hexdigest(),
                    "body": body,
                    "attributes": {
                        "ApproximateReceiveCount": "1",
                        "SentTimestamp": sent,
                        "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                        "ApproximateFirstReceiveTimestamp": sent,
                    },
                    "messageAttributes": {},
                    "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": SQS_QUEUE_ARN,
                    "awsRegion": "eu-west-1",
                }
            )
    return {"Records": records}


def keys_left(state: dict[str, Any]) -> int:
    """How many of the seed's `k…` keys a sandbox state (`SandboxProcess.state()`) still holds."""
    return sum(len([k for k in s["metadata"] if k.startswith("k")]) for s in state["servers"])


def pin_self_to_client_core() -> None:
    """Run this process on CPU 1, the sandbox on CPU 0, so they never compete."""
    if CAN_PIN:
        os.sched_setaffinity(0, {1})


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


class SandboxProcess:
    """`python -m handler sandbox` in a subprocess, pinned to CPU 0; a context manager."""

    def __init__(
        self,
        seed: dict[str, Any],
        *,
        latency_ms: float = 0.0,
        faults: dict[str, Any] | None = None,
    ) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="janitor-bench-")
        seed_file = Path(self._dir.name) / "seed.json"
        seed_file.write_text(json.dumps(seed))
        cmd = [sys.executable, "-m", "handler", "sandbox", "--port", "0", "--seed", str(seed_file)]
        cmd += ["--latency-ms", str(latency_ms)]
        if faults is not None:
            faults_file = Path(self._dir.name) / "faults.json"
            faults_file.write_text(json.dumps(faults))
            cmd += ["--faults", str(faults_file)]
        if CAN_PIN:
            cmd = ["taskset", "-c", "0", *cmd]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+", line)
        if not match:
            self.close()
            raise SystemExit(f"the sandbox did not start: {line!r}")
        self.url = match.group(0)

    def cpu_seconds(self) -> float:
        """CPU seconds the sandbox has used so far."""
        return cpu_seconds(self.proc.pid)

    def state(self) -> dict[str, Any]:
        """The sandbox's current state (`GET /_sandbox/state`)."""
        import urllib.request

        with urllib.request.urlopen(f"{self.url}/_sandbox/state", timeout=30) as response:
            data: dict[str, Any] = json.load(response)
        return data

    def close(self) -> None:
        """Stop the sandbox and remove its files."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._dir.cleanup()

    def __enter__(self) -> SandboxProcess:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
