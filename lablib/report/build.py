"""`make report`: measure what is missing, present what changed, stitch report.html and report.pdf.

    python -m lablib report [--profile quick|full|gpu] [--lab 2026|2025|2024|eml|all] [--data PATH]
                            [--only C4,C5] [--force] [--jobs N] [--executor local|slurm] [--dry-run]
                            [--budget 45m] [--plan report/plan.yaml] [--output report/] [--records TAR]

1. Load the plan and the lab variant; ONLY (in the variant's numbering) chooses sections, and the
   sections they need are built too (and said so).
2. Plan every measurement (lablib.report.measure.rounds with predictions): print how many would run
   and be reused and the estimate; `--dry-run` prints them by section, the plan's cost and the
   estimates on this machine and on named GPUs, and stops there. Without a GPU the full profile stops
   before training, unless it was asked for explicitly.
3. Measure (lablib.report.measure): each missing measurement once, on the executor.
4. Present: the notebook of every selected section whose point key changed is executed once
   (papermill, LABLIB_MEASURE=reuse: it measures nothing); the others are reused.
5. Stitch every section of the variant (lablib.report.stitch) and exit non-zero listing the failures.
   The last line before stitching is `N measurement(s) ran, M reused`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import signal
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lablib.core.data import NAMED_SOURCES
from lablib.core.errors import LabError
from lablib.core.paths import REPO_ROOT, data_root
from lablib.core.runs import check_writable, lock_store, runs_root
from lablib.report.measure import walking
from lablib.report.plan import Plan, PlanError, load_plan, parse_duration
from lablib.report.points import index_points, new_point_folder, settle_abandoned
from lablib.report.resolve import FAILED, Context, Resolver, SectionState, settle_needs
from lablib.report.stitch import format_duration

DEFAULT_PLAN = REPO_ROOT / "report" / "plan.yaml"
PREVIOUS = "previous.ipynb"  # the previous build's stitched notebook, in build/
EXECUTORS = ("local", "slurm")
BUDGETED = "budget_s"  # the notebook parameter a time budget is passed in (E1's grids)


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
    slurm: Any = None  # SlurmSettings for EXECUTOR=slurm
    plan: Path = DEFAULT_PLAN
    output_dir: Path = REPO_ROOT / "report"
    lab: str | None = None  # the lab variant (report/variants.yaml): 2026 (default), 2025, 2024, eml, all
    records: Path | None = None  # RECORDS=records.tar.gz: stitch what a GPU node measured, run nothing here
    stitch: bool = True  # False (--no-stitch): record only, e.g. on a node without TeX
    dry_run: bool = False  # print what would run and what it costs; run nothing
    budget_s: float | None = None  # BUDGET: the time E1's grids may take together
    student: dict[str, str] = field(default_factory=dict)  # AUTHOR, STUDENT_ID, COURSE, TERM
    command: str = ""  # the command line that reproduces this build


# --- what runs ---------------------------------------------------------------------------------


def selection(plan: Plan, variant, only: str | None, out: Callable[..., None]) -> frozenset[str]:
    """The sections this build runs: ONLY's (in the variant's numbering), else the variant's, with what they need."""
    chosen = variant.select(only)
    closed = plan.with_needs(chosen)
    added = [name for name in closed if name not in chosen]
    for name in added:
        users = [n for n in chosen if name in plan.with_needs([n])]
        which = ", ".join(variant.number_of(u) for u in users)
        whose = "their" if len(users) > 1 else "its"
        what = " (C3.2's best worker count)" if name == "c3_workers" else ""
        out(
            f"{'ONLY' if only else f'LAB={variant.name}'}: also building {variant.number_of(name)} ({name}), which "
            f"{which} {'need' if len(users) > 1 else 'needs'}: its results decide {whose} settings{what}"
        )
    return frozenset(closed)


def context_for(plan: Plan, options: Options, selected: frozenset[str], budgets: dict[str, float] | None = None):
    import torch

    from lablib.core.provenance import environment_lock
    from lablib.core.store import core_digest, device_kind

    defaults = dict(plan.defaults)
    if options.data:
        defaults["data"] = options.data
    if options.device:
        defaults["device"] = options.device
    defaults["tag"] = plan.profile
    cuda = torch.cuda.is_available()
    return Context(
        defaults=defaults,
        environment=environment_lock(),
        device=device_kind("cuda" if cuda else "cpu"),
        cuda=cuda,
        core=core_digest(),
        mnist=options.mnist,
        force=options.force,
        selected=selected,
        records_only=options.records is not None,
        budgets=budgets or {},
    )


def recorded_for(resolver: Resolver, measured_now: list[str]):
    """The lookup a section plans with: FORCE hides, for the selected sections, what earlier builds recorded."""
    from lablib.core.store import lookup

    def fresh(request):
        return lookup(request) if request.key in measured_now else None

    def choose(state: SectionState):
        forced = resolver.context.force and state.name in resolver.context.selected
        return fresh if forced else lookup

    return choose


# --- the plan: what would run, and what it costs ------------------------------------------------------


@dataclass
class Forecast:
    """What a build would run: its states (planned on predictions) and the predicted measurements."""

    states: dict[str, SectionState]
    predictor: Any  # lablib.report.measure.Predictor
    estimator: Any  # lablib.report.estimate.Estimator

    @property
    def to_measure(self) -> list:
        return self.predictor.order

    def reused(self) -> list:
        """The measurements the selected sections present that are recorded already."""
        keys = {entry.request.key for entry in self.to_measure}
        seen, found = set(), []
        for state in self.states.values():
            if state.name not in self.selected:
                continue
            for request in state.requests:
                if request.key not in keys and request.key not in seen:
                    seen.add(request.key)
                    found.append((state.name, request))
        return found

    @property
    def selected(self) -> frozenset[str]:
        return frozenset(name for name, state in self.states.items() if state.selected)

    def notebooks(self) -> list[SectionState]:
        return [s for s in self.states.values() if s.selected and s.status == "stale"]


def forecast(
    plan: Plan, resolver: Resolver, assume_gpu: bool, separate: bool = False, gpu: str | None = None
) -> Forecast:
    """Plan every selected section's measurements on predictions (nothing runs), then their points.
    `separate`: every measurement runs in a process of its own (JOBS > 1, Slurm), as the estimator prices it;
    `gpu`: the named GPU whose estimates stand in for GPU work's measurements when this machine has none."""
    import contextlib

    from lablib.core.training import assume_cuda
    from lablib.report.estimate import Estimator
    from lablib.report.measure import Predictor, rounds

    estimator = Estimator(resolver.context.cuda, separate=separate, gpu=gpu)
    predictor = Predictor(estimator)
    states = {s.name: resolver.state(s) for s in plan.sections}
    chosen = [s for s in states.values() if s.selected]
    with assume_cuda() if assume_gpu else contextlib.nullcontext():
        rounds(chosen, resolver, lambda state: predictor.recorded, predictor.run_round, predictor.source_ready)
        for state in chosen:
            if state.status not in (*FAILED, "missing") and state.needs is not None:
                resolver.point(state)
    return Forecast(states, predictor, estimator)


def separate_jobs(options: Options) -> bool:
    """Whether each measurement runs in a process of its own (side by side: JOBS > 1, or Slurm)."""
    return options.jobs > 1 or options.executor == "slurm"


FIT_MARGIN = 1.5  # a grid's share when it fits: its estimated whole time and half again (rungs, estimate errors)


def share_budget(budget_s: float, costs: dict[str, float]) -> dict[str, float]:
    """`budget_s` over the grids (name -> whole-grid seconds estimated, in plan order). When all fit, in proportion
    to their cost; else, from the cheapest up, each gets FIT_MARGIN times its cost where that is at most an even
    share of what is left, what it leaves going to the others, and the last all that is left (water-filling).
    Each share is at least a second."""
    total = sum(costs.values())
    if total <= budget_s:
        return {name: max(budget_s * (cost / total if total else 1 / len(costs)), 1.0) for name, cost in costs.items()}
    shares: dict[str, float] = {}
    left, waiting = budget_s, sorted(costs, key=lambda name: costs[name])
    while waiting:
        name = waiting.pop(0)
        shares[name] = min(FIT_MARGIN * costs[name], left / (len(waiting) + 1)) if waiting else left
        left -= shares[name]
    return {name: max(shares[name], 1.0) for name in costs}


SPLITS = "budgets"  # runs/budgets/<key>.json: how a build split a budget over E1's grids, kept for its rebuilds


@dataclass
class KeptSplit:
    """A budget's split over E1's grids as first made, under a key of what it was made for.

    The split comes from estimates, and the estimates from what is recorded (a measured epoch time replaces a
    probe), so splitting again at every build would give a grid another budget, another walk and other points
    after its first build. The first split is kept: a rebuild asks for the same grids and measures nothing."""

    path: Path
    recorded: dict[str, float] | None
    made: str = ""

    def record(self, shares: Mapping[str, float]) -> None:
        from lablib.core.runs import now_iso, write_json

        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.path, {"shares": dict(shares), "made": now_iso()})


def kept_split(plan: Plan, options: Options, budget_s: float, takers: Sequence[str], context) -> KeptSplit:
    """The split recorded for this budget, these grids, their settings, the data, the device kind, the core
    code and the environment (any of which changing makes a new split), if any."""
    what = {
        "budget_s": budget_s,
        "plan": plan.path.name,
        "profile": plan.profile,
        "grids": {name: plan.section(name).params for name in takers},
        "defaults": context.defaults,
        "mnist": options.mnist,
        "device": context.device,
        "core": context.core,
        "environment": context.environment,
    }
    key = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:20]
    path = runs_root() / SPLITS / f"{key}.json"
    try:
        kept = json.loads(path.read_text())
        shares = {name: float(kept["shares"][name]) for name in takers}
        return KeptSplit(path, shares, str(kept.get("made", ""))[:16].replace("T", " "))
    except (OSError, ValueError, KeyError, TypeError):  # none yet, or unreadable: split afresh
        return KeptSplit(path, None)


def split_budget(
    plan: Plan,
    options: Options,
    selected: frozenset[str],
    out,
    assume_gpu: bool = False,
    wholes: dict[str, dict[str, float | None]] | None = None,
) -> dict[str, float]:
    """The time budget (BUDGET, else the profile's `budget:`; BUDGET=none: none) over the selected sections that
    take one (E1's grids): a grid whose whole estimated time fits its even share runs whole, and what it leaves
    goes to the others (water-filling). Prints each grid's whole-grid estimate per named GPU beside its share
    (and puts them in `wholes`: section -> machine name -> seconds)."""
    import contextlib

    from lablib.core.training import assume_cuda

    budget = plan.budget_s if options.budget_s is None else options.budget_s
    if not budget:
        return {}
    where = "BUDGET" if options.budget_s is not None else f"the {plan.profile} profile's budget"
    resolver = Resolver(plan, context_for(plan, options, selected), index_points())
    takers = []
    for section in plan.sections:
        if section.name in selected and section.exists:
            try:
                if BUDGETED in resolver.declared(section):
                    takers.append(section.name)
            except PlanError:
                continue
    if not takers:
        if options.budget_s is not None:
            out(f"BUDGET={format_duration(budget)}: no selected section takes a time budget; it is ignored")
        return {}
    alone = frozenset(plan.with_needs(takers))
    whole = forecast(
        plan, Resolver(plan, context_for(plan, options, alone), resolver.index), assume_gpu, separate_jobs(options)
    )
    estimator = whole.estimator
    costs: dict[str, float] = {}
    per_gpu: dict[str, list[float | None]] = {}
    with assume_cuda() if assume_gpu else contextlib.nullcontext():
        for name in takers:
            requests = list(whole.states[name].requests)  # the whole grid, recorded or not: its cost stays its cost
            walk = walking(name)  # E1's grids: one job measures each walk
            here = estimator.total(requests, 0, walk=walk)
            costs[name] = here if here is not None else (estimator.total(requests, 0, estimator.gpus[0], walk) or 0.0)
            per_gpu[name] = [estimator.total(requests, 0, machine, walk) for machine in estimator.gpus]
            per_gpu[name].insert(0, here)
    shares = share_budget(budget, costs)
    kept = kept_split(plan, options, budget, takers, resolver.context)
    out(
        f"{where}: {format_duration(budget)} for E1's grids"
        + ("" if options.budget_s is not None else " (BUDGET=none trains them whole; BUDGET=45m sets another)")
    )
    if kept.recorded is not None and not options.force:
        shares = kept.recorded
        out(
            f"  the split this budget got on {kept.made}, kept so that a rebuild presents the same grids "
            "(FORCE=1 splits again)"
        )
    elif not options.dry_run:
        kept.record(shares)
    for name in takers:
        here, *gpus = per_gpu[name]
        if wholes is not None:
            wholes[name] = {m.name: s for m, s in zip(estimator.gpus, gpus)}
        priced = ([f"here {format_duration(here)}"] if here is not None else []) + [
            f"{m.name.removeprefix('NVIDIA ')} {format_duration(s)}"
            for m, s in zip(estimator.gpus, gpus)
            if s is not None
        ]
        fits = "every setting to the end fits" if shares[name] >= costs[name] else "successive halving"
        out(
            f"  {name}: {format_duration(shares[name])}, {fits} (the whole grid, an estimate: {', '.join(priced)}; "
            "the first epoch tells: where the whole grid fits, it trains at once)"
        )
    return shares


def cost_line(forecast_: Forecast) -> str:
    """`plan cost: N notebook execution(s), E ResNet-18 epoch(s) on cuda, C on cpu, S small-CNN epoch(s)`."""
    from lablib.core.store import work

    epochs = {("resnet18", "cuda"): 0.0, ("resnet18", "cpu"): 0.0, "small_cnn": 0.0, "other": 0.0}
    for entry in forecast_.to_measure:
        for item in work(entry.request):
            if item.model == "resnet18":
                epochs[("resnet18", "cuda" if item.device == "cuda" else "cpu")] += item.epochs
            elif item.model == "small_cnn":
                epochs["small_cnn"] += item.epochs
            elif item.model:
                epochs["other"] += item.epochs

    def count(value: float) -> str:
        return f"{value:g}" if value == int(value) else f"{value:.1f}"

    line = (
        f"plan cost: {len(forecast_.notebooks())} notebook execution(s), "
        f"{count(epochs[('resnet18', 'cuda')])} ResNet-18 epoch(s) on cuda, {count(epochs[('resnet18', 'cpu')])} on "
        f"cpu, {count(epochs['small_cnn'])} small-CNN epoch(s)"
    )
    if epochs["other"]:
        line += f" (and {count(epochs['other'])} epoch(s) of other models, MobileNetV2)"
    return line


def estimate_lines(forecast_: Forecast, here: str) -> list[str]:
    """The estimated time of what would run, on this machine and on the named GPUs, each labelled."""
    from lablib.report.estimate import NOTEBOOK_S

    requests = [entry.request for entry in forecast_.to_measure]
    notebooks = len(forecast_.notebooks())
    estimator = forecast_.estimator
    total = estimator.total(requests, notebooks)
    lines = [
        f"estimated time on this machine ({here}): "
        + (format_duration(total) if total is not None else "none: the plan trains on a GPU and this machine has none")
    ]
    gpus = ", ".join(
        f"{machine.name} {format_duration(estimator.total(requests, notebooks, machine))}" for machine in estimator.gpus
    )
    lines.append(
        f"estimated time on a GPU node (an estimate from datasheet peaks and published throughputs; CPU work and "
        f"{NOTEBOOK_S:g} s per notebook as on this machine): {gpus}"
    )
    return lines


def budgeted_walks(
    plan: Plan, options: Options, name: str, budgets: dict[str, float], assume_gpu: bool
) -> dict[str, float | None]:
    """A budgeted section's measurements as each named GPU's estimates plan them (successive halving re-plans
    from the times it predicts), priced on that GPU: its name -> seconds."""
    from lablib.report.estimate import Probe, named_machines

    alone = frozenset(plan.with_needs([name]))
    priced: dict[str, float | None] = {}
    for gpu in named_machines(Probe(False)):
        resolver = Resolver(plan, context_for(plan, options, alone, budgets), index_points())
        walk = forecast(plan, resolver, assume_gpu, False, gpu.name)  # a walk runs in one process
        keys = {r.key for r in walk.states[name].requests}
        requests = [e.request for e in walk.to_measure if e.request.key in keys]
        machine = next(m for m in walk.estimator.gpus if m.name == gpu.name)
        priced[gpu.name] = walk.estimator.total(requests, 0, machine, walking(name))
    return priced


def dry_run(plan: Plan, variant, options: Options, selected: frozenset[str], out: Callable[..., None]) -> int:
    """Print what the build would measure and reuse, by section, its cost and the estimates; run nothing."""
    import torch

    assume_gpu = plan.lab_settings and not torch.cuda.is_available()
    wholes: dict[str, dict[str, float | None]] = {}
    budgets = split_budget(plan, options, selected, out, bool(assume_gpu), wholes)
    resolver = Resolver(plan, context_for(plan, options, selected, budgets), index_points())
    planned = forecast(plan, resolver, assume_gpu, separate_jobs(options))
    out(f"dry run of plan {plan.path.name}, profile {plan.profile}, lab variant {variant.name}: nothing runs")
    if assume_gpu:
        out("no GPU here: the full profile is planned as on a GPU node (device auto -> cuda)")
    would = {entry.request.key: entry for entry in planned.to_measure}
    estimator = planned.estimator
    for state in planned.states.values():
        if state.name not in selected:
            continue
        number = variant.number_of(state.name)
        if state.status in (*FAILED, "missing"):
            out(f"\n{number} ({state.name}): {state.status}: {state.error}")
            continue
        requests = list(state.requests)
        runs = [r for r in requests if r.key in would and would[r.key].asked_by == state.name]
        shared = [r for r in requests if r.key in would and would[r.key].asked_by != state.name]
        reused = [r for r in requests if r.key not in would]
        notebook = "its notebook executes" if state.status == "stale" else "its notebook is reused"
        out(f"\n{number} ({state.name}): {len(runs)} to measure, {len(shared) + len(reused)} reused; {notebook}")
        walk = walking(state.name)
        for request in runs:
            gpu = ", ".join(
                f"{m.name.removeprefix('NVIDIA ')} {format_duration(estimator.seconds(request, m, walk=walk))}"
                for m in estimator.gpus
            )
            here = estimator.seconds(request, walk=walk)
            here_text = f"~{format_duration(here)} here" if here is not None else "no GPU here"
            out(f"  measure  {request.label}  ({here_text}; {gpu})")
        for request in shared:
            owner = would[request.key].asked_by
            out(f"  shared   {request.label}  (measured once, for {variant.number_of(owner)})")
        for request in reused:
            out(f"  reuse    {request.label}  (recorded)")
        if runs and len(runs) > 3:
            share = budgets.get(state.name)
            if share and not resolver.context.cuda:  # a budget: the halving as each named GPU would plan it
                totals = ", ".join(
                    f"{gpu.removeprefix('NVIDIA ')} {format_duration(seconds)}"
                    for gpu, seconds in budgeted_walks(plan, options, state.name, budgets, bool(assume_gpu)).items()
                )
            else:
                totals = ", ".join(
                    f"{m.name.removeprefix('NVIDIA ')} {format_duration(estimator.total(runs, 0, m, walk))}"
                    for m in estimator.gpus
                )
            here = estimator.total(runs, 0, walk=walk)
            here_text = f"~{format_duration(here)} here" if here is not None else "no GPU here"
            out(f"  {number} in all (an estimate): {here_text}; {totals}")
    out("")
    out(f"{len(planned.to_measure)} measurement(s) would run, {len(planned.reused())} reused")
    out(cost_line(planned))
    for line in estimate_lines(planned, "a GPU" if resolver.context.cuda else "CPU only"):
        out(line)
    return 0


# --- the build ----------------------------------------------------------------------------------------


def build(options: Options, out: Callable[..., None] = print) -> int:
    """The whole `make report`; returns the exit status (0 ok, 1 failures, 3 stopped, 130 interrupted).

    At the door, before anything is planned: the run store and the data cache must be writable with room
    to spare, and no other build may hold the store (a LabError, one line, says which and what to do).
    Holding the store's lock, points and measurements whose build was killed read as abandoned."""
    from lablib.report.variants import load_variants

    plan = load_plan(options.plan, options.profile)
    variant = load_variants(plan).get(options.lab)
    selected = selection(plan, variant, options.only, out)
    if options.dry_run:
        return dry_run(plan, variant, options, selected, out)
    check_gpu_usable(options)
    check_writable(runs_root(), "the run store", "LABLIB_RUNS_DIR")
    with lock_store(runs_root()):
        check_writable(data_root() / "cache", "the data cache folder", "LABLIB_DATA_DIR")
        check_writable(options.output_dir, "the report folder", "OUTPUT")
        abandoned = settle_abandoned()
        if abandoned:
            out(f"{len(abandoned)} point(s) of a build that was killed are marked abandoned; they run again")
        return _build(plan, variant, selected, options, out)


def _build(plan: Plan, variant, selected: frozenset[str], options: Options, out: Callable[..., None]) -> int:
    from lablib.report.executors import make_executor, thread_share
    from lablib.report.measure import Measurer, rounds
    from lablib.report.progress import Progress

    if options.records is not None:
        from lablib.report.records import unpack

        added = unpack(options.records, runs_root())
        out(f"records {options.records}: {len(added)} new run folder(s) in {runs_root()}; nothing runs here")
    budgets = split_budget(plan, options, selected, out) if options.records is None else {}
    context = context_for(plan, options, selected, budgets)
    resolver = Resolver(plan, context, index_points())
    out(f"plan {plan.path.name}, profile {plan.profile} ({plan.description}); lab variant {variant.name}")
    out(f"device {context.device}")
    missing = [s.name for s in plan.sections if not s.exists]
    if missing:
        out(
            f"missing notebooks ({len(missing)}, listed in the plan but not in notebooks/; their sections say so): "
            + ", ".join(missing)
        )
    planned = None
    if options.records is None:
        planned = forecast(plan, Resolver(plan, context, index_points()), False, separate_jobs(options))
        to_measure = [e.request for e in planned.to_measure]
        seconds = planned.estimator.total(to_measure, len(planned.notebooks())) or 0.0
        out(
            f"{len(selected)} section(s): {len(to_measure)} measurement(s) to run, {len(planned.reused())} reused, "
            f"{len(planned.notebooks())} notebook(s) to execute"
            + (f"; estimated {format_duration(seconds)} on this machine" if to_measure else "")
        )
        if to_measure and plan.profile == "full" and not options.profile_explicit and not context.cuda:
            from lablib.core.provenance import driver_warning

            warning = driver_warning()
            data = options.data or "PATH"
            out(
                (f"\n{warning}\n" if warning else "")
                + f"\nNo GPU is usable here, and the full profile (the lab's settings) would take about "
                f"{format_duration(seconds)} on this CPU. Stopping before training.\n"
                "For the quick profile (a small real subset, minutes):\n"
                "  make report PROFILE=quick                     (torchvision's CIFAR-10, downloaded)\n"
                f"  make report PROFILE=quick DATA={data}       (the CIFAR-10 images as a .zip or folder)\n"
                "What the full profile would run and cost on a GPU: make report DRY_RUN=1\n"
                "To run the full profile on the CPU anyway: make report PROFILE=full"
            )
            return 3
    if options.jobs > 1 and options.executor == "local":
        out(
            f"JOBS={options.jobs}: measurements that are not timings run {options.jobs} at a time, each with "
            f"{thread_share(options.jobs)} CPU thread(s); timings run alone."
        )
    states = {s.name: resolver.state(s) for s in plan.sections}
    chosen = [s for s in states.values() if s.name in selected]
    executor = make_executor(
        options.executor, options.jobs, runs_root() / "_slurm", options.slurm, progress=lambda line: out(f"  {line}")
    )
    estimator = planned.estimator if planned else None
    total = len(planned.to_measure) if planned else 0  # the notebooks count on their own (present)
    remaining = (planned.estimator.total([e.request for e in planned.to_measure], 0) or 0.0) if planned else 0.0
    progress = Progress(out, total, remaining, options.jobs, announce=options.executor == "local")
    expected = Counter(entry.asked_by for entry in planned.to_measure) if planned else Counter()
    measurer = Measurer(chosen, executor, estimator, progress, plan.profile, options.force, expected)
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        if options.records is None:
            rounds(chosen, resolver, recorded_for(resolver, measurer.measured), measurer.run_round)
        settle_states(states, resolver)
        if options.records is None:
            present(states, selected, resolver, plan, out, options)
    except KeyboardInterrupt:
        out("\ninterrupted: finished measurements and points are kept; the next `make report` runs what is missing.")
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    ran = len(dict.fromkeys(measurer.measured))
    used = {r.key for s in chosen for r in s.requests}
    out(f"{ran} measurement(s) ran, {len(used - set(measurer.measured))} reused")
    if options.stitch:
        problems = stitch(plan, variant, states, selected, options, out)
    else:
        problems = []
        out(f"records in {runs_root()} (not stitched: --no-stitch); stitch them where TeX is installed")
    failures = [s for s in states.values() if failed(s, selected)]
    if failures:
        out(f"\n{len(failures)} section(s) failed:")
        for state in failures:
            where = (state.record or {}).get("executed", "")
            last = (state.error or "").strip().splitlines()[:1] or [""]
            out(
                f"  {variant.number_of(state.name)} ({state.name}): {state.status}: {last[0]}"
                + (f"\n    {where}" if where else "")
            )
            for failure in state.failed_measurements:
                out(f"    {failure['label']}: {failure['status']}; log: {failure['log']}")
        reasons = {f["label"]: failure_reason(f) for s in failures for f in s.failed_measurements}
        if reasons:
            out("\nWhy the measurements failed (each once; the logs above have the rest):")
            for label, reason in reasons.items():
                out(f"  {label}: {reason}")
    pdf_only_skipped = all(p.startswith("PDF skipped") for p in problems)
    return 1 if failures or (problems and not pdf_only_skipped) else 0


def failure_reason(failure: Mapping[str, Any]) -> str:
    """The line of a failed measurement's error that says what went wrong (and what to do), without the
    "measuring ... (for section)" lines that only repeat its label."""
    label = str(failure.get("label") or "")
    lines = [line.strip() for line in str(failure.get("error") or "").splitlines() if line.strip()]
    reason = lines[-1] if lines else str(failure.get("status") or "failed")
    for line in reversed(lines):
        prefix = next((p for p in (f"failed: {label}: ", f"{label}: ") if label and line.startswith(p)), None)
        if prefix:
            reason = line[len(prefix) :]
            break
    return re.sub(r"^lablib(\.\w+)*\.\w*Error: ", "", reason)  # our errors are written for the reader already


def settle_states(states: dict[str, SectionState], resolver: Resolver) -> None:
    """Every section's final measurements (as recorded now) and its point's key and state."""
    from lablib.core.store import lookup

    for state in states.values():
        if state.status in (*FAILED, "missing"):
            continue
        if (state.needs is None or state.status == "stale") and not settle_needs(resolver, state, lookup):
            continue
        unrecorded = [r for r in state.needs.requests if lookup(r) is None]
        resolver.point(state)
        if unrecorded and state.status != "complete":
            state.status = "not built" if state.name not in resolver.context.selected else "failed"
            state.error = state.error or f"{len(unrecorded)} measurement(s) not recorded: {unrecorded[0].label}"


def present(states, selected, resolver: Resolver, plan: Plan, out, options: Options) -> None:
    """Execute the notebook of every selected section whose point is stale; none of them measures."""
    from lablib.report.estimate import NOTEBOOK_S
    from lablib.report.executors import LocalExecutor, Task
    from lablib.report.job import Job
    from lablib.report.progress import Progress

    stale = [s for s in states.values() if s.name in selected and s.status == "stale"]
    if not stale:
        return
    jobs = max(options.jobs, min(os.cpu_count() or 1, 4))  # presenting measures nothing: side by side is safe
    progress = Progress(out, len(stale), len(stale) * NOTEBOOK_S, jobs)
    tasks = [
        Task(
            Job(
                s.name,
                s.section.notebook,
                s.parameters,
                s.key,
                new_point_folder(s.section.store),
                s.section.timeout_s,
                "",
                record={
                    "profile": plan.profile,
                    "device_kind": resolver.context.device,
                    "key_parts": s.key_parts,
                    "measurements": [r.key for r in s.requests],
                },
                env={"LABLIB_SECTION": s.name},
            )
        )
        for s in stale
    ]

    def on_start(task) -> None:
        progress.start(f"present {task.job.section}")

    def on_end(task, outcome) -> None:
        resolver.recorded(task.job.key, task.job.folder)
        progress.finish(f"present {task.job.section}", outcome, NOTEBOOK_S, str(task.job.log))

    executor = LocalExecutor(jobs, gpus=[])
    try:
        executor.run(tasks, on_start, on_end)
    finally:
        for task in tasks:
            if task.job.folder.is_dir() and not any(task.job.folder.iterdir()):
                task.job.folder.rmdir()
    for state in stale:
        resolver.point(state)
        if state.status not in ("complete", *FAILED):
            state.status = "failed"


def failed(state: SectionState, selected: frozenset[str]) -> bool:
    """A failure of this build: a selected section that failed or could not run.

    Unselected sections are merely not built (ONLY=C1 on a fresh store, or one whose other sections failed
    before): neither the exit status nor the list of failures names them."""
    return state.status in FAILED and state.name in selected


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


# --- stitching ------------------------------------------------------------------------------------------


def record_frame(state: SectionState):
    """The section's presenting record (its point's run.json and results) as a one-row frame for headlines."""
    import pandas as pd

    from lablib.report.points import presenting_record

    meta = presenting_record(state.record) if state.status == "complete" else None
    if not meta:
        return pd.DataFrame()
    row = {
        "run_id": meta.get("run_id"),
        "section": meta.get("section"),
        "status": "complete",
        "tag": meta.get("tag"),
        "ended": meta.get("ended"),
        "resolved_device": meta.get("provenance", {}).get("device"),
        "device_name": meta.get("provenance", {}).get("device_name"),
        "uses": meta.get("uses", []),
        **{k: v for k, v in meta.get("params", {}).items() if k != "tag"},
        **meta.get("settings", {}),
        **meta.get("results", {}),
    }
    return pd.DataFrame([row])


def section_reports(plan: Plan, states: dict[str, SectionState], selected: frozenset[str]):
    """What the report shows of each section: its executed notebook, its failure, or why not."""
    from collections import Counter

    from lablib.report.stitch import SectionReport

    shared = Counter(s.notebook for s in plan.sections)  # a notebook serving several sections
    reports = []
    for section in plan.sections:
        state = states[section.name]
        report = SectionReport(section.name, section.id, section.title, section.part, "missing")
        report.notebook_name = section.notebook.name
        report.retitle = shared[section.notebook] > 1
        if section.exists:
            report.points = len(state.requests)
            report.duration_s = float((state.record or {}).get("duration_s") or 0) + measuring_seconds(state)
            if failed(state, selected):
                report.status = "failed"
                report.failures = [
                    {
                        "label": f["label"],
                        "status": f["status"],
                        "error": f["error"],
                        "executed": "not executed (its measurement failed)",
                        "log": f["log"],
                    }
                    for f in state.failed_measurements
                ] or [
                    {
                        "label": "",
                        "status": state.status,
                        "error": state.error,
                        "executed": (state.record or {}).get("executed", "not executed"),
                        "log": (state.record or {}).get("log", "none"),
                    }
                ]
            elif state.status == "complete":
                report.status = "complete"
                report.notebook = Path(state.record["executed"])
            else:
                report.status = "not built"
        reports.append(report)
    return reports


def measuring_seconds(state: SectionState) -> float:
    """How long the measurements this section asked for first took (shared ones count where first asked)."""
    from lablib.report.points import presenting_record

    meta = presenting_record(state.record) if state.status == "complete" else None
    total = 0.0
    for use in (meta or {}).get("uses", []):
        if use.get("asked_by") not in (state.name, ""):
            continue
        try:
            total += float(json.loads(Path(use["path"], "run.json").read_text()).get("duration_s") or 0)
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
    return total


def provenance_records(states: dict[str, SectionState], names) -> list[dict[str, Any]]:
    from lablib.report.points import presenting_record

    records = []
    for name in names:
        state = states.get(name)
        meta = presenting_record(state.record) if state and state.status == "complete" else None
        if not meta:
            continue
        records.append(meta.get("provenance", {}))
        for use in meta.get("uses", []):  # the machines that measured what the section shows
            try:
                measured = json.loads(Path(use["path"], "run.json").read_text())
            except (OSError, json.JSONDecodeError, KeyError):
                continue
            records.append(measured.get("provenance", {}))
    return records


def _stitched(path: Path) -> dict[str, Any] | None:
    """The manifest a stitched notebook keeps in its metadata (None when there is none)."""
    import nbformat

    try:
        return dict(nbformat.read(path, as_version=4).metadata.get("lablib") or {}) or None
    except (OSError, ValueError):
        return None


def extras_for(plan: Plan, states, variant, build_dir: Path, reports) -> tuple[Any, bool]:
    """The answers at a glance, context tables, reuse notes, settings and changes of this build; and whether
    the last stitched notebook becomes the previous build (it stitched other points)."""
    from lablib.report.appendix import changes, glance_rows, manifest, reuse_notes, settings_summary
    from lablib.report.stitch import Extras
    from lablib.sections.context import context_table
    from lablib.sections.headlines import section_headlines

    frames = {section.name: record_frame(states[section.name]) for section in plan.sections}
    lines = {name: section_headlines(name, frame) for name, frame in frames.items()}
    shown = [s for s in plan.sections if s.name in variant.sections]
    contexts = {}
    for section in shown:
        try:
            contexts[section.name] = context_table(section.name, frames[section.name])
        except LabError:
            contexts[section.name] = None
    current = manifest({name: [state] for name, state in states.items()}, lines)
    last = _stitched(build_dir / "report.ipynb")
    keys = {p["key"] for p in current["points"]}
    rotate = bool(last) and {p.get("key") for p in last.get("points", [])} != keys
    base = last if rotate else _stitched(build_dir / PREVIOUS)
    settings = {
        name: [frame.iloc[0].to_dict()]
        for name, frame in frames.items()
        if name in variant.sections and not frame.empty
    }
    return (
        Extras(
            glance=glance_rows(variant, lines, {r.name: r.status for r in reports}),
            contexts=contexts,
            settings=settings_summary(settings),
            changes=changes(base, current),
            manifest=current,
            reuse=reuse_notes(variant, {name: frame for name, frame in frames.items() if not frame.empty}),
        ),
        rotate,
    )


def stitch(plan: Plan, variant, states, selected, options: Options, out: Callable[..., None]) -> list[str]:
    """Write report.html and report.pdf for the lab variant; returns problems with the PDF (empty when fine).

    The last stitched notebook that showed other points is kept as build/previous.ipynb: the next
    report's "what changed" appendix compares with it."""
    import shutil

    import nbformat

    from lablib.core.provenance import git_state
    from lablib.report.stitch import (
        INSTALL_PDF_TOOLS,
        PdfError,
        TitlePage,
        content_digest,
        export_html,
        export_pdf,
        merge,
        missing_pdf_tools,
    )

    git = git_state()
    page = TitlePage(
        plan.title,
        plan.profile,
        plan.description,
        plan.lab_settings,
        plan.banner,
        dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        git["git_commit"],
        git["git_dirty"],
        provenance_records(states, variant.sections),
        variant=variant.name,
        variant_title=variant.title,
        student=dict(options.student),
        command=options.command,
    )
    build_dir = options.output_dir / "build"
    build_dir.mkdir(parents=True, exist_ok=True)
    reports = section_reports(plan, states, selected)
    extras, rotate = extras_for(plan, states, variant, build_dir, reports)
    notebooks = plan.sections[0].notebook.parent if plan.sections else REPO_ROOT / "notebooks"
    notebook = merge(page, reports, notebooks, variant, extras)
    html_path, pdf_path = options.output_dir / "report.html", options.output_dir / "report.pdf"
    # The report is unchanged when everything but the date is: then the files stay as they are.
    digest = content_digest(notebook, ignore=page.date)
    stamp = build_dir / "report.digest"
    pdf_tools = missing_pdf_tools()
    if stamp.is_file() and stamp.read_text() == digest and html_path.is_file() and (pdf_path.is_file() or pdf_tools):
        out(f"report unchanged: {html_path}" + ("" if pdf_tools else f", {pdf_path}"))
        return [] if not pdf_tools else [f"PDF skipped: {', '.join(pdf_tools)} missing"]
    stamp.unlink(missing_ok=True)
    if rotate:
        shutil.copyfile(build_dir / "report.ipynb", build_dir / PREVIOUS)
    nbformat.write(notebook, build_dir / "report.ipynb")
    export_html(notebook, html_path)
    out(f"wrote {html_path} (lab variant {variant.name})")
    problems = []
    if pdf_tools:
        out(
            f"PDF skipped: {', '.join(pdf_tools)} not found. Install them with:\n  {INSTALL_PDF_TOOLS}\n"
            "(or `make system-deps`); the HTML report is complete."
        )
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


def check_gpu_usable(options: Options) -> None:
    """A GPU that nvidia-smi lists but torch cannot use stops the build before anything runs: one line,
    the cause and the fix (provenance.driver_warning), never a silent fall-back to the CPU. DEVICE=cpu
    builds on the CPU knowingly; RECORDS= runs nothing here; the dry run only plans."""
    if options.device == "cpu" or options.records is not None or options.dry_run:
        return
    from lablib.core.errors import DeviceError
    from lablib.core.provenance import driver_warning

    warning = driver_warning()
    if warning:
        raise DeviceError(f"{warning} (or DEVICE=cpu to build on the CPU knowingly)")


# --- the command line --------------------------------------------------------------------------------


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


def _count(name: str, value) -> int:
    """A whole number >= 1 from the command line or a Make variable; a PlanError names it otherwise."""
    try:
        number = int(str(value).strip())
    except ValueError:
        raise PlanError(f"{name}={value!r} is not a whole number; use one >= 1 (e.g. {name}=2).") from None
    if number < 1:
        raise PlanError(f"{name}={number} is not allowed; use a whole number >= 1.")
    return number


STUDENT_FILE = REPO_ROOT / "report" / "student.yaml"
STUDENT_KEYS = ("author", "student_id", "course", "term")


def load_student(args, path: Path = STUDENT_FILE) -> dict[str, str]:
    """Who hands the report in: report/student.yaml (filled in once), then AUTHOR / STUDENT_ID / COURSE / TERM
    (--author ...) over it. Nothing is required: a report without them says on its title page how to set them."""
    import yaml

    found: dict[str, str] = {}
    if path.is_file():
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise PlanError(f"{path} is not valid YAML ({error}); fix it or delete it.") from None
        if not isinstance(raw, dict) or set(raw) - set(STUDENT_KEYS):
            unknown = sorted(set(raw) - set(STUDENT_KEYS)) if isinstance(raw, dict) else [repr(raw)]
            raise PlanError(f"{path}: unknown field(s) {', '.join(map(str, unknown))}; use {', '.join(STUDENT_KEYS)}.")
        found = {k: str(v) for k, v in raw.items() if v not in (None, "")}
    for key in STUDENT_KEYS:
        value = getattr(args, key, None)
        if value not in (None, ""):
            found[key] = str(value)
    return found


def reproducing_command(args) -> str:
    """The `make report` line that rebuilds this report (the variables that were set)."""
    import shlex

    pairs = [
        ("PROFILE", args.profile),
        ("LAB", getattr(args, "lab", None)),
        ("DATA", args.data),
        ("MNIST", args.mnist),
        ("DEVICE", args.device),
        ("ONLY", args.only),
        ("BUDGET", getattr(args, "budget", None)),
        ("JOBS", args.jobs if str(args.jobs) != "1" else None),
        ("EXECUTOR", args.executor if args.executor not in (None, "local") else None),
        ("RECORDS", getattr(args, "records", None)),
        ("AUTHOR", getattr(args, "author", None)),
        ("STUDENT_ID", getattr(args, "student_id", None)),
        ("COURSE", getattr(args, "course", None)),
        ("TERM", getattr(args, "term", None)),
    ]
    return "make report " + " ".join(f"{name}={shlex.quote(str(value))}" for name, value in pairs if value)


def options_from(args) -> Options:
    """Options from the command line (lablib.cli), checked before anything runs."""
    if args.profile is not None and not args.profile.strip():
        raise PlanError("PROFILE is empty; give a profile of the plan (full, quick or gpu), or leave PROFILE unset.")
    budget = getattr(args, "budget", None)
    if budget is not None and not str(budget).strip():
        budget = None  # BUDGET unset: the profile's budget (the full profile's: 20m)
    options = Options(
        profile=args.profile or "full",
        profile_explicit=args.profile is not None,
        data=args.data,
        mnist=args.mnist or mnist_beside(args.data),
        device=args.device,
        only=args.only,
        force=args.force,
        jobs=_count("JOBS", args.jobs),
        executor=args.executor or "local",
        plan=Path(args.plan) if args.plan else DEFAULT_PLAN,
        output_dir=Path(args.output) if args.output else REPO_ROOT / "report",
        records=Path(args.records).expanduser() if getattr(args, "records", None) else None,
        stitch=not getattr(args, "no_stitch", False),
        dry_run=bool(getattr(args, "dry_run", False)),
        budget_s=(
            None
            if budget is None
            else 0.0
            if str(budget).strip().lower() in ("none", "0")
            else parse_duration(budget, "BUDGET", "the time budget")
        ),
        command=reproducing_command(args),
        student=load_student(args),
    )
    options.lab = getattr(args, "lab", None)
    if options.records is not None and not options.records.is_file():
        raise PlanError(
            f"RECORDS={options.records} does not exist; give the records.tar.gz that make gpu-check wrote "
            "(gpu-check/records.tar.gz on the node)."
        )
    if options.executor not in EXECUTORS:
        raise PlanError(f"EXECUTOR={options.executor!r} is unknown; use local or slurm.")
    if options.executor == "slurm" and not options.dry_run:
        import shutil

        from lablib.report.executors import SlurmSettings

        if shutil.which("sbatch") is None:
            raise PlanError(
                "EXECUTOR=slurm needs Slurm's sbatch on PATH: run on a cluster login node, or use EXECUTOR=local."
            )
        options.slurm = SlurmSettings.from_env()
    if options.device not in (None, "auto", "cuda", "cpu"):
        raise PlanError(f"DEVICE={options.device!r} is unknown; use auto, cuda or cpu.")
    for name, value in (("DATA", options.data), ("MNIST", options.mnist)):
        if value and value not in NAMED_SOURCES and not Path(value).expanduser().exists():
            raise PlanError(
                f"{name}={value!r} does not exist (resolved to {Path(value).expanduser().resolve()}); "
                f"give a folder or .zip with train/<class>/ and test/<class>/, or a named source "
                f"({', '.join(NAMED_SOURCES)})."
            )
    return options


def main(args) -> int:
    """Entry from lablib.cli."""
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # progress lines show up at once in logs and CI too
    return build(options_from(args))
