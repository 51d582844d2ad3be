"""This build's figures beside published ones, like for like: the context table of a section.

    context_table("c2_timing", record)   -> Context(table, like_for_like, note, values)

The published figures live in report/reference_figures.yaml, one row per figure with its quantity and
scope (see that file). This build's figure is computed for the SAME quantity and scope from what the
section shows: a per-epoch quantity (data, training, total, training per batch, training accuracy,
loss) from the epochs of the measurement the row selects among the section's (`select`, e.g.
{optimizer: sgd}), over the row's scope ("epoch 1", "mean of epochs 1–5", "mean of epochs 6–10"; "one
epoch (which not said)" shows this build's range over its epochs); a speed-up as the ratio of two such
means; an answer (the best worker count, a latency, a count) from the section's recorded results.
`check_figure` refuses a row whose words (`what`) do not name its quantity and scope, so a figure can
never stand beside a different one by a typing slip.

A row is like for like when this build ran the lab's full setting (not the quick profile, all 50,000
training images), its epochs cover the row's scope, and the row is of the lab's ResNet-18 (anchors of
other models are context only); the table's note says what is not, row by row. Published figures are
context for a reader, never an input to a computation.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from lablib.core.errors import LabError
from lablib.core.paths import REPO_ROOT
from lablib.sections.tables import MISSING, format_value

REFERENCE_FIGURES = REPO_ROOT / "report" / "reference_figures.yaml"
QUICK_TAG = "quick"
FULL_TRAIN_IMAGES = 50_000
COLUMNS = ["what", "this build", "published", "as published", "hardware", "source"]
NOT_COVERED = "†"  # marks a figure computed over fewer epochs than the row's scope
# quantity -> (the epoch column it comes from, the words `what` must contain); None: from the section's answers
EPOCH_QUANTITIES = {
    "data": ("data_s", "data-loading"),
    "training": ("train_s", "training time"),
    "total": ("total_s", "total time"),
    "training per batch": ("train_ms_per_batch", "per batch"),
    "training accuracy": ("accuracy", "top-1 training accuracy"),
    "loss": ("loss", "loss"),
}
ANSWER_QUANTITIES = {
    "workers": "workers",
    "test accuracy": "test top-1",
    "latency": "latency",
    "count": "parameters",
    "max abs difference": "max abs difference",
}
RATIO_QUANTITIES = {"speed-up": "speed-up"}
_EPOCH = re.compile(r"^epoch (\d+)$")
_MEAN = re.compile(r"^mean of epochs (\d+)[–-](\d+)$")
ANY_EPOCH = "one epoch (which not said)"
ANSWER = "answer"


@dataclass(frozen=True)
class Context:
    section: str
    table: pd.DataFrame  # COLUMNS, one row per published figure of the section (strings)
    like_for_like: bool  # every row compares like with like
    note: str  # what the comparison is worth (empty when there are no published figures)
    values: dict[str, float | None]  # a row's `what` -> this build's figure (None: not in the records)


def scope_epochs(scope: str) -> tuple[int, int] | None:
    """(first, last) epoch of a scope, 1-based; None for the answer and the unspecified epoch."""
    if (match := _EPOCH.match(scope)) is not None:
        return int(match.group(1)), int(match.group(1))
    if (match := _MEAN.match(scope)) is not None:
        return int(match.group(1)), int(match.group(2))
    return None


def check_figure(figure: Mapping[str, Any], where: str = "") -> None:
    """A LabError unless the row names a known quantity and scope and its words say both."""
    quantity, scope, what = figure.get("quantity"), str(figure.get("scope", "")), str(figure.get("what", ""))
    known = {**EPOCH_QUANTITIES, **ANSWER_QUANTITIES, **RATIO_QUANTITIES}
    if quantity not in known:
        raise LabError(f"{where}figure {what!r}: quantity {quantity!r} is not one of {', '.join(known)}.")
    if scope != ANSWER and scope != ANY_EPOCH and scope_epochs(scope) is None:
        raise LabError(
            f"{where}figure {what!r}: scope {scope!r} is not 'epoch N', 'mean of epochs A–B', '{ANY_EPOCH}' or "
            f"'{ANSWER}'."
        )
    if quantity in EPOCH_QUANTITIES or quantity in RATIO_QUANTITIES:
        if scope == ANSWER:
            raise LabError(f"{where}figure {what!r}: a per-epoch quantity needs an epoch scope, not '{ANSWER}'.")
        words = EPOCH_QUANTITIES[quantity][1] if quantity in EPOCH_QUANTITIES else RATIO_QUANTITIES[quantity]
        if words not in what or scope not in what:
            raise LabError(
                f"{where}figure {what!r}: its words must name its quantity ({words!r}) and scope ({scope!r}), so "
                "a reader compares like with like."
            )
    else:
        if scope != ANSWER or not figure.get("result"):
            raise LabError(f"{where}figure {what!r}: an answer quantity needs scope '{ANSWER}' and a `result` name.")
        if ANSWER_QUANTITIES[quantity] not in what:
            raise LabError(
                f"{where}figure {what!r}: its words must name its quantity ({ANSWER_QUANTITIES[quantity]!r})."
            )
    if quantity in RATIO_QUANTITIES and not (figure.get("select") and figure.get("over")):
        raise LabError(f"{where}figure {what!r}: a speed-up needs `select` and `over` (the two measurements).")


def reference_figures(path: Path | str | None = None) -> dict[str, Any]:
    """The YAML file's sources and figures, checked: every figure names a known source, quantity and scope."""
    import yaml

    path = Path(path or REFERENCE_FIGURES)
    data = yaml.safe_load(path.read_text())
    sources, figures = data.get("sources", {}), data.get("figures", [])
    for number, figure in enumerate(figures):
        missing = {"section", "quantity", "scope", "what", "value", "source"} - set(figure)
        if missing:
            raise LabError(f"{path}: figure {number + 1} ({figure.get('what')!r}) lacks {sorted(missing)}.")
        if figure["source"] not in sources:
            raise LabError(
                f"{path}: figure {figure['what']!r} names source {figure['source']!r}; known: {list(sources)}."
            )
        check_figure(figure, f"{path.name}: ")
    return {"sources": sources, "figures": figures}


def number(value: Any) -> float | int | None:
    """A finite number (an integer stays an integer: counts show without decimals), else None."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


# --- this build's figure -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shown:
    """A measurement the section shows: its settings and epochs."""

    settings: Mapping[str, Any]
    epochs: pd.DataFrame
    results: Mapping[str, Any]


def shown_measurements(uses: Sequence[Mapping[str, Any]]) -> list[Shown]:
    """The measurements a presenting record names (its `uses`), read from their folders."""
    found = []
    for use in uses:
        folder = Path(str(use.get("path", "")))
        try:
            meta = json.loads((folder / "run.json").read_text())
        except (OSError, json.JSONDecodeError):
            continue
        try:
            epochs = pd.DataFrame(json.loads((folder / "epochs.json").read_text()))
        except (OSError, json.JSONDecodeError):
            epochs = pd.DataFrame()
        try:
            results = json.loads((folder / "results.json").read_text())
        except (OSError, json.JSONDecodeError):
            results = {}
        found.append(Shown((meta.get("request") or {}).get("settings", meta.get("settings", {})), epochs, results))
    return found


def _matches(settings: Mapping[str, Any], select: Mapping[str, Any] | None) -> bool:
    return all(str(settings.get(k)).lower() == str(v).lower() for k, v in (select or {}).items())


def epoch_values(shown: Shown, quantity: str) -> pd.Series:
    frame = shown.epochs
    if frame.empty:
        return pd.Series(dtype=float)
    if quantity == "training per batch":
        return 1000 * frame["train_s"].astype(float) / frame["batches"].astype(float).clip(lower=1)
    return frame[EPOCH_QUANTITIES[quantity][0]].astype(float)


@dataclass(frozen=True)
class Figure:
    value: float | int | None
    text: str  # as the table shows it
    covered: bool  # this build's epochs cover the row's scope


def over_scope(values: pd.Series, scope: str) -> Figure:
    """`values` (one per epoch, epoch 1 first) over a scope: the epoch, the mean, or the range."""
    if values.empty:
        return Figure(None, MISSING, False)
    if scope == ANY_EPOCH:
        low, high = float(values.min()), float(values.max())
        text = _shown(low) if len(values) == 1 else f"{_shown(low)}–{_shown(high)}"
        return Figure(float(values.median()), text, True)
    first, last = scope_epochs(scope)
    chosen = values.iloc[first - 1 : last]
    if chosen.empty:  # this build has fewer epochs than the scope starts at: its last epochs stand in
        chosen = values.iloc[-(last - first + 1) :]
    covered = len(values) >= last
    value = float(chosen.mean())
    return Figure(value, _shown(value) + ("" if covered else NOT_COVERED), covered)


def this_build(figure: Mapping[str, Any], record: pd.Series, shown: Sequence[Shown]) -> Figure:
    """This build's figure for a row: the same quantity and scope, from the section's measurements or answers."""
    quantity, scope = figure["quantity"], str(figure["scope"])
    if quantity in ANSWER_QUANTITIES:
        value = number(record.get(figure["result"])) if record is not None else None
        return Figure(value, _shown(value), value is not None)
    candidates = [s for s in shown if _matches(s.settings, figure.get("select")) and not s.epochs.empty]
    if not candidates:
        return Figure(None, MISSING, False)
    if quantity in RATIO_QUANTITIES:
        others = [s for s in shown if _matches(s.settings, figure.get("over")) and not s.epochs.empty]
        if not others:
            return Figure(None, MISSING, False)
        top = over_scope(epoch_values(candidates[0], "total"), scope)
        bottom = over_scope(epoch_values(others[0], "total"), scope)
        if top.value is None or not bottom.value:
            return Figure(None, MISSING, False)
        ratio = top.value / bottom.value
        covered = top.covered and bottom.covered
        return Figure(ratio, _shown(ratio) + ("" if covered else NOT_COVERED), covered)
    return over_scope(epoch_values(candidates[0], quantity), scope)


def comparability(record: pd.Series | None, shown: Sequence[Shown]) -> list[str]:
    """Why this build is not the lab's full setting (empty when it is)."""
    if record is None:
        return ["this build has no complete record of this section yet"]
    reasons = []
    if str(record.get("tag") or "") == QUICK_TAG:
        reasons.append("the quick profile")
    images = [number(s.results.get("train_images")) for s in shown if s.results.get("train_images") is not None]
    if images and min(images) < FULL_TRAIN_IMAGES:
        reasons.append(f"{int(min(images)):,} of the {FULL_TRAIN_IMAGES:,} training images")
    return reasons


def _shown(value: Any) -> str:
    """A figure as the table shows it: counts with separators, other numbers with 2 decimals (6 when tiny)."""
    value = number(value)
    if value is None:
        return MISSING
    if isinstance(value, int):
        return format_value(value)
    return format_value(value, 2 if abs(value) >= 0.01 or value == 0 else 6)


def context_table(section: str, runs: pd.DataFrame | None = None, figures: dict[str, Any] | None = None) -> Context:
    """The section's published figures beside this build's (runs: its presenting record as a one-row frame)."""
    figures = figures or reference_figures()
    record = None
    if runs is not None and not runs.empty:
        complete = runs[runs["status"] == "complete"] if "status" in runs else runs
        record = complete.sort_values("ended").iloc[-1] if not complete.empty else None
    shown = shown_measurements(record.get("uses") or []) if record is not None else []
    rows, values, short = [], {}, []
    for figure in (f for f in figures["figures"] if f["section"] == section):
        found = this_build(figure, record, shown)
        values[str(figure["what"])] = found.value
        source = figures["sources"][figure["source"]]
        rows.append(
            {
                "what": figure["what"],
                "this build": found.text,
                "published": _shown(figure["value"]),
                "as published": str(figure.get("text", "")),
                "hardware": source["hardware"],
                "source": source["cite"],
            }
        )
        if figure.get("model"):
            short.append(f"“{figure['what']}” is another model ({figure['model']}): context, not a comparison")
        elif found.value is not None and not found.covered:
            short.append(f"{NOT_COVERED} this build's epochs do not reach the scope of “{figure['what']}”")
    table = pd.DataFrame(rows, columns=COLUMNS)
    reasons = comparability(record, shown)
    device = (record.get("device_name") or record.get("resolved_device")) if record is not None else None
    if table.empty:
        return Context(section, table, True, "", values)
    like = not reasons and not short
    if not reasons:
        note = (
            f"Each published figure stands beside this build's figure of the same quantity and scope; this build ran "
            f"the lab's full setting on {device}, the published ones on the hardware named."
        )
    else:
        where = f" on {device}" if device else ""
        note = (
            f"Each published figure stands beside this build's figure of the same quantity and scope, but not like for "
            f"like: this build's come from {'; '.join(reasons)}{where}; the published ones from full runs."
        )
    if short:
        note += " " + "; ".join(dict.fromkeys(short)) + "."
    return Context(section, table, like, note, values)
