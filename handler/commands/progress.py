"""Progress on stderr while `cleanup` or `replay` runs: pages listed, pairs settled.

On a terminal with tqdm installed (the `cli` extra) it draws bars; on a terminal without it, a
plain line at most once a second; elsewhere (a pipe, a file, CI) nothing, so the table on
stdout stays the only output. tqdm is imported here only, never on the function's path.
"""

from __future__ import annotations

import io
import sys
import threading
import time
from typing import Any, Literal, TextIO, cast

from handler.commands.table import printable_json
from handler.engine import Progress
from handler.outcomes import Result

Mode = Literal["bar", "lines", "none"]
#: Plain lines are written at most this often (seconds).
LINE_INTERVAL_S = 1.0


def _tqdm() -> Any:
    """The tqdm class, or None when the `cli` extra is not installed."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


def resolve_mode(requested: str, stream: TextIO) -> Mode:
    """`auto`: bars on a terminal with tqdm, lines on one without, none elsewhere."""
    if requested == "none":
        return "none"
    if requested == "lines":
        return "lines"
    has_tqdm = _tqdm() is not None
    if requested == "bar":
        return "bar" if has_tqdm else "lines"
    isatty = getattr(stream, "isatty", None)
    if not (callable(isatty) and isatty()):
        return "none"
    return "bar" if has_tqdm else "lines"


class ProgressDisplay:
    """Shows how a run goes; its `hooks()` are the engine's progress hooks (engine.PROGRESS).

    The hooks are called on the runtime's loop thread; `close` on the caller's, once the run
    is over. One lock keeps the two apart.
    """

    def __init__(self, mode: Mode, stream: TextIO | None = None, *, what: str = "pairs") -> None:
        self._tqdm: Any = _tqdm() if mode == "bar" else None
        self.mode: Mode = "lines" if mode == "bar" and self._tqdm is None else mode
        self.stream = stream or sys.stderr
        self.what = what
        self._lock = threading.Lock()
        self._list_bar: Any = None
        self._pair_bar: Any = None
        self.pages = 0
        self.servers = 0
        self.planned = 0
        self.settled = 0
        self._last_line = 0.0
        #: Set by `expect`: the total is known up front, the engine's counts do not add to it.
        self._fixed_total = False

    # --- the engine's hooks ----------------------------------------------------------------

    def hooks(self) -> Progress:
        """The hooks to set in engine.PROGRESS around `Runtime.run`."""
        return Progress(
            page_read=self.page_read, pairs_planned=self.pairs_planned, pair_settled=self.pair
        )

    def page_read(self, servers: int) -> None:
        """One page of the server listing was read."""
        with self._lock:
            self.pages += 1
            self.servers += servers
            if self.mode == "bar":
                if self._list_bar is None:
                    self._list_bar = self._bar("listing", None, " page")
                self._list_bar.set_postfix_str(f"{self.servers} servers", refresh=False)
                self._list_bar.update(1)
            elif self.mode == "lines":
                self._line(f"listed {self.pages} page(s), {self.servers} server(s)")

    def pairs_planned(self, count: int) -> None:
        """This many pairs are about to be deleted (once per invocation)."""
        with self._lock:
            if self._fixed_total:
                return
            self.planned += count
            if self.mode == "bar":
                self._close_list_bar()
                if self._pair_bar is None:
                    self._pair_bar = self._bar("deleting", self.planned or None, " pair")
                elif self.planned:
                    self._pair_bar.total = self.planned
                    self._pair_bar.refresh()

    def pair(self, _result: Result) -> None:
        """One pair's delete finished."""
        with self._lock:
            self.settled += 1
            if self._pair_bar is not None:
                self._pair_bar.update(1)
            elif self.mode == "lines":
                total = f"/{self.planned}" if self.planned else ""
                self._line(f"settled {self.settled}{total} {self.what}")

    # --- for the commands ------------------------------------------------------------------

    def expect(self, total: int) -> None:
        """Set the total of the pairs bar up front (replay knows it before it starts)."""
        with self._lock:
            self.planned = total
            self._fixed_total = True
            if self.mode == "bar" and self._pair_bar is None:
                self._pair_bar = self._bar("replaying", total, " pair")

    def reached(self, done: int) -> None:
        """Move the pairs count to `done` (pairs decided without a DELETE count too)."""
        with self._lock:
            if done <= self.settled:
                return
            step, self.settled = done - self.settled, done
            if self._pair_bar is not None:
                self._pair_bar.update(step)
            elif self.mode == "lines":
                self._line(f"settled {self.settled}/{self.planned} {self.what}", force=True)

    def log_stream(self) -> TextIO:
        """A stream for log lines that does not tear the bars (written above them)."""
        return cast("TextIO", _AboveBars(self))

    def close(self) -> None:
        """Remove the bars, or write the last plain line."""
        with self._lock:
            self._close_list_bar()
            if self._pair_bar is not None:
                self._pair_bar.close()
                self._pair_bar = None
            elif self.mode == "lines" and (self.pages or self.settled):
                parts = [f"listed {self.pages} page(s)"] if self.pages else []
                if self.planned or self.settled:
                    total = f"/{self.planned}" if self.planned else ""
                    parts.append(f"settled {self.settled}{total} {self.what}")
                self._line(", ".join(parts), force=True)

    # --- inside ----------------------------------------------------------------------------

    def _bar(self, desc: str, total: int | None, unit: str) -> Any:
        return self._tqdm(
            desc=desc, total=total, unit=unit, file=self.stream, leave=False, dynamic_ncols=True
        )

    def _close_list_bar(self) -> None:
        if self._list_bar is not None:
            self._list_bar.close()
            self._list_bar = None

    def _line(self, text: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_line < LINE_INTERVAL_S:
            return
        self._last_line = now
        print(f"… {text}", file=self.stream, flush=True)

    def write_above(self, text: str) -> None:
        """Write text (whole lines) without tearing the bars, its control characters escaped."""
        text = printable_json(text)  # JSON log lines keep C1 controls and DEL raw
        tqdm = self._tqdm
        if tqdm is None or (self._list_bar is None and self._pair_bar is None):
            self.stream.write(text)
            self.stream.flush()
            return
        with tqdm.external_write_mode(file=self.stream):
            self.stream.write(text)
            self.stream.flush()


class _AboveBars(io.TextIOBase):
    """A text stream writing through ProgressDisplay.write_above."""

    def __init__(self, display: ProgressDisplay) -> None:
        self._display = display

    def writable(self) -> bool:
        """Always writable."""
        return True

    def write(self, text: str) -> int:
        """Write the text above the bars."""
        self._display.write_above(text)
        return len(text)
