"""Progress: one line per job, `[7/31] measure c3_workers: training sgd lr 0.1, 8 workers … 41 s, ETA 6 min`.

A job may do several things (a measuring job measures each of its requests): `start(name, count)`
advances the number by its count, so [k/n] counts measurements (or notebooks), not jobs. A walking
job (lablib.report.measure: it plans its next measurements itself) is announced with `begin_walk`,
then each of its measurements is a whole line of its own as it ends (`step`), and `end_walk` sums up.

The ETA is the estimate of what is left, scaled by how the points so far
compared with their estimates, divided by the jobs that run at once. With one
job at a time the line is begun when the point starts and ended when it
finishes; with several (or Slurm) it is written whole when the point finishes.
"""

from __future__ import annotations

from collections.abc import Callable

from lablib.core.progress import counted
from lablib.report.job import Outcome
from lablib.report.stitch import format_duration


class Progress:
    def __init__(self, out: Callable[..., None], total: int, remaining_s: float, jobs: int = 1, announce: bool = True):
        self.out = out
        self.total, self.remaining_s, self.jobs = total, remaining_s, max(1, jobs)
        self.announce = announce and self.jobs == 1  # begin each line when its point starts
        self.number = 0
        self.spent_s = 0.0
        self.predicted_s = 0.0
        self._numbers: dict[str, int] = {}

    def start(self, name: str, count: int = 1) -> None:
        self.number += count
        self.total = max(self.total, self.number)
        self._numbers[name] = self.number
        if self.announce:
            self.out(f"[{self.number}/{self.total}] {name} …", end="", flush=True)

    def finish(self, name: str, outcome: Outcome, predicted_s: float, log: str = "", note: str = "") -> None:
        """End the point's line; `note` follows a line written whole, e.g. " (in parallel)"."""
        failed = "" if outcome.ok else f" {outcome.status.upper()}" + (f" (log: {log})" if log else "")
        line = f" {format_duration(outcome.seconds)}{failed}{self._eta(outcome.seconds, predicted_s)}"
        if self.announce:
            self.out(line, flush=True)
        else:
            self.out(f"[{self._numbers.get(name, self.number)}/{self.total}] {name} …{line}{note}", flush=True)

    def _eta(self, seconds: float, predicted_s: float) -> str:
        """Count a finished thing's seconds against its estimate; the ETA of what is left."""
        self.spent_s += seconds
        self.predicted_s += predicted_s
        self.remaining_s = max(0.0, self.remaining_s - predicted_s)
        speed = self.spent_s / self.predicted_s if self.predicted_s else 1.0
        return f", ETA {format_duration(self.remaining_s * speed / self.jobs)}" if self.remaining_s > 0 else ""

    def begin_walk(self, name: str, log: str) -> None:
        """A walking job starts: one whole line; its measurements follow as they end."""
        self.out(f"{name}: one job measures the walk, planning each next measurement from the last (log: {log})")

    def step(self, name: str, seconds: float, predicted_s: float, failed: str = "") -> None:
        """One measurement of a walking job ended: a whole line, counted in [k/n]."""
        self.number += 1
        self.total = max(self.total, self.number)
        eta = self._eta(seconds, predicted_s)
        failed = f" {failed}" if failed else ""
        self.out(f"[{self.number}/{self.total}] {name} … {format_duration(seconds)}{failed}{eta}")

    def end_walk(self, name: str, outcome: Outcome, count: int, log: str = "") -> None:
        """The walking job ended after `count` measurements: one whole line, its status when not complete."""
        failed = "" if outcome.ok else f" {outcome.status.upper()} (log: {log})"
        took = format_duration(outcome.seconds)
        self.out(f"{name}: the walk's job ended after {counted(count, 'measurement')}, {took}{failed}")
