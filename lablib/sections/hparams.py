"""E1: the hyper-parameter sweep's points, and the aggregation of their records.

One papermill execution of notebooks/e1_hparam_sweep.ipynb is one point
(optimizer, lr, scheduler, seed). Its run is started with sweep=SWEPT, so all
points that differ only in those four share a run group; the notebook then
aggregates every point recorded so far in its group with the functions here:

    points(runs)        one row per point, diverged points kept (accuracy NaN)
    accuracy_grid(...)  optimiser x lr table of final test accuracy, one per scheduler
    top_settings(...)   the best k settings at the base seed (the ones re-run with more seeds)
    seed_summary(...)   mean / std / min / max over seeds per setting
    best_setting(...)   the winner, preferring settings confirmed over more seeds
    grid(profile, records) -> the notebook parameters of every point of a profile

A point is "diverged" when its training loss became NaN/inf (lablib.core.train stops
there and evaluates nothing): it stays in every table, shown as diverged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from lablib.core.errors import ConfigError
from lablib.core.optim import SCHEDULERS

SECTION = "e1_hparam_sweep"
SWEPT = ("optimizer", "lr", "scheduler", "seed")  # what varies inside one sweep group
SETTING = ["optimizer", "lr", "scheduler"]  # one cell of the grid; seeds repeat a setting
DEFAULT_MNIST = "data/mnist-png.zip"  # the real digits as train/<class>/*.png, test/<class>/*.png

# The profiles. "quick": a coarse grid on MNIST that finishes in minutes on a CPU.
# "full": the lab's grid on MNIST (small CNN) and CIFAR-10 (ResNet-18).
PROFILES: dict[str, dict[str, Any]] = {
    "quick": {
        "optimizers": ("sgd", "adam"),
        "lrs": (1e-3, 1e-2, 1e-1),
        "schedulers": ("none", "onecycle"),
        "datasets": ("mnist",),
        "fixed": {"epochs": 1, "limit_train": 2048, "limit_test": 500, "workers": 0},
        "best_k": 3,
        "extra_seeds": (1, 2),
    },
    "full": {
        "optimizers": ("sgd", "sgd_nesterov", "adam", "adamw", "rmsprop"),
        "lrs": (1e-4, 1e-3, 1e-2, 1e-1, 1.0),
        "schedulers": SCHEDULERS,
        "datasets": ("mnist", "cifar10"),
        "fixed": {"epochs": 5, "limit_train": 0, "limit_test": 0},
        "best_k": 3,
        "extra_seeds": (1, 2),
    },
}


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
    """The seed of the coarse grid: the smallest recorded (0 in the profiles)."""
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


# --- the profiles' points --------------------------------------------------------------


def _data_path(dataset: str, mnist: str, cifar10: str) -> str:
    return mnist if dataset == "mnist" else cifar10


def grid(
    profile: str, records: pd.DataFrame | None = None, mnist: str = DEFAULT_MNIST, cifar10: str = "cifar10"
) -> list[dict[str, Any]]:
    """The notebook parameters of every point of `profile` that can be listed now.

    Without records: the coarse grid (seed 0). With the records so far
    (lablib.core.runs.load_runs("e1_hparam_sweep", tag=...)), also the best
    `best_k` settings of each dataset re-run with the extra seeds. A runner
    calls grid() again after running the new points until nothing new appears
    (see `pending`). `mnist` / `cifar10` are the data sources passed to the
    notebook (a path to the MNIST image zip; "cifar10" or the CIFAR zip).
    """
    if profile not in PROFILES:
        raise ConfigError(f"profile={profile!r} is unknown; valid: {', '.join(PROFILES)}.")
    plan = PROFILES[profile]
    listed: list[dict[str, Any]] = []
    for dataset in plan["datasets"]:
        data = _data_path(dataset, mnist, cifar10)
        coarse = [
            {"data": data, "optimizer": optimizer, "lr": lr, "scheduler": scheduler, "seed": 0, **plan["fixed"]}
            for optimizer in plan["optimizers"]
            for lr in plan["lrs"]
            for scheduler in plan["schedulers"]
        ]
        listed += coarse
        table = _records_for(records, data, plan["fixed"])
        done = (
            {(p["optimizer"], p["lr"], p["scheduler"]) for p in coarse}
            & {tuple(r) for r in table[SETTING].itertuples(index=False)}
            if len(table)
            else set()
        )
        if len(done) < len(coarse):
            continue  # the best few are known only once the whole coarse grid has run
        for best in top_settings(table, plan["best_k"], seed=0).to_dict("records"):
            listed += [
                {"data": data, **{k: best[k] for k in SETTING}, "seed": seed, **plan["fixed"]}
                for seed in plan["extra_seeds"]
            ]
    return listed


def _records_for(records: pd.DataFrame | None, data: str, fixed: Mapping[str, Any]) -> pd.DataFrame:
    """The points among `records` run on `data` with the profile's fixed settings."""
    if records is None or records.empty or "scheduler" not in records:
        return points(pd.DataFrame())
    mask = pd.Series(True, index=records.index)
    if "data" in records:
        mask &= records["data"] == data
    for key, value in fixed.items():
        if key in records:
            mask &= records[key] == value
    return points(records[mask])


def point_key(point: Mapping[str, Any]) -> tuple:
    return (str(point["data"]), point["optimizer"], float(point["lr"]), point["scheduler"], int(point["seed"]))


def pending(listed: Iterable[Mapping[str, Any]], records: pd.DataFrame | None) -> list[dict[str, Any]]:
    """The listed points that have no complete record yet (in the order listed)."""
    done = set()
    if records is not None and not records.empty and "scheduler" in records:
        done = {point_key(row) for row in records.to_dict("records")}
    return [dict(p) for p in listed if point_key(p) not in done]


def main(argv: list[str] | None = None) -> int:
    """`python -m lablib.sections.hparams PROFILE`: the points still to run, one JSON object per line.

    The records are read from the run store (tag = --tag, default the profile),
    so running the printed points and asking again lists the re-seeded best few.
    """
    import argparse
    import json

    from lablib.core.runs import load_runs

    parser = argparse.ArgumentParser(prog="python -m lablib.sections.hparams", description=main.__doc__)
    parser.add_argument("profile", choices=sorted(PROFILES))
    parser.add_argument("--mnist", default=DEFAULT_MNIST, help="the MNIST image-folder zip")
    parser.add_argument("--cifar10", default="cifar10", help="'cifar10' or the CIFAR-10 zip")
    parser.add_argument("--tag", default=None, help="records are those of this tag (default: the profile)")
    parser.add_argument("--all", action="store_true", help="list every point, also those already recorded")
    args = parser.parse_args(argv)
    records = load_runs(SECTION, tag=args.tag or args.profile)
    listed = grid(args.profile, records, mnist=args.mnist, cifar10=args.cifar10)
    for point in listed if args.all else pending(listed, records):
        print(json.dumps({**point, "tag": args.tag or args.profile}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
