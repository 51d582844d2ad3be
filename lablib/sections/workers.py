"""C3 (I/O optimisation) and P-2025-C4 (1 worker vs the best), and the worker count other sections use.

C3 trains the common setup once per DataLoader worker count: the lab's rule walks 0, 4, 8, ...
(never beyond the machine's cores) until the data-loading time stops decreasing (`sweep` "rule",
the default); `sweep` "fixed" measures 0, 4, ..., 20 (or up to the cores) whatever the times do,
as the 2026 report did. Every point is a training measurement (lablib.core.training), so the best
point is the very run C4, C5, C6, P-2025-C4, P-2025-C8 and X-FAST's faithful mode ask for when they
use C3.2's best count: it is trained once.

`best_workers(config, recorded)` is C3.2's answer from the records (the rule complete), and
`choose_workers(params, recorded)` turns a section's `workers` parameter (-1: C3.2's best, else the
lab's 2) into a count and the sentence that says why.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from lablib.core.config import RunConfig, config_from_params
from lablib.core.errors import ConfigError
from lablib.core.progress import counted
from lablib.core.store import Measured, Request
from lablib.core.training import training_request
from lablib.sections.headlines import Headline, answer, latest, missing, number, shown
from lablib.sections.registry import Needs, Presenter, Recorded
from lablib.sections.training import BOTTLENECK_SHARE, epochs_phrase

LAB_WORKERS = 2  # LAB_SPEC "Common setup": the DataLoader's default num_workers
CHOOSE = -1  # a `workers` parameter of -1 asks for C3.2's best count (C3 itself: the rule's walk)
C3_STEP = 4  # LAB_SPEC C3: num_workers = 0, 4, 8, 12, ...
FIXED_LARGEST = 20  # `sweep` fixed: 0, 4, ..., 20 (the 2026 report's sweep), or up to the cores
SWEEPS = ("rule", "fixed")
SINGLE_WORKER = 1  # P-2025-C4 compares 1 worker with C3's best
SLOWER_TRAINING = 0.05  # a training more than 5 % slower with the workers than without: they took its CPU time
# The settings C3's trainings share with the sections that take its best count; the rest is the lab's.
SHARED_SETTINGS = (
    "data",
    "data_dir",
    "download",
    "limit_train",
    "limit_test",
    "epochs",
    "batch_size",
    "seed",
    "device",
)


# --- the sweep ---------------------------------------------------------------------------------


def c3_worker_candidates(max_workers: int | None = None, step: int = C3_STEP) -> list[int]:
    """0, 4, 8, ... up to the machine's cores; the core count itself ends the list
    when it is not a multiple of the step (2 cores: [0, 2])."""
    cores = max_workers if max_workers is not None else (os.cpu_count() or 1)
    values = list(range(0, cores + 1, step))
    if values[-1] != cores:
        values.append(cores)
    return values


def c3_next_workers(
    points: pd.DataFrame | Mapping[int, float], max_workers: int | None = None, step: int = C3_STEP
) -> int | None:
    """The next worker count C3 should measure, or None when the sweep is done.

    `points` maps workers -> total data-loading time (or is a frame with
    columns workers and data_s_total). The lab's rule: go up the candidates
    until the data-loading time stops decreasing, never beyond the cores.
    """
    if isinstance(points, pd.DataFrame):
        points = dict(zip(points["workers"].astype(int), points["data_s_total"])) if not points.empty else {}
    previous = None
    for workers in c3_worker_candidates(max_workers, step):
        if workers not in points:
            return workers
        if previous is not None and points[workers] >= points[previous]:
            return None  # no gain: the sweep stops here
        previous = workers
    return None


def best_point(points: pd.DataFrame, param: str, metric: str = "epoch_s_mean") -> pd.Series | None:
    """The point with the smallest `metric` (the best runtime)."""
    valid = points.dropna(subset=[metric]) if not points.empty and metric in points else pd.DataFrame()
    if valid.empty:
        return None
    return valid.loc[valid[metric].idxmin()]


def c3_config(config: RunConfig) -> RunConfig:
    """C3's training settings for `config`'s data, subset, epochs, batch, seed and device; the rest the lab's."""
    return dataclasses.replace(RunConfig(), **{name: getattr(config, name) for name in SHARED_SETTINGS})


def core_limit(max_workers: int = 0) -> int:
    """The largest count C3 may try: the machine's logical cores, or `max_workers` when smaller (0: no cap)."""
    cores = os.cpu_count() or 1
    return min(max_workers, cores) if max_workers > 0 else cores


def c3_request(config: RunConfig, workers: int) -> Request:
    return training_request(dataclasses.replace(c3_config(config), workers=int(workers)))


@dataclass(frozen=True)
class Walk:
    """C3's sweep as far as the records go: the requests in order, and whether the sweep is done."""

    requests: tuple[Request, ...]
    complete: bool
    measured: dict[int, Measured] = field(default_factory=dict)  # workers -> its recorded measurement


def c3_walk(config: RunConfig, recorded: Recorded, max_workers: int = 0, sweep: str = "rule") -> Walk:
    """The rule's walk (or the fixed sweep's counts) over the records: up to the first count not recorded."""
    if sweep not in SWEEPS:
        raise ConfigError(f"sweep={sweep!r} is unknown; expected one of {', '.join(SWEEPS)}.")
    limit = core_limit(max_workers)
    if sweep == "fixed":
        counts = c3_worker_candidates(min(limit, FIXED_LARGEST))
        requests = tuple(c3_request(config, w) for w in counts)
        found = {w: recorded(r) for w, r in zip(counts, requests)}
        measured = {w: m for w, m in found.items() if m is not None}
        return Walk(requests, len(measured) == len(counts), measured)
    times: dict[int, float] = {}
    measured: dict[int, Measured] = {}
    requests: list[Request] = []
    while (workers := c3_next_workers(times, limit)) is not None:
        request = c3_request(config, workers)
        requests.append(request)
        found = recorded(request)
        if found is None or number(found.results.get("data_s_total")) is None:
            return Walk(tuple(requests), False, measured)
        measured[workers] = found
        times[workers] = float(found.results["data_s_total"])
    return Walk(tuple(requests), True, measured)


def best_workers(config: RunConfig, recorded: Recorded, max_workers: int = 0, sweep: str = "rule"):
    """C3.2's answer from the records: (workers, seconds per epoch, its measurement), None until the sweep is done."""
    walk = c3_walk(config, recorded, max_workers, sweep)
    if not walk.complete or not walk.measured:
        return None
    workers, measured = min(walk.measured.items(), key=lambda item: float(item[1].results["epoch_s_mean"]))
    return workers, float(measured.results["epoch_s_mean"]), measured


def choose_workers(params: Mapping[str, Any], recorded: Recorded) -> tuple[int, str]:
    """The worker count a section trains with, and the sentence that says why.

    `workers` -1 is C3.2's best count from the records with the same data, subset, epochs and device,
    else the lab's 2; a count >= 0 is used as given.
    """
    requested = int(params.get("workers", CHOOSE))
    if requested < CHOOSE:
        raise ConfigError(
            f"workers={requested} is not allowed; expected -1 (C3.2's best, else {LAB_WORKERS}) or a count >= 0."
        )
    if requested >= 0:
        return requested, f"{requested} workers, as the `workers` parameter asks."
    base = config_from_params({**params, "workers": LAB_WORKERS})
    found = best_workers(base, recorded)
    if found is not None:
        workers, seconds, measured = found
        return workers, (
            f"{workers} workers: C3.2's best runtime ({seconds:.2f} s per epoch, run `{measured.run_id}`) for the same "
            "data, subset, epochs and device."
        )
    return LAB_WORKERS, (
        f"the lab's default of {LAB_WORKERS} workers: C3's sweep is not recorded for the same data, subset, epochs "
        "and device (run notebooks/c3_workers.ipynb, or `make report`, which builds C3 first)."
    )


def c3_measurements(params: Mapping[str, Any], recorded: Recorded) -> Needs:
    """C3's points: the rule's walk (workers -1) or one count; every recorded count of the sweep is shown too."""
    config = c3_config(config_from_params({**params, "workers": LAB_WORKERS}))
    sweep, max_workers = str(params.get("sweep", "rule")), int(params.get("max_workers", 0) or 0)
    requested = int(params.get("workers", CHOOSE))
    if requested < CHOOSE:
        raise ConfigError(f"workers={requested} is not allowed; expected -1 (the lab's rule) or a count >= 0.")
    walk = c3_walk(config, recorded, max_workers, sweep)
    if requested == CHOOSE:
        waiting = "" if walk.complete else "C3's rule asks for its next count once this one is recorded"
        return Needs(walk.requests, (sweep_note(sweep, max_workers),), waiting)
    wanted = c3_request(config, requested)
    shown_too = [m.request for w, m in sorted(walk.measured.items()) if w != requested]
    return Needs(
        (wanted, *shown_too),
        (
            f"{requested} workers, as the `workers` parameter asks; every count of the "
            "sweep already recorded is shown beside it.",
        ),
    )


def sweep_note(sweep: str, max_workers: int) -> str:
    limit = core_limit(max_workers)
    if sweep == "fixed":
        counts = c3_worker_candidates(min(limit, FIXED_LARGEST))
        return f"The fixed sweep: {', '.join(map(str, counts))} workers, each measured whatever the times do."
    cap = f" (capped at {max_workers} by `max_workers`)" if 0 < max_workers < (os.cpu_count() or 1) else ""
    return (
        f"The lab's rule: {', '.join(map(str, c3_worker_candidates(limit)))} workers in turn{cap}, stopping once the "
        "data-loading time no longer decreases."
    )


def p25_measurements(params: Mapping[str, Any], recorded: Recorded) -> Needs:
    """P-2025-C4: 1 worker and C3.2's best count (one training when they are equal)."""
    workers, note = choose_workers(params, recorded)
    config = config_from_params({**params, "workers": LAB_WORKERS})
    counts = profile_counts(workers)
    requests = tuple(training_request(dataclasses.replace(c3_config(config), workers=count)) for count in counts)
    return Needs(requests, (f"Compared with 1 worker: {note}",))


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
            "sweep_points": [
                {
                    "workers": int(row["workers"]),
                    "data_s_total": float(row["data_s_total"]),
                    "epoch_s_mean": float(row["epoch_s_mean"]),
                    "data_s_mean": float(row["data_s_mean"]),
                    "train_s_mean": float(row["train_s_mean"]),
                }
                for row in self.table.to_dict("records")
            ],
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
            f"{row['data_s_total']:.2f} s of data loading in total over {counted(int(row['epochs_run']), 'epoch')}), "
            f"among the {counted(len(self.measured), 'worker count')} recorded."
        )

    def data_loading_text(self) -> str:
        """C3.1: the total data-loading time per count, and where the lab's rule stands."""
        if not self.measured:
            return f"**C3.1:** no point is recorded yet. {self.rule_sentence()}"
        times = ", ".join(f"{w} workers {s:.2f} s" for w, s in zip(self.table["workers"], self.table["data_s_total"]))
        epochs = sorted({int(e) for e in self.table["epochs_run"].dropna()})
        over = f" (over {epochs_phrase(epochs[0])} each)" if len(epochs) == 1 else " (points with different epochs)"
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
        change = top["train_s_total"] / first["train_s_total"] - 1 if count != self.first_workers else None
        measured = (
            f"the training time at {counted(count, 'worker')} is {change:+.0%} against "
            f"{counted(self.first_workers, 'worker')} ({top['train_s_total']:.2f} s vs {first['train_s_total']:.2f} s)"
            if change is not None
            else ""
        )
        if not self.oversubscribed:
            fits = (
                f"which fits in the {self.cores} cores; beyond {max(self.cores - self.torch_threads, 0)} workers "
                "they would compete with the training threads." + (f" Measured: {measured}." if measured else "")
            )
        elif change is not None and change > SLOWER_TRAINING:  # the competition shows in the measured training
            fits = (
                f"so {count + self.torch_threads} busy threads compete for {self.cores} cores and the workers take "
                f"CPU time away from the training: {measured}."
            )
        else:  # oversubscribed on paper, but the training did not slow down measurably
            fits = (
                f"so {count + self.torch_threads} threads could compete for {self.cores} cores; the workers did not "
                "slow the training measurably here" + (f": {measured}." if measured else ".")
            )
        said.append(
            f"The machine has {counted(self.cores, 'logical core')} (from the run's provenance); "
            f"{counted(count, 'worker')} plus the main process make {count + 1} processes, and the main process "
            f"trains with {counted(self.torch_threads, 'intra-op thread')}, " + fits
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
            f"With {counted(int(row['workers']), 'worker')}, an epoch takes {row['epoch_s_mean']:.2f} s: "
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


# --- answers at a glance ---------------------------------------------------------------------------


def c3_headlines(runs: pd.DataFrame) -> list[Headline]:
    row = latest(runs)
    points = pd.DataFrame(row.get("sweep_points") or [])
    if points.empty:
        return [missing("c3_workers", part, "no worker count recorded yet") for part in ("C3.1", "C3.2", "C3.3")]
    fastest = points.loc[points["data_s_total"].astype(float).idxmin()]
    counts = ", ".join(str(int(w)) for w in points["workers"])
    lines = [
        answer(
            "c3_workers",
            "C3.1",
            f"data loading least with {int(fastest['workers'])} workers: {shown(fastest['data_s_total'])} s in total "
            f"(measured {counts})",
            float(fastest["data_s_total"]),
            "s",
            row,
        )
    ]
    best = number(row.get("sweep_best_workers"))
    if best is None or not (points["workers"] == best).any():
        return lines + [missing("c3_workers", part, "no best worker count recorded yet") for part in ("C3.2", "C3.3")]
    best_row = points[points["workers"] == best].iloc[0]
    lines.append(
        answer(
            "c3_workers",
            "C3.2",
            f"{int(best)} workers: {shown(best_row['epoch_s_mean'], 1)} s per epoch",
            int(best),
            "workers",
            row,
        )
    )
    share = number(row.get("sweep_best_data_share"))
    stopped = number(row.get("sweep_stopped_at"))
    why = (
        f"at {int(best)} workers data loading is {shown(100 * share if share is not None else None, 1)} % of the epoch"
    )
    why += f"; the data time stops falling at {int(stopped)} workers" if stopped is not None else ""
    lines.append(answer("c3_workers", "C3.3", why, None if share is None else 100 * share, "% of the epoch", row))
    return lines


def p25_headlines(runs: pd.DataFrame) -> list[Headline]:
    row = latest(runs)
    counts = [int(c) for c in (row.get("compared_workers") or [])]
    parts = []
    for count in counts:
        data, train = number(row.get(f"w{count}_data_s_mean")), number(row.get(f"w{count}_train_s_mean"))
        parts.append(f"{counted(count, 'worker')}: data {shown(data)} s / training {shown(train)} s per epoch")
    value = number(row.get(f"w{counts[0]}_data_s_mean")) if counts else None
    text = "; ".join(parts) if parts else "no worker count recorded"
    return [answer("p25_worker_profile", "P-2025-C4", text, value, "s per epoch", row)]


PRESENTS = (
    Presenter("c3_workers", ("C3.1", "C3.2", "C3.3"), c3_measurements, c3_headlines, qualifier="workers"),
    Presenter("p25_worker_profile", ("P-2025-C4",), p25_measurements, p25_headlines),
)
