"""The build's first phase: measure what the sections present, each measurement once, in rounds.

Each round asks every section that can plan now (its `needs` built) for its measurements
(lablib.sections.registry: as far as the records allow), collects those not recorded, each key once
with the first section that asked (plan order) and `timing` when any asker needs its seconds, and
runs them as measuring jobs (lablib.report.job, `python -m lablib measure`) on the executor: timing
measurements alone on the machine (exclusive), the others beside each other with JOBS > 1 (and then
recorded as having shared it). Then it asks again: C3's rule lists its next count, E1 its re-runs,
and the sections that take C3.2's best count plan once C3 is done. A measurement that fails fails its
sections (listed with its error); a section whose needed section did not build is blocked.

A section that walks (its Presenter's `walks`: E1's successive halving lists one measurement at a time,
each decided by the records before it) gets one walking job instead of a job per measurement: after
its listed requests the job asks the section itself for the next ones, from the records, and measures
them in the same process (`walk_job`), so the walk pays one process start, keeps the data on the device
and serves its repeated compiles from the process's own caches. Each measurement it ends is a line of
the job's walked.jsonl, which the build reads as it goes (a progress line each) and when it ends.

`rounds` is the same loop for the dry run, with `predict` standing in for running: the sections plan
on predicted measurements, so the dry run lists every measurement the build would run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lablib.core.errors import LabError
from lablib.core.runs import new_run_folder, runs_root
from lablib.core.store import Measured, Request, last_failure, lookup, recorded_key
from lablib.report.resolve import FAILED, Resolver, SectionState, settle_needs

JOBS_FOLDER = "jobs"  # runs/jobs/<run-id>/: a measuring job's requests, log and point.json
WALKED = "walked.jsonl"  # a walking job's measurements: a line as each starts ("running") and as it ends
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
        self,
        states: Sequence[SectionState],
        executor,
        estimator,
        progress,
        profile: str,
        force: bool = False,
        expected: Mapping[str, int] | None = None,
    ):
        self.states = {state.name: state for state in states}
        self.executor, self.estimator, self.progress, self.profile = executor, estimator, progress, profile
        self.force = force  # FORCE=1: what the selected sections ask for is measured again, though recorded
        self.measured: list[str] = []  # keys measured by this build, in order
        self.expected = dict(expected or {})  # section -> measurements the plan expects it to ask for

    def jobs(self, pending: list[Pending]):
        """Measuring jobs: per asking section, its timing requests together (alone on the machine) and its
        other requests together, or one job each when jobs run side by side (JOBS > 1, Slurm). A walking
        section's job walks on, unless it listed several requests at once to run side by side (E1's whole
        grid without a budget, with JOBS > 1 or on Slurm: one job each, as for any section)."""
        from lablib.report.executors import Task

        side_by_side = getattr(self.executor, "jobs", 1) > 1 or self.executor.name == "slurm"
        asked = Counter(entry.asked_by for entry in pending if not entry.timing)
        groups: dict[tuple, list[Pending]] = {}
        for number, entry in enumerate(pending):
            walks = not entry.timing and walking(entry.asked_by) and (not side_by_side or asked[entry.asked_by] == 1)
            split = number if side_by_side and not entry.timing and not walks else None
            groups.setdefault((entry.asked_by, entry.timing, split, walks), []).append(entry)
        return [Task(self.job(entries, walks), entries[0].timing) for (*_, walks), entries in groups.items()]

    def job(self, entries: list[Pending], walks: bool = False):
        from lablib.report.job import Job

        keys = [entry.request.key for entry in entries]
        section = entries[0].asked_by
        label = entries[0].request.label + (f" and {len(entries) - 1} more" if len(entries) > 1 else "")
        timeout_s = sum(entry.timeout_s for entry in entries)
        walk = None
        if walks:  # each measurement of the walk has the section's timeout
            label = f"{label}, then the measurements its walk lists next"
            timeout_s = entries[0].timeout_s * max(len(entries), self.expected.get(section, 0))
            state = self.states.get(section)
            walk = {
                "section": section,
                "parameters": dict(state.parameters) if state is not None else {},
                "force": self.force,
                "fresh": list(dict.fromkeys(self.measured)),  # under FORCE: what this build measured counts
            }
        return Job(
            section,
            None,
            {},
            hashlib.sha256(" ".join(keys).encode()).hexdigest()[:20],
            new_run_folder(JOBS_FOLDER, runs_root()),
            timeout_s,
            label,
            record={"profile": self.profile, "measurements": keys},
            kind="measure",
            requests=tuple(
                {"request": e.request.to_dict(), "asked_by": e.asked_by, "force": self.force} for e in entries
            ),
            walk=walk,
        )

    def run_round(self, pending: list[Pending]) -> dict[str, dict[str, Any]]:
        tasks = self.jobs(pending)
        entries = {entry.request.key: entry for entry in pending}
        predicted = {
            task.job.key: 0.0
            if task.job.walk
            else sum(self.estimator.seconds(Request.from_dict(r["request"])) or 0.0 for r in task.job.requests)
            for task in tasks
        }
        watchers: dict[str, WalkWatcher] = {}

        def name_of(task) -> str:
            return f"measure {task.job.section}: {task.job.label}"

        def on_start(task) -> None:
            if not task.job.walk:
                self.progress.start(name_of(task), len(task.job.requests))
                return
            self.progress.begin_walk(f"measure {task.job.section}", str(task.job.log))

            def step(line: Mapping[str, Any]) -> None:
                request = Request.from_dict(line["request"])
                self.progress.step(
                    f"measure {task.job.section}: {request.label}",
                    float(line.get("seconds") or 0.0),
                    self.estimator.seconds(request, walk=True) or 0.0,
                    "" if line["status"] != "failed" else "FAILED",
                )

            watchers[task.job.key] = WalkWatcher(task.job.folder / WALKED, step)
            watchers[task.job.key].start()

        def on_end(task, outcome) -> None:
            watcher = watchers.pop(task.job.key, None)
            if watcher is None:
                self.progress.finish(name_of(task), outcome, predicted[task.job.key], str(task.job.log))
                return
            watcher.stop()
            self.progress.end_walk(f"measure {task.job.section}", outcome, watcher.ended, str(task.job.log))

        try:
            outcomes = self.executor.run(tasks, on_start, on_end)
        finally:  # an interrupted build leaves no empty folders for the jobs it never started
            for watcher in watchers.values():
                watcher.stop()
            for task in tasks:
                if task.job.folder.is_dir() and not any(task.job.folder.iterdir()):
                    task.job.folder.rmdir()
        failures: dict[str, dict[str, Any]] = {}
        for task, outcome in zip(tasks, outcomes):
            for request in job_requests(task.job):
                if lookup(request) is not None:
                    self.measured.append(request.key)
                    for name in entries[request.key].sections if request.key in entries else [task.job.section]:
                        if name in self.states:
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


def walking(section: str) -> bool:
    """Whether the section walks (its Presenter's `walks`); False for a name no sections module registers."""
    from lablib.sections.registry import presenter

    try:
        return presenter(section).walks
    except LabError:
        return False


def walked_lines(path: Path) -> list[dict[str, Any]]:
    """The lines a walking job wrote so far (a line cut short by a kill is left out)."""
    try:
        text = path.read_text()
    except OSError:
        return []
    lines = []
    for line in text.splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return lines


def job_requests(job) -> list[Request]:
    """A measuring job's requests: those it was given, then (a walking job) those its walk started, each once."""
    requests: dict[str, Request] = {}
    for item in job.requests:
        request = Request.from_dict(item["request"])
        requests.setdefault(request.key, request)
    if job.walk:
        for line in walked_lines(job.folder / WALKED):
            request = Request.from_dict(line["request"])
            requests.setdefault(request.key, request)
    return list(requests.values())


class WalkWatcher:
    """Reads a walking job's walked.jsonl while it runs: `on_end(line)` for each measurement that ended."""

    def __init__(self, path: Path, on_end: Callable[[Mapping[str, Any]], None], every_s: float = 0.5):
        self.path, self.on_end, self.every_s = path, on_end, every_s
        self.ended = 0  # measurements ended so far
        self._seen = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._lock = threading.Lock()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop watching; the lines written last are read first."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.poll()

    def _watch(self) -> None:
        while not self._stop.wait(self.every_s):
            self.poll()

    def poll(self) -> None:
        with self._lock:
            lines = walked_lines(self.path)
            for line in lines[self._seen :]:
                if line.get("status") != "running":
                    self.ended += 1
                    self.on_end(line)
            self._seen = len(lines)


def walk_job(
    entries: Sequence[tuple[Request, str, bool]],
    walk: Mapping[str, Any] | None,
    folder: Path,
    planner: Callable[[Mapping[str, Any], Callable], Any] | None = None,
    out: Callable[..., None] = print,
) -> int:
    """A measuring job (`python -m lablib measure`): each of its requests measured, or found recorded, in turn.
    A walking job (`walk`: its section, parameters, FORCE and what this build measured) then asks its section for
    the next measurements, planned here from the records after each round (the section's
    `measurements(params, recorded)`, as the build would ask), until the section lists nothing new or one fails;
    each of its measurements is a line of `folder`/walked.jsonl as it starts and as it ends. Under FORCE only what
    this build measured counts as recorded, as in the build. 0: every one recorded, else 1."""
    from lablib.core.store import MeasureFailed, NotMeasured, obtain
    from lablib.core.timing import now

    walk = walk or {}
    section, parameters = str(walk.get("section", "")), dict(walk.get("parameters") or {})
    force, fresh = bool(walk.get("force")), set(walk.get("fresh") or ())
    attempted: set[str] = set()
    log = Path(folder) / WALKED if walk else None

    def note(request: Request, status: str, seconds: float = 0.0) -> None:
        if log is None:
            return
        line = {"key": request.key, "status": status, "seconds": seconds, "request": request.to_dict()}
        with open(log, "a") as file:
            file.write(json.dumps(line, default=str) + "\n")

    def recorded(request: Request) -> Measured | None:
        return lookup(request) if not force or request.key in fresh else None

    def measure(request: Request, asked_by: str, forced: bool) -> bool:
        attempted.add(request.key)
        out(f"measuring {request.describe()} (for {asked_by or 'no section'})")
        note(request, "running")
        started = now()
        try:
            measured = obtain(request, asked_by, force=forced)
        except (MeasureFailed, NotMeasured) as error:
            out(f"  failed: {error}")
            note(request, "failed", now() - started)
            return False
        status = "reused" if measured.reused else "measured"
        out(f"  {status}: {measured.path}")
        note(request, status, now() - started)
        fresh.add(request.key)
        return True

    ok = all([measure(request, asked_by, forced) for request, asked_by, forced in entries])
    if walk and planner is None:
        from lablib.sections.registry import presenter

        planner = presenter(section).needs
    while ok and walk:
        try:
            needs = planner(parameters, recorded)
        except LabError as error:  # the build plans it again and says so
            out(f"the walk of {section} stops here: {error}")
            break
        listed = [r for r in needs.requests if recorded(r) is None and r.key not in attempted]
        ready = [r for r in listed if not r.settings.get("source") or recorded_key(str(r.settings["source"]))]
        if not ready:
            break
        out(f"{section} lists {len(ready)} more")
        for request in ready:
            ok = measure(request, section, force)
            if not ok:
                break
    return 0 if ok else 1


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
            self.predicted[entry.request.key] = prediction(entry.request, self.estimator, walking(entry.asked_by))
            self.order.append(entry)
        return {}
