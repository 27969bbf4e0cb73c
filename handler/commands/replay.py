"""`replay`: dead letters re-driven through the function; the file keeps only those unsettled.

Each line of the file is a dead-letter record (handler.deadletter.make_record) or is kept as it
is. Records naming a pair are grouped by pair (a pair dead-lettered twice is sent once) and sent
in chunks, each chunk one direct invocation through the same Runtime as `invoke`, its dead
letters kept in memory: never appended to the file being replayed. After each chunk that settled
something the file is rewritten (a temporary file in the same directory, fsync'd, then
`os.replace`) without the records whose pair was deleted or found absent. An interruption loses
nothing: every record not yet settled is still in the file; at worst a few already deleted
remain there, and the next replay finds them absent.

Lines appended to the file while a replay runs (the function writing new dead letters) are
noticed before each rewrite and kept: the file is locked (flock, exclusive) from the last read
of its tail until the rename, and the function's FileSink takes the lock for each append, then
appends to whatever file the path names by then. One replay at a time runs per directory (an
advisory lock on the directory). Both locks where the system has `fcntl`.

A symlink is followed: the file it points to is rewritten, the link stays. Anything but a
regular file (a FIFO, a device) is refused before a byte is read.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from handler.commands import common
from handler.commands.cleanup import INTERRUPTED
from handler.commands.progress import ProgressDisplay, resolve_mode
from handler.commands.table import one_line, render
from handler.deadletter import SCHEMA
from handler.outcomes import Outcome, Pair, Result

__all__ = [
    "DEFAULT_CHUNK",
    "DeadLetterFile",
    "Line",
    "MemorySink",
    "Replay",
    "ReplayError",
    "read_lines",
]

#: Pairs sent in one invocation; the file is rewritten after each.
DEFAULT_CHUNK = 100
#: Outcomes that take a record out of the file (a dry run settles nothing).
SETTLING = frozenset({Outcome.DELETED, Outcome.ABSENT})
#: How often the tail is re-read when the file keeps growing during a rewrite.
_TAIL_ROUNDS = 5
#: Lines kept without replay that are named one by one in the report.
SHOWN = 20


class ReplayError(RuntimeError):
    """The replay cannot go on (the file is missing, locked, replaced); one line says why."""


@dataclass(slots=True)
class Line:
    """One line of the dead-letter file, as read, and what replay makes of it."""

    number: int
    raw: bytes
    pair: Pair | None = None
    #: The record's reason (why it was dead-lettered), when it is a record.
    reason: str | None = None
    #: Why the line is kept without being replayed (not a record, a record without a pair).
    problem: str | None = None
    #: True for a record that names no pair (an unreadable payload): kept, never re-sent.
    record: bool = False
    settled: bool = False
    #: Appended by someone else while this replay ran: kept, not replayed this time.
    appended: bool = False

    @property
    def blank(self) -> bool:
        """A line holding nothing but white space (dropped on rewrite)."""
        return not self.raw.strip()


def _pair_of(item: Any) -> tuple[Pair | None, str | None]:
    """The pair a record's `item` names, or why it names none that can be sent."""
    from handler.model import WorkItemModel

    if item is None:
        return None, "a record without a pair (the payload could not be read): not re-sent"
    if not isinstance(item, dict):
        return None, "a record whose item is not an object"
    project = item.get("project_id")
    if not isinstance(project, str):
        return None, "a record whose item has no project_id"
    fields = {k: item.get(k) for k in ("server_id", "key")}
    try:
        model = WorkItemModel.model_validate({**fields, "project_id": project})
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "item"
        return None, f"a record whose item is not a valid pair ({where}: {first['msg']})"
    assert model.key is not None
    return Pair(project, str(model.server_id), model.key), None


def parse_line(number: int, raw: bytes) -> Line:
    """Read one line: a record naming a pair, a record without one, or something else."""
    line = Line(number, raw)
    if line.blank:
        return line
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        line.problem = "not UTF-8"
        return line
    except (ValueError, RecursionError):
        line.problem = "not JSON"
        return line
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        line.problem = f"not a dead-letter record (no schema {SCHEMA})"
        return line
    line.record = True
    reason = data.get("reason")
    line.reason = reason if isinstance(reason, str) else None
    line.pair, line.problem = _pair_of(data.get("item"))
    return line


def read_lines(data: bytes, first_number: int = 1) -> list[Line]:
    """Split bytes into lines (each keeps its newline, the last may have none) and read them."""
    parts = data.split(b"\n")
    raws = [part + b"\n" for part in parts[:-1]]
    if parts[-1]:
        raws.append(parts[-1])
    return [parse_line(first_number + index, raw) for index, raw in enumerate(raws)]


def resolve(path: Path) -> Path:
    """The file a path names, symlinks followed: the one to read, lock and replace."""
    try:
        return path.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop: RuntimeError before 3.13
        raise ReplayError(f"cannot resolve {path}: {exc}") from None


def _read_from(fd: int, offset: int) -> bytes:
    """Everything an open file holds from `offset` on."""
    os.lseek(fd, offset, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass(slots=True)
class DeadLetterFile:
    """The file being replayed: its lines, and what was read of it (to notice appends).

    `path` is the file itself (symlinks resolved), `name` the path as given (for messages).
    """

    path: Path
    lines: list[Line]
    size: int
    identity: tuple[int, int]
    mode: int
    owner: tuple[int, int] = (-1, -1)
    name: Path | None = None

    @classmethod
    def open(cls, path: Path) -> DeadLetterFile:
        """Read the whole file, or raise ReplayError saying why it cannot be.

        Anything but a regular file is refused at once: opened without blocking (a FIFO with
        no writer would hold open() forever), then checked before a byte is read.
        """
        real = resolve(path)
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(real, flags)
        except FileNotFoundError:
            raise ReplayError(f"no dead-letter file {path}") from None
        except IsADirectoryError:
            raise ReplayError(f"{path} is a directory, not a dead-letter file") from None
        except OSError as exc:
            raise ReplayError(f"cannot read {path}: {exc.strerror or exc}") from None
        try:
            status = os.fstat(fd)
            if stat.S_ISDIR(status.st_mode):
                raise ReplayError(f"{path} is a directory, not a dead-letter file")
            if not stat.S_ISREG(status.st_mode):
                raise ReplayError(f"{path} is not a regular file: not a dead-letter file")
            data = _read_from(fd, 0)
        except OSError as exc:
            raise ReplayError(f"cannot read {path}: {exc.strerror or exc}") from None
        finally:
            os.close(fd)
        return cls(
            real,
            read_lines(data),
            len(data),
            (status.st_dev, status.st_ino),
            stat.S_IMODE(status.st_mode),
            (status.st_uid, status.st_gid),
            path,
        )

    @property
    def shown(self) -> Path:
        """The path to name in messages: as the operator gave it."""
        return self.name if self.name is not None else self.path

    def _same_file(self, fd: int) -> None:
        """Raise ReplayError unless `fd` and the path both still name the file read."""
        try:
            named = self.path.stat()
        except FileNotFoundError:
            raise ReplayError(
                f"{self.shown} disappeared during the replay: stopped, nothing rewritten"
            ) from None
        opened = os.fstat(fd)
        identities = {(s.st_dev, s.st_ino) for s in (named, opened)}
        if identities != {self.identity} or opened.st_size < self.size:
            raise ReplayError(
                f"{self.shown} was replaced or truncated during the replay: stopped, nothing "
                "rewritten (the records not settled are still in it or in its successor)"
            )

    def _tail(self, fd: int) -> None:
        """Take in what was appended since the file was read (kept, not replayed)."""
        self._same_file(fd)
        tail = _read_from(fd, self.size)
        if not tail:
            return
        number = (self.lines[-1].number + 1) if self.lines else 1
        for line in read_lines(tail, number):
            line.appended = True
            self.lines.append(line)
        self.size += len(tail)

    def kept_bytes(self) -> bytes:
        """What the file holds once the settled records (and blank lines) are taken out."""
        kept = [line.raw for line in self.lines if not line.settled and not line.blank]
        return b"".join(raw if raw.endswith(b"\n") else raw + b"\n" for raw in kept)

    def rewrite(self) -> None:
        """Replace the file, atomically, with the lines still unsettled.

        The file is locked (flock, exclusive) from the last read of its tail until the rename:
        the function's FileSink takes the lock for each append, so a dead letter written
        meanwhile waits, then goes to the new file, never to the one replaced. The copy keeps
        the file's mode and (where allowed) its owner.

        Raises ReplayError (the file left as it was) when it cannot be.
        """
        try:
            self._replace()
        except OSError as exc:  # a full disk, a read-only directory, an I/O error
            raise ReplayError(
                f"cannot rewrite {self.shown}: {exc.strerror or exc}: stopped, nothing "
                "rewritten (the records not settled are still in it)"
            ) from None

    def _replace(self) -> None:
        with _exclusively(self.path, self.shown) as fd:
            self._tail(fd)
            directory = self.path.parent
            tfd, temporary = tempfile.mkstemp(
                prefix=f".{self.path.name}.", suffix=".replay", dir=directory
            )
            try:
                with os.fdopen(tfd, "wb") as handle:
                    with contextlib.suppress(OSError):  # PermissionError unless root
                        os.fchown(handle.fileno(), *self.owner)
                    with contextlib.suppress(OSError):
                        os.fchmod(handle.fileno(), self.mode)
                    for _ in range(_TAIL_ROUNDS):
                        data = self.kept_bytes()
                        handle.seek(0)
                        handle.truncate()
                        handle.write(data)
                        handle.flush()
                        os.fsync(handle.fileno())
                        before = self.size
                        # A writer that takes no lock appended meanwhile: take it in, again.
                        self._tail(fd)
                        if self.size == before:
                            break
                    else:
                        raise ReplayError(
                            f"{self.shown} keeps growing while it is rewritten (is something "
                            "writing to it without the lock?): stopped before replacing it"
                        )
                    written = os.fstat(handle.fileno())
                Path(temporary).replace(self.path)  # atomic: os.replace
            except BaseException:
                with contextlib.suppress(OSError):
                    Path(temporary).unlink()
                raise
        _sync_directory(directory)
        self.identity = (written.st_dev, written.st_ino)
        self.size = len(data)
        self.lines = [line for line in self.lines if not line.settled and not line.blank]


@contextlib.contextmanager
def _exclusively(path: Path, shown: Path) -> Iterator[int]:
    """Open the file and hold an exclusive flock on it (where the system has `fcntl`)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise ReplayError(
            f"{shown} disappeared during the replay: stopped, nothing rewritten"
        ) from None
    except OSError as exc:
        raise ReplayError(f"cannot read {shown}: {exc.strerror or exc}") from None
    try:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not on POSIX: no lock
            pass
        else:
            # Appenders hold the lock for one write and its fsync: a short wait at most. A
            # file system without locks (EBADF, ENOLCK …): the tail read before the rename
            # still catches all but the last instant's appends, as it always did.
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)  # closing releases the lock


def _sync_directory(directory: Path) -> None:
    """Make the rename durable (POSIX; elsewhere there is nothing to open)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def directory_lock(path: Path) -> Iterator[None]:
    """Hold an advisory lock on the file's directory: one replay at a time there."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX: no lock, replay still works
        yield
        return
    directory = path.parent
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError as exc:
        raise ReplayError(f"cannot open {directory}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ReplayError(
                f"another replay is running in {directory}: wait for it to finish"
            ) from None
        except OSError as exc:
            raise ReplayError(f"cannot lock {directory}: {exc.strerror or exc}") from None
        yield
    finally:
        os.close(fd)  # closing releases the lock


class MemorySink:
    """Dead letters of a replay: kept in memory, never written (the file keeps the originals)."""

    description = "memory (replay keeps the original records in the file)"
    seconds_per_record = 1e-6

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    async def write(self, records: list[dict[str, Any]], *, deadline: float | None = None) -> None:
        """Keep the records."""
        self.records.extend(records)

    async def aclose(self) -> None:
        """Nothing to release."""


@dataclass(slots=True)
class Replay:
    """One replay of a dead-letter file: its chunks, their results, the file rewritten."""

    file: DeadLetterFile
    dry_run: bool = False
    chunk_size: int = DEFAULT_CHUNK
    #: The pair of each replayed record, first seen first, and its latest result.
    results: dict[Pair, Result] = field(default_factory=dict)
    chunks_done: int = 0
    chunks_total: int = 0
    rewrites: int = 0

    @property
    def pairs(self) -> list[Pair]:
        """Every pair to replay, once each, in the order the file first names them."""
        seen: dict[Pair, None] = {}
        for line in self.file.lines:
            if line.pair is not None and not line.appended:
                seen.setdefault(line.pair, None)
        return list(seen)

    def chunks(self) -> list[list[Pair]]:
        """The pairs cut into invocations of at most `chunk_size`."""
        pairs = self.pairs
        size = max(self.chunk_size, 1)
        return [pairs[start : start + size] for start in range(0, len(pairs), size)]

    def run(
        self,
        invoke: Callable[[Any], Any],
        *,
        after_chunk: Callable[[int], None] | None = None,
    ) -> None:
        """Send every chunk through `invoke(event) -> Invoked`; rewrite the file after each
        chunk that settled a record (never in a dry run)."""
        done = 0
        chunks = self.chunks()
        self.chunks_total = len(chunks)
        for chunk in chunks:
            event: dict[str, Any] = {"items": [pair.as_dict() for pair in chunk]}
            if self.dry_run:
                event["dry_run"] = True
            invoked = invoke(event)
            by_pair = {
                result.pair: result
                for report in invoked.reports
                for result in report.results
                if result.pair is not None
            }
            settled: set[Pair] = set()
            for pair in chunk:
                result = by_pair.get(pair) or Result(
                    Outcome.RETRIES_EXHAUSTED, pair=pair, detail="no result came back for it"
                )
                self.results[pair] = result
                if result.outcome in SETTLING and not self.dry_run:
                    settled.add(pair)
            if settled:
                for line in self.file.lines:
                    if line.pair in settled and not line.appended:
                        line.settled = True
                self.file.rewrite()
                self.rewrites += 1
            self.chunks_done += 1
            done += len(chunk)
            if after_chunk is not None:
                after_chunk(done)

    # --- what to report --------------------------------------------------------------------

    def unreadable(self) -> list[Line]:
        """Lines that are not records, kept as they are."""
        return [ln for ln in self.file.lines if ln.problem and not ln.record and not ln.blank]

    def without_pair(self) -> list[Line]:
        """Records that name no pair that can be sent, kept as they are."""
        return [ln for ln in self.file.lines if ln.record and ln.pair is None]

    def appended(self) -> list[Line]:
        """Lines appended while the replay ran, kept (not replayed this time)."""
        return [ln for ln in self.file.lines if ln.appended and not ln.blank]

    def records_of(self, pair: Pair) -> list[Line]:
        """The original records of one pair still in memory (settled ones included)."""
        return [ln for ln in self._all_lines if ln.pair == pair and not ln.appended]

    _all_lines: list[Line] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._all_lines = list(self.file.lines)


# --- the command --------------------------------------------------------------------------


def _now_text(result: Result, dry_run: bool) -> str:
    """What became of a pair, and so of its records."""
    outcome = result.outcome
    if dry_run:
        if outcome is Outcome.DRY_RUN:
            return "would be sent again"
        return one_line(f"would stay: {result.detail or outcome.value}", 90)
    if outcome in SETTLING:
        return "removed from the file"
    detail = result.detail or ""
    if result.status is not None and not detail.startswith(("HTTP", "the ")):
        detail = f"HTTP {result.status}" + (f": {detail}" if detail else "")
    return one_line(f"kept: {detail}" if detail else "kept", 90)


def report_lines(replay: Replay) -> list[str]:
    """The table of replayed pairs, then the lines kept without replay."""
    rows = []
    for pair, result in replay.results.items():
        records = replay.records_of(pair)
        reasons = sorted({ln.reason or "?" for ln in records})
        was = ",".join(reasons) + (f" x{len(records)}" if len(records) > 1 else "")
        rows.append(
            [pair.server_id, pair.key, was, result.outcome.value, _now_text(result, replay.dry_run)]
        )
    lines = render(["SERVER", "KEY", "WAS", "NOW", "IN THE FILE"], rows) if rows else []
    for kept in (replay.unreadable(), replay.without_pair()):
        for line in kept[:SHOWN]:
            lines.append(f"line {line.number}: {line.problem}: kept as it is")
        if len(kept) > SHOWN:
            lines.append(f"… and {len(kept) - SHOWN} more such line(s), kept as they are")
    return lines


def summary_line(replay: Replay, *, interrupted: bool = False) -> str:
    """One line: replayed, settled, still unsettled, kept unread, where the file stands."""
    replayed = len(replay.results)
    settled = sum(1 for r in replay.results.values() if r.outcome in SETTLING)
    records = sum(len(replay.records_of(p)) for p in replay.results)
    removed = sum(1 for ln in replay._all_lines if ln.settled)
    unread, no_pair = len(replay.unreadable()), len(replay.without_pair())
    appended = len(replay.appended())
    parts = [
        f"{unread} unreadable line(s)" if unread else "",
        f"{no_pair} record(s) without a pair" if no_pair else "",
        f"{appended} line(s) appended meanwhile" if appended else "",
    ]
    kept = ", ".join(part for part in parts if part)
    kept_extra = f"; kept as they are: {kept}" if kept else ""
    if replay.dry_run:
        return (
            f"dry run: {len(replay.pairs)} pair(s) in {records} record(s) would be replayed"
            f"{kept_extra}; nothing was sent and {replay.file.shown} is untouched"
        )
    remaining = sum(1 for ln in replay.file.lines if not ln.blank)
    text = (
        f"replayed {replayed} pair(s) in {records} record(s): {settled} settled "
        f"({removed} record(s) removed), {replayed - settled} still unsettled (kept)"
        f"{kept_extra}; {replay.file.shown} now holds {remaining} line(s)"
    )
    if interrupted:
        text += (
            f"; interrupted after {replay.chunks_done} of {replay.chunks_total} chunk(s): every "
            "record not yet settled is still in the file: run replay again to go on"
        )
    return text


def run(args: argparse.Namespace) -> int:
    """Run `ecs-metadata-janitor replay`; return the exit status (130 on Ctrl-C, any time)."""
    try:
        return _run(args)
    except KeyboardInterrupt:  # reading, starting or stopping the sandbox, or reporting
        common.error(
            f"interrupted: every record not yet settled is still in {args.file}: run replay "
            "again to go on"
        )
        return INTERRUPTED


def _run(args: argparse.Namespace) -> int:
    from handler.ecs.signing import CredentialsUnavailableError
    from handler.local import FakeContext

    if args.chunk_size < 1:
        common.error("--chunk-size must be at least 1")
        return 2
    if args.sandbox is None and not common.endpoint_configured():
        common.error(
            "no ECS_ENDPOINT (or HUAWEICLOUD_SDK_REGION) configured: set it, or pass --sandbox "
            "to replay against the local emulator"
        )
        return 2
    path: Path = args.file
    display = ProgressDisplay(resolve_mode(args.progress, sys.stderr), sys.stderr)
    with contextlib.ExitStack() as stack:
        try:
            if not args.dry_run:  # the directory the file is in, past any symlink
                stack.enter_context(directory_lock(resolve(path)))
            replay = Replay(DeadLetterFile.open(path), args.dry_run, args.chunk_size)
        except ReplayError as exc:
            common.error(str(exc))
            return 2
        if not replay.pairs:
            for line in report_lines(replay):
                common.out(line)
            kept = len(replay.unreadable()) + len(replay.without_pair())
            common.out(f"nothing to replay in {path}: no record names a pair; {kept} line(s) kept")
            return 1 if kept else 0
        try:
            runtime = common.start(
                stack,
                display,
                sandbox=bool(args.sandbox),
                seed=args.seed,
                log_file=args.log_file,
                sink=MemorySink(),
            )
        except common.CommandError as exc:
            common.error(str(exc))
            return 2
        display.expect(len(replay.pairs))
        interrupted = False
        try:
            with common.reporting(display):
                replay.run(
                    lambda event: runtime.run(event, FakeContext(None)),
                    after_chunk=display.reached,
                )
        except KeyboardInterrupt:
            interrupted = True
        except CredentialsUnavailableError as exc:
            common.error(str(exc))
            return 2
        except ReplayError as exc:
            common.error(str(exc))
            return 1
    for line in report_lines(replay):
        common.out(line)
    common.out(summary_line(replay, interrupted=interrupted))
    if interrupted:
        return INTERRUPTED
    if replay.dry_run:
        return 0
    unsettled = any(r.outcome not in SETTLING for r in replay.results.values())
    return 1 if unsettled or replay.unreadable() or replay.without_pair() else 0
