"""`make report`: run the plan's stale points, then stitch report.html and report.pdf.

    python -m lablib report [--profile quick|full] [--data PATH] [--device auto|cuda|cpu]
                            [--only c1_training,C3] [--force] [--jobs N] [--plan report/plan.yaml]

1. Load the plan for the profile (lablib.report.plan) and survey it: each point's key
   (lablib.report.execute.point_key) against the run store's point.json files; print the
   plan's size and an estimate of the time the stale points need (previous
   durations of the same point, else a short measured probe).
2. Without a GPU the full profile stops here, unless it was asked for explicitly.
3. Run the stale points of the selected sections in plan order, one papermill
   process each (lablib.report.execute.LocalExecutor), a line per point with its time and
   the ETA. C3's workers come from its stop-when-no-gain rule, point by point; a
   {best_of: c3_workers} parameter is C3.2's best worker count of this build.
   A failed point does not stop the others.
4. Stitch every section (lablib.report.stitch) and exit non-zero listing the failures.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lablib.core.data import NAMED_SOURCES
from lablib.core.runs import now_iso, runs_root
from lablib.report.execute import (
    REPO_ROOT,
    Job,
    LocalExecutor,
    Outcome,
    data_fingerprint,
    device_kind,
    index_points,
    lablib_digest,
    latest_complete,
    new_point_folder,
    notebook_digest,
    point_key,
    read_point,
    run_job,
    write_point,
)
from lablib.report.executors import visible_gpus
from lablib.report.plan import Plan, PlanError, Section, load_plan
from lablib.report.stitch import (
    INSTALL_PDF_TOOLS,
    PdfError,
    SectionReport,
    TitlePage,
    content_digest,
    export_html,
    export_pdf,
    format_duration,
    merge,
    missing_pdf_tools,
)

DEFAULT_PLAN = REPO_ROOT / "report" / "plan.yaml"
FAILED = ("failed", "timeout", "interrupted", "unresolved", "invalid")
OVERHEAD_S = 15.0  # kernel start, imports and data loading of one papermill execution (estimate)
FULL_TRAIN_IMAGES = 50_000


@dataclass
class Options:
    profile: str = "full"
    profile_explicit: bool = False  # False: the default profile, so a GPU-less machine stops before training
    data: str | None = None
    mnist: str | None = None  # sections whose data is "mnist" (E1) use this folder/.zip instead
    device: str | None = None
    only: str | None = None
    force: bool = False
    jobs: int = 1
    executor: str = "local"  # local | slurm (lablib.report.executors)
    slurm: Any = None  # lablib.report.executors.SlurmSettings for EXECUTOR=slurm
    plan: Path = DEFAULT_PLAN
    output_dir: Path = REPO_ROOT / "report"


@dataclass
class PointState:
    section: Section
    label: str
    parameters: dict[str, Any] = field(default_factory=dict)  # what papermill passes
    key: str | None = None
    status: str = "stale"  # complete | stale | failed | timeout | interrupted | unresolved | invalid
    record: dict[str, Any] | None = None  # its point.json (the complete one, else the last attempt)
    error: str | None = None
    ran: bool = False


class Builder:
    """One `make report`: surveys, runs and stitches a plan."""

    def __init__(self, plan: Plan, options: Options, out: Callable[..., None] = print):
        import torch

        from lablib.core.provenance import environment_lock

        self.plan, self.options, self.out = plan, options, out
        self.selected = {s.name for s in plan.select(options.only)}
        self.cuda = torch.cuda.is_available()
        self.lablib, self.environment, self.device = lablib_digest(), environment_lock(), device_kind()
        self.defaults = dict(plan.defaults)
        if options.data:
            self.defaults["data"] = options.data
        if options.device:
            self.defaults["device"] = options.device
        self.defaults["tag"] = plan.profile
        self.index = index_points()
        self.executor = LocalExecutor()
        self.gpus = visible_gpus() if options.jobs > 1 else []
        self._next_gpu = 0
        self.states: dict[str, list[PointState]] = {}
        self.possible: dict[str, int] = {}  # stale points a rule sweep may still need
        self.done_this_build: set[str] = set()
        self._declared: dict[str, set[str]] = {}
        self._digests: dict[str, str] = {}
        self._fingerprints: dict[str, str] = {}
        self._probe_s: float | None = None
        self.progress = {"number": 0, "total": 0, "spent": 0.0, "predicted": 0.0, "remaining": 0.0}
        self._lock = threading.RLock()  # progress, index and output, shared by JOBS > 1 worker threads

    # --- one point --------------------------------------------------------------------------
    def declared(self, section: Section) -> set[str]:
        if section.name not in self._declared:
            import papermill

            self._declared[section.name] = set(papermill.inspect_notebook(str(section.notebook)))
        return self._declared[section.name]

    def fingerprint(self, data: Any) -> str:
        data = str(data)
        if data not in self._fingerprints:
            self._fingerprints[data] = data_fingerprint(data)
        return self._fingerprints[data]

    def resolved_device(self, parameters: dict[str, Any]) -> str:
        wanted = str(parameters.get("device", "auto"))
        return "cuda" if self.cuda and wanted in ("auto", "cuda") else "cpu"

    def best_workers(self, parameters: dict[str, Any]) -> int | None:
        """C3.2's best workers: the fastest complete C3 point of this build, else from the records."""
        from lablib.sections.sweeps import c3_best_workers

        rows = []
        for state in self.states.get("c3_workers", []):
            if state.status == "complete" and state.record:
                results = _results(state.record)
                if results.get("epoch_s_mean") is not None:
                    rows.append((float(results["epoch_s_mean"]), int(state.parameters["workers"])))
        if rows:
            return min(rows)[1]
        found = c3_best_workers(
            self.plan.profile, self.fingerprint(parameters.get("data", "cifar10")), self.resolved_device(parameters)
        )
        return None if found is None else found[0]

    def point(self, section: Section, own: dict[str, Any], swept: tuple[str, ...], run: bool) -> PointState:
        label = " ".join(f"{k}={own[k]}" for k in swept if not isinstance(own[k], dict))
        try:
            declared = self.declared(section)
        except Exception as error:  # a notebook papermill cannot read: this section fails, not the build
            return PointState(
                section,
                label,
                status="invalid",
                error=(f"papermill cannot read notebooks/{section.name}.ipynb's parameters: {error}"),
            )
        undeclared = sorted(k for k in own if k not in declared)
        if undeclared:
            return PointState(
                section,
                label,
                status="invalid",
                error=(
                    f"the plan passes {', '.join(undeclared)}, which notebooks/{section.name}.ipynb does not declare "
                    f"in its parameters cell (it declares: {', '.join(sorted(declared))}); fix report/plan.yaml."
                ),
            )
        parameters = {k: v for k, v in self.defaults.items() if k in declared}
        parameters.update({k: v for k, v in own.items() if not isinstance(v, dict)})
        for name, value in own.items():
            if isinstance(value, dict):  # {best_of: c3_workers}
                best = self.best_workers(parameters)
                if best is None:
                    return PointState(
                        section,
                        label,
                        parameters,
                        status="unresolved",
                        error=(
                            f"{name}: C3.2's best worker count is not known: no complete c3_workers run for profile "
                            f"{self.plan.profile!r}, this data and device {self.resolved_device(parameters)}; "
                            "build C3 first (make report ONLY=c3_workers)."
                        ),
                    )
                parameters[name] = best
                label = f"{label} {name}={best}".strip()
        if parameters.get("data") == "mnist" and self.options.mnist:
            parameters["data"] = self.options.mnist  # MNIST=PATH: the digits as an image folder
        if isinstance(parameters.get("data"), str) and parameters["data"] not in NAMED_SOURCES:
            parameters["data"] = str(Path(parameters["data"]).expanduser().resolve())
        if section.name not in self._digests:
            self._digests[section.name] = notebook_digest(section.notebook)
        key = point_key(
            self._digests[section.name],
            {k: v for k, v in parameters.items() if k != "data"},
            self.lablib,
            self.fingerprint(parameters["data"]) if "data" in parameters else "no data",
            self.environment,
            self.device,
        )
        state = PointState(section, label, parameters, key)
        complete = latest_complete(self.index, key)
        forced = self.options.force and section.name in self.selected and key not in self.done_this_build
        if complete and not forced:
            state.status, state.record = "complete", complete
            return state
        if run and section.name in self.selected:
            return self.execute(state)
        attempts = self.index.get(key, [])
        if attempts and attempts[-1].get("status") in FAILED:
            state.status, state.record, state.error = attempts[-1]["status"], attempts[-1], attempts[-1].get("error")
        return state

    def _job(self, state: PointState, parallel: bool) -> Job:
        section = state.section
        jobs = max(1, self.options.jobs)
        threads = str(max(1, (os.cpu_count() or 1) // jobs))
        env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads} if parallel else {}
        if parallel and len(self.gpus) > 1:  # several GPUs: each parallel job gets its own
            with self._lock:
                env["CUDA_VISIBLE_DEVICES"] = self.gpus[self._next_gpu % len(self.gpus)]
                self._next_gpu += 1
        return Job(
            section.name,
            section.notebook,
            state.parameters,
            state.key,
            new_point_folder(section.name),
            section.timeout_s,
            state.label,
            extra={
                "profile": self.plan.profile,
                "device_kind": self.device,
                "parallel": parallel,
                "jobs": jobs if parallel else 1,
                "executor": self.options.executor,
            },
            env=env,
        )

    def _name(self, state: PointState) -> str:
        return f"{state.section.name}{' ' + state.label if state.label else ''}"

    def _begin(self, state: PointState, announce: bool) -> tuple[int, float]:
        with self._lock:
            progress = self.progress
            progress["number"] += 1
            number = progress["number"]
            progress["total"] = max(progress["total"], number)
            if announce:
                self.out(f"[{number}/{progress['total']}] {self._name(state)} …", end="", flush=True)
            return number, self.estimate(state)

    def _finish(
        self,
        state: PointState,
        job: Job,
        outcome,
        number: int,
        predicted: float,
        announced: bool,
        note_parallel: str = "",
    ) -> PointState:
        with self._lock:
            progress = self.progress
            self.done_this_build.add(state.key)
            progress["spent"] += outcome.duration_s
            progress["predicted"] += predicted
            progress["remaining"] = max(0.0, progress["remaining"] - predicted)
            speed = progress["spent"] / progress["predicted"] if progress["predicted"] else 1.0
            jobs = max(1, self.options.jobs)
            eta = f", ETA {format_duration(progress['remaining'] * speed / jobs)}" if progress["remaining"] > 0 else ""
            note = "" if outcome.status == "complete" else f" {outcome.status.upper()} (log: {job.log})"
            line = f" {format_duration(outcome.duration_s)}{note}{eta}"
            self.out(
                line if announced else f"[{number}/{progress['total']}] {self._name(state)} …{line}{note_parallel}",
                flush=True,
            )
            record = read_point(job.folder) or {"status": outcome.status, "error": outcome.error}
            record["folder"] = str(job.folder)
            self.index.setdefault(state.key, []).append(record)
        state.status, state.record, state.error, state.ran = outcome.status, record, outcome.error, True
        return state

    def execute(self, state: PointState, parallel: bool = False) -> PointState:
        """Run one point; with parallel=True (JOBS > 1, from a worker thread) it gets its share of the
        CPU threads (and its own GPU when there are several) and prints its line when it ends."""
        if self.options.executor == "slurm":
            return self.execute_slurm([state], state.section.exclusive)[0]
        job = self._job(state, parallel)
        number, predicted = self._begin(state, announce=not parallel)
        outcome = self.executor.run(job)
        return self._finish(
            state, job, outcome, number, predicted, announced=not parallel, note_parallel=" (in parallel)"
        )

    def execute_slurm(self, states: list[PointState], exclusive: bool) -> list[PointState]:
        """Run points as one Slurm job array (submitit); each task is the same papermill execution
        into the same run store, so the records are the ones a local build writes."""
        from lablib.report.executors import SlurmExecutor, Task

        if not states:
            return states
        jobs = [self._job(state, parallel=False) for state in states]
        for job in jobs:  # a non-exclusive task may share its node with other tasks of the array
            job.extra["parallel"] = not exclusive
        begun = [self._begin(state, announce=False) for state in states]
        tasks = [Task(self._name(s), job, exclusive) for s, job in zip(states, jobs)]
        executor = SlurmExecutor(runs_root() / "_slurm", self.options.slurm)
        outcomes = executor.run(tasks, run_job, progress=lambda line: self.out(f"  {line}", flush=True))
        for state, job, outcome, (number, predicted) in zip(states, jobs, outcomes, begun):
            if outcome.status != "complete" and outcome.detail and not read_point(job.folder):
                write_point(job, outcome.status, ended=now_iso(), duration_s=outcome.seconds, error=outcome.detail)
            result = Outcome(outcome.status, outcome.seconds, outcome.detail or None)
            self._finish(state, job, result, number, predicted, announced=False, note_parallel=" (slurm)")
        return states

    # --- one section -------------------------------------------------------------------------
    def section_points(self, section: Section, run: bool) -> list[PointState]:
        if not section.exists:
            return []
        rule = section.rule
        if rule is None:
            swept = tuple(section.sweep)
            return [self.point(section, own, swept, run) for own in section.static_points()]
        from lablib.sections.sweeps import c3_next_workers, c3_worker_candidates

        name, spec = rule
        cores = os.cpu_count() or 1
        limit = min(spec.max, cores) if spec.max else cores
        measured: dict[int, float] = {}
        states: list[PointState] = []
        self.possible[section.name] = 0
        while (value := c3_next_workers(measured, limit, spec.step)) is not None:
            state = self.point(section, {**section.params, name: value}, (name,), run)
            states.append(state)
            if state.status != "complete":
                if state.status == "stale":  # the rule may need every later candidate too
                    later = [c for c in c3_worker_candidates(limit, spec.step) if c > value]
                    self.possible[section.name] = len(later)
                break
            result = _results(state.record).get("data_s_total")
            if result is None:
                states.append(
                    PointState(
                        section,
                        f"{name} rule",
                        status="failed",
                        error=(
                            f"the {name}={value} run recorded no data_s_total result, so C3's rule cannot "
                            f"choose the next point; the notebook must log_results(data_s_total=...) "
                            f"(see lablib.sections.sweeps)."
                        ),
                    )
                )
                break
            measured[value] = float(result)
        return states

    # --- estimate ------------------------------------------------------------------------------
    def probe_seconds_per_image(self) -> float:
        """Seconds per training image on this machine: ResNet-18 forward+backward on one batch of 32."""
        if self._probe_s is None:
            import torch

            from lablib.core.model import resnet18
            from lablib.core.timing import time_calls

            device = torch.device("cuda" if self.cuda and self.defaults.get("device", "auto") != "cpu" else "cpu")
            model = resnet18().to(device)
            images = torch.randn(32, 3, 32, 32, device=device)
            labels = torch.randint(0, 10, (32,), device=device)

            def step() -> None:
                model.zero_grad(set_to_none=True)
                torch.nn.functional.cross_entropy(model(images), labels).backward()

            times = time_calls(step, device, warmup=1, runs=2)
            self._probe_s = min(times) / 32
            del model, images, labels  # the points measure the GPU next: leave it empty
            if device.type == "cuda":
                torch.cuda.empty_cache()
        return self._probe_s

    def estimate(self, state: PointState) -> float:
        """Seconds: the last duration of the same point (same parameters apart from the data path, any
        code version), else OVERHEAD_S plus the section's cost in training runs timed by the probe."""
        same = {k: v for k, v in state.parameters.items() if k != "data"}
        previous = [
            p
            for attempts in self.index.values()
            for p in attempts
            if p.get("section") == state.section.name
            and p.get("status") == "complete"
            and p.get("duration_s")
            and state.status != "unresolved"
            and {k: v for k, v in (p.get("parameters") or {}).items() if k != "data"} == same
        ]
        if previous:
            return float(max(previous, key=lambda p: p.get("ended") or "")["duration_s"])
        parameters = {
            **self.defaults,
            **{k: v for k, v in state.section.params.items() if not isinstance(v, dict)},
            **state.parameters,
        }
        images = int(parameters.get("limit_train") or FULL_TRAIN_IMAGES)
        epochs = int(parameters.get("epochs") or 5)
        if not state.section.cost:
            return OVERHEAD_S
        return OVERHEAD_S + state.section.cost * images * epochs * self.probe_seconds_per_image() * 1.3

    # --- the build ------------------------------------------------------------------------------
    def survey(self) -> tuple[list[PointState], float]:
        """Every point's state without running anything; the stale ones' estimated seconds."""
        stale, seconds = [], 0.0
        for section in self.plan.sections:
            states = self.states[section.name] = self.section_points(section, run=False)
            if section.name not in self.selected:
                continue
            for state in states:
                if state.status != "complete" or self.options.force:
                    stale.append(state)
                    seconds += self.estimate(state)
            extra = self.possible.get(section.name, 0)
            if extra:
                seconds += extra * self.estimate(PointState(section, "", dict(self.defaults)))
                stale.extend([PointState(section, "(rule)")] * extra)
        return stale, seconds

    def run(self) -> None:
        """Every selected section's stale points, in plan order; with JOBS > 1 the points of sections
        that are not exclusive (timing), not a rule sweep and not waiting for C3's best run side by side."""
        if self.options.executor == "slurm":
            return self.run_slurm()
        if self.options.jobs <= 1:
            for section in self.plan.sections:
                self.states[section.name] = self.section_points(section, run=True)
            return
        from concurrent.futures import Future, ThreadPoolExecutor

        pending: list[tuple[Section, list]] = []

        def finish_pending() -> None:
            for section, items in pending:
                self.states[section.name] = [i.result() if isinstance(i, Future) else i for i in items]
            pending.clear()

        pool = ThreadPoolExecutor(self.options.jobs, thread_name_prefix="point")
        try:
            for section in self.plan.sections:
                references = any(isinstance(v, dict) for v in section.params.values())
                if section.name not in self.selected or not section.exists:
                    self.states[section.name] = self.section_points(section, run=False)
                elif section.exclusive or section.rule or references:
                    finish_pending()  # alone: timing never shares the machine; references need C3 done
                    self.states[section.name] = self.section_points(section, run=True)
                else:
                    states = self.section_points(section, run=False)
                    pending.append(
                        (
                            section,
                            [
                                pool.submit(self.execute, s, True)
                                if s.status not in ("complete", "invalid", "unresolved")
                                else s
                                for s in states
                            ],
                        )
                    )
            finish_pending()
        except BaseException:
            self.executor.stop_all()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)

    def run_slurm(self) -> None:
        """Stale points of consecutive independent sections go out as one job array; a timing
        section's points as an array of exclusive nodes; C3's rule and the sections that need its
        best workers one job at a time, in plan order."""
        batch: list[PointState] = []

        def flush() -> None:
            self.execute_slurm(batch, exclusive=False)
            batch.clear()

        for section in self.plan.sections:
            references = any(isinstance(v, dict) for v in section.params.values())
            if section.name not in self.selected or not section.exists:
                self.states[section.name] = self.section_points(section, run=False)
            elif section.rule or references:
                flush()
                self.states[section.name] = self.section_points(section, run=True)
            else:
                states = self.section_points(section, run=False)
                stale = [s for s in states if s.status not in ("complete", "invalid", "unresolved")]
                if section.exclusive:
                    flush()
                    self.execute_slurm(stale, exclusive=True)
                else:
                    batch.extend(stale)
                self.states[section.name] = states
        flush()

    def section_reports(self) -> list[SectionReport]:
        reports = []
        for section in self.plan.sections:
            states = self.states.get(section.name, [])
            report = SectionReport(section.name, section.id, section.title, section.part, "missing")
            if section.exists:
                report.points = len(states)
                report.duration_s = sum(float((s.record or {}).get("duration_s") or 0) for s in states)
                report.parallel = sum(bool((s.record or {}).get("parallel")) for s in states)
                failed = [s for s in states if s.status in FAILED]
                complete = [s for s in states if s.status == "complete"]
                report.failures = [
                    {
                        "label": s.label,
                        "status": s.status,
                        "error": s.error,
                        "executed": (s.record or {}).get("executed", "not executed"),
                        "log": (s.record or {}).get("log", "none"),
                    }
                    for s in failed
                ]
                if failed:
                    report.status = "failed"
                elif states and len(complete) == len(states):
                    report.status = "complete"
                    newest = max(complete, key=lambda s: s.record.get("ended") or "")
                    report.notebook = Path(newest.record["executed"])
                else:
                    report.status = "not built"
            reports.append(report)
        return reports

    def provenance_records(self) -> list[dict[str, Any]]:
        records = []
        for states in self.states.values():
            for state in states:
                if state.status == "complete" and state.record:
                    try:
                        meta = json.loads(Path(state.record["folder"], "run.json").read_text())
                        records.append(meta.get("provenance", {}))
                    except (OSError, json.JSONDecodeError):
                        continue
        return records


def _results(record: dict[str, Any] | None) -> dict[str, Any]:
    try:
        return json.loads(Path(record["folder"], "results.json").read_text()) if record else {}
    except (OSError, json.JSONDecodeError, KeyError):
        return {}


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def stitch(builder: Builder, options: Options, out: Callable[..., None] = print) -> list[str]:
    """Write report.html and report.pdf; returns problems with the PDF (empty when fine)."""
    from lablib.core.provenance import git_state

    plan = builder.plan
    git = git_state()
    sections = builder.section_reports()
    page = TitlePage(
        plan.title,
        plan.profile,
        plan.description,
        plan.lab_settings,
        plan.banner,
        dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        git["git_commit"],
        git["git_dirty"],
        builder.provenance_records(),
    )
    notebook = merge(page, sections, plan.sections[0].notebook.parent if plan.sections else REPO_ROOT)
    build_dir = options.output_dir / "build"
    build_dir.mkdir(parents=True, exist_ok=True)
    html_path, pdf_path = options.output_dir / "report.html", options.output_dir / "report.pdf"
    # The report is unchanged when everything but the date is: then the files stay as they are.
    digest = content_digest(notebook, ignore=page.date)
    stamp = build_dir / "report.digest"
    pdf_tools = missing_pdf_tools()
    if stamp.is_file() and stamp.read_text() == digest and html_path.is_file() and (pdf_path.is_file() or pdf_tools):
        out(f"report unchanged: {html_path}" + ("" if pdf_tools else f", {pdf_path}"))
        return [] if not pdf_tools else [f"PDF skipped: {', '.join(pdf_tools)} missing"]
    stamp.unlink(missing_ok=True)
    import nbformat

    nbformat.write(notebook, build_dir / "report.ipynb")
    export_html(notebook, html_path)
    out(f"wrote {html_path}")
    problems = []
    if pdf_tools:
        message = (
            f"PDF skipped: {', '.join(pdf_tools)} not found. Install them with:\n  {INSTALL_PDF_TOOLS}\n"
            "(or `make system-deps`); the HTML report is complete."
        )
        out(message)
        problems.append(f"PDF skipped: {', '.join(pdf_tools)} missing")
    else:
        try:
            export_pdf(notebook, pdf_path, build_dir / "latex")
            out(f"wrote {pdf_path}")
        except PdfError as error:
            out(f"PDF failed: {error}")
            problems.append("PDF failed (xelatex), see above")
    if not problems:
        stamp.write_text(digest)
    return problems


def build(options: Options, out: Callable[..., None] = print) -> int:
    """The whole `make report`; returns the exit status (0 ok, 1 failures, 3 stopped, 130 interrupted)."""
    plan = load_plan(options.plan, options.profile)
    builder = Builder(plan, options, out)
    missing = [s.name for s in plan.sections if not s.exists]
    stale, seconds = builder.survey()
    selected = [s for s in plan.sections if s.name in builder.selected]
    total_points = sum(len(builder.states.get(s.name, [])) for s in selected)
    out(f"plan {plan.path.name}, profile {plan.profile} ({plan.description}); device {builder.device}")
    out(
        f"{len(selected)} section(s), {total_points} point(s) known; {len(stale)} to run"
        + (f", estimated {format_duration(seconds)} on this machine" if stale else ", everything is up to date")
    )
    if missing:
        out(
            f"missing notebooks ({len(missing)}, listed in the plan but not in notebooks/; their sections say so): "
            + ", ".join(missing)
        )
    if options.jobs > 1:
        out(
            f"JOBS={options.jobs}: points of sections not marked exclusive run {options.jobs} at a time, each with "
            f"{max(1, (os.cpu_count() or 1) // options.jobs)} CPU thread(s); timing sections run alone."
        )
    if stale and plan.profile == "full" and not options.profile_explicit and not builder.cuda:
        data = options.data or "../shared/data/cifar10-jpg.zip"
        out(
            f"\nNo GPU is visible, and the full profile (the lab's settings) would take about "
            f"{format_duration(seconds)} on this CPU. Stopping before training.\n"
            f"For the quick profile (a small real subset, minutes):\n"
            f"  make report PROFILE=quick DATA={data}\n"
            f"  (python -m lablib report --profile quick --data {data})\n"
            f"To run the full profile on the CPU anyway: make report PROFILE=full"
        )
        return 3
    builder.progress["total"] = len(stale)
    builder.progress["remaining"] = seconds
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        builder.run()
    except KeyboardInterrupt:
        out("\ninterrupted: completed points are kept; the next `make report` runs only what is missing.")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    ran = [s for states in builder.states.values() for s in states if s.ran]
    out(f"{len(ran)} point(s) ran, {sum(len(v) for v in builder.states.values()) - len(ran)} reused")
    problems = stitch(builder, options, out)
    failures = [(name, s) for name, states in builder.states.items() for s in states if s.status in FAILED]
    if failures:
        out(f"\n{len(failures)} point(s) failed:")
        for name, state in failures:
            where = (state.record or {}).get("executed", "")
            last = (state.error or "").strip().splitlines()[:1] or [""]  # the exception (or timeout) line
            out(
                f"  {name}{' ' + state.label if state.label else ''}: {state.status}: {last[0]}"
                + (f"\n    {where}" if where else "")
            )
    if missing:
        out(f"({len(missing)} section(s) not built: their notebooks are missing from notebooks/, see above)")
    pdf_only_skipped = all(p.startswith("PDF skipped") for p in problems)
    return 1 if failures or (problems and not pdf_only_skipped) else 0


def mnist_beside(data: str | None) -> str | None:
    """An MNIST image folder next to the CIFAR-10 one (mnist-png.zip or mnist/), when DATA is a path.

    Course mirrors ship both archives side by side; without one, E1 uses torchvision's MNIST.
    """
    if not data or data in NAMED_SOURCES:
        return None
    folder = Path(data).expanduser().resolve().parent
    for candidate in (folder / "mnist-png.zip", folder / "mnist"):
        if candidate.exists():
            return str(candidate)
    return None


def main(args) -> int:
    """Entry from lablib.cli: args has profile, data, device, only, force, jobs, plan."""
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # progress lines show up at once in logs and CI too
    options = Options(
        profile=args.profile or "full",
        profile_explicit=args.profile is not None,
        data=args.data,
        mnist=getattr(args, "mnist", None) or mnist_beside(args.data),
        device=args.device,
        only=args.only,
        force=args.force,
        jobs=args.jobs,
        executor=getattr(args, "executor", None) or "local",
        plan=Path(args.plan) if args.plan else DEFAULT_PLAN,
        output_dir=Path(args.output) if getattr(args, "output", None) else REPO_ROOT / "report",
    )
    if options.executor not in ("local", "slurm"):
        raise PlanError(f"EXECUTOR={options.executor!r} is unknown; use local or slurm.")
    if options.executor == "slurm":
        import shutil

        from lablib.report.executors import SlurmSettings

        if shutil.which("sbatch") is None:
            raise PlanError(
                "EXECUTOR=slurm needs Slurm's sbatch on PATH: run on a cluster login node, or use EXECUTOR=local."
            )
        options.slurm = SlurmSettings.from_env()
    if options.device not in (None, "auto", "cuda", "cpu"):
        raise PlanError(f"--device {options.device!r}: expected auto, cuda or cpu.")
    for name, value in (("DATA", options.data), ("MNIST", options.mnist)):
        if value and value not in NAMED_SOURCES and not Path(value).expanduser().exists():
            raise PlanError(
                f"{name}={value!r} does not exist (resolved to {Path(value).expanduser().resolve()}); "
                f"give a folder or .zip with train/<class>/ and test/<class>/, or a named source "
                f"({', '.join(NAMED_SOURCES)})."
            )
    return build(options)
