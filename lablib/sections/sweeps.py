"""Sweeps across executions: per-run summaries, C3's stop rule and its best point.

A sweep is a set of runs of one section that differ only in the swept setting
(their `group` in the run store is equal). Each papermill execution adds one
point; notebooks and the report runner read the points back from the records.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import pandas as pd

from lablib.core.runs import group_key, latest_per, load_runs

C3_STEP = 4  # LAB_SPEC C3: num_workers = 0, 4, 8, 12, ...


def group_points(
    section: str,
    config,
    tag: str,
    data_fingerprint: str,
    device,
    sweep: str | Sequence[str],
    param: str | list[str],
    root=None,
) -> pd.DataFrame:
    """The complete points of the sweep a run with these settings would join, before it starts.

    The group is computed exactly as runs.Run computes it, so C3 can pick the
    next worker count from the points already recorded. `device` is a torch.device or its type.
    """
    import torch  # here, not at the top: the report layer reads C3's rule from this module without torch

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


def sweep_points(run, param: str | list[str]) -> pd.DataFrame:
    """Every point of `run`'s sweep recorded so far: the latest complete run per value
    of `param` in the same group, with `run` itself included (it may still be running)."""
    runs = group_runs(run)
    return latest_per(runs, param).reset_index(drop=True) if not runs.empty else runs


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
