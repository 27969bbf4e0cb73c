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
    r"(^|[_-])(sk|ak|secret|secret_key|access_key|token|password|authorization|signature)$",
    re.IGNORECASE,
)


def is_secret_field(key: str) -> bool:
    """True for a field name that holds a credential whatever its value (`sk`, `x-auth-token`)."""
    return _SECRET_FIELD.search(key) is not None


def _forms(values: Iterable[str | None]) -> frozenset[str]:
    """Each secret as it is, and as it appears inside a JSON string, escaped to ASCII or not
    (a rendered line, or a server echoing a request body back)."""
    forms: set[str] = set()
    for value in values:
        if value and len(value) >= MIN_SECRET:
            forms.update(
                {value, json.dumps(value, ensure_ascii=False)[1:-1], json.dumps(value)[1:-1]}
            )
    return frozenset(forms)


class Redactor:
    """An immutable set of secrets; replaces each, and any 16+ character run of one, with ***.

    A run is found without scanning every offset: every 16-character run of a secret contains
    an 8-character window of the secret that starts at a multiple of 8 in the text, so the text
    is looked up at every 8th offset and each hit is grown to its full length.
    """

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self.secrets = _forms(secrets)
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
        extra = [v for v in values if v]
        if not extra:
            return self
        return Redactor([*self.secrets, *extra])

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


_EMPTY = Redactor()
#: The current invocation's redactor: the process's secrets plus the invocation's own.
_CURRENT: contextvars.ContextVar[Redactor | None] = contextvars.ContextVar("redactor", default=None)
#: The process's redactor: the configured secrets (set by each runtime built, read by the logs).
_process = [_EMPTY]


def set_process_secrets(values: Iterable[str | None]) -> Redactor:
    """Add secrets known for the life of the process (configuration); return the redactor."""
    _process[0] = _process[0].with_secrets(values)
    return _process[0]


def reset() -> None:
    """Forget every secret (tests)."""
    _process[0] = _EMPTY


def current() -> Redactor:
    """The redactor in force here: the invocation's if one is running, else the process's."""
    redactor = _CURRENT.get()
    return redactor if redactor is not None else _process[0]


@contextmanager
def use(redactor: Redactor) -> Iterator[Redactor]:
    """Make `redactor` the current one in this context (one invocation's task)."""
    token = _CURRENT.set(redactor)
    try:
        yield redactor
    finally:
        _CURRENT.reset(token)
