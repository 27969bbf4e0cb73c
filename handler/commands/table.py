"""Plain text tables for the operator commands: aligned columns, one row per line; and the
escaping that keeps text from an answer from driving the operator's terminal."""

from __future__ import annotations

import re
from collections.abc import Sequence

#: A column is never padded wider than this; a longer cell overflows its column.
MAX_WIDTH = 40

#: What a terminal may act on rather than show: C0 controls (ESC, BEL, CR, …), DEL, C1
#: controls (CSI …), the line and paragraph separators, the bidi embeddings, overrides and
#: isolates (text shown in another order than it is), and lone surrogates (no UTF-8 for them).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
#: The same, but the newline: in JSON text (whose own escaping leaves these raw) and log lines.
_UNPRINTABLE_IN_JSON = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def printable(text: str) -> str:
    """Text for one terminal line: control characters escaped as \\xNN or \\uNNNN."""
    return _UNPRINTABLE.sub(_escape, text)


def printable_json(text: str) -> str:
    """JSON text (or JSON log lines) with its control characters, newlines aside, as \\uNNNN.

    JSON text holds them only inside strings, where the escape means the same character: the
    text still decodes to the same values.
    """
    return _UNPRINTABLE_IN_JSON.sub(_json_escape, text)


def render(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Return the table's lines: a header line, then one line per row, columns aligned."""
    table = [[printable(cell) for cell in row] for row in [headers, *rows]]
    widths = [len(h) for h in table[0]]
    for row in table[1:]:
        for index, cell in enumerate(row):
            widths[index] = min(max(widths[index], len(cell)), MAX_WIDTH)
    lines = []
    for row in table:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return lines


def one_line(text: str | None, limit: int = 100) -> str:
    """Text on one line, cut to `limit` characters with an ellipsis."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
