"""Progress that reads well in a terminal and in a log file.

In a terminal: a tqdm bar. When the output is not a terminal (Slurm's logs, the GPU
check's logs, CI), a bar's carriage-return updates pile up into one huge line, so
`progress_bar` gives a LineProgress instead: the same interface (update, set_description,
set_postfix, close, a context manager), printing one plain line when a stage ends
(set_description starts the next epoch, close ends the last) and at most one line
every `interval_s` seconds between them.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

LINE_INTERVAL_S = 30.0  # at most one progress line per this many seconds inside a stage, in a log file


def counted(number: Any, noun: str) -> str:
    """A count and its noun, singular for exactly one: '1 epoch', '5 epochs', '0 workers', '1,024 images'."""
    whole = int(number)
    return f"{whole:,} {noun}" if whole == 1 else f"{whole:,} {noun}s"


class LineProgress:
    """A progress counter that prints whole lines: one per stage, and one per interval inside a long one."""

    def __init__(
        self,
        total: int | None,
        desc: str = "",
        unit: str = "it",
        stream: TextIO | None = None,
        interval_s: float = LINE_INTERVAL_S,
        clock=time.monotonic,
    ):
        self.total, self.desc, self.unit = total, desc, unit
        self.stream = stream or sys.stderr
        self.interval_s, self.clock = interval_s, clock
        self.count = 0
        self.postfix: dict[str, Any] = {}
        self._stage_start = self._last_line = clock()
        self._stage_count = 0
        self._closed = False

    def _line(self, note: str = "") -> None:
        total = f"/{self.total}" if self.total else ""
        extra = ", ".join(f"{k}={v}" for k, v in self.postfix.items())
        elapsed = self.clock() - self._stage_start
        text = f"{self.desc}: {self.count}{total} {self.unit} ({elapsed:.1f} s)"
        print(text + (f" {extra}" if extra else "") + (f" {note}" if note else ""), file=self.stream, flush=True)
        self._last_line = self.clock()

    def update(self, count: int = 1) -> None:
        self.count += count
        self._stage_count += count
        if self.clock() - self._last_line >= self.interval_s:
            self._line()

    def set_description(self, desc: str) -> None:
        if self._stage_count:
            self._line("done")  # the stage that just ended: one line with its figures
        self.desc, self._stage_count, self._stage_start = desc, 0, self.clock()

    def set_postfix(self, **values: Any) -> None:
        self.postfix = values

    def close(self) -> None:
        if not self._closed and self._stage_count:
            self._line("done")
        self._closed = True

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Silent:
    """No progress at all (progress=False): the same interface, nothing printed."""

    def update(self, count: int = 1) -> None:
        pass

    def set_description(self, desc: str) -> None:
        pass

    def set_postfix(self, **values: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc) -> None:
        pass


def progress_bar(
    total: int | None, desc: str = "", unit: str = "it", enabled: bool = True, stream: TextIO | None = None
):
    """A tqdm bar on a terminal, a LineProgress in a log file, nothing when not enabled."""
    if not enabled:
        return _Silent()
    stream = stream or sys.stderr
    if getattr(stream, "isatty", lambda: False)():
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit, file=stream)
    return LineProgress(total, desc, unit, stream)
