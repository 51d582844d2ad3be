"""`make report`: bring the plan's points up to date, then stitch report.html and report.pdf.

    python -m lablib report [--profile quick|full] [--data PATH] [--mnist PATH] [--device auto|cuda|cpu]
                            [--only c1_training,C3] [--force] [--jobs N] [--executor local|slurm]
                            [--plan report/plan.yaml] [--output report/]

1. Load the plan for the profile (plan) and list every point with its key and
   state (resolve); print the plan's size and the stale points' estimated time
   (estimate).
2. Without a GPU the full profile stops here, unless it was asked for explicitly.
3. Run the stale points of the selected sections in plan order (schedule) on
   the executor (executors: here one or JOBS at a time, or Slurm), a line per
   point with its time and the ETA (progress). A failed point does not stop
   the others; Ctrl-C or SIGTERM ends the running points and keeps the rest.
4. Stitch every section (stitch) and exit non-zero listing the failures.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lablib.core.data import NAMED_SOURCES
from lablib.core.paths import REPO_ROOT, data_root
from lablib.core.runs import check_writable, lock_store, runs_root
from lablib.report.estimate import Estimator
from lablib.report.executors import SlurmSettings, make_executor, thread_share
from lablib.report.plan import Plan, PlanError, load_plan
from lablib.report.points import device_kind, index_points, lablib_digest, settle_abandoned
from lablib.report.progress import Progress
from lablib.report.resolve import FAILED, Context, PointState, Resolver
from lablib.report.schedule import Schedule
from lablib.report.stitch import (
    INSTALL_PDF_TOOLS,
    Extras,
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
PREVIOUS = "previous.ipynb"  # the previous build's stitched notebook, in build/
EXECUTORS = ("local", "slurm")


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
    slurm: SlurmSettings | None = None  # resources for EXECUTOR=slurm
    plan: Path = DEFAULT_PLAN
    output_dir: Path = REPO_ROOT / "report"
    lab: str | None = None  # the lab variant (report/variants.yaml): 2026 (default), 2025, 2024, eml, all
    records: Path | None = None  # RECORDS=records.tar.gz: stitch what a GPU node measured, run nothing here
    stitch: bool = True  # False (--no-stitch): record the points only, e.g. on a node without TeX


def resolver_for(plan: Plan, options: Options) -> Resolver:
    """The build's resolver: the profile's defaults with the command line's choices, the store's index."""
    import torch

    from lablib.core.provenance import environment_lock

    defaults = dict(plan.defaults)
    if options.data:
        defaults["data"] = options.data
    if options.device:
        defaults["device"] = options.device
    defaults["tag"] = plan.profile
    context = Context(
        defaults=defaults,
        lablib=lablib_digest(),
        environment=environment_lock(),
        device=device_kind(),
        cuda=torch.cuda.is_available(),
        mnist=options.mnist,
        force=options.force,
        selected=frozenset(s.name for s in plan.select(options.only)),
        records_only=options.records is not None,
    )
    return Resolver(plan, context, index_points())


def survey(resolver: Resolver, estimator: Estimator) -> tuple[int, float]:
    """The selected sections' stale points (with those rule sweeps may add) and their estimated seconds."""
    count, seconds = 0, 0.0
    for section in resolver.plan.sections:
        if section.name not in resolver.context.selected:
            continue
        for state in resolver.points(section):
            if state.runnable:
                count += 1
                seconds += estimator.seconds(state)
        extra = resolver.more_possible(section)
        if extra:
            count += extra
            seconds += extra * estimator.seconds(PointState(section, "", dict(resolver.context.defaults)))
    return count, seconds


def failed(state: PointState, selected: frozenset[str]) -> bool:
    """A failure of this build: a point of a selected section that failed or could not run.

    Unselected sections are merely not built (ONLY=C1 on a fresh store, or one whose other sections failed
    before): neither the exit status nor the list of failures names them."""
    return state.status in FAILED and state.section.name in selected


def section_reports(plan: Plan, states: dict[str, list[PointState]], selected: frozenset[str]) -> list[SectionReport]:
    """What the report shows of each section: its newest complete notebook, its failures, or why not."""
    shared = Counter(s.notebook for s in plan.sections)  # a notebook serving several sections
    reports = []
    for section in plan.sections:
        listed = states.get(section.name, [])
        report = SectionReport(section.name, section.id, section.title, section.part, "missing")
        report.notebook_name = section.notebook.name
        report.retitle = shared[section.notebook] > 1
        if section.exists:
            report.points = len(listed)
            report.duration_s = sum(float((s.record or {}).get("duration_s") or 0) for s in listed)
            report.parallel = sum(bool((s.record or {}).get("parallel")) for s in listed)
            failures = [s for s in listed if failed(s, selected)]
            complete = [s for s in listed if s.status == "complete"]
            report.failures = [
                {
                    "label": s.label,
                    "status": s.status,
                    "error": s.error,
                    "executed": (s.record or {}).get("executed", "not executed"),
                    "log": (s.record or {}).get("log", "none"),
                }
                for s in failures
            ]
            if failures:
                report.status = "failed"
            elif listed and len(complete) == len(listed):
                report.status = "complete"
                newest = max(complete, key=lambda s: s.record.get("ended") or "")
                report.notebook = Path(newest.record["executed"])
            else:
                report.status = "not built"
        reports.append(report)
    return reports


def provenance_records(states: dict[str, list[PointState]]) -> list[dict[str, Any]]:
    records = []
    for listed in states.values():
        for state in listed:
            if state.status == "complete" and state.record:
                try:
                    meta = json.loads(Path(state.record["folder"], "run.json").read_text())
                    records.append(meta.get("provenance", {}))
                except (OSError, json.JSONDecodeError):
                    continue
    return records


def _settings_of(states: dict[str, list[PointState]], names: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Each section's recorded settings (run.json `settings` of its complete points)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        for state in states.get(name, []):
            if state.status != "complete" or not state.record:
                continue
            try:
                meta = json.loads(Path(state.record["folder"], "run.json").read_text())
            except (OSError, json.JSONDecodeError, KeyError):
                continue
            if isinstance(meta.get("settings"), dict):
                found.setdefault(name, []).append(meta["settings"])
    return found


def _stitched(path: Path) -> dict[str, Any] | None:
    """The manifest a stitched notebook keeps in its metadata (None when there is none)."""
    import nbformat

    try:
        return dict(nbformat.read(path, as_version=4).metadata.get("lablib") or {}) or None
    except (OSError, ValueError):
        return None


def extras_for(
    plan: Plan, states: dict[str, list[PointState]], variant, build_dir: Path, reports: list[SectionReport]
) -> tuple[Extras, bool]:
    """The answers at a glance, context tables, settings and changes of this build, from the run store;
    and whether the last stitched notebook becomes the previous build (it stitched other points)."""
    from lablib.core.errors import LabError
    from lablib.core.runs import load_runs
    from lablib.report.appendix import changes, glance_rows, manifest, settings_summary
    from lablib.sections.context import context_table
    from lablib.sections.headlines import SECTIONS, section_headlines

    runs: dict[str, Any] = {}
    lines: dict[str, list[Any]] = {}
    for section in plan.sections:
        if section.store not in SECTIONS:
            continue
        if section.store not in runs:
            runs[section.store] = load_runs(section.store, tag=plan.profile)
        lines[section.name] = section_headlines(section.store, runs[section.store])
    shown = [s for s in plan.sections if s.name in variant.sections]
    contexts = {}
    for section in shown:
        if section.store in runs:
            try:
                contexts[section.name] = context_table(section.store, runs[section.store])
            except LabError:
                contexts[section.name] = None
    current = manifest(states, lines)
    last = _stitched(build_dir / "report.ipynb")
    keys = {p["key"] for p in current["points"]}
    rotate = bool(last) and {p.get("key") for p in last.get("points", [])} != keys
    base = last if rotate else _stitched(build_dir / PREVIOUS)
    return (
        Extras(
            glance=glance_rows(variant, lines, {r.name: r.status for r in reports}),
            contexts=contexts,
            settings=settings_summary(_settings_of(states, variant.sections)),
            changes=changes(base, current),
            manifest=current,
        ),
        rotate,
    )


def stitch(
    plan: Plan,
    states: dict[str, list[PointState]],
    selected: frozenset[str],
    options: Options,
    out: Callable[..., None],
) -> list[str]:
    """Write report.html and report.pdf for the lab variant; returns problems with the PDF (empty when fine).

    The last stitched notebook that showed other points is kept as build/previous.ipynb: the next
    report's "what changed" appendix compares with it."""
    import shutil

    import nbformat

    from lablib.core.provenance import git_state
    from lablib.report.variants import load_variants

    variant = load_variants(plan).get(options.lab)
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
        provenance_records({name: states.get(name, []) for name in variant.sections}),
        variant=variant.name,
        variant_title=variant.title,
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


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def check_gpu_usable(options: Options) -> None:
    """A GPU that nvidia-smi lists but torch cannot use stops the build before anything runs: one line,
    the cause and the fix (provenance.driver_warning), never a silent fall-back to the CPU. DEVICE=cpu
    builds on the CPU knowingly; RECORDS= runs nothing here."""
    if options.device == "cpu" or options.records is not None:
        return
    from lablib.core.errors import DeviceError
    from lablib.core.provenance import driver_warning

    warning = driver_warning()
    if warning:
        raise DeviceError(f"{warning} (or DEVICE=cpu to build on the CPU knowingly)")


def build(options: Options, out: Callable[..., None] = print) -> int:
    """The whole `make report`; returns the exit status (0 ok, 1 failures, 3 stopped, 130 interrupted).

    At the door, before the plan is printed: the run store and the data cache must be writable with room
    to spare, and no other build may hold the store (a LabError, one line, says which and what to do).
    Holding the store's lock, points whose build was killed are written down as abandoned, to run again."""
    load_plan(options.plan, options.profile).select(options.only)  # a bad PLAN, PROFILE or ONLY first
    check_gpu_usable(options)
    check_writable(runs_root(), "the run store", "LABLIB_RUNS_DIR")
    with lock_store(runs_root()):
        check_writable(data_root() / "cache", "the data cache folder", "LABLIB_DATA_DIR")
        check_writable(options.output_dir, "the report folder", "OUTPUT")
        abandoned = settle_abandoned()
        if abandoned:
            out(f"{len(abandoned)} point(s) of a build that was killed are marked abandoned; they run again")
        return _build(options, out)


def _build(options: Options, out: Callable[..., None]) -> int:
    plan = load_plan(options.plan, options.profile)
    if options.records is not None:
        from lablib.report.records import unpack

        added = unpack(options.records, runs_root())
        out(f"records {options.records}: {len(added)} new run folder(s) in {runs_root()}; nothing runs here")
    resolver = resolver_for(plan, options)
    estimator = Estimator(resolver.index, resolver.context.defaults, resolver.context.cuda)
    missing = [s.name for s in plan.sections if not s.exists]
    stale, seconds = survey(resolver, estimator)
    selected = [s for s in plan.sections if s.name in resolver.context.selected]
    known = sum(len(resolver.points(s)) for s in selected)
    out(f"plan {plan.path.name}, profile {plan.profile} ({plan.description}); device {resolver.context.device}")
    out(
        f"{len(selected)} section(s), {known} point(s) known; {stale} to run"
        + (f", estimated {format_duration(seconds)} on this machine" if stale else ", everything is up to date")
    )
    if missing:
        out(
            f"missing notebooks ({len(missing)}, listed in the plan but not in notebooks/; their sections say so): "
            + ", ".join(missing)
        )
    if options.jobs > 1 and options.executor == "local":
        out(
            f"JOBS={options.jobs}: points of sections not marked exclusive run {options.jobs} at a time, each with "
            f"{thread_share(options.jobs)} CPU thread(s); timing sections run alone."
        )
    if options.records is not None:
        stale = 0  # what the records lack is shown as not built: this machine measures nothing for them
    if stale and plan.profile == "full" and not options.profile_explicit and not resolver.context.cuda:
        data = options.data or "PATH"
        out(
            f"\nNo GPU is visible, and the full profile (the lab's settings) would take about "
            f"{format_duration(seconds)} on this CPU. Stopping before training.\n"
            f"For the quick profile (a small real subset, minutes), with PATH the CIFAR-10 images (.zip or folder):\n"
            f"  make report PROFILE=quick DATA={data}\n"
            f"  (python -m lablib report --profile quick --data {data})\n"
            f"To run the full profile on the CPU anyway: make report PROFILE=full"
        )
        return 3
    executor = make_executor(
        options.executor,
        options.jobs,
        runs_root() / "_slurm",
        options.slurm,
        progress=lambda line: out(f"  {line}", flush=True),
    )
    progress = Progress(out, stale, seconds, options.jobs, announce=options.executor == "local")
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        if options.records is None:
            Schedule(resolver, executor, estimator, progress).run()
    except KeyboardInterrupt:
        out("\ninterrupted: completed points are kept; the next `make report` runs only what is missing.")
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    states = {s.name: resolver.points(s) for s in plan.sections}
    ran = sum(s.ran for listed in states.values() for s in listed)
    out(f"{ran} point(s) ran, {sum(len(v) for v in states.values()) - ran} reused")
    selected = resolver.context.selected
    if options.stitch:
        problems = stitch(plan, states, selected, options, out)
    else:
        problems = []
        out(f"records in {runs_root()} (not stitched: --no-stitch); stitch them where TeX is installed")
    failures = [s for listed in states.values() for s in listed if failed(s, selected)]
    if failures:
        out(f"\n{len(failures)} point(s) failed:")
        for state in failures:
            where = (state.record or {}).get("executed", "")
            last = (state.error or "").strip().splitlines()[:1] or [""]  # the exception (or timeout) line
            out(f"  {state.name}: {state.status}: {last[0]}" + (f"\n    {where}" if where else ""))
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


def _count(name: str, value) -> int:
    """A whole number >= 1 from the command line or a Make variable; a PlanError names it otherwise."""
    try:
        number = int(str(value).strip())
    except ValueError:
        raise PlanError(f"{name}={value!r} is not a whole number; use one >= 1 (e.g. {name}=2).") from None
    if number < 1:
        raise PlanError(f"{name}={number} is not allowed; use a whole number >= 1.")
    return number


def options_from(args) -> Options:
    """Options from the command line (lablib.cli), checked before anything runs."""
    if args.profile is not None and not args.profile.strip():
        raise PlanError("PROFILE is empty; give a profile of the plan (full or quick), or leave PROFILE unset.")
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
    )
    options.lab = getattr(args, "lab", None)
    from lablib.report.variants import load_variants

    variant = load_variants(load_plan(options.plan, options.profile)).get(options.lab)  # LAB=2023: a clear error
    if not options.only and variant.name != "all":
        options.only = ",".join(variant.sections)  # only the variant's sections run; the others are not stitched
    if options.records is not None and not options.records.is_file():
        raise PlanError(
            f"RECORDS={options.records} does not exist; give the records.tar.gz that make gpu-check wrote "
            "(gpu-check/records.tar.gz on the node)."
        )
    if options.executor not in EXECUTORS:
        raise PlanError(f"EXECUTOR={options.executor!r} is unknown; use local or slurm.")
    if options.executor == "slurm":
        import shutil

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
