"""Sweeps across executions: per-run summaries, C3's stop rule and its best point.

A sweep is a set of runs of one section that differ only in the swept setting
(their `group` in the run store is equal). Each papermill execution adds one
point; notebooks and the report runner read the points back from the records.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import pandas as pd

from lablib.core.runs import latest_per, load_runs

C3_STEP = 4  # LAB_SPEC C3: num_workers = 0, 4, 8, 12, ...


def sweep_points(run, param: str | list[str]) -> pd.DataFrame:
    """Every point of `run`'s sweep recorded so far: the latest complete run per value
    of `param` in the same group, with `run` itself included (it may still be running)."""
    section, group = run.meta["section"], run.meta["group"]
    complete = load_runs(section, group=group)
    current = load_runs(section, status=None, group=group)
    current = current[current["run_id"] == run.run_id] if not current.empty else current
    both = pd.concat(
        [complete[complete["run_id"] != run.run_id] if not complete.empty else complete, current], ignore_index=True
    )
    if both.empty:
        return both
    both["ended"] = both["ended"].fillna("9999")  # the current run is the newest for its value
    return latest_per(both, param).reset_index(drop=True)


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


def c3_best_workers(
    tag: str, data_fingerprint: str | None, resolved_device: str | None, root=None
) -> tuple[int, float] | None:
    """C3.2's answer from the records: (workers, seconds per epoch) of the best runtime
    among complete c3_workers runs with the same tag, data and device; None if none."""
    runs = load_runs("c3_workers", tag=tag, root=root)
    if runs.empty:
        return None
    mask = pd.Series(True, index=runs.index)
    if data_fingerprint is not None:
        mask &= runs["data_fingerprint"] == data_fingerprint
    if resolved_device is not None:
        mask &= runs["resolved_device"] == resolved_device
    best = best_point(latest_per(runs[mask], "workers"), "workers")
    return None if best is None else (int(best["workers"]), float(best["epoch_s_mean"]))
