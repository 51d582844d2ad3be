"""E1's findings per factor: how much the optimiser, the learning rate and the scheduler each move the test
accuracy, the other two fixed.

    factor_table(points, "scheduler")            per value: settings, diverged, near chance, accuracy, the best
    factor_sentence(points, "scheduler", epochs) one sentence: the spread, the best and worst value, failures

`points` is lablib.sections.hparams.grid_points: one row per setting (optimizer, lr, scheduler, setting,
trained, test_accuracy, diverged). A value is compared with the settings that differ from it in that factor
alone (a pair, or a group, of settings with the same other two factors): like with like, even where some
settings of the grid diverged or did not train.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from lablib.core.progress import counted

FACTORS = ("optimizer", "lr", "scheduler")  # one setting of the grid; seeds repeat a setting
FACTOR_WORDS = {"optimizer": "optimiser", "lr": "learning rate", "scheduler": "scheduler"}
SMALL_EFFECT = 1.0  # points: a factor that moves the test accuracy less than this, the others fixed, hardly matters
LARGE_GAP = 5.0  # points: a value this far below the mean of the settings it differs from is "much lower"
NEAR_CHANCE = 5.0  # points above chance (100 / classes) up to which a training that did not diverge did not learn


def value_text(factor: str, value: Any) -> str:
    return f"lr {float(value):g}" if factor == "lr" else f"`{value}`"


def chance(classes: int) -> float:
    return 100.0 / max(classes, 1)


def _paired(points: pd.DataFrame, factor: str) -> pd.DataFrame:
    """The trained, not diverged settings with each one's difference from the mean of its group (the settings
    that differ from it only in `factor`), for the groups where at least two values trained."""
    others = [name for name in FACTORS if name != factor]
    healthy = points[points["trained"] & ~points["diverged"] & points["test_accuracy"].notna()].copy()
    if healthy.empty:
        return healthy.assign(advantage=pd.Series(dtype=float), group_spread=pd.Series(dtype=float))
    grouped = healthy.groupby(others)["test_accuracy"]
    healthy["group_size"] = grouped.transform("size")
    healthy["advantage"] = healthy["test_accuracy"] - grouped.transform("mean")
    healthy["group_spread"] = grouped.transform("max") - grouped.transform("min")
    return healthy[healthy["group_size"] >= 2]


def factor_table(points: pd.DataFrame, factor: str, classes: int = 10) -> pd.DataFrame:
    """Per value of `factor`: the settings that share it (trained, diverged, near chance) and their test accuracy
    (mean, min, max, the best of them), and its mean difference from the settings that differ only in `factor`."""
    paired = _paired(points, factor)
    rows = []
    for value in dict.fromkeys(points[factor]):
        share = points[(points[factor] == value) & points["trained"]]
        healthy = share[~share["diverged"] & share["test_accuracy"].notna()]
        best = healthy.loc[healthy["test_accuracy"].idxmax()] if not healthy.empty else None
        advantage = paired.loc[paired[factor] == value, "advantage"]
        rows.append(
            {
                FACTOR_WORDS[factor]: f"{value:g}" if factor == "lr" else value,
                "settings": len(share),
                "diverged": int(share["diverged"].sum()),
                "near chance": int((healthy["test_accuracy"] <= chance(classes) + NEAR_CHANCE).sum()),
                "mean test top-1 (%)": healthy["test_accuracy"].mean() if not healthy.empty else None,
                "min (%)": healthy["test_accuracy"].min() if not healthy.empty else None,
                "max (%)": healthy["test_accuracy"].max() if not healthy.empty else None,
                "best of them": best["setting"] if best is not None else "—",
                "mean difference from its group (%)": advantage.mean() if not advantage.empty else None,
            }
        )
    return pd.DataFrame(rows)


def factor_sentence(points: pd.DataFrame, factor: str, epochs: int, classes: int = 10) -> str:
    """One sentence per factor: how much it moves the test accuracy with the other two fixed, which value is best
    and worst on average against the settings it differs from, and where trainings diverged or did not learn."""
    words = FACTOR_WORDS[factor]
    others = " and ".join(FACTOR_WORDS[name] for name in FACTORS if name != factor)
    values = list(dict.fromkeys(points[factor]))
    lead = f"**{words[0].upper()}{words[1:]}** (test top-1 after {epochs} epoch{'s' if epochs != 1 else ''}): "
    paired = _paired(points, factor)
    if len(values) < 2:
        said = f"one value ({value_text(factor, values[0])}) was trained, so its effect is not measured here"
    elif paired.empty:
        said = f"no two {words} values trained without diverging for the same {others}, so nothing is compared"
    else:
        spreads = paired.groupby([n for n in FACTORS if n != factor])["group_spread"].first()
        largest, typical = float(spreads.max()), float(spreads.median())
        advantage = paired.groupby(factor)["advantage"].mean()
        best, worst = advantage.idxmax(), advantage.idxmin()
        if largest < SMALL_EFFECT:
            said = f"for a given {others} it changes the accuracy by at most {largest:.1f} points: it hardly matters"
        else:
            said = (
                f"for a given {others} it changes the accuracy by up to {largest:.1f} points "
                f"(median {typical:.1f} over {counted(len(spreads), 'pair')} of settings)"
            )
        said += (
            f"; {value_text(factor, best)} is best on average ({advantage[best]:+.1f} points against the mean of the "
            f"settings it differs from)"
        )
        if worst != best:
            gap = "much lower" if advantage[worst] <= -LARGE_GAP else "lowest"
            said += f", {value_text(factor, worst)} {gap} ({advantage[worst]:+.1f})"
    return lead + said + _failures(points, factor, classes) + "."


def _failures(points: pd.DataFrame, factor: str, classes: int) -> str:
    """'; lr 1 diverged in 4 of 5 settings; lr 0.0001 stayed near chance in 2 of 5' ('' when none)."""
    parts = []
    for value in dict.fromkeys(points[factor]):
        share = points[(points[factor] == value) & points["trained"]]
        diverged = int(share["diverged"].sum())
        near = int((share.loc[~share["diverged"], "test_accuracy"] <= chance(classes) + NEAR_CHANCE).sum())
        if diverged:
            parts.append(f"{value_text(factor, value)} diverged in {diverged} of {counted(len(share), 'setting')}")
        if near:
            parts.append(
                f"{value_text(factor, value)} stayed near chance (at most {chance(classes) + NEAR_CHANCE:.0f} %) "
                f"in {near} of {len(share)}"
            )
    return "; " + "; ".join(parts) if parts else ""
