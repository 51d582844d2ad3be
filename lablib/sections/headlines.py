"""Answers at a glance: one line per question part with its key figure, computed from the records.

    section_headlines("c3_workers", runs)     -> C3.1, C3.2, C3.3 from that section's presenting record(s)

`runs` is a frame of the section's presenting records (lablib.core.runs.load_runs rows: its settings
and the answers the notebook recorded with `section.finish(...)`). Each section's module registers
its builder (lablib.sections.registry.Presenter.headlines); the helpers here are what they share.
Parts carry the plan's numbering (C2.1, C3.2, Q4, XC-2026, P-2025-C8, E1, X-FAST); a report for
another year renumbers them from `Headline.section` and `Headline.part`. A section without a
complete record gives one Headline per part with `complete` False and a text that says so.

A timing headline carries its spread (± one standard deviation over the epochs after the first, or
over repeats), so a change between two builds is a change only when it is larger than that.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from lablib.sections.tables import format_value

NOT_RECORDED = "no complete record of this section yet"


@dataclass(frozen=True)
class Headline:
    section: str  # the plan's section name: "c3_workers"
    part: str  # the question part in the plan's numbering: "C3.2"
    text: str  # the answer in one line, its key figure included: "4 workers: 13.9 s per epoch"
    value: float | int | str | None  # the key figure (None when not recorded)
    unit: str  # the key figure's unit: "s per epoch", "%", "workers", "" for a count
    complete: bool = True  # False: no complete record answers this part
    run_id: str | None = None  # the record whose results give the figure
    spread: float | None = None  # the key figure's spread (± std over epochs or repeats); None: not a timing

    def line(self) -> str:
        """`C3.2 — 4 workers: 13.9 s per epoch`."""
        return f"{self.part} — {self.text}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def number(value: Any) -> float | None:
    """A finite float, else None."""
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def shown(value: Any, decimals: int = 2) -> str:
    """A figure as a headline writes it (— when missing)."""
    return format_value(number(value), decimals)


def latest(runs: pd.DataFrame) -> pd.Series:
    return runs.sort_values("ended").iloc[-1]


def having(runs: pd.DataFrame, column: str) -> pd.DataFrame:
    """The rows (runs, or the points a record lists) whose `column` holds a finite number."""
    if column not in runs:
        return runs.iloc[0:0]
    return runs[runs[column].map(lambda v: number(v) is not None)]


def answer(
    section: str,
    part: str,
    text: str,
    value: Any,
    unit: str,
    row: pd.Series | None,
    spread: float | None = None,
) -> Headline:
    return Headline(section, part, text, value, unit, True, None if row is None else str(row.get("run_id")), spread)


def missing(section: str, part: str, why: str = NOT_RECORDED) -> Headline:
    return Headline(section, part, why, None, "", False, None)


def section_headlines(section: str, runs: pd.DataFrame | None) -> list[Headline]:
    """The one-line answers of one section (one per question part) from its complete presenting records."""
    from lablib.sections.registry import presenter

    registered = presenter(section)
    parts = registered.parts
    if registered.headlines is None:
        return [missing(section, part, "this section has no one-line answer") for part in parts]
    if runs is None or runs.empty:
        return [missing(section, part) for part in parts]
    if "status" in runs:
        runs = runs[runs["status"] == "complete"]
        if runs.empty:
            return [missing(section, part) for part in parts]
    try:
        lines = registered.headlines(runs)
    except (KeyError, TypeError, ValueError) as error:  # records from an older notebook lack a result
        return [missing(section, part, f"the records lack a figure this answer needs ({error})") for part in parts]
    answered = {line.part for line in lines}
    return lines + [missing(section, part) for part in parts if part not in answered]


def headline_frame(lines) -> pd.DataFrame:
    """The headlines as a table (section, part, text, value, unit, complete, run_id, spread), for a report page."""
    return pd.DataFrame([line.to_dict() for line in lines], columns=list(Headline.__dataclass_fields__))
