"""The build's first phase: measure what the sections present, each measurement once, in rounds.

Each round asks every section that can plan now (its `needs` built) for its measurements
(lablib.sections.registry: as far as the records allow), collects those not recorded, each key once
with the first section that asked (plan order) and `timing` when any asker needs its seconds, and
runs them as measuring jobs (lablib.report.job, `python -m lablib measure`) on the executor: timing
measurements alone on the machine (exclusive), the others beside each other with JOBS > 1 (and then
recorded as having shared it). Then it asks again: C3's rule lists its next count, E1 its re-runs,
and the sections that take C3.2's best count plan once C3 is done. A measurement that fails fails its
sections (listed with its error); a section whose needed section did not build is blocked.

`rounds` is the same loop for the dry run, with `predict` standing in for running: the sections plan
on predicted measurements, so the dry run lists every measurement the build would run.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lablib.core.runs import new_run_folder, runs_root
from lablib.core.store import Measured, Request, last_failure, lookup, recorded_key
from lablib.report.resolve import FAILED, Resolver, SectionState, settle_needs

JOBS_FOLDER = "jobs"  # runs/jobs/<run-id>/: a measuring job's requests, log and point.json
NOT_PLANNED = (*FAILED, "missing")

Recorded = Callable[[Request], Measured | None]


@dataclass
class Pending:
    """A measurement to run in this round: the first section that asked, and every one that did."""

    request: Request
    asked_by: str
    sections: list[str] = field(default_factory=list)
    timing: bool = False
    timeout_s: float = 0.0


def rounds(
    states: Sequence[SectionState],
    resolver: Resolver,
    recorded_for: Callable[[SectionState], Recorded],
    run_round: Callable[[list[Pending]], dict[str, dict[str, Any]]],
    source_ready: Callable[[str], bool] = recorded_key,
) -> None:
    """Plan and run rounds until no section lists a measurement that is not recorded.

    `recorded_for(state)` is the lookup a section plans with (FORCE hides what an earlier build recorded);
    `run_round(pending)` runs (or predicts) them and returns {key: failure} for those that did not record.
    A request whose model comes from another measurement (`settings["source"]`, a key) waits for the round
    after its source's, so jobs side by side never start it before its source is recorded."""
    by_name = {state.name: state for state in states}
    done: set[str] = set()
    failed: dict[str, dict[str, Any]] = {}
    while True:
        pending: dict[str, Pending] = {}
        for state in states:
            if state.status in NOT_PLANNED or state.name in done:
                continue
            needed = [by_name[n] for n in state.section.needs if n in by_name]
            broken = [n.name for n in needed if n.status in NOT_PLANNED]
            if broken:
                state.status = "blocked"
                state.error = (
                    f"it needs {', '.join(broken)} (C3.2's best worker count and the like), which did not build; "
                    "fix that section first"
                )
                continue
            if any(n.name not in done for n in needed):
                continue  # waits for the sections it needs
            recorded = recorded_for(state)
            if not settle_needs(resolver, state, recorded):
                continue
            missing = [request for request in state.needs.requests if recorded(request) is None]
            broken_keys = [request for request in missing if request.key in failed]
            if broken_keys:
                state.status = "failed"
                state.failed_measurements = [failed[request.key] for request in broken_keys]
                state.error = "; ".join(f"{f['label']}: {f['status']}" for f in state.failed_measurements)
                continue
            if not missing:
                done.add(state.name)
                continue
            for request in missing:
                source = request.settings.get("source")
                if source and (source in pending or not source_ready(str(source))):
                    continue  # its model comes from a measurement this round makes: the next round measures it
                entry = pending.setdefault(request.key, Pending(request, state.name, timeout_s=state.section.timeout_s))
                entry.sections.append(state.name)
                entry.timing = entry.timing or request.timing
                if set(request.keep) - set(entry.request.keep):  # every asker's artifacts are kept
                    keep = tuple(dict.fromkeys((*entry.request.keep, *request.keep)))
                    entry.request = dataclasses.replace(entry.request, keep=keep)
        if not pending:
            return
        failed.update(run_round(list(pending.values())))


class Measurer:
    """Runs a round's measurements as measuring jobs on the executor; tells the states what it measured."""

    def __init__(
        self, states: Sequence[SectionState], executor, estimator, progress, profile: str, force: bool = False
    ):
        self.states = {state.name: state for state in states}
        self.executor, self.estimator, self.progress, self.profile = executor, estimator, progress, profile
        self.force = force  # FORCE=1: what the selected sections ask for is measured again, though recorded
        self.measured: list[str] = []  # keys measured by this build, in order

    def jobs(self, pending: list[Pending]):
        """Measuring jobs: per asking section, its timing requests together (alone on the machine) and its
        other requests together, or one job each when jobs run side by side (JOBS > 1, Slurm)."""
        from lablib.report.executors import Task

        side_by_side = getattr(self.executor, "jobs", 1) > 1 or self.executor.name == "slurm"
        groups: dict[tuple, list[Pending]] = {}
        for number, entry in enumerate(pending):
            split = number if side_by_side and not entry.timing else None
            groups.setdefault((entry.asked_by, entry.timing, split), []).append(entry)
        return [Task(self.job(entries), entries[0].timing) for entries in groups.values()]

    def job(self, entries: list[Pending]):
        from lablib.report.job import Job

        keys = [entry.request.key for entry in entries]
        label = entries[0].request.label + (f" and {len(entries) - 1} more" if len(entries) > 1 else "")
        return Job(
            entries[0].asked_by,
            None,
            {},
            hashlib.sha256(" ".join(keys).encode()).hexdigest()[:20],
            new_run_folder(JOBS_FOLDER, runs_root()),
            sum(entry.timeout_s for entry in entries),
            label,
            record={"profile": self.profile, "measurements": keys},
            kind="measure",
            requests=tuple(
                {"request": e.request.to_dict(), "asked_by": e.asked_by, "force": self.force} for e in entries
            ),
        )

    def run_round(self, pending: list[Pending]) -> dict[str, dict[str, Any]]:
        tasks = self.jobs(pending)
        entries = {entry.request.key: entry for entry in pending}
        predicted = {
            task.job.key: sum(self.estimator.seconds(Request.from_dict(r["request"])) or 0.0 for r in task.job.requests)
            for task in tasks
        }

        def on_start(task) -> None:
            self.progress.start(f"measure {task.job.section}: {task.job.label}", len(task.job.requests))

        def on_end(task, outcome) -> None:
            name = f"measure {task.job.section}: {task.job.label}"
            self.progress.finish(name, outcome, predicted[task.job.key], str(task.job.log))

        try:
            outcomes = self.executor.run(tasks, on_start, on_end)
        finally:  # an interrupted build leaves no empty folders for the jobs it never started
            for task in tasks:
                if task.job.folder.is_dir() and not any(task.job.folder.iterdir()):
                    task.job.folder.rmdir()
        failures: dict[str, dict[str, Any]] = {}
        for task, outcome in zip(tasks, outcomes):
            for item in task.job.requests:
                request = Request.from_dict(item["request"])
                if lookup(request) is not None:
                    self.measured.append(request.key)
                    for name in entries[request.key].sections:
                        self.states[name].measured.append(request.key)
                    continue
                attempt = last_failure(request) or {}
                failures[request.key] = {
                    "label": request.label,
                    "status": attempt.get("status") or outcome.status,
                    "error": attempt.get("error") or outcome.error or "no measurement was recorded",
                    "log": str(task.job.log),
                    "record": attempt.get("run_id") and str(Path(attempt.get("run_id"))),
                }
        return failures


class Predictor:
    """The dry run's round: nothing runs; each measurement gets a predicted record the planners read."""

    def __init__(self, estimator):
        self.estimator = estimator
        self.predicted: dict[str, Measured] = {}
        self.order: list[Pending] = []

    def recorded(self, request: Request) -> Measured | None:
        return lookup(request) or self.predicted.get(request.key)

    def source_ready(self, key: str) -> bool:
        return key in self.predicted or recorded_key(key)

    def run_round(self, pending: list[Pending]) -> dict[str, dict[str, Any]]:
        from lablib.report.estimate import prediction

        for entry in pending:
            self.predicted[entry.request.key] = prediction(entry.request, self.estimator)
            self.order.append(entry)
        return {}
