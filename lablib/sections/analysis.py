"""What the training sections conclude, derived from the run records: C1-C6 and P-2025-C4.

C1 and C2 answer from one run's epochs. C3-C6 and P-2025-C4 each measure one
point per execution, and their answers compare the points recorded so far. The
facts behind each answer (which point was best, where the data-loading time
stopped falling, what share of an epoch is still spent waiting for data, which
optimiser diverged and at which lr) are computed here, and turned into the
report's sentences here too, with their thresholds as named constants, so the
notebooks only display them and the tests can check them against the records.
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
from lablib.core.runs import load_runs
from lablib.core.train import DIVERGENCE_RULE
from lablib.sections.sweeps import (
    best_point,
    c3_best_workers,
    c3_next_workers,
    c3_worker_candidates,
    group_runs,
)

LAB_WORKERS = 2  # LAB_SPEC "Common setup": the DataLoader's default num_workers
BOTTLENECK_SHARE = 0.15  # below this share of the epoch, waiting for data is no longer the bottleneck
FIRST_EPOCH_SLOWER = 1.10  # epoch 1 more than 10 % slower than the later ones' mean: start-up costs are visible
MOMENTUM_OPTIMIZERS = ("sgd", "sgd_nesterov", "rmsprop")  # the optimisers that take the momentum setting
C5_OPTIMIZERS = ("sgd", "sgd_nesterov", "adagrad", "adadelta", "adam")  # LAB_SPEC C5
SAME_COST_SPREAD = 0.10  # training times within 10 % of each other: the optimiser's update costs about the same
LOSS_TIE = 0.05  # average losses closer than this: the two trainings are about equally good
SINGLE_WORKER = 1  # P-2025-C4 compares 1 worker with C3's best


def _finite(value: Any) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _epoch_frame(epochs: pd.DataFrame | Sequence[Any]) -> pd.DataFrame:
    """EpochRecords (or their dicts, or a frame of them) as a frame, one row per epoch."""
    if isinstance(epochs, pd.DataFrame):
        return epochs.reset_index(drop=True)
    return pd.DataFrame([e.to_dict() if hasattr(e, "to_dict") else dict(e) for e in epochs])


def _epochs_phrase(count: int) -> str:
    return f"{count} epoch" if count == 1 else f"{count} epochs"


# --- C1: the training run --------------------------------------------------------------


def training_setup_sentence(config, device_type: str) -> str:
    """What C1 trained with, from the config it ran."""
    momentum = f", momentum {config.momentum:g}" if config.optimizer in MOMENTUM_OPTIMIZERS else ""
    return (
        f"Training: {_epochs_phrase(config.epochs)} of batches of {config.batch_size} images, `{config.optimizer}` "
        f"with lr {config.lr:g}{momentum} and weight decay {config.weight_decay:g}, "
        f"{'with' if config.batch_norm else 'without'} BatchNorm, {config.workers} loader worker(s), "
        f"on `{device_type}`."
    )


def training_text(epochs: pd.DataFrame | Sequence[Any], train_images: int, device_type: str, config) -> str:
    """C1's answer: the last epoch's loss and top-1 training accuracy, against the first epoch's."""
    frame = _epoch_frame(epochs)
    if frame.empty:
        return "**C1:** no epoch was recorded."
    first, last = frame.iloc[0], frame.iloc[-1]
    diverged = bool(frame["diverged"].any()) if "diverged" in frame else not _finite(last["loss"])
    lead = (
        f"**C1:** after {_epochs_phrase(len(frame))} on {train_images:,} training images on `{device_type}` with "
        f"{config.workers} workers and `{config.optimizer}` (lr {config.lr:g}), "
    )
    if diverged:
        return lead + (
            f"the loss became NaN/inf in epoch {int(last['epoch'])} and training stopped there: at lr "
            f"{config.lr:g} the updates of `{config.optimizer}` grew without bound in this run."
        )
    if len(frame) == 1:
        return lead + (
            f"the average training loss is {last['loss']:.3f} and the top-1 training accuracy "
            f"{last['accuracy']:.2f} % (one epoch, so no trend yet)."
        )
    if last["loss"] < first["loss"]:
        trend = (
            f"the average training loss fell from {first['loss']:.3f} in epoch 1 to {last['loss']:.3f} and the "
            f"top-1 training accuracy went from {first['accuracy']:.2f} % to {last['accuracy']:.2f} %: the network "
            "is learning."
        )
    else:
        trend = (
            f"the average training loss did not fall ({first['loss']:.3f} in epoch 1, {last['loss']:.3f} in epoch "
            f"{int(last['epoch'])}; top-1 training accuracy {first['accuracy']:.2f} % and {last['accuracy']:.2f} %)."
        )
    return lead + trend


# --- C2: where an epoch's time goes ------------------------------------------------------


def timing_frame(epochs: pd.DataFrame | Sequence[Any]) -> pd.DataFrame:
    """The epochs with `other_s`: the part of each epoch outside the data and training intervals."""
    frame = _epoch_frame(epochs).copy()
    frame["other_s"] = frame["total_s"] - frame["data_s"] - frame["train_s"]
    return frame


def timing_table(epochs: pd.DataFrame | Sequence[Any]) -> pd.DataFrame:
    """C2's table: one row per epoch, then their average; seconds rounded to the millisecond."""
    frame = timing_frame(epochs)
    shown = frame[["epoch", "data_s", "train_s", "other_s", "total_s", "batches", "images", "images_per_s"]]
    average = pd.DataFrame([{"epoch": "average", **shown.drop(columns="epoch").mean().to_dict()}])
    table = pd.concat([shown.astype({"epoch": object}), average], ignore_index=True)
    return table.rename(
        columns={
            "data_s": "C2.1 data-loading (s)",
            "train_s": "C2.2 training (s)",
            "other_s": "other (s)",
            "total_s": "C2.3 total (s)",
            "images_per_s": "images/s",
        }
    ).round(3)


def timing_results(epochs: pd.DataFrame | Sequence[Any]) -> dict[str, float]:
    """C2's numbers for run.log_results: the unmeasured remainder and the two shares of the epoch."""
    averages = timing_frame(epochs)[["data_s", "train_s", "other_s", "total_s"]].mean()
    return {
        "other_s_mean": float(averages["other_s"]),
        "data_share": float(averages["data_s"] / averages["total_s"]),
        "train_share": float(averages["train_s"] / averages["total_s"]),
    }


def timing_text(epochs: pd.DataFrame | Sequence[Any], device_type: str, workers: int) -> str:
    """C2.1-C2.3 from the epochs' timings: averages, shares, the first epoch, what is left unmeasured."""
    frame = timing_frame(epochs)
    if frame.empty:
        return "**C2:** no epoch was recorded."
    mean, first = frame.mean(numeric_only=True), frame.iloc[0]
    data_share, train_share = mean["data_s"] / mean["total_s"], mean["train_s"] / mean["total_s"]
    several = len(frame) > 1
    later = frame.iloc[1:]["total_s"].mean() if several else None

    def first_epoch(column: str) -> str:
        return f"; epoch 1: {first[column]:.2f} s" if several else ""

    data_verdict = (
        "waiting for data is a large part of the epoch, so the loader is a bottleneck here"
        if data_share >= BOTTLENECK_SHARE
        else "the training rarely waits for data"
    )
    said = [
        f"**C2.1:** waiting for data took {mean['data_s']:.2f} s per epoch on average ({data_share:.0%} of the "
        f"epoch{first_epoch('data_s')}): {data_verdict}.",
        f"**C2.2:** training (copy, forward, backward, step) took {mean['train_s']:.2f} s per epoch on average "
        f"({train_share:.0%}{first_epoch('train_s')}).",
    ]
    total = (
        f"**C2.3:** a whole epoch took {mean['total_s']:.2f} s on average"
        + (f" (epoch 1: {first['total_s']:.2f} s)" if several else "")
        + f", {mean['images_per_s']:.0f} images/s over {int(first['images']):,} images per epoch, on `{device_type}` "
        f"with {workers} workers; {mean['other_s']:.3f} s per epoch fall outside the two measured intervals."
    )
    if several and first["total_s"] > FIRST_EPOCH_SLOWER * later:
        total += (
            f" Epoch 1 is {first['total_s'] / later - 1:.0%} slower than the later epochs' mean ({later:.2f} s): "
            "it pays the one-time start-up costs (memory allocation, library initialisation, cold caches)."
        )
    said.append(total)
    return "\n\n".join(said)


# --- workers: a parameter, C3's next point, or C3.2's best ----------------------------


@dataclass(frozen=True)
class WorkersChoice:
    workers: int
    source: str  # parameter | next (C3's rule) | best (C3 sweep complete) | c3 (C3.2's records) | lab default
    reason: str  # the count and why, a sentence fragment ("4 workers: C3.2's best ...")
    seconds_per_epoch: float | None = None  # C3.2's runtime when taken from the records
    requested: int = -1  # the `workers` parameter as given (-1: the section chooses)

    def sentence(self, device_type: str, available: bool = True) -> str:
        """The preamble's sentence: where this execution runs and with which workers, and why;
        `available` False: the device is not on this machine (C4 records that instead of training)."""
        where = (
            f"runs on `{device_type}`" if available else f"stands for the `{device_type}` point, not available here,"
        )
        return f"This execution {where} with {self.reason}"

    def record(self) -> dict[str, Any]:
        """The run's params that say how the count was chosen."""
        return {"workers_requested": self.requested, "workers_source": self.source}


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
        return WorkersChoice(
            requested, "parameter", f"{requested} workers, as the `workers` parameter asks.", requested=requested
        )
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
            requested,
        )
    return WorkersChoice(
        LAB_WORKERS,
        "lab default",
        (
            f"the lab's default of {LAB_WORKERS} workers: there is no complete c3_workers record with tag "
            f"{tag!r}, the same data and device `{resolved_device}` to take C3.2's best from "
            "(run notebooks/c3_workers.ipynb first to use it)."
        ),
        requested=requested,
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
        return WorkersChoice(
            requested, "parameter", f"{requested} workers, as the `workers` parameter asks.", requested=requested
        )
    cores = cores or os.cpu_count() or 1
    following = c3_next_workers(points, max_workers=cores)
    if following is not None:
        measured = sorted(int(w) for w in points["workers"]) if not points.empty else []
        return WorkersChoice(
            following,
            "next",
            (f"{following} workers, the next count of the lab's rule (measured so far: {measured or 'none'})."),
            requested=requested,
        )
    best = best_point(points, "workers")
    return WorkersChoice(
        int(best["workers"]),
        "best",
        (f"{int(best['workers'])} workers again: the lab's rule is complete, so the best point is measured once more."),
        float(best["epoch_s_mean"]),
        requested,
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

    def data_loading_text(self) -> str:
        """C3.1: the total data-loading time per count, and where the lab's rule stands."""
        if not self.measured:
            return f"**C3.1:** no point is recorded yet. {self.rule_sentence()}"
        times = ", ".join(f"{w} workers {s:.2f} s" for w, s in zip(self.table["workers"], self.table["data_s_total"]))
        epochs = sorted({int(e) for e in self.table["epochs_run"].dropna()})
        over = f" (over {_epochs_phrase(epochs[0])} each)" if len(epochs) == 1 else " (points with different epochs)"
        return f"**C3.1:** total data-loading time: {times}{over}. {self.rule_sentence()}"

    def best_text(self) -> str:
        """C3.2."""
        return f"**C3.2:** {self.best_sentence()}"

    def why_text(self) -> str:
        """C3.3."""
        return "**C3.3:** " + " ".join(self.sentences())

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
        if self.speedup is not None and self.speedup >= 1:
            return f"{gpu} against {cpu}: the GPU is {self.speedup:.1f}× faster."
        if self.speedup is not None:
            return (
                f"{gpu} against {cpu}: the CPU is {1 / self.speedup:.1f}× faster here: at these settings the "
                "GPU's fixed costs per step (kernel launches, copies to the device) outweigh its faster computation."
            )
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

    def text(self) -> str:
        """C4's answer, with what to run when this machine cannot complete it."""
        incomplete = self.gpu_epoch_s is None and self.gpu_unavailable
        return f"**C4:** {self.sentence()}" + (
            " The CPU figure above is what this machine can measure; run this notebook with "
            "`-p device cuda` on a machine with a GPU to complete the comparison."
            if incomplete and self.cpu_epoch_s is not None
            else ""
        )


def c4_point_text(target: DeviceChoice, epochs: Sequence[Any] | pd.DataFrame | None) -> str:
    """What this execution of C4 measured: its device's epoch times, or that the device is unavailable."""
    if not target.available:
        return (
            f"**Not measured:** no GPU is available on this machine: {target.reason} The `{target.target}` point "
            "is recorded as unavailable (status complete, `device_available` False) and nothing was trained."
        )
    frame = _epoch_frame(epochs if epochs is not None else [])
    if frame.empty:
        return f"Nothing was measured on `{target.target}`: no epoch was recorded."
    return (
        f"Measured on `{target.target}`: {frame['total_s'].mean():.2f} s per epoch over "
        f"{_epochs_phrase(len(frame))} (last epoch {frame['total_s'].iloc[-1]:.2f} s)."
    )


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
    """A copy with a `diverged` column that is True when the run said so (DIVERGENCE_RULE) or its loss is not
    finite (a NaN loss is stored as null in the records): such points stay in the table."""
    table = points.copy()
    flagged = table["diverged"].fillna(False).astype(bool) if "diverged" in table else False
    loss = table["final_loss"] if "final_loss" in table else pd.Series(float("nan"), index=table.index)
    table["diverged"] = flagged | ~loss.apply(_finite)
    table["outcome"] = table["diverged"].map({True: "diverged (stopped)", False: "trained"})
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
    if len(healthy) == 1:
        only = healthy.iloc[0]
        said.append(
            f"`{only['optimizer']}` is the only optimiser that trained without diverging so far: after "
            f"{int(only['epochs_run'])} epoch(s) its training loss is {only['final_loss']:.3f} (top-1 training "
            f"accuracy {only['final_accuracy']:.2f} %); the comparison needs the others."
        )
    elif not healthy.empty:
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
                if spread < SAME_COST_SPREAD
                else "; the update itself (a few element-wise operations per parameter, more state for Adam, Adagrad "
                "and Adadelta) is small next to ResNet-18's forward and backward, so a gap this large comes "
                "mostly from the machine's load during the runs."
            )
        )
    said.append(_divergence_sentence(table))
    missing = sorted(set(C5_OPTIMIZERS) - set(table["optimizer"]))
    if missing:
        said.append(f"Not recorded yet: {', '.join(f'`{m}`' for m in missing)} (`-p optimizer NAME`).")
    return said


def _lr_phrase(rows: pd.DataFrame) -> str:
    """'lr 0.1' when the rows share one recorded lr, else each optimiser's lr."""
    if "lr" not in rows or rows["lr"].isna().all():
        return "the recorded lr"
    rates = sorted({float(r) for r in rows["lr"].dropna()})
    if len(rates) == 1:
        return f"lr {rates[0]:g}"
    return "their lr (" + ", ".join(f"`{o}` {float(r):g}" for o, r in zip(rows["optimizer"], rows["lr"])) + ")"


def _divergence_sentence(table: pd.DataFrame) -> str:
    """Which optimisers diverged, at the lr the records show; or that none did."""
    diverged = table[table["diverged"]]
    if diverged.empty:
        return f"None of the {len(table)} optimiser(s) recorded diverged at {_lr_phrase(table)}."
    names = ", ".join(f"`{name}`" for name in diverged["optimizer"])
    return (
        f"Diverged ({DIVERGENCE_RULE}; training stopped): {names}; at {_lr_phrase(diverged)} their updates grew "
        "without bound, a step too large for them without a schedule."
    )


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


def batchnorm_parameters_sentence(num_classes: int = 10, in_channels: int = 3) -> str:
    """C6's model, counted: ResNet-18's trainable parameters with and without BatchNorm."""
    from lablib.core.model import count_parameters, resnet18

    with_norm = count_parameters(resnet18(num_classes=num_classes, batch_norm=True, in_channels=in_channels))
    without = count_parameters(resnet18(num_classes=num_classes, batch_norm=False, in_channels=in_channels))
    return (
        f"Without BatchNorm, ResNet-18 has {without:,} trainable parameters instead of {with_norm:,}: the "
        f"{with_norm - without:,} scale and shift parameters of its BatchNorm layers are gone."
    )


def reference_results(reference: pd.Series | None) -> dict[str, Any]:
    """What C6's record keeps of the C5 run it is compared with (None when there is none)."""
    if reference is None:
        return {"reference_run": None, "reference_loss_mean": None, "reference_accuracy_mean": None}
    return {
        "reference_run": reference["run_id"],
        "reference_loss_mean": float(reference["loss_mean"]),
        "reference_accuracy_mean": float(reference["accuracy_mean"]),
    }


def batchnorm_comparison(
    without: Mapping[str, Any], reference: pd.Series | None, lr: float
) -> tuple[pd.DataFrame, list[str]]:
    """C6's table (without BatchNorm vs C5's SGD) and its sentences; `lr` is the one C6 trained with."""
    columns = ["epochs_run", "loss_mean", "accuracy_mean", "final_loss", "final_accuracy", "epoch_s_mean"]
    rows = [{"run": "C6: SGD without BatchNorm", **{c: without.get(c) for c in columns}}]
    diverged = bool(without.get("diverged")) or not _finite(without.get("final_loss"))
    epochs = _epochs_phrase(int(without.get("epochs_run") or 0))
    said = [
        f"Without BatchNorm, the average training loss over {epochs} is {float(without['loss_mean']):.3f} and the "
        f"average top-1 training accuracy {float(without['accuracy_mean']):.2f} %."
        + (f" **The training diverged ({without.get('diverged_reason') or DIVERGENCE_RULE}).**" if diverged else "")
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
    if diverged:
        verdict = (
            f"BatchNorm keeps each layer's inputs normalised; without it, lr {lr:g} is too large a step for this "
            "deep network and the training diverged."
        )
    elif loss_gap > LOSS_TIE:
        verdict = (
            f"BatchNorm keeps each layer's inputs normalised, which lets lr {lr:g} train the deep network stably; "
            "without it the same step size trains more slowly."
        )
    elif loss_gap < -LOSS_TIE:
        verdict = (
            f"Here the run without BatchNorm reached the lower loss over {epochs}: at lr {lr:g} and this length "
            "of training, BatchNorm did not help."
        )
    else:
        verdict = (
            f"Over {epochs} the two trained about equally well (average losses within {LOSS_TIE:g}): this run "
            "is too short to show BatchNorm's effect."
        )
    said.append(
        f"With BatchNorm (C5's SGD run {reference['run_id']}) the averages are {float(reference['loss_mean']):.3f} "
        f"and {float(reference['accuracy_mean']):.2f} %: removing BatchNorm changes the average loss by "
        f"{loss_gap:+.3f} and the accuracy by {accuracy_gap:+.2f} points. {verdict}"
    )
    reference_lr = reference.get("lr")
    if _finite(reference_lr) and not math.isclose(float(reference_lr), lr):
        said.append(f"C5's run trained with lr {float(reference_lr):g}, so the two runs also differ in step size.")
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


def profile_counts(workers: int, single: int = SINGLE_WORKER) -> list[int]:
    """The worker counts P-2025-C4 trains with: 1 and the compared count (once when they are equal)."""
    return sorted({single, int(workers)})


def profile_counts_sentence(workers: int, single: int = SINGLE_WORKER) -> str:
    counts = profile_counts(workers, single)
    if len(counts) == 1:
        return f"The compared count is {single} worker itself, so one training is measured."
    return f"Compared: {single} worker and {int(workers)} workers, two trainings recorded in one run."


def profile_sentences(profile: pd.DataFrame, single: int = SINGLE_WORKER) -> list[str]:
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
        saved = one["data_s_mean"] - best["data_s_mean"]
        wait = (
            f"The wait goes from {one['data_s_mean']:.2f} s to {best['data_s_mean']:.2f} s per epoch "
            f"({saved:.2f} s saved)"
            if saved > 0
            else f"The wait does not shrink: {one['data_s_mean']:.2f} s per epoch with {single} worker against "
            f"{best['data_s_mean']:.2f} s with {other}"
        )
        train_change = best["train_s_mean"] - one["train_s_mean"]
        compute = (
            f"the training time rises from {one['train_s_mean']:.2f} s to {best['train_s_mean']:.2f} s "
            "(the workers share the cores with it)"
            if train_change > 0
            else f"the training time goes from {one['train_s_mean']:.2f} s to {best['train_s_mean']:.2f} s"
        )
        said.append(
            f"A single worker must prepare every image of a batch alone (PIL image, random crop, flip, "
            f"to tensor, normalise) while the main process trains, so the main process waits whenever a batch "
            f"takes longer to prepare than to train on; {how}. {wait}, while {compute}, and the epoch goes from "
            f"{one['epoch_s_mean']:.2f} s to {best['epoch_s_mean']:.2f} s."
        )
    return said


def profile_text(profile: pd.DataFrame, single: int = SINGLE_WORKER) -> str:
    """P-2025-C4's answer, labelled."""
    if profile.empty:
        return "**P-2025-C4:** no training was recorded."
    return "**P-2025-C4:** " + " ".join(profile_sentences(profile, single))


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
