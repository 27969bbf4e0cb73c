"""Secret redaction for every outward text: whole secrets, and any long run of one, become ***."""

from __future__ import annotations

import contextvars
import json
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

REDACTED = "***"
#: A run of this many characters of a secret is treated as the secret (a truncated echo).
FRAGMENT = 16
#: Secrets shorter than this are not looked for in text (too many false matches).
MIN_SECRET = 4
_WINDOW = FRAGMENT // 2
#: At most this many places in the secrets are remembered for one 8-character window.
_MAX_HITS = 8

_SECRET_FIELD = re.compile(
    r"(^|[_-])(sk|ak|secret|secret_key|access_key|token|password|authorization|signature"
    r"|cookie|api[_-]?key|apikey)$",
    re.IGNORECASE,
)


def is_secret_field(key: str) -> bool:
    """True for a field name that holds a credential whatever its value (`sk`, `x-auth-token`,
    `cookie`, `x-api-key`)."""
    return _SECRET_FIELD.search(key) is not None


def _forms(values: Iterable[str | None]) -> frozenset[str]:
    """Each secret as it is, and as a server or a log may echo it: inside a JSON string
    (escaped to ASCII or not, `/` as `\\/` or not: PHP, many Java and .NET gateways) and as a
    Python repr (jsonschema's messages, Keystone's validation errors), and those escaped again
    inside a JSON string (a rendered line)."""
    forms: set[str] = set()
    for value in values:
        if value and len(value) >= MIN_SECRET:
            for form in {value, repr(value)[1:-1]}:
                ascii_ = json.dumps(form)[1:-1]
                unicode_ = json.dumps(form, ensure_ascii=False)[1:-1]
                forms.update(
                    {
                        form,
                        ascii_,
                        unicode_,
                        ascii_.replace("/", "\\/"),
                        unicode_.replace("/", "\\/"),
                    }
                )
    return frozenset(forms)


class Redactor:
    """An immutable set of secrets; replaces each, and any 16+ character run of one, with ***.

    A run is found without scanning every offset: every 16-character run of a secret contains
    an 8-character window of the secret that starts at a multiple of 8 in the text, so the text
    is looked up at every 8th offset and each hit is grown to its full length.
    """

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        #: The secrets as given (their forms are derived from these, never from forms).
        self._raw = tuple(dict.fromkeys(value for value in secrets if value))
        self.secrets = _forms(self._raw)
        #: The process redactor this one adds to (itself for a process redactor; None for a
        #: standalone one), and the secrets it adds: see `rebased`.
        self._origin: Redactor | None = None
        self._extra: tuple[str, ...] = ()
        #: Process redactors of one lineage only grow (or rotate a token): `reset` starts anew.
        self._lineage: object = None
        self._rebased: dict[tuple[str, ...], Redactor] = {}
        self._whole = tuple(sorted(self.secrets, key=len, reverse=True))
        self._longest = len(self._whole[0]) if self._whole else 0
        self._windows: dict[str, list[tuple[str, int]]] = {}
        for secret in self._whole:
            if len(secret) < FRAGMENT:
                continue
            for offset in range(len(secret) - _WINDOW + 1):
                hits = self._windows.setdefault(secret[offset : offset + _WINDOW], [])
                if len(hits) < _MAX_HITS:  # a repetitive secret must not make every lookup dear
                    hits.append((secret, offset))

    def __bool__(self) -> bool:
        return bool(self._whole)

    def with_secrets(self, values: Iterable[str | None]) -> Redactor:
        """Return a redactor that also knows these secrets (this one is left as it is)."""
        extra = tuple(v for v in values if v)
        if not extra:
            return self
        derived = Redactor([*self._raw, *extra])
        derived._origin = self._origin
        derived._extra = (*self._extra, *extra)
        return derived

    def text(self, value: str) -> str:
        """Return the text with every known secret, and every 16+ character run of one, as ***.

        Every occurrence is found in the original text first and the spans merged before any is
        replaced, so two secrets that overlap are both hidden whole; the work grows with the
        length of the text, not with the square of a matched run.
        """
        if not self._whole:
            return value
        spans: list[tuple[int, int]] = []
        for secret in self._whole:
            start = value.find(secret)
            while start != -1:
                spans.append((start, start + len(secret)))
                start = value.find(secret, start + 1)
        if self._windows and len(value) >= FRAGMENT:
            spans += self._fragments(value)
        if not spans:
            return value
        out: list[str] = []
        cursor = 0
        for left, right in _merge(spans):
            out.append(value[cursor:left])
            out.append(REDACTED)
            cursor = right
        out.append(value[cursor:])
        return "".join(out)

    def _fragments(self, value: str) -> list[tuple[int, int]]:
        """Spans of 16+ character runs of a secret, each window grown once to its full run."""
        spans: list[tuple[int, int]] = []
        windows = self._windows
        covered = 0  # windows inside a run already found are not grown again
        for start in range(0, len(value) - _WINDOW + 1, _WINDOW):
            if start + _WINDOW <= covered:
                continue
            hits = windows.get(value[start : start + _WINDOW])
            if hits:
                for secret, offset in hits:
                    left, right = _grow(value, start, secret, offset)
                    if right - left >= FRAGMENT:
                        spans.append((left, right))
                        covered = max(covered, right)
        return spans

    def cut(self, value: str, limit: int, *, note: bool = True) -> str:
        """Redact, then cut to `limit` characters (a secret is never cut before it is found).

        A huge text is first cut to `limit` plus the longest secret: a secret that starts
        inside the kept part is still whole there, so nothing kept escapes redaction, and a
        64 MiB body is not scanned to keep 512 characters of it.
        """
        window = limit + self._longest + FRAGMENT
        dropped = max(len(value) - window, 0)
        value = self.text(value[:window] if dropped else value)
        if len(value) <= limit and not dropped:
            return value
        kept = value[:limit]
        rest = len(value) - len(kept) + dropped
        return kept + (f"…[truncated {rest} chars]" if note else "")

    def value(self, value: Any, key: str | None = None) -> Any:
        """Return a JSON-like value with secrets and secret-named fields replaced by ***."""
        if key is not None and value is not None and value != "" and is_secret_field(key):
            return REDACTED
        kind = type(value)
        if kind is str:
            return self.text(value)
        if value is None or kind is int or kind is bool or kind is float:
            return value
        if isinstance(value, dict):
            return {k: self.value(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, int | float):
            return value
        return self.text(str(value))


def _grow(value: str, start: int, secret: str, offset: int) -> tuple[int, int]:
    """Grow a window match at value[start:] == secret[offset:] to the whole common run."""
    left, s_left = start, offset
    while left > 0 and s_left > 0 and value[left - 1] == secret[s_left - 1]:
        left -= 1
        s_left -= 1
    right, s_right = start + _WINDOW, offset + _WINDOW
    while right < len(value) and s_right < len(secret) and value[right] == secret[s_right]:
        right += 1
        s_right += 1
    return left, right


def _merge(spans: list[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    spans.sort()
    left, right = spans[0]
    for a, b in spans[1:]:
        if a <= right:
            right = max(right, b)
        else:
            yield left, right
            left, right = a, b
    yield left, right


def _process_redactor(secrets: Iterable[str | None], lineage: object) -> Redactor:
    redactor = Redactor(secrets)
    redactor._origin = redactor
    redactor._lineage = lineage
    return redactor


#: The current invocation's redactor: the process's secrets plus the invocation's own.
_CURRENT: contextvars.ContextVar[Redactor | None] = contextvars.ContextVar("redactor", default=None)
#: The process's redactor: the configured secrets (set by each runtime built, read by the logs)
#: and the tokens the function was issued (they rotate).
_process = [_process_redactor((), object())]


def set_process_secrets(values: Iterable[str | None]) -> Redactor:
    """Add secrets known for the life of the process (configuration); return the redactor."""
    process = _process[0]
    extra = [v for v in values if v and v not in process._raw]
    if extra:
        _process[0] = _process_redactor([*process._raw, *extra], process._lineage)
    return _process[0]


def rotate_process_secrets(added: Iterable[str | None], dropped: Iterable[str] = ()) -> Redactor:
    """Add secrets that rotate (a token just issued) and forget older ones (`dropped`).

    Invocations already running see the change too (see `current`): a token issued in the
    middle of an invocation is redacted in its answer, dead letters and logs.
    """
    process = _process[0]
    gone = set(dropped) - {v for v in added if v}
    kept = [v for v in process._raw if v not in gone]
    fresh = [v for v in added if v and v not in kept]
    if fresh or len(kept) != len(process._raw):
        _process[0] = _process_redactor([*kept, *fresh], process._lineage)
    return _process[0]


def reset() -> None:
    """Forget every secret (tests)."""
    _process[0] = _process_redactor((), object())


def rebased(redactor: Redactor) -> Redactor:
    """`redactor` with the process's secrets as they are now, when it was derived from an older
    process redactor (a token was issued since): the same secrets of its own on top."""
    process = _process[0]
    origin = redactor._origin
    if origin is None or origin is process or origin._lineage is not process._lineage:
        return redactor
    extra = redactor._extra
    known = process._rebased.get(extra)
    if known is None:
        known = process.with_secrets(extra)
        if len(process._rebased) < 64:  # a few invocations' credentials at a time
            process._rebased[extra] = known
    return known


def current() -> Redactor:
    """The redactor in force here: the invocation's if one is running, else the process's."""
    redactor = _CURRENT.get()
    process = _process[0]
    if redactor is None:
        return process
    if redactor._origin is process or redactor._origin is None:
        return redactor
    fresh = rebased(redactor)
    if fresh is not redactor:
        _CURRENT.set(fresh)  # once per context: `use` restores what it replaced at its end
    return fresh


@contextmanager
def use(redactor: Redactor) -> Iterator[Redactor]:
    """Make `redactor` the current one in this context (one invocation's task)."""
    token = _CURRENT.set(redactor)
    try:
        yield redactor
    finally:
        _CURRENT.reset(token)
