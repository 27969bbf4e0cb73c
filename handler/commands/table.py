"""Plain text tables for the operator commands: aligned columns, one row per line."""

from __future__ import annotations

from collections.abc import Sequence

#: A column is never padded wider than this; a longer cell overflows its column.
MAX_WIDTH = 40


def render(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Return the table's lines: a header line, then one line per row, columns aligned."""
    widths = [len(h) for h in headers]
    for row in rows:
        for index, cell in enumerate(row):
            widths[index] = min(max(widths[index], len(cell)), MAX_WIDTH)
    lines = []
    for row in [headers, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return lines


def one_line(text: str | None, limit: int = 100) -> str:
    """Text on one line, cut to `limit` characters with an ellipsis."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
