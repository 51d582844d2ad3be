"""E1: the aggregation of the hyper-parameter sweep's records, and the sentences E1 writes.

One papermill execution of notebooks/e1_hparam_sweep.ipynb is one point
(optimizer, lr, scheduler, seed). Its run is started with sweep=SWEPT, so all
points that differ only in those four share a run group; the notebook then
aggregates every point recorded so far in its group with the functions here:

    points(runs)        one row per point, diverged points kept (accuracy NaN)
    accuracy_grid(...)  optimiser x lr table of final test accuracy, one per scheduler
    top_settings(...)   the best k settings at the base seed
    seed_summary(...)   mean / std / min / max over seeds per setting
    seeded(...)         the settings recorded with several seeds (E1.4)
    best_setting(...)   the winner, preferring settings confirmed over more seeds
    *_sentence(...)     the prose of E1.1 to E1.4

Which points exist is the report plan's business (report/plan.yaml): a grid at
seed 0, then its best settings again with more seeds (the best_of_grid rule).
A point is "diverged" when its training loss became NaN/inf or rose above 10x its starting
value (lablib.core.train.DIVERGENCE_RULE; the loop stops there and evaluates nothing): it
stays in every table, shown as diverged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from lablib.core.errors import ConfigError
from lablib.core.optim import SCHEDULERS

SECTION = "e1_hparam_sweep"
SWEPT = ("optimizer", "lr", "scheduler", "seed")  # what varies inside one sweep group
SETTING = ["optimizer", "lr", "scheduler"]  # one cell of the grid; seeds repeat a setting
# E1's accuracy is the test set's at the end of training; seed statistics are of that accuracy.
HEADERS = {
    "final_accuracy": "final test top-1 (%)",
    "mean": "mean test top-1 (%)",
    "std": "std (%)",
    "min": "min (%)",
    "max": "max (%)",
    "spread": "spread, max - min (%)",
}
DECIMALS = dict.fromkeys(HEADERS, 2)


def check_scheduler(name: str) -> str:
    """The scheduler's name, checked before any data is loaded."""
    if name not in SCHEDULERS:
        raise ConfigError(f"scheduler={name!r} is unknown; valid: {', '.join(SCHEDULERS)}.")
    return name


def setting_label(row: Mapping[str, Any]) -> str:
    """ "adam, lr 0.01, onecycle": one setting, for tables and plot axes."""
    return f"{row['optimizer']}, lr {row['lr']:g}, {row['scheduler']}"


# --- records -> points -------------------------------------------------------------


def is_diverged(row: Mapping[str, Any]) -> bool:
    """Diverged: the run says so, or it has no finite final accuracy."""
    accuracy = row.get("final_accuracy")
    finite = accuracy is not None and not (isinstance(accuracy, float) and math.isnan(accuracy))
    return bool(row.get("diverged") is True or not finite)


def points(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per point (the latest run of each optimizer, lr, scheduler, seed).

    Columns: optimizer, lr, scheduler, seed, final_accuracy (NaN when
    diverged), diverged, run_id. `runs` is lablib.core.runs.load_runs(...) of one
    group; `scheduler` and `final_accuracy` are in each run's results.
    """
    columns = ["optimizer", "lr", "scheduler", "seed", "final_accuracy", "diverged", "setting", "run_id"]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    missing = [c for c in ("optimizer", "lr", "seed", "scheduler") if c not in runs]
    if missing:
        raise ConfigError(f"the runs have no {missing} column(s); they are not E1 sweep records.")
    table = runs.copy()
    if "final_accuracy" not in table:
        table["final_accuracy"] = np.nan
    if "diverged" not in table:
        table["diverged"] = False
    table["diverged"] = [is_diverged(row) for row in table.to_dict("records")]
    table["final_accuracy"] = table["final_accuracy"].astype(float).where(~table["diverged"])
    if "ended" in table:
        table = table.sort_values("ended")
    table = table.groupby(SETTING + ["seed"], dropna=False).tail(1)
    table["setting"] = [setting_label(row) for row in table.to_dict("records")]
    return table[columns].sort_values(SETTING + ["seed"]).reset_index(drop=True)


def base_seed(table: pd.DataFrame) -> int:
    """The seed of the grid: the smallest recorded (0 in the plan)."""
    return int(table["seed"].min()) if len(table) else 0


def accuracy_grid(table: pd.DataFrame, scheduler: str, seed: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(values, labels): optimiser rows x lr columns for one scheduler at one seed.

    values holds the final accuracy (NaN for diverged and for points not run),
    labels the text of each cell: "97.1", "diverged" or "not run".
    """
    seed = base_seed(table) if seed is None else seed
    part = table[(table["scheduler"] == scheduler) & (table["seed"] == seed)]
    optimizers = sorted(table["optimizer"].unique())
    lrs = sorted(table["lr"].unique())
    values = pd.DataFrame(np.nan, index=pd.Index(optimizers, name="optimizer"), columns=pd.Index(lrs, name="lr"))
    labels = pd.DataFrame("not run", index=values.index, columns=values.columns)
    for row in part.to_dict("records"):
        if row["diverged"]:
            labels.loc[row["optimizer"], row["lr"]] = "diverged"
        else:
            values.loc[row["optimizer"], row["lr"]] = row["final_accuracy"]
            labels.loc[row["optimizer"], row["lr"]] = f"{row['final_accuracy']:.1f}"
    return values, labels


def draw_heatmap(
    ax, values: pd.DataFrame, labels: pd.DataFrame, title: str = "", vmin: float = 0.0, vmax: float = 100.0
):
    """A seaborn heatmap of one accuracy grid; diverged / not-run cells keep their label.

    seaborn masks NaN cells and skips their annotations, so the labels of
    those cells are written on a hatched background here.
    """
    import seaborn as sns

    sns.heatmap(
        values.astype(float),
        annot=labels.where(values.notna(), ""),
        fmt="",
        vmin=vmin,
        vmax=vmax,
        cmap="viridis",
        cbar_kws={"label": "final test accuracy (%)"},
        ax=ax,
        xticklabels=[f"{lr:g}" for lr in values.columns],
    )
    ax.patch.set(hatch="//", edgecolor="0.75", facecolor="white")
    for i, optimizer in enumerate(values.index):
        for j, lr in enumerate(values.columns):
            if pd.isna(values.loc[optimizer, lr]):
                color = "tab:red" if labels.loc[optimizer, lr] == "diverged" else "0.4"
                ax.text(
                    j + 0.5,
                    i + 0.5,
                    labels.loc[optimizer, lr],
                    ha="center",
                    va="center",
                    fontsize=8,
                    color=color,
                    fontweight="bold",
                )
    ax.set(title=title, xlabel="learning rate", ylabel="optimiser")
    return ax


def top_settings(table: pd.DataFrame, k: int = 3, seed: int | None = None) -> pd.DataFrame:
    """The k best non-diverged settings by final accuracy at the base seed."""
    seed = base_seed(table) if seed is None else seed
    part = table[(table["seed"] == seed) & ~table["diverged"]]
    return (
        part.sort_values("final_accuracy", ascending=False, kind="stable")
        .head(k)[SETTING + ["final_accuracy"]]
        .reset_index(drop=True)
    )


def seed_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per setting: seeds run, seeds diverged, mean / std / min / max accuracy of the others."""
    if table.empty:
        return pd.DataFrame(columns=SETTING + ["seeds", "diverged", "mean", "std", "min", "max", "spread", "setting"])
    grouped = table.groupby(SETTING)
    summary = grouped.agg(
        seeds=("seed", "nunique"),
        diverged=("diverged", "sum"),
        mean=("final_accuracy", "mean"),
        std=("final_accuracy", "std"),
        min=("final_accuracy", "min"),
        max=("final_accuracy", "max"),
    ).reset_index()
    summary["diverged"] = summary["diverged"].astype(int)
    summary["spread"] = summary["max"] - summary["min"]
    summary["setting"] = [setting_label(row) for row in summary.to_dict("records")]
    return summary.sort_values(["seeds", "mean"], ascending=[False, False]).reset_index(drop=True)


def best_setting(table: pd.DataFrame) -> dict[str, Any] | None:
    """The best setting: among the settings run with the most seeds and never diverged, the
    highest mean final accuracy. Before any re-seeding that is simply the best point;
    afterwards the re-run best few compete on their means. None when every point diverged.
    """
    summary = seed_summary(table)
    stable = summary[(summary["diverged"] == 0) & summary["mean"].notna()]
    if stable.empty:
        return None
    most = stable[stable["seeds"] == stable["seeds"].max()]
    best = most.sort_values("mean", ascending=False, kind="stable").iloc[0]
    return {
        key: (best[key].item() if hasattr(best[key], "item") else best[key])
        for key in SETTING + ["seeds", "mean", "std", "min", "max"]
    }


def seeded(summary: pd.DataFrame) -> pd.DataFrame:
    """The settings of a seed_summary recorded with more than one seed, best mean first."""
    return (
        summary[summary["seeds"] > 1]
        .sort_values("mean", ascending=False, kind="stable", na_position="last")
        .reset_index(drop=True)
    )


# --- the sentences ----------------------------------------------------------------------


def point_sentence(config, scheduler: str, result, train_images: int, device: str) -> str:
    """E1.1: this point's setting and how it ended (diverged, or its final test accuracy).

    `result` is lablib.core.train's TrainResult (model, epochs, diverged, test).
    """
    last = result.epochs[-1]
    head = (
        f"**E1.1:** `{config.optimizer}`, lr {config.lr:g}, scheduler `{scheduler}`, seed {config.seed}, "
        f"{type(result.model).__name__} on {train_images:,} training images for {len(result.epochs)} epoch(s) "
        f"on `{device}`: "
    )
    if result.diverged or result.test is None:
        return head + f"**diverged** (training loss {last.loss} in epoch {len(result.epochs)}); no test accuracy."
    return head + (
        f"final test accuracy **{result.test.accuracy:.2f} %** on {result.test.images:,} test images "
        f"(last training loss {last.loss:.3f})."
    )


def sweep_sentence(table: pd.DataFrame) -> str:
    """E1.2: how many points and settings are recorded, with which seeds, and which diverged."""
    diverged = table[table["diverged"]]
    seeds = ", ".join(str(s) for s in sorted(table["seed"].unique()))
    text = (
        f"**E1.2:** {len(table)} point(s) recorded ({table['setting'].nunique()} setting(s), seeds {seeds}); "
        f"{len(diverged)} diverged"
    )
    if len(diverged):
        text += ": " + "; ".join(f"`{s}` seed {d}" for s, d in zip(diverged["setting"], diverged["seed"]))
    return text + "."


def best_sentence(best: Mapping[str, Any] | None) -> str:
    """E1.3: the best setting (best_setting's answer) and how well it is confirmed."""
    if best is None:
        return "**E1.3:** every point diverged; there is no best setting."
    text = (
        f"**E1.3:** the best setting is `{best['optimizer']}` with lr {best['lr']:g} and scheduler "
        f"`{best['scheduler']}`: final test accuracy {best['mean']:.2f} %"
    )
    if best["seeds"] > 1:
        return text + (
            f" (mean of {best['seeds']} seeds, std {best['std']:.2f}, range {best['min']:.2f} … {best['max']:.2f})."
        )
    return text + " (one seed so far; the plan re-runs the grid's best settings with more seeds)."


def seeds_sentence(rows: pd.DataFrame) -> str:
    """E1.4: mean ± std and spread over seeds of each setting re-run with several seeds."""
    if rows.empty:
        return (
            "**E1.4:** no setting has been re-run with several seeds yet; the plan re-runs the grid's best "
            "settings once the whole grid is recorded."
        )
    parts = []
    for row in rows.to_dict("records"):
        diverged = f", {row['diverged']} diverged" if row["diverged"] else ""
        parts.append(
            f"`{row['optimizer']}`, lr {row['lr']:g}, `{row['scheduler']}`: {row['mean']:.2f} ± {row['std']:.2f} % "
            f"over {row['seeds']} seeds (spread {row['spread']:.2f}{diverged})"
        )
    return f"**E1.4:** {len(rows)} of the grid's best setting(s) re-run with several seeds: " + "; ".join(parts) + "."
