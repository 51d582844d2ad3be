"""What the training-sweep sections conclude, derived from the run records.

C2-C6 and P-2025-C4 each measure one point per execution; the answers compare
points recorded so far. The facts behind each answer (which point was best,
where the data-loading time stopped falling, what share of an epoch is still
spent waiting for data, which optimiser diverged) are computed here, returned
as records, and turned into sentences here too, so the notebooks only display
them and the tests can check them against the records.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch

from lablib.core.errors import ConfigError, DeviceError
from lablib.core.runs import group_key, latest_per, load_runs
from lablib.sections.sweeps import best_point, c3_best_workers, c3_next_workers, c3_worker_candidates

LAB_WORKERS = 2  # LAB_SPEC "Common setup": the DataLoader's default num_workers
BOTTLENECK_SHARE = 0.15  # below this share of the epoch, waiting for data is no longer the bottleneck


def _finite(value: Any) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


# --- reading a sweep's points ---------------------------------------------------------


def group_points(
    section: str,
    config,
    tag: str,
    data_fingerprint: str,
    device: torch.device | str | None,
    sweep: str | Sequence[str],
    param: str | list[str],
    root=None,
) -> pd.DataFrame:
    """The complete points of the sweep a run with these settings would join, before it starts.

    The group is computed exactly as runs.Run computes it, so C3 can pick the
    next worker count from the points already recorded.
    """
    sweep = (sweep,) if isinstance(sweep, str) else tuple(sweep)
    device_type = torch.device(device).type if device is not None else ""
    key = group_key(section, tag, config.to_dict(), data_fingerprint or "", device_type, sweep)
    runs = load_runs(section, group=key, root=root)
    return latest_per(runs, param).reset_index(drop=True) if not runs.empty else runs


def group_runs(run) -> pd.DataFrame:
    """Every complete run of `run`'s group, plus `run` itself (still running), oldest first."""
    section, group = run.meta["section"], run.meta["group"]
    runs = load_runs(section, status=None, group=group)
    if runs.empty:
        return runs
    runs = runs[(runs["status"] == "complete") | (runs["run_id"] == run.run_id)].copy()
    runs["ended"] = runs["ended"].fillna("9999")  # the current run is the newest
    return runs.sort_values("ended").reset_index(drop=True)


# --- workers: a parameter, C3's next point, or C3.2's best ----------------------------


@dataclass(frozen=True)
class WorkersChoice:
    workers: int
    source: str  # parameter | next (C3's rule) | best (C3 sweep complete) | c3 (C3.2's records) | lab default
    reason: str  # one sentence for the notebook
    seconds_per_epoch: float | None = None  # C3.2's runtime when taken from the records


def resolve_workers(
    requested: int, tag: str, data_fingerprint: str | None, resolved_device: str | None, root=None
) -> WorkersChoice:
    """C4/C5/C6/P-2025-C4: `requested` >= 0 as given; -1 means C3.2's best workers from the
    c3_workers records with the same tag, data and device, else the lab's 2."""
    if requested < -1:
        raise ConfigError(
            f"workers={requested} is not allowed; expected -1 (C3.2's best, else {LAB_WORKERS}) or a worker count >= 0."
        )
    if requested >= 0:
        return WorkersChoice(requested, "parameter", f"{requested} workers, as the `workers` parameter asks.")
    best = c3_best_workers(tag, data_fingerprint, resolved_device, root=root)
    if best is not None:
        return WorkersChoice(
            best[0],
            "c3",
            (
                f"{best[0]} workers: C3.2's best runtime in the c3_workers records with tag {tag!r}, the "
                f"same data and device `{resolved_device}` ({best[1]:.2f} s per epoch there)."
            ),
            best[1],
        )
    return WorkersChoice(
        LAB_WORKERS,
        "lab default",
        (
            f"the lab's default of {LAB_WORKERS} workers: there is no complete c3_workers record with tag "
            f"{tag!r}, the same data and device `{resolved_device}` to take C3.2's best from "
            "(run notebooks/c3_workers.ipynb first to use it)."
        ),
    )


def c3_choose_workers(requested: int, points: pd.DataFrame, cores: int | None = None) -> WorkersChoice:
    """C3: `requested` >= 0 as given; -1 means the next count the lab's rule asks for, or,
    when the sweep is complete, the best point again (a fresh measurement of it)."""
    if requested < -1:
        raise ConfigError(
            f"workers={requested} is not allowed; expected -1 (the next count of the lab's "
            "rule) or a worker count >= 0."
        )
    if requested >= 0:
        return WorkersChoice(requested, "parameter", f"{requested} workers, as the `workers` parameter asks.")
    cores = cores or os.cpu_count() or 1
    following = c3_next_workers(points, max_workers=cores)
    if following is not None:
        measured = sorted(int(w) for w in points["workers"]) if not points.empty else []
        return WorkersChoice(
            following,
            "next",
            (f"{following} workers, the next count of the lab's rule (measured so far: {measured or 'none'})."),
        )
    best = best_point(points, "workers")
    return WorkersChoice(
        int(best["workers"]),
        "best",
        (f"{int(best['workers'])} workers again: the lab's rule is complete, so the best point is measured once more."),
        float(best["epoch_s_mean"]),
    )


# --- C3.3: why more workers stop helping --------------------------------------------


@dataclass(frozen=True)
class WorkersAnalysis:
    """The facts C3.2 and C3.3 state, from a sweep's points (one row per worker count)."""

    table: pd.DataFrame = field(repr=False)  # workers, data/train/epoch seconds, data share, runs' epochs
    cores: int  # logical cores of the machine that recorded the current run
    torch_threads: int  # intra-op threads of the training (main) process
    persistent_workers: bool  # False: every epoch starts its workers again
    candidates: list[int]  # the lab's rule on this machine: 0, 4, 8, ... up to the cores
    measured: list[int]  # worker counts recorded so far
    best_workers: int | None  # smallest epoch_s_mean (C3.2)
    best_epoch_s: float | None
    best_data_share: float | None  # data_s / total_s at the best point
    fastest_data_workers: int | None  # smallest total data-loading time (C3.1)
    first_workers: int | None  # the smallest count measured (usually 0)
    stopped_at: int | None  # first rule count whose data time did not fall below the previous one's
    stopped_after: int | None  # the rule count before it
    next_workers: int | None  # what the rule asks to measure next; None: the sweep is complete
    oversubscribed: bool  # the largest count + the main process's threads exceed the cores

    @property
    def rule_complete(self) -> bool:
        return self.next_workers is None and bool(self.measured)

    def row(self, workers: int) -> pd.Series:
        return self.table.loc[self.table["workers"] == workers].iloc[0]

    def results(self) -> dict[str, Any]:
        """Flat numbers for run.log_results (none clash with RunConfig fields)."""
        return {
            "sweep_best_workers": self.best_workers,
            "sweep_best_epoch_s": self.best_epoch_s,
            "sweep_best_data_share": self.best_data_share,
            "sweep_fastest_data_workers": self.fastest_data_workers,
            "sweep_stopped_at": self.stopped_at,
            "sweep_next_workers": self.next_workers,
            "sweep_rule_complete": self.rule_complete,
            "sweep_measured": self.measured,
            "cpu_cores": self.cores,
            "main_threads": self.torch_threads,
        }

    def rule_sentence(self) -> str:
        rule = (
            f"The lab's rule measures {', '.join(map(str, self.candidates))} workers in turn (steps of 4, "
            f"never beyond this machine's {self.cores} logical cores) and stops once the data-loading "
            "time no longer decreases."
        )
        measured = f" Recorded so far: {', '.join(map(str, self.measured)) or 'none'}."
        if self.stopped_at is not None:
            status = (
                f" The rule is satisfied: the data-loading time stopped decreasing at {self.stopped_at} "
                f"workers, so no further count is needed."
            )
        elif self.rule_complete:
            status = (
                f" The rule is satisfied: every count up to the {self.cores} cores is measured and the "
                "data-loading time decreased all the way."
            )
        else:
            status = (
                f" The rule is not complete yet: the next point to measure is {self.next_workers} workers "
                f"(`-p workers {self.next_workers}`)."
            )
        off_grid = sorted(set(self.measured) - set(self.candidates))
        extra = (
            f" Counts off the rule's grid ({', '.join(map(str, off_grid))}) are shown but do not decide it."
            if off_grid
            else ""
        )
        return rule + measured + status + extra

    def best_sentence(self) -> str:
        if self.best_workers is None:
            return "no point has a runtime yet."
        row = self.row(self.best_workers)
        return (
            f"the best runtime is with {self.best_workers} workers ({self.best_epoch_s:.2f} s per epoch, "
            f"{row['data_s_total']:.2f} s of data loading in total over {int(row['epochs_run'])} epoch(s)), "
            f"among the {len(self.measured)} worker count(s) recorded."
        )

    def sentences(self) -> list[str]:
        """C3.3, argued from the numbers."""
        if not self.measured:
            return ["No point is recorded yet."]
        said = []
        first = self.row(self.first_workers)
        fastest = self.row(self.fastest_data_workers)
        if self.fastest_data_workers != self.first_workers:
            saved = first["data_s_total"] - fastest["data_s_total"]
            slower = fastest["train_s_total"] > 1.05 * first["train_s_total"]
            said.append(
                f"Going from {self.first_workers} to {self.fastest_data_workers} workers cut the total data-loading "
                f"time from {first['data_s_total']:.2f} s to {fastest['data_s_total']:.2f} s ({saved:.2f} s saved); "
                f"over the same points the training time went from {first['train_s_total']:.2f} s to "
                f"{fastest['train_s_total']:.2f} s and the epochs' total from {first['epoch_s_total']:.2f} s to "
                f"{fastest['epoch_s_total']:.2f} s"
                + (
                    ": the worker processes slowed the computation down by more than they saved in waiting."
                    if slower and fastest["epoch_s_total"] > first["epoch_s_total"]
                    else ": the computation got slower, eating part of that saving."
                    if slower
                    else ": workers only remove waiting, they do not make the computation faster."
                )
            )
        else:
            said.append(
                f"No count beat {self.first_workers} workers on data-loading time ({first['data_s_total']:.2f} s in "
                "total): starting worker processes cost more than the loading work they took over."
            )
        if self.stopped_at is not None:
            before, at = self.row(self.stopped_after), self.row(self.stopped_at)
            said.append(
                f"The decrease stopped at {self.stopped_at} workers: {at['data_s_total']:.2f} s of data loading "
                f"against {before['data_s_total']:.2f} s with {self.stopped_after}."
            )
        elif len(self.measured) > 1:
            said.append(
                f"The data-loading time still decreased up to {max(self.measured)} workers, the largest count recorded."
            )
        if self.best_data_share is not None:
            best = self.row(self.best_workers)
            share, train_share = self.best_data_share, best["train_s_total"] / best["epoch_s_total"]
            if share < BOTTLENECK_SHARE:
                verdict = (
                    f"so data loading is not the bottleneck: removing all of the remaining wait would save "
                    f"at most {best['data_s_total'] / best['epochs_run']:.2f} s per epoch, and extra workers "
                    "cannot speed up the training itself."
                )
            else:
                verdict = (
                    "so waiting for data is still a large part of the epoch; more workers could help "
                    "only if the machine had idle cores to run them."
                )
            said.append(
                f"At the best runtime ({self.best_workers} workers) {share:.1%} of the epoch is spent waiting for "
                f"data and {train_share:.1%} training, {verdict}"
            )
        top = self.row(max(self.measured))
        if not self.persistent_workers and int(top["workers"]) > 0:
            said.append(
                f"persistent_workers is off, so every epoch starts its {int(top['workers'])} worker processes again "
                f"and waits for their first batches: that start-up is part of the "
                f"{top['data_s_total'] / top['epochs_run']:.2f} s per epoch of data loading that remains at "
                f"{int(top['workers'])} workers, and each extra worker is one more process to start."
            )
        count = int(top["workers"])
        contention = ""
        if count != self.first_workers:
            change = top["train_s_total"] / first["train_s_total"] - 1
            contention = (
                f" The training time at {count} workers is {change:+.0%} against {self.first_workers} "
                f"workers ({top['train_s_total']:.2f} s vs {first['train_s_total']:.2f} s)."
            )
        said.append(
            f"The machine has {self.cores} logical cores (from the run's provenance); {count} workers plus the "
            f"main process make {count + 1} processes, and the main process trains with {self.torch_threads} "
            "intra-op thread(s), "
            + (
                f"so {count + self.torch_threads} busy threads compete for {self.cores} cores and the workers take "
                "CPU time away from the training."
                if self.oversubscribed
                else f"which fits in the {self.cores} cores; beyond {max(self.cores - self.torch_threads, 0)} workers "
                "they would compete with the training threads."
            )
            + contention
        )
        return said


def analyse_workers(
    points: pd.DataFrame, cores: int, torch_threads: int = 1, persistent_workers: bool = False
) -> WorkersAnalysis:
    """C3.2/C3.3 facts from the points of a workers sweep (columns workers, data_s_total,
    train_s_total, epoch_s_total, epoch_s_mean, epochs_run)."""
    columns = [
        "workers",
        "epochs_run",
        "data_s_total",
        "train_s_total",
        "epoch_s_total",
        "data_s_mean",
        "train_s_mean",
        "epoch_s_mean",
    ]
    table = points.reindex(columns=columns).dropna(subset=["data_s_total", "epoch_s_total"]).copy()
    table["workers"] = table["workers"].astype(int)
    table = table.sort_values("workers").reset_index(drop=True)
    table["data_share"] = table["data_s_total"] / table["epoch_s_total"]
    candidates = c3_worker_candidates(cores)
    measured = table["workers"].tolist()
    times = dict(zip(table["workers"], table["data_s_total"]))
    stopped_at = stopped_after = None
    previous = None
    for workers in candidates:
        if workers not in times:
            break
        if previous is not None and times[workers] >= times[previous]:
            stopped_at, stopped_after = workers, previous
            break
        previous = workers
    best = best_point(table, "workers")
    fastest = best_point(table, "workers", "data_s_total")
    return WorkersAnalysis(
        table=table,
        cores=int(cores),
        torch_threads=int(torch_threads),
        persistent_workers=bool(persistent_workers),
        candidates=candidates,
        measured=measured,
        best_workers=None if best is None else int(best["workers"]),
        best_epoch_s=None if best is None else float(best["epoch_s_mean"]),
        best_data_share=None if best is None else float(best["data_share"]),
        fastest_data_workers=None if fastest is None else int(fastest["workers"]),
        first_workers=measured[0] if measured else None,
        stopped_at=stopped_at,
        stopped_after=stopped_after,
        next_workers=c3_next_workers(times, max_workers=cores),
        oversubscribed=bool(measured) and max(measured) + int(torch_threads) > int(cores),
    )


# --- C4: the GPU, or a record that it is unavailable ---------------------------------


@dataclass(frozen=True)
class DeviceChoice:
    requested: str  # what the parameter asked: auto | cuda | cpu
    target: str  # the device type this point stands for: cuda | cpu
    device: torch.device | None  # None when the target is not available here
    reason: str  # why not, in words ("" when available)

    @property
    def available(self) -> bool:
        return self.device is not None


def resolve_or_unavailable(name: str) -> DeviceChoice:
    """Like train.resolve_device, but a missing GPU is a result to record, not an error."""
    from lablib.core.train import resolve_device

    name = name.lower()
    if name not in ("auto", "cuda", "cpu"):
        raise ConfigError(f"device={name!r} is not allowed; expected auto, cuda or cpu.")
    try:
        device = resolve_device(name)
    except DeviceError as error:
        return DeviceChoice(name, "cuda", None, str(error))
    return DeviceChoice(name, device.type, device, "")


def c4_points(run) -> pd.DataFrame:
    """One row per device type of C4's group: the latest measured run, or, when the device
    was never measured, the latest record saying it was unavailable."""
    runs = group_runs(run)
    if runs.empty or "target_device" not in runs:
        return pd.DataFrame()
    runs = runs.dropna(subset=["target_device"]).copy()
    available = runs["device_available"] if "device_available" in runs else pd.Series(True, index=runs.index)
    runs["measured"] = available.fillna(True).astype(bool)
    if "epoch_s_mean" not in runs:
        runs["epoch_s_mean"] = float("nan")
    runs["measured"] &= runs["epoch_s_mean"].notna()
    chosen = runs.sort_values(["measured", "ended"]).groupby("target_device").tail(1)
    return chosen.sort_values("target_device").reset_index(drop=True)


@dataclass(frozen=True)
class SpeedUp:
    cpu_epoch_s: float | None
    gpu_epoch_s: float | None
    gpu_unavailable: bool  # a cuda point exists but says no GPU was usable

    @property
    def speedup(self) -> float | None:
        if self.cpu_epoch_s is None or self.gpu_epoch_s is None or self.gpu_epoch_s <= 0:
            return None
        return self.cpu_epoch_s / self.gpu_epoch_s

    def results(self) -> dict[str, Any]:
        return {"cpu_epoch_s": self.cpu_epoch_s, "gpu_epoch_s": self.gpu_epoch_s, "speedup": self.speedup}

    def sentence(self) -> str:
        cpu = f"{self.cpu_epoch_s:.2f} s per epoch on the CPU" if self.cpu_epoch_s is not None else None
        gpu = f"{self.gpu_epoch_s:.2f} s per epoch on the GPU" if self.gpu_epoch_s is not None else None
        if self.speedup is not None:
            return f"{gpu} against {cpu}: the GPU is {self.speedup:.1f}× faster."
        missing = []
        if gpu is None:
            missing.append(
                "no GPU on this machine could be measured"
                if self.gpu_unavailable
                else "the GPU point is not recorded yet (`-p device cuda`)"
            )
        if cpu is None:
            missing.append("the CPU point is not recorded yet (`-p device cpu`)")
        measured = " and ".join(x for x in (gpu, cpu) if x)
        lead = measured[:1].upper() + measured[1:] + "; " if measured else ""
        return f"{lead}no speed-up can be computed: " + "; ".join(missing) + "."


def c4_speedup(points: pd.DataFrame) -> SpeedUp:
    """GPU vs CPU average epoch time from C4's points (c4_points)."""
    values: dict[str, float | None] = {"cpu": None, "cuda": None}
    unavailable = False
    for row in points.to_dict("records") if not points.empty else []:
        if row.get("measured") and _finite(row.get("epoch_s_mean")):
            values[row["target_device"]] = float(row["epoch_s_mean"])
        elif row["target_device"] == "cuda":
            unavailable = True
    return SpeedUp(values["cpu"], values["cuda"], unavailable)


# --- C5: optimisers ------------------------------------------------------------------


def mark_diverged(points: pd.DataFrame) -> pd.DataFrame:
    """A copy with a `diverged` column that is True when the run said so or its loss is not finite
    (a NaN loss is stored as null in the records): such points stay in the table."""
    table = points.copy()
    flagged = table["diverged"].fillna(False).astype(bool) if "diverged" in table else False
    loss = table["final_loss"] if "final_loss" in table else pd.Series(float("nan"), index=table.index)
    table["diverged"] = flagged | ~loss.apply(_finite)
    table["outcome"] = table["diverged"].map({True: "diverged (loss NaN/inf)", False: "trained"})
    return table


def optimizer_table(points: pd.DataFrame) -> pd.DataFrame:
    """C5's comparison: one row per optimiser, rounded, diverged runs flagged and kept."""
    table = mark_diverged(points)
    columns = [
        "optimizer",
        "workers",
        "epochs_run",
        "train_s_mean",
        "epoch_s_mean",
        "final_loss",
        "final_accuracy",
        "loss_mean",
        "accuracy_mean",
        "outcome",
    ]
    return table.reindex(columns=columns).sort_values("optimizer").reset_index(drop=True).round(4)


def optimizer_discussion(points: pd.DataFrame) -> list[str]:
    """C5's discussion: fastest convergence, best accuracy, cheapest step, divergence."""
    if points.empty:
        return ["No optimiser point is recorded yet."]
    table = mark_diverged(points)
    healthy = table[~table["diverged"]]
    said = []
    if not healthy.empty:
        lowest = healthy.loc[healthy["final_loss"].astype(float).idxmin()]
        accurate = healthy.loc[healthy["final_accuracy"].astype(float).idxmax()]
        said.append(
            f"`{lowest['optimizer']}` converged fastest: after {int(lowest['epochs_run'])} epoch(s) its training loss "
            f"is the lowest, {lowest['final_loss']:.3f} (top-1 training accuracy {lowest['final_accuracy']:.2f} %)."
        )
        if accurate["optimizer"] != lowest["optimizer"]:
            said.append(
                f"The highest training accuracy is `{accurate['optimizer']}`'s, "
                f"{accurate['final_accuracy']:.2f} % (loss {accurate['final_loss']:.3f})."
            )
        if len(healthy) > 1:
            slowest = healthy.loc[healthy["final_loss"].astype(float).idxmax()]
            said.append(
                f"The slowest to converge is `{slowest['optimizer']}` (loss {slowest['final_loss']:.3f}, "
                f"accuracy {slowest['final_accuracy']:.2f} %)."
            )
    timed = table.dropna(subset=["train_s_mean"])
    if len(timed) > 1:
        cheap = timed.loc[timed["train_s_mean"].astype(float).idxmin()]
        dear = timed.loc[timed["train_s_mean"].astype(float).idxmax()]
        spread = dear["train_s_mean"] / cheap["train_s_mean"] - 1
        said.append(
            f"Per epoch, training takes {cheap['train_s_mean']:.2f} s with `{cheap['optimizer']}` and "
            f"{dear['train_s_mean']:.2f} s with `{dear['optimizer']}` ({spread:.0%} apart)"
            + (
                ": the optimiser's update is small next to ResNet-18's forward and backward, so the time differs "
                "little."
                if spread < 0.10
                else "; the update itself (a few element-wise operations per parameter, more state for Adam, Adagrad "
                "and Adadelta) is small next to ResNet-18's forward and backward, so a gap this large comes "
                "mostly from the machine's load during the runs."
            )
        )
    diverged = table[table["diverged"]]
    if not diverged.empty:
        names = ", ".join(f"`{name}`" for name in diverged["optimizer"])
        said.append(
            f"Diverged (loss became NaN/inf, training stopped): {names}; lr 0.1 is too large a step "
            "for them without a schedule."
        )
    else:
        said.append(f"None of the {len(table)} optimiser(s) recorded diverged at lr 0.1.")
    missing = sorted({"sgd", "sgd_nesterov", "adagrad", "adadelta", "adam"} - set(table["optimizer"]))
    if missing:
        said.append(f"Not recorded yet: {', '.join(f'`{m}`' for m in missing)} (`-p optimizer NAME`).")
    return said


# --- C6: against C5's SGD ------------------------------------------------------------


def find_c5_sgd(
    tag: str, data_fingerprint: str | None, resolved_device: str | None, epochs: int, limit_train: int, root=None
) -> pd.Series | None:
    """The latest complete C5 run with SGD and BatchNorm, with the same tag, data (source and
    subset size), device and number of epochs; None when there is none."""
    runs = load_runs("c5_optimizers", tag=tag, root=root)
    if runs.empty:
        return None
    mask = (
        (runs["optimizer"] == "sgd")
        & (runs["batch_norm"].astype(bool))
        & (runs["epochs"] == epochs)
        & (runs["limit_train"] == limit_train)
        & (runs["data_fingerprint"] == data_fingerprint)
        & (runs["resolved_device"] == resolved_device)
    )
    found = runs[mask].sort_values("ended")
    return None if found.empty else found.iloc[-1]


def batchnorm_comparison(without: Mapping[str, Any], reference: pd.Series | None) -> tuple[pd.DataFrame, list[str]]:
    """C6's table (without BatchNorm vs C5's SGD) and its sentences."""
    columns = ["epochs_run", "loss_mean", "accuracy_mean", "final_loss", "final_accuracy", "epoch_s_mean"]
    rows = [{"run": "C6: SGD without BatchNorm", **{c: without.get(c) for c in columns}}]
    diverged = bool(without.get("diverged")) or not _finite(without.get("final_loss"))
    said = [
        f"Without BatchNorm, the average training loss over {without.get('epochs_run')} epoch(s) is "
        f"{float(without['loss_mean']):.3f} and the average top-1 training accuracy "
        f"{float(without['accuracy_mean']):.2f} %." + (" **The loss diverged (NaN/inf).**" if diverged else "")
    ]
    if reference is None:
        said.append(
            "No C5 SGD run with the same tag, data, device and epochs is recorded, so there is nothing to "
            "compare against; run notebooks/c5_optimizers.ipynb with `-p optimizer sgd` and the same "
            "settings, then this section again."
        )
        return pd.DataFrame(rows), said
    rows.append({"run": "C5: SGD with BatchNorm", **{c: reference.get(c) for c in columns}})
    loss_gap = float(without["loss_mean"]) - float(reference["loss_mean"])
    accuracy_gap = float(without["accuracy_mean"]) - float(reference["accuracy_mean"])
    said.append(
        f"With BatchNorm (C5's SGD run {reference['run_id']}) the averages are {float(reference['loss_mean']):.3f} "
        f"and {float(reference['accuracy_mean']):.2f} %: removing BatchNorm changes the average loss by "
        f"{loss_gap:+.3f} and the accuracy by {accuracy_gap:+.2f} points. "
        + (
            "BatchNorm keeps each layer's inputs normalised, which lets lr 0.1 train a deep network stably; without "
            "it the same step size trains more slowly."
            if loss_gap > 0
            else f"Here the run without BatchNorm did not train worse over {without.get('epochs_run')} epoch(s); "
            "BatchNorm's benefit (stable, faster training at lr 0.1) shows over longer training."
        )
    )
    return pd.DataFrame(rows), said


# --- P-2025-C4: 1 worker vs C3's best ----------------------------------------------


def worker_profile(epochs: pd.DataFrame) -> pd.DataFrame:
    """Per worker count: mean data, training and epoch seconds, per-batch milliseconds, data share.

    `epochs` holds EpochRecord rows with a `workers` column (one training per count)."""
    grouped = (
        epochs.groupby("workers")
        .agg(
            epochs_run=("epoch", "count"),
            batches=("batches", "sum"),
            data_s_mean=("data_s", "mean"),
            train_s_mean=("train_s", "mean"),
            epoch_s_mean=("total_s", "mean"),
            data_s_total=("data_s", "sum"),
            train_s_total=("train_s", "sum"),
            epoch_s_total=("total_s", "sum"),
        )
        .reset_index()
    )
    grouped["data_ms_per_batch"] = 1000 * grouped["data_s_total"] / grouped["batches"]
    grouped["train_ms_per_batch"] = 1000 * grouped["train_s_total"] / grouped["batches"]
    grouped["data_share"] = grouped["data_s_total"] / grouped["epoch_s_total"]
    return grouped.drop(columns=["data_s_total", "train_s_total", "epoch_s_total"])


def profile_results(profile: pd.DataFrame) -> dict[str, float]:
    """Flat names for run.log_results: w<N>_data_s_mean, w<N>_train_s_mean, ..."""
    names = ("data_s_mean", "train_s_mean", "epoch_s_mean", "data_ms_per_batch", "train_ms_per_batch", "data_share")
    return {f"w{int(row['workers'])}_{name}": float(row[name]) for row in profile.to_dict("records") for name in names}


def profile_sentences(profile: pd.DataFrame, single: int = 1) -> list[str]:
    """P-2025-C4's explanation: where each epoch goes with 1 worker and with the best count."""
    said = []
    for row in profile.to_dict("records"):
        bound = "data-bound" if row["data_ms_per_batch"] > row["train_ms_per_batch"] else "compute-bound"
        said.append(
            f"With {int(row['workers'])} worker(s), an epoch takes {row['epoch_s_mean']:.2f} s: "
            f"{row['data_s_mean']:.2f} s waiting for data ({row['data_share']:.1%}) and {row['train_s_mean']:.2f} s "
            f"training; per batch {row['data_ms_per_batch']:.1f} ms of waiting against "
            f"{row['train_ms_per_batch']:.1f} ms of computation, so this setting is {bound}."
        )
    counts = profile["workers"].astype(int).tolist()
    if len(counts) == 2 and single in counts:
        other = next(count for count in counts if count != single)
        one, best = profile.set_index("workers").loc[single], profile.set_index("workers").loc[other]
        how = (
            f"{other} workers prepare up to {other} batches at once"
            if other > 0
            else "with 0 workers the main process prepares each batch itself, between training steps, "
            "with no process start-up"
        )
        said.append(
            f"A single worker must prepare every image of a batch alone (PIL image, random crop, flip, "
            f"to tensor, normalise) while the main process trains, so the main process waits whenever a batch "
            f"takes longer to prepare than to train on; {how}."
            f"The wait goes from {one['data_s_mean']:.2f} s to {best['data_s_mean']:.2f} s per epoch "
            f"({one['data_s_mean'] - best['data_s_mean']:+.2f} s saved) while the training time goes from "
            f"{one['train_s_mean']:.2f} s to {best['train_s_mean']:.2f} s (the workers share the cores with it), "
            f"and the epoch from {one['epoch_s_mean']:.2f} s to {best['epoch_s_mean']:.2f} s."
        )
    return said


def train_per_workers(config, counts: Sequence[int], data, run=None) -> pd.DataFrame:
    """Train once per worker count with otherwise equal settings (same seed, so the same
    initial weights and batch order); return every epoch's row with a `workers` column.

    With `run`, each epoch is logged to it with its count as `loader_workers`
    (load_epochs fills `workers` from the run's settings) and the profile's
    numbers become the run's results.
    """
    from lablib.core.config import make_config
    from lablib.core.train import train

    rows = []
    for count in counts:
        trained = train(make_config(config, workers=int(count)), data=data)
        for record in trained.epochs:
            rows.append({**record.to_dict(), "workers": int(count)})
            if run is not None:
                run.log_epoch({**record.to_dict(), "loader_workers": int(count)})
    epochs = pd.DataFrame(rows)
    if run is not None:
        run.log_results(compared_workers=[int(c) for c in counts], **profile_results(worker_profile(epochs)))
    return epochs
