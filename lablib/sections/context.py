"""This build's figures beside published ones: the context table of a section.

    context_table("c2_timing", tag="quick")  -> Context(table, like_for_like, note)

The published figures live in report/reference_figures.yaml (REFERENCE_FIGURES), one row per
figure: `section`, `measure`, `what`, `value`, `text`, `source`. `measure` names this build's
figure in the section's records:

    "epoch_s_mean"         the result of that name in the latest complete run
    "accuracy_mean:sgd"    the same in the latest run whose swept value (QUALIFIER: here the
                           optimizer) is "sgd", within the group of the latest run
    "cpu TorchScript mean_ms"  a result name may hold spaces (C10's latency results)

The comparison is like for like only when this build's run is the lab's full setting: a tag that
is not "quick", all 50,000 training images (limit_train 0) and at least the lab's epochs; otherwise
`like_for_like` is False and `note` says why. Published figures are context for a reader, never an
input to a computation.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from lablib.core.errors import LabError
from lablib.core.paths import REPO_ROOT
from lablib.core.runs import load_runs
from lablib.sections.tables import MISSING, format_value

REFERENCE_FIGURES = REPO_ROOT / "report" / "reference_figures.yaml"
QUALIFIER = {  # the swept setting a measure's ":value" selects
    "c3_workers": "workers",
    "c4_gpu_vs_cpu": "target_device",
    "c5_optimizers": "optimizer",
    "p25_compile": "compile_mode",
    "x_fast": "mode",
}
ACROSS_GROUPS = ("x_fast",)  # sections whose swept values differ in other settings too (so in their group)
LAB_EPOCHS = {"p25_compile": 10}  # the published runs' epochs where not the lab's 5
DEFAULT_EPOCHS = 5
QUICK_TAG = "quick"
COLUMNS = ["what", "this build", "published", "as published", "hardware", "source"]


@dataclass(frozen=True)
class Context:
    section: str
    table: pd.DataFrame  # COLUMNS, one row per published figure of the section (strings)
    like_for_like: bool  # this build ran the lab's full setting
    note: str  # one sentence: what the comparison is worth (empty when there are no published figures)
    values: dict[str, float | None]  # measure -> this build's figure (None: not in the records)


def reference_figures(path: Path | str | None = None) -> dict[str, Any]:
    """The YAML file's sources and figures, checked: every figure names a known source."""
    import yaml

    path = Path(path or REFERENCE_FIGURES)
    data = yaml.safe_load(path.read_text())
    sources, figures = data.get("sources", {}), data.get("figures", [])
    for figure in figures:
        missing = {"section", "measure", "what", "value", "source"} - set(figure)
        if missing:
            raise LabError(f"{path}: figure {figure} lacks {sorted(missing)}.")
        if figure["source"] not in sources:
            raise LabError(
                f"{path}: figure {figure['what']!r} names source {figure['source']!r}; known: {list(sources)}."
            )
    return {"sources": sources, "figures": figures}


def _number(value: Any) -> float | int | None:
    """A finite number (an integer stays an integer: counts show without decimals), else None."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _latest(runs: pd.DataFrame) -> pd.Series:
    return runs.sort_values("ended").iloc[-1]


def measure_value(section: str, measure: str, runs: pd.DataFrame) -> float | None:
    """This build's figure named `measure` (see the module docstring) in `section`'s complete runs."""
    if runs.empty:
        return None
    name, _, wanted = measure.partition(":")
    if wanted:
        column = QUALIFIER.get(section)
        if column is None:
            raise LabError(f"{section}: measure {measure!r} selects a swept value, but the section sweeps nothing.")
        points = runs  # interim: the presenting records
        chosen = points[points[column].astype(str) == wanted]
        return _number(chosen.iloc[-1].get(name)) if not chosen.empty and name in chosen else None
    if name not in runs:
        return None
    having = runs[runs[name].map(lambda v: _number(v) is not None)]
    return _number(_latest(having)[name]) if not having.empty else None


def comparability(section: str, runs: pd.DataFrame) -> tuple[bool, str]:
    """(like for like, why not): this build's latest run against the lab's full setting."""
    if runs.empty:
        return False, "this build has no complete record of this section yet"
    row = _latest(runs)
    reasons = []
    if str(row.get("tag") or "") == QUICK_TAG:
        reasons.append("the quick profile")
    limit = _number(row.get("limit_train")) or 0
    if limit > 0:
        reasons.append(f"{int(limit):,} of the 50,000 training images")
    epochs = _number(row.get("epochs_run")) or _number(row.get("epochs_done")) or _number(row.get("epochs"))
    needed = LAB_EPOCHS.get(section, DEFAULT_EPOCHS)
    if epochs is not None and epochs < needed:
        reasons.append(f"{int(epochs)} epoch(s) instead of {needed}")
    if not reasons:
        return True, ""
    return False, "; ".join(reasons)


def _shown(value: Any) -> str:
    """A figure as the table shows it: counts with separators, other numbers with 2 decimals (6 when tiny)."""
    number = _number(value)
    if number is None:
        return MISSING
    if isinstance(number, int):
        return format_value(number)
    return format_value(number, 2 if abs(number) >= 0.01 or number == 0 else 6)


def context_table(
    section: str,
    runs: pd.DataFrame | None = None,
    tag: str | None = None,
    root: Path | None = None,
    figures: dict[str, Any] | None = None,
) -> Context:
    """The section's published figures beside this build's (runs: load_runs(section, tag=tag, root=root))."""
    figures = figures or reference_figures()
    if runs is None:
        runs = load_runs(section, tag=tag, root=root)
    if "status" in runs:
        runs = runs[runs["status"] == "complete"]
    rows, values = [], {}
    for figure in (f for f in figures["figures"] if f["section"] == section):
        value = measure_value(section, str(figure["measure"]), runs)
        values[str(figure["measure"])] = value
        source = figures["sources"][figure["source"]]
        rows.append(
            {
                "what": figure["what"],
                "this build": _shown(value),
                "published": _shown(figure["value"]),
                "as published": str(figure.get("text", "")),
                "hardware": source["hardware"],
                "source": source["cite"],
            }
        )
    table = pd.DataFrame(rows, columns=COLUMNS)
    like, why = comparability(section, runs)
    device = (_latest(runs).get("device_name") or _latest(runs).get("resolved_device")) if not runs.empty else None
    if table.empty:
        note = ""
    elif like:
        note = (
            f"This build ran the lab's full setting on {device}; the published figures ran on the hardware named, "
            "so differences are the machines'."
        )
    else:
        where = f" on {device}" if device else ""
        note = f"Not like for like: this build's figures come from {why}{where}; the published ones from full runs."
    return Context(section, table, like, note, values)
