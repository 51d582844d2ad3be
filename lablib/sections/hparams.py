"""E1 (the hyper-parameter sweep): a grid of optimiser x learning rate x scheduler, its findings per factor, the
best setting and its spread over seeds.

One notebook execution is one grid (`e1_hparam_sweep`: MNIST and the small CNN; `e1_cifar10`: CIFAR-10 and
ResNet-18); every point is a "training" measurement of its own (lablib.core.training), so a killed grid
resumes at the first point not recorded and a second execution trains nothing. E1 asks for accuracies, not
the lab's timing, so its points train on the fast engine by default (`engine` "fast": the images on the
device, bf16 autocast where the device has it, channels_last, compiled on a GPU, the small CNN eager as its
whole training costs less than a compile; "faithful" is the lab's DataLoader loop) and are not timing
requests. With `budget_s` the grid fits the time: successive halving
(lablib.sections.halving) trains every setting's first epoch, continues the best part from its checkpoint,
and re-runs the best settings with more seeds if time is left.

    grid = e1_grid(params)                      # the settings, the engine, the budget
    walk = e1_walk(params, recorded)            # lablib.sections.halving.Walk: fates, rungs, re-runs
    points = grid_points(grid, walk)            # one row per setting, at the epochs every setting trained

Its findings per factor are lablib.sections.factors' (factor_table, factor_sentence over `points`).

A setting is "diverged" when its training loss became NaN/inf or rose above 10x its start
(lablib.core.train.DIVERGENCE_RULE; training stops there and nothing is evaluated): it stays in every table.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lablib.core.config import RunConfig, config_from_params
from lablib.core.data import COLOUR_32, DIGITS_28
from lablib.core.errors import ConfigError
from lablib.core.optim import OPTIMIZERS, SCHEDULERS
from lablib.core.progress import counted
from lablib.core.store import Measured, Request
from lablib.core.train import DIVERGENCE_RULE
from lablib.core.training import ENGINES, training_request
from lablib.sections.factors import FACTORS
from lablib.sections.halving import (
    DIVERGED,
    ETA_MIN,
    FINISHED,
    NOT_TRAINED,
    PRUNED,
    RERUN_SHARE,
    STOPPED,
    Fate,
    Walk,
    halving_walk,
)
from lablib.sections.headlines import Headline, answer, latest, missing, number, shown
from lablib.sections.registry import Needs, Presenter, Recorded

MNIST_SECTION, CIFAR_SECTION = "e1_hparam_sweep", "e1_cifar10"
SECTIONS = (MNIST_SECTION, CIFAR_SECTION)
E1_DATA = (DIGITS_28, COLOUR_32)  # either section takes either
SECTION_ENV = "LABLIB_SECTION"  # the report's jobs name the section they execute
LAB_OPTIMIZERS = "sgd,adam,adamw,rmsprop"  # LAB_SPEC E1
LAB_LRS = "0.0001,0.001,0.01,0.1,1.0"
LAB_SCHEDULERS = "none,step,cosine,onecycle"


@dataclass(frozen=True)
class Setting:
    optimizer: str
    lr: float
    scheduler: str

    def label(self) -> str:
        """ "adam, lr 0.01, onecycle": one setting, for tables and plot axes."""
        return f"{self.optimizer}, lr {self.lr:g}, {self.scheduler}"


@dataclass(frozen=True)
class Grid:
    """One E1 grid: its settings in order, the common settings, the engine, the budget and the re-runs."""

    settings: tuple[Setting, ...]
    config: RunConfig  # the common settings (optimizer, lr and seed vary per point)
    engine: str
    budget_s: float
    top: int
    seeds: int

    def request(
        self, index: int, seed: int = 0, stop: int | None = None, after: int = 0, drop: Sequence[str] = ()
    ) -> Request:
        """The training of setting `index` with `seed` (epochs 1 .. stop, continued after epoch `after`)."""
        setting = self.settings[index]
        config = dataclasses.replace(self.config, optimizer=setting.optimizer, lr=setting.lr, seed=seed)
        return training_request(
            config,
            scheduler=setting.scheduler,
            engine=self.engine,
            timing=False,  # accuracies: a point that shared the machine is as good
            save_weights=False,
            stop_after=stop,
            continue_from=after,
            drop_checkpoints=drop,
        )


# --- the parameters ----------------------------------------------------------------------------


def _items(text: Any, name: str, example: str) -> list[str]:
    items = [item.strip() for item in str(text).split(",") if item.strip()]
    if not items:
        raise ConfigError(f"{name}={text!r} is empty; give a comma-separated list such as {example!r}.")
    return list(dict.fromkeys(items))


def _known_names(text: Any, name: str, example: str, known: Sequence[str], lab: str = "") -> list[str]:
    """The lower-cased names of a comma-separated list parameter; the error for unknown ones names them."""
    names = [item.lower() for item in _items(text, name, example)]
    unknown = [item for item in names if item not in known]
    if unknown:
        raise ConfigError(
            f"{name}={text!r}: {', '.join(unknown)} unknown; expected a comma-separated list of "
            f"{', '.join(known)}{lab}."
        )
    return names


def parse_optimizers(text: Any) -> list[str]:
    return _known_names(text, "optimizers", LAB_OPTIMIZERS, OPTIMIZERS, f" (the lab's: {LAB_OPTIMIZERS})")


def parse_lrs(text: Any) -> list[float]:
    rates = []
    for item in _items(text, "lrs", LAB_LRS):
        try:
            rate = float(item)
        except ValueError:
            rate = -1.0
        if not (rate > 0 and math.isfinite(rate)):
            raise ConfigError(f"lrs={text!r}: {item!r} is not a learning rate > 0; e.g. lrs={LAB_LRS!r}.")
        rates.append(rate)
    return list(dict.fromkeys(rates))


def parse_schedulers(text: Any) -> list[str]:
    return _known_names(text, "schedulers", LAB_SCHEDULERS, SCHEDULERS)


def _count(params: Mapping[str, Any], name: str, default: int, least: int) -> int:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < least:
        raise ConfigError(f"{name}={value!r} is not allowed; expected a whole number >= {least}.")
    return int(value)


def e1_grid(params: Mapping[str, Any]) -> Grid:
    """The grid a notebook's parameters ask for (bad values are one-line ConfigErrors naming them)."""
    engine = str(params.get("engine", "fast"))
    if engine not in ENGINES:
        raise ConfigError(f"engine={engine!r} is unknown; expected one of {', '.join(ENGINES)} (E1's default: fast).")
    budget = params.get("budget_s", 0.0)
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not budget >= 0:
        raise ConfigError(f"budget_s={budget!r} is not allowed; expected seconds >= 0 (0: no budget).")
    config = config_from_params(params)
    if engine == "fast":
        config = dataclasses.replace(config, workers=0)  # the fast engine has no loader: its workers mean nothing
    settings = tuple(
        Setting(optimizer, lr, scheduler)
        for optimizer in parse_optimizers(params.get("optimizers", LAB_OPTIMIZERS))
        for lr in parse_lrs(params.get("lrs", LAB_LRS))
        for scheduler in parse_schedulers(params.get("schedulers", LAB_SCHEDULERS))
    )
    return Grid(
        settings,
        dataclasses.replace(config, seed=0),
        engine,
        float(budget),
        _count(params, "top", 3, 1),
        _count(params, "seeds", 2, 0),
    )


def e1_section(params: Mapping[str, Any]) -> str:
    """The section a notebook execution presents: `section_name` when given, else the one the report's job
    names (LABLIB_SECTION), else by the data: MNIST's digits -> e1_hparam_sweep, others -> e1_cifar10."""
    named = str(params.get("section_name") or "") or os.environ.get(SECTION_ENV, "")
    if named:
        if named not in SECTIONS:
            raise ConfigError(f"section_name={named!r} is not an E1 section; expected one of {', '.join(SECTIONS)}.")
        return named
    return MNIST_SECTION if "mnist" in os.path.basename(str(params.get("data", ""))).lower() else CIFAR_SECTION


# --- what E1 measures --------------------------------------------------------------------------


def e1_walk(params: Mapping[str, Any], recorded: Recorded) -> tuple[Grid, Walk]:
    grid = e1_grid(params)
    walk = halving_walk(
        len(grid.settings), grid.request, recorded, grid.config.epochs, grid.budget_s, grid.top, grid.seeds
    )
    return grid, walk


def e1_presented(section) -> tuple[Grid, Walk]:
    """The grid and walk a notebook presents: its parameters over the store's records (nothing is measured)."""
    from lablib.core.store import lookup

    return e1_walk(section.params, lookup)


def e1_measurements(params: Mapping[str, Any], recorded: Recorded) -> Needs:
    """The grid's trainings (every rung of the halving with a budget), then the re-runs of its best settings."""
    grid, walk = e1_walk(params, recorded)
    note = f"{counted(len(grid.settings), 'setting')}, each a measurement of its own on the {grid.engine} engine; " + (
        f"a budget of {grid.budget_s:,.0f} s: successive halving (every setting's first epoch, then the best part "
        "goes on from its checkpoint; once the first setting's epoch shows that the whole grid fits, the others "
        "train whole at once)."
        if grid.budget_s > 0
        else "no budget: every setting trains its epochs."
    )
    return Needs(walk.requests, (note,), walk.waiting)


# --- the grid as rows --------------------------------------------------------------------------


def class_count(walk: Walk) -> int:
    """The classes the grid's data has (10 for CIFAR-10 and MNIST), from a recorded point."""
    first = next((f.measured for f in walk.fates if f.measured is not None), None)
    classes = len(first.results.get("classes") or []) if first is not None else 0
    return classes or 10


def comparison_epochs(walk: Walk) -> int:
    """The epochs every trained setting of the grid reached: 1 with successive halving, else all."""
    return 1 if walk.halving else walk.epochs


def grid_points(grid: Grid, walk: Walk) -> pd.DataFrame:
    """One row per setting: its factors, its test accuracy at the epochs every setting trained (NaN when it
    diverged there or did not train), whether it diverged there, its epochs and outcome, and its last record."""
    rows = []
    for setting, fate in zip(grid.settings, walk.fates):
        first = fate.first if walk.halving else fate.measured
        diverged_here = first is not None and bool(first.results.get("diverged"))
        accuracy = None if first is None or diverged_here else number(first.results.get("test_accuracy"))
        rows.append(
            {
                "optimizer": setting.optimizer,
                "lr": setting.lr,
                "scheduler": setting.scheduler,
                "setting": setting.label(),
                "trained": first is not None,
                "test_accuracy": accuracy,
                "diverged": diverged_here,
                "epochs": fate.epochs,
                "outcome": fate_text(fate, walk),
                "final_test_accuracy": fate.accuracy,
                "run_id": fate.measured.run_id if fate.measured is not None else None,
            }
        )
    columns = [*FACTORS, "setting", "trained", "test_accuracy", "diverged", "epochs", "outcome"]
    return pd.DataFrame(rows, columns=[*columns, "final_test_accuracy", "run_id"])


def fate_text(fate: Fate, walk: Walk) -> str:
    """How far a setting trained and why, in words."""
    epochs = f"{fate.epochs} epoch{'s' if fate.epochs != 1 else ''}"
    rank = f": ranked {fate.rank} of {fate.ranked} by test accuracy" if fate.rank else ""
    if fate.outcome == FINISHED:
        return f"finished ({epochs})"
    if fate.outcome == DIVERGED:
        return f"diverged in epoch {fate.epochs}; stopped there"
    if fate.outcome == PRUNED:
        return f"pruned after rung {fate.rung} ({epochs}){rank}"
    if fate.outcome == STOPPED:
        return f"stopped after rung {fate.rung} ({epochs}): the budget was spent{rank.replace(':', ';')}"
    if fate.outcome == NOT_TRAINED:
        return "not trained: the budget was spent in rung 0"
    return "not recorded yet"


def fates_table(points: pd.DataFrame) -> pd.DataFrame:
    """Each setting's epochs and outcome, with its test accuracy after its last rung; best first."""
    table = points.sort_values(["final_test_accuracy"], ascending=False, kind="stable", na_position="last")
    return pd.DataFrame(
        {
            "setting": table["setting"],
            "epochs trained": table["epochs"],
            "test top-1 after its last rung (%)": table["final_test_accuracy"],
            "outcome": table["outcome"],
        }
    ).reset_index(drop=True)


def rungs_table(walk: Walk) -> pd.DataFrame:
    """One row per rung: the epochs its settings reach, how many entered, trained and went on, with which η
    (when the first epoch showed the whole grid fits, rung 0 trained the first setting 1 epoch, the others all)."""
    whole = f"1 (the first), {walk.epochs} (the others)"
    return pd.DataFrame(
        [
            {
                "rung": rung.number,
                "epochs": whole if walk.whole and rung.number == 0 else str(rung.epochs),
                "settings chosen": rung.entered,
                "settings trained": rung.trained,
                "went on": rung.continued,
                "η": "—" if rung.eta is None else str(rung.eta),
            }
            for rung in walk.rungs
        ],
        columns=["rung", "epochs", "settings chosen", "settings trained", "went on", "η"],
    )


def _rung_rule(eta: int | None) -> str:
    return "the best alone" if eta is None else "every setting" if eta == 1 else f"η {eta}"


def budget_sentence(walk: Walk) -> str:
    """E1.1: what the budget allowed (or that there was none), from the walk."""
    fates = walk.fates
    count = lambda outcome: sum(f.outcome == outcome for f in fates)  # noqa: E731
    trained = sum(f.rung >= 0 for f in fates)
    spent = f"{walk.spent_s:,.0f} s of training measured"
    if walk.budget_s <= 0:
        return (
            f"**E1.1:** no time budget: every one of the {counted(len(fates), 'setting')} trained "
            f"{counted(walk.epochs, 'epoch')} "
            f"({count(FINISHED)} finished, {count(DIVERGED)} diverged; {spent})."
        )
    lead = f"**E1.1:** a budget of {walk.budget_s:,.0f} s ({spent}): "
    outcomes = [
        f"{count(outcome)} {words}"
        for outcome, words in (
            (FINISHED, "finished"),
            (PRUNED, "pruned"),
            (DIVERGED, "diverged"),
            (STOPPED, "stopped when the budget was spent"),
        )
        if count(outcome)
    ]
    if count(NOT_TRAINED):
        what = "trained" if walk.whole else "trained their first epoch"
        lead += (
            f"only {trained} of the {len(fates)} settings {what} before it was spent; the others "
            "are not trained (a larger `budget_s` trains them)"
        )
    elif walk.whole:
        lead += (
            f"the first setting's first epoch showed that the whole grid fits it, so every one of the {len(fates)} "
            f"settings trained its {counted(walk.epochs, 'epoch')} (the others at once, the first going on from its "
            "checkpoint), with nothing to halve; " + ", ".join(outcomes)
        )
    elif not walk.halving:
        lead += f"every one of the {len(fates)} settings trained its {walk.epochs} epoch (one epoch: nothing to halve)"
    else:
        later = [
            f"{rung.trained} went on to {rung.epochs} epochs ({_rung_rule(rung.eta)})"
            for rung in walk.rungs[1:]
            if rung.trained
        ]
        lead += (
            f"every one of the {len(fates)} settings trained its first epoch (rung 0); "
            + ("; ".join(later) if later else "none could go on")
            + f" (at each rung's end every setting goes on when the rest fits, else the best 1/η, η >= {ETA_MIN} the "
            "smallest whose rungs fit what is left, re-planned from the measured epoch times); " + ", ".join(outcomes)
        )
    reserve = (
        f". {walk.reserve_s:,.0f} s were set aside for the re-runs of the best settings"
        if walk.reserve_s > 0
        else (
            f". The re-runs of the best settings were not set aside (they would take more than {RERUN_SHARE:.0%} of "
            "what was left after rung 0): they run only as far as time is left"
            if walk.top and walk.seeds
            else ""
        )
    )
    return lead + reserve + "."


# --- the accuracy grid -------------------------------------------------------------------------


def accuracy_grid(points: pd.DataFrame, scheduler: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(values, labels): optimiser rows x lr columns for one scheduler. `values` holds the test accuracy
    (NaN for diverged and untrained cells), `labels` each cell's text: "97.1", "diverged" or "not trained"."""
    part = points[points["scheduler"] == scheduler]
    optimizers = list(dict.fromkeys(points["optimizer"]))
    lrs = sorted(set(points["lr"]))
    values = pd.DataFrame(np.nan, index=pd.Index(optimizers, name="optimizer"), columns=pd.Index(lrs, name="lr"))
    labels = pd.DataFrame("not trained", index=values.index, columns=values.columns)
    for row in part.to_dict("records"):
        if row["diverged"]:
            labels.loc[row["optimizer"], row["lr"]] = "diverged"
        elif row["trained"] and number(row["test_accuracy"]) is not None:
            values.loc[row["optimizer"], row["lr"]] = row["test_accuracy"]
            labels.loc[row["optimizer"], row["lr"]] = f"{row['test_accuracy']:.1f}"
    return values, labels


def draw_heatmap(ax, values: pd.DataFrame, labels: pd.DataFrame, title: str = "", vmin: float = 0.0, vmax=100.0):
    """A seaborn heatmap of one accuracy grid; diverged and untrained cells keep their label on a hatched
    background (seaborn masks NaN cells and skips their annotations)."""
    import seaborn as sns

    sns.heatmap(
        values.astype(float),
        annot=labels.where(values.notna(), ""),
        fmt="",
        vmin=vmin,
        vmax=vmax,
        cmap="viridis",
        cbar_kws={"label": "test top-1 accuracy (%)"},
        ax=ax,
        xticklabels=[f"{lr:g}" for lr in values.columns],
    )
    ax.patch.set(hatch="//", edgecolor="0.75", facecolor="white")
    for i, optimizer in enumerate(values.index):
        for j, lr in enumerate(values.columns):
            if pd.isna(values.loc[optimizer, lr]):
                color = "tab:red" if labels.loc[optimizer, lr] == "diverged" else "0.4"
                ax.text(j + 0.5, i + 0.5, labels.loc[optimizer, lr], ha="center", va="center", fontsize=8, color=color)
    ax.set(title=title, xlabel="learning rate", ylabel="optimiser")
    return ax


def schedulers_of(points: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(points["scheduler"]))


def divergence_sentence(points: pd.DataFrame, walk: Walk) -> str:
    """E1.2: which settings diverged, named, and in which epoch (or that none did)."""
    diverged = [(label, f) for label, f in zip(points["setting"], walk.fates) if f.outcome == DIVERGED]
    trained = int(points["trained"].sum())
    if not diverged:
        return f"**E1.2:** none of the {counted(trained, 'trained setting')} diverged."
    names = "; ".join(f"`{label}` (epoch {fate.epochs})" for label, fate in diverged)
    return (
        f"**E1.2:** {len(diverged)} of the {counted(trained, 'trained setting')} diverged ({DIVERGENCE_RULE}; training "
        f"stopped there and they never went on): {names}."
    )


# --- the best setting and its seeds (E1.3, E1.4) -------------------------------------------------


def seed_points(grid: Grid, walk: Walk) -> pd.DataFrame:
    """One row per recorded training of a re-run setting at the full epochs: seed 0 (the grid's) and the re-runs."""
    rows = []
    for index in walk.chosen:
        measured = [(0, walk.fates[index].measured)] + [
            (rerun.seed, rerun.measured) for rerun in walk.reruns if rerun.index == index
        ]
        for seed, item in measured:
            if item is None:
                continue
            diverged = bool(item.results.get("diverged"))
            rows.append(
                {
                    **dataclasses.asdict(grid.settings[index]),
                    "setting": grid.settings[index].label(),
                    "seed": seed,
                    "test_accuracy": None if diverged else number(item.results.get("test_accuracy")),
                    "diverged": diverged,
                    "run_id": item.run_id,
                }
            )
    columns = [*FACTORS, "setting", "seed", "test_accuracy", "diverged", "run_id"]
    return pd.DataFrame(rows, columns=columns)


def seed_summary(seeds: pd.DataFrame) -> pd.DataFrame:
    """Per setting (in the order given): seeds recorded, diverged, mean / std / min / max / spread of test top-1."""
    rows = []
    for setting, part in seeds.groupby("setting", sort=False):
        accuracy = part["test_accuracy"].dropna().astype(float)
        rows.append(
            {
                **{name: part[name].iloc[0] for name in FACTORS},
                "setting": setting,
                "seeds": len(part),
                "diverged": int(part["diverged"].sum()),
                "mean": accuracy.mean() if len(accuracy) else None,
                "std": accuracy.std(ddof=1) if len(accuracy) > 1 else None,
                "min": accuracy.min() if len(accuracy) else None,
                "max": accuracy.max() if len(accuracy) else None,
            }
        )
    table = pd.DataFrame(rows, columns=[*FACTORS, "setting", "seeds", "diverged", "mean", "std", "min", "max"])
    table["spread"] = table["max"] - table["min"]
    return table


def seeds_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The seed summary as presented (headers in words)."""
    return pd.DataFrame(
        {
            "setting": summary["setting"],
            "seeds": summary["seeds"],
            "diverged": summary["diverged"],
            "mean test top-1 (%)": summary["mean"],
            "std (%)": summary["std"],
            "min (%)": summary["min"],
            "max (%)": summary["max"],
            "spread, max − min (%)": summary["spread"],
        }
    )


def best_setting(summary: pd.DataFrame) -> dict[str, Any] | None:
    """Among the re-run settings with the most seeds that never diverged, the highest mean test accuracy."""
    stable = summary[(summary["diverged"] == 0) & summary["mean"].notna()]
    if stable.empty:
        return None
    most = stable[stable["seeds"] == stable["seeds"].max()]
    best = most.sort_values("mean", ascending=False, kind="stable").iloc[0]
    return {
        key: (best[key].item() if hasattr(best[key], "item") else best[key])
        for key in [*FACTORS, "setting", "seeds", "mean", "std", "min", "max"]
    }


def best_sentence(best: Mapping[str, Any] | None, epochs: int) -> str:
    """E1.3: the best setting and how well its figure is confirmed."""
    if best is None:
        return "**E1.3:** no setting finished its epochs without diverging, so there is no best setting."
    text = (
        f"**E1.3:** the best setting is `{best['optimizer']}` with lr {best['lr']:g} and scheduler "
        f"`{best['scheduler']}`: test top-1 {best['mean']:.2f} % after {counted(epochs, 'epoch')}"
    )
    if best["seeds"] > 1:
        spread = f", std {best['std']:.2f}" if number(best.get("std")) is not None else ""
        return text + f" (mean of {best['seeds']} seeds{spread}, range {best['min']:.2f} – {best['max']:.2f})."
    return text + " (one seed: no re-run with more seeds was recorded)."


def seeds_sentence(summary: pd.DataFrame, walk: Walk) -> str:
    """E1.4: mean ± std and range over seeds of each re-run setting; what the budget left out."""
    rows = summary[summary["seeds"] > 1]
    skipped = (
        f" The budget did not allow {walk.reruns_skipped} of the {counted(len(walk.chosen) * walk.seeds, 're-run')}."
        if walk.reruns_skipped
        else ""
    )
    if rows.empty:
        if walk.seeds == 0:
            return "**E1.4:** no re-runs were asked for (`seeds` 0)."
        return (
            "**E1.4:** no setting was re-run with more seeds"
            + (": none finished its epochs" if not walk.chosen else "")
            + "."
            + skipped
        )
    parts = []
    for row in rows.to_dict("records"):
        diverged = f", {row['diverged']} diverged" if row["diverged"] else ""
        std = f" ± {row['std']:.2f}" if number(row["std"]) is not None else ""
        parts.append(
            f"`{row['setting']}`: {row['mean']:.2f}{std} % over {row['seeds']} seeds (range {row['min']:.2f} – "
            f"{row['max']:.2f}{diverged})"
        )
    return (
        f"**E1.4:** {len(rows)} of the grid's best settings re-run with more seeds: "
        + "; ".join(parts)
        + "."
        + (skipped)
    )


# --- how the points were trained -----------------------------------------------------------------


def engine_sentence(measured: Sequence[Measured]) -> str:
    """Which engine and precision the points trained with, from their settings (every point's, once)."""
    trainings = [m for m in measured if m.request.kind == "training"]
    if not trainings:
        return "No point of the grid is recorded yet."
    settings = [m.request.settings for m in trainings]
    kinds = sorted({(s.get("engine", "faithful"), s.get("precision", "fp32"), s.get("device")) for s in settings})
    described = []
    for engine, precision, device in kinds:
        if engine == "fast":
            sample = next(s for s in settings if s.get("engine") == "fast" and s.get("precision") == precision)
            mode = sample.get("compile", "none")
            described.append(
                f"the fast engine on `{device}` (the images held on the device as uint8, augmented there for colour "
                f"images and not for digits, {precision} "
                f"{'autocast' if precision in ('bf16', 'fp16') else 'arithmetic'}, "
                f"{'channels_last' if sample.get('channels_last', True) else 'contiguous'} memory, "
                f"{'compiled (' + mode + ')' if mode != 'none' else 'not compiled'})"
            )
        else:
            described.append(f"the lab's faithful loop on `{device}` ({precision}, its DataLoader's workers)")
    return (
        f"Every point of the grid trained on {' and '.join(described)}: E1 asks for accuracies, not the lab's "
        "timing, so the points train as fast as the hardware allows (`engine` faithful trains them in the lab's loop)."
    )


# --- the answers and the headlines ---------------------------------------------------------------


def e1_answers(grid: Grid, walk: Walk, summary: pd.DataFrame, best: Mapping[str, Any] | None) -> dict[str, Any]:
    """What the presenting record keeps for the headlines (lablib.sections.setup.Section.finish)."""
    first = next((f.measured for f in walk.fates if f.measured is not None), None)
    results = first.results if first is not None else {}
    settings = first.request.settings if first is not None else {}
    return {
        "grid_settings": len(grid.settings),
        "settings_trained": sum(f.rung >= 0 for f in walk.fates),
        "settings_finished": sum(f.outcome == FINISHED for f in walk.fates),
        "settings_diverged": sum(f.outcome == DIVERGED for f in walk.fates),
        "full_epochs": walk.epochs,
        "budget_s": walk.budget_s,
        "spent_s": walk.spent_s,
        "grid_engine": grid.engine,
        "grid_precision": settings.get("precision", "fp32"),
        "model_class": results.get("model_class"),
        "best_setting": best["setting"] if best else None,
        "best_accuracy": best["mean"] if best else None,
        "best_std": best["std"] if best else None,
        "best_seeds": best["seeds"] if best else 0,
        "best_min": best["min"] if best else None,
        "best_max": best["max"] if best else None,
        "reruns_skipped": walk.reruns_skipped,
    }


def headlines_for(section: str):
    def build(runs: pd.DataFrame) -> list[Headline]:
        row = latest(runs)
        model = row.get("model_class") or "the model"
        settings, trained = int(row.get("grid_settings") or 0), int(row.get("settings_trained") or 0)
        finished, epochs = int(row.get("settings_finished") or 0), int(row.get("full_epochs") or 0)
        budget = number(row.get("budget_s")) or 0.0
        scope = (
            f"{finished} of {settings} settings trained {counted(epochs, 'epoch')} within a {budget:,.0f} s budget "
            f"({trained} trained at least one)"
            if budget > 0
            else f"{finished} of {settings} settings trained {counted(epochs, 'epoch')}, no budget"
        )
        if row.get("best_setting") is None or number(row.get("best_accuracy")) is None:
            return [missing(section, "E1", f"{model}: no setting finished without diverging; {scope}")]
        seeds = int(row.get("best_seeds") or 1)
        spread = number(row.get("best_std"))
        figure = f"{shown(row['best_accuracy'])}" + (f" ± {shown(spread)}" if spread is not None else "")
        engine = f"{row.get('grid_engine') or 'fast'} engine, {row.get('grid_precision') or 'fp32'}"
        text = (
            f"{model}: best {row['best_setting']}, {figure} % test top-1 over {counted(seeds, 'seed')} "
            f"after {counted(epochs, 'epoch')} ({engine}); {scope}"
        )
        return [answer(section, "E1", text, float(row["best_accuracy"]), "%", row, spread)]

    return build


PRESENTS = tuple(  # E1 trains on MNIST's digits (the small CNN) and on CIFAR-10's colour images (ResNet-18)
    Presenter(
        section, ("E1",), e1_measurements, headlines_for(section), qualifier="optimizer", data=E1_DATA, walks=True
    )
    for section in SECTIONS
)
