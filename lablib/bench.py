"""`python -m lablib.bench` (`make bench`): does the pipeline cost anything, and how fast is it?

Four figures, each measured side by side with its baseline in the same run,
repeated with the order alternated (A B, B A, ...) so drift on a shared machine
cancels; the median and the spread (max - min over the median) are printed,
each as a ratio or a difference against the baseline:
1. instrumentation cost: lablib's timed epoch loop (lablib.core.train.train_epoch
   with the lab's step) against a bare PyTorch loop (same model, same in-memory
   batches of 128, same steps, no timers); target ratio >= 0.97;
2. data loading: images/s of the project's in-memory image-folder dataset
   against torchvision's in-memory CIFAR10 (the same uint8 array, the same
   transforms, the same DataLoader) at 0, 1, 2 and 4 workers; target within 10 %.
   The images are --data's (make bench DATA=PATH: the CIFAR-10 image folder/.zip),
   or torchvision's CIFAR-10 array when --data is not given;
3. notebook overhead: a trivial section executed by papermill against the
   same code as a plain python process; target <= 3 s;
4. report rebuild: `make report PROFILE=quick DATA=...` with nothing changed;
   target <= 60 s.
The last lines printed are one `name=value` per headline figure. Everything is
saved as a run record (section "bench", hardware and versions included) and
copied to bench/<cpu|gpu>-<device>.json and .md, to be committed.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lablib.core.paths import REPO_ROOT
from lablib.core.timing import Stopwatch

FIGURES = ("instrumentation", "loading", "notebook", "report")
TARGETS = {
    "instrumentation_ratio": 0.97,  # lablib images/s over bare images/s, at least
    "data_loading_tolerance": 0.10,  # |project / torchvision - 1|, at most
    "notebook_overhead_s": 3.0,  # papermill minus plain python, at most
    "report_rebuild_s": 60.0,  # quick report with nothing changed, at most
}


# --- statistics ----------------------------------------------------------------------


@dataclass(frozen=True)
class Spread:
    """Median and range of repeated measurements."""

    median: float
    low: float
    high: float
    runs: int

    @property
    def relative(self) -> float:
        """(max - min) / median: how noisy the repetitions were."""
        return (self.high - self.low) / abs(self.median) if self.median else float("nan")


def summarize(values: Sequence[float]) -> Spread:
    values = [float(v) for v in values]
    if not values:
        return Spread(float("nan"), float("nan"), float("nan"), 0)
    return Spread(float(np.median(values)), min(values), max(values), len(values))


@dataclass
class Figure:
    """One headline figure: its value, target and the measurements behind it."""

    name: str  # the headline's name in the `name=value` lines
    title: str
    value: float | None  # None: not measured here (see note)
    unit: str
    target: str  # e.g. ">= 0.97"
    met: bool | None  # None when not measured
    rows: list[dict[str, Any]] = field(default_factory=list)  # one per measured series
    note: str = ""
    noise: float = float("nan")  # the largest relative spread among its series
    elapsed_s: float = float("nan")  # how long measuring it took

    def headline(self) -> str:
        if self.value is None:
            return f"{self.name}={self.note or 'not available'}"
        return f"{self.name}={self.value:.3f}"


def _alternating(repeats: int, first: Callable[[], float], second: Callable[[], float]) -> tuple[list, list]:
    """Run the pair `repeats` times, alternating which goes first; return both lists of results."""
    a, b = [], []
    for repeat in range(repeats):
        if repeat % 2 == 0:
            a.append(first())
            b.append(second())
        else:
            b.append(second())
            a.append(first())
    return a, b


def _row(series: str, unit: str, spread: Spread, ratio: float | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "series": series,
        "unit": unit,
        "median": spread.median,
        "min": spread.low,
        "max": spread.high,
        "runs": spread.runs,
        "spread": spread.relative,
        "ratio": ratio,
        **extra,
    }


# --- 1. instrumentation cost -----------------------------------------------------------


def bare_loop(model, batches, optimizer, device: torch.device) -> None:
    """The plainest PyTorch training loop: no timers, no metrics.

    It repeats lablib.core.train's epoch loop on purpose: it is the baseline the
    lab's loop is measured against, so it must stay bare and must not share its code.
    """
    criterion = torch.nn.CrossEntropyLoss()
    model.train()
    for inputs, targets in batches:
        inputs = inputs.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(model(inputs), targets)
        loss.backward()
        optimizer.step()


def instrumentation_cost(
    device: torch.device,
    steps: int,
    repeats: int,
    batch_size: int = 128,
    warmup: int = 1,
    seed: int = 0,
    model: torch.nn.Module | None = None,
) -> Figure:
    """lablib.core.train.train_epoch (the lab's step and timing) against bare_loop on the same model and batches.

    The model is the lab's ResNet-18 unless one is given (B x 3 x 32 x 32 -> B x 10).
    """
    from lablib.core.model import resnet18
    from lablib.core.optim import make_optimizer
    from lablib.core.train import LabStep, train_epoch

    torch.manual_seed(seed)
    model = (model or resnet18()).to(device)
    # lr is irrelevant to speed; a small one keeps the weights finite (denormals and NaNs slow CPUs).
    optimizer = make_optimizer("sgd", model.parameters(), lr=0.01)
    pin = device.type == "cuda"
    batches = [(torch.randn(batch_size, 3, 32, 32), torch.randint(0, 10, (batch_size,))) for _ in range(steps)]
    if pin:
        batches = [(x.pin_memory(), y.pin_memory()) for x, y in batches]
    images = steps * batch_size

    step = LabStep(model, optimizer, device)

    def lab() -> float:
        with Stopwatch(device) as watch:
            train_epoch(step, batches, device)
        return images / watch.seconds

    def bare() -> float:
        with Stopwatch(device) as watch:
            bare_loop(model, batches, optimizer, device)
        return images / watch.seconds

    for _ in range(warmup):
        lab(), bare()
    lab_rates, bare_rates = _alternating(repeats, lab, bare)
    ratios = [x / y for x, y in zip(lab_rates, bare_rates)]
    ratio = summarize(ratios)
    rows = [
        _row("bare PyTorch loop", "images/s", summarize(bare_rates), 1.0),
        _row(
            "lablib train_epoch",
            "images/s",
            summarize(lab_rates),
            summarize(lab_rates).median / summarize(bare_rates).median,
        ),
        _row("ratio per repetition", "", ratio),
    ]
    return Figure(
        "instrumentation_ratio",
        f"Instrumentation cost on {device.type} ({steps} steps of {batch_size}, {repeats} repetitions)",
        ratio.median,
        "x",
        f">= {TARGETS['instrumentation_ratio']}",
        ratio.median >= TARGETS["instrumentation_ratio"],
        rows,
        noise=max(r["spread"] for r in rows),
    )


# --- 2. data loading ------------------------------------------------------------------------


def torchvision_twin(dataset):
    """torchvision's CIFAR10 holding the same uint8 array, targets and transform, without files.

    Built with __new__ so no archive is read; its own __getitem__ (PIL image from
    the array row, then the transform) is what runs.
    """
    from torchvision.datasets import CIFAR10

    twin = CIFAR10.__new__(CIFAR10)
    twin.root, twin.train = "", True
    twin.data, twin.targets = dataset.data, list(dataset.targets)
    twin.classes = list(dataset.classes)
    twin.transform, twin.target_transform = dataset.transform, None
    return twin


def loader_rate(dataset, workers: int, batch_size: int = 128, seed: int = 0) -> float:
    """Images/s of one pass of the lab's DataLoader over `dataset`, worker start-up included."""
    from lablib.core.data import make_loader

    images = 0
    with warnings.catch_warnings():
        # More workers than cores is what the 4-worker point measures; torch's advice is not news here.
        warnings.filterwarnings("ignore", message="This DataLoader will create", category=UserWarning)
        loader = make_loader(dataset, batch_size, workers, torch.device("cpu"), shuffle=True, seed=seed)
        with Stopwatch() as watch:
            for inputs, _ in loader:
                images += len(inputs)
    return images / watch.seconds


def bench_data(source: str | None):
    """The data the loading figure reads, its training images held as the project's in-memory dataset.

    `source` is --data (a CIFAR-10 image folder/.zip); None is torchvision's CIFAR-10,
    downloaded into the data folder when it is not there yet. A source that cannot
    be had is a LabError that says how to give one.
    """
    from lablib.core.data import ArrayImageDataset, load_data
    from lablib.core.errors import DataError, LabError

    try:
        bundle = load_data(source or "cifar10", progress=True)
    except DataError as error:
        raise LabError(
            f"the data-loading and report figures need CIFAR-10 images: {error} Pass the image folder/.zip with "
            "--data PATH (make bench DATA=PATH), or leave those figures out with --only instrumentation,notebook."
        ) from None
    train = bundle.train
    if not isinstance(train, ArrayImageDataset):
        images = getattr(train, "data", None)
        if not (isinstance(images, np.ndarray) and images.dtype == np.uint8):
            raise LabError(
                f"--data {source!r} holds no images in memory ({type(train).__name__}); pass the CIFAR-10 image "
                "folder/.zip with --data PATH (make bench DATA=PATH)."
            )
        bundle.train = ArrayImageDataset(images, train.targets, train.classes, train.transform)  # torchvision's array
    return bundle


def data_loading(
    bundle,
    workers: Sequence[int] = (0, 1, 2, 4),
    images: int = 5120,
    repeats: int = 7,
    batch_size: int = 128,
) -> Figure:
    """The project's in-memory dataset (bench_data) against torchvision's CIFAR10 path, per worker count."""
    from torch.utils.data import Subset

    target = f"within {TARGETS['data_loading_tolerance']:.0%}"
    title = f"Data loading ({images} images per pass, batch {batch_size}, {repeats} repetitions)"
    project = bundle.train
    twin = torchvision_twin(project)
    chosen = np.random.default_rng(0).permutation(len(project))[:images].tolist()
    ours, theirs = Subset(project, chosen), Subset(twin, chosen)
    loader_rate(Subset(project, chosen[:batch_size]), 0)  # warm the page cache and imports
    loader_rate(Subset(twin, chosen[:batch_size]), 0)
    rows, worst, fastest = [], None, []
    for count in workers:
        our_rates, their_rates = _alternating(
            repeats,
            lambda count=count: loader_rate(ours, count, batch_size),
            lambda count=count: loader_rate(theirs, count, batch_size),
        )
        ratio = summarize([x / y for x, y in zip(our_rates, their_rates)])
        # Interference from other processes only slows a pass down, so the fastest passes' ratio is
        # a second, load-robust view of the same comparison (shown beside the median's).
        fastest.append(f"{count}w {max(our_rates) / max(their_rates):.3f}")
        rows.append(
            _row(f"torchvision CIFAR10, {count} workers", "images/s", summarize(their_rates), 1.0, workers=count)
        )
        rows.append(
            _row(
                f"lablib in-memory dataset, {count} workers",
                "images/s",
                summarize(our_rates),
                ratio.median,
                workers=count,
                fastest_ratio=max(our_rates) / max(their_rates),
            )
        )
        if worst is None or abs(ratio.median - 1) > abs(worst - 1):
            worst = ratio.median
    met = all(abs(r["ratio"] - 1) <= TARGETS["data_loading_tolerance"] for r in rows)
    return Figure(
        "data_loading_ratio",
        title,
        worst,
        "x",
        target,
        met,
        rows,
        note=f"the worker count furthest from 1; ratio of the fastest passes: {', '.join(fastest)}",
        noise=max(r["spread"] for r in rows),
    )


# --- 3. notebook overhead -----------------------------------------------------------------

TRIVIAL_PARAMETERS = 'tag: str = ""  # the plan/profile this run belongs to\nepochs: int = 5  # training epochs\n'
TRIVIAL_CODE = (
    "from IPython.display import Markdown, display\n"
    "from lablib.core.config import config_from_params\n"
    "config = config_from_params(globals())\n"
    'display(Markdown(f"trivial section: {config.epochs} epochs, tag {tag!r}"))\n'
)


def write_trivial_section(folder: Path) -> tuple[Path, Path]:
    """A trivial section as a notebook (parameters cell + one code cell) and as the same code in a .py."""
    import nbformat

    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (lablib)", "language": "python"}
    notebook.cells = [
        nbformat.v4.new_markdown_cell("# Trivial section"),
        nbformat.v4.new_code_cell(TRIVIAL_PARAMETERS, metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(TRIVIAL_CODE),
    ]
    path = folder / "trivial.ipynb"
    nbformat.write(notebook, path)
    script = folder / "trivial.py"
    script.write_text(TRIVIAL_PARAMETERS + TRIVIAL_CODE)
    return path, script


def notebook_overhead(repeats: int = 3, cwd: Path = REPO_ROOT, kernel: str | None = None) -> Figure:
    """papermill executing a trivial section against `python` running the same code, in the report's
    kernel ($LABLIB_KERNEL, else python3)."""
    from lablib.report.job import KERNEL_ENV

    kernel = kernel or os.environ.get(KERNEL_ENV) or "python3"
    title = f"Notebook overhead (trivial section, {repeats} repetitions)"
    target = f"<= {TARGETS['notebook_overhead_s']:.0f} s"
    try:
        import papermill
    except ImportError as error:
        return Figure(
            "notebook_overhead_s",
            title,
            None,
            "s",
            target,
            None,
            note=f"not available: papermill cannot be imported ({error})",
        )
    with tempfile.TemporaryDirectory(prefix="lablib-bench-") as folder:
        notebook, script = write_trivial_section(Path(folder))
        output = Path(folder) / "out.ipynb"

        def with_papermill() -> float:
            with Stopwatch() as watch:
                papermill.execute_notebook(
                    str(notebook),
                    str(output),
                    parameters={"tag": "bench"},
                    kernel_name=kernel,
                    progress_bar=False,
                    cwd=str(cwd),
                )
            return watch.seconds

        def with_python() -> float:
            with Stopwatch() as watch:
                subprocess.run([sys.executable, str(script)], cwd=cwd, check=True, capture_output=True)
            return watch.seconds

        with_papermill(), with_python()  # warm-up: papermill's own imports, the page cache
        papermill_s, python_s = _alternating(repeats, with_papermill, with_python)
    overhead = summarize([x - y for x, y in zip(papermill_s, python_s)])
    rows = [
        _row("plain python process", "s", summarize(python_s)),
        _row("papermill", "s", summarize(papermill_s)),
        _row("overhead per repetition", "s", overhead),
    ]
    return Figure(
        "notebook_overhead_s",
        title,
        overhead.median,
        "s",
        target,
        overhead.median <= TARGETS["notebook_overhead_s"],
        rows,
        noise=max(summarize(papermill_s).relative, summarize(python_s).relative),
    )


# --- 4. report rebuild ------------------------------------------------------------------------


def report_rebuild(
    repo: Path, data: str, repeats: int = 2, timeout_s: float = 1800, make: str = "make", profile: str = "quick"
) -> Figure:
    """`make report PROFILE=quick DATA=...` once to bring it up to date, then timed with nothing changed."""
    title = f"Report rebuild (make report PROFILE={profile}, nothing changed, {repeats} repetitions)"
    target = f"<= {TARGETS['report_rebuild_s']:.0f} s"

    def missing(reason: str) -> Figure:
        return Figure("report_rebuild_s", title, None, "s", target, None, note=f"not available: {reason}")

    if shutil.which(make) is None:
        return missing(f"{make} is not installed")
    command = [make, "--no-print-directory", "report", f"PROFILE={profile}", f"DATA={data}"]
    times = []
    for attempt in range(repeats + 1):
        try:
            with Stopwatch() as watch:
                done = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return missing(f"make report ran past {timeout_s:.0f} s")
        if done.returncode != 0:
            tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-3:])
            return missing(f"make report failed (exit {done.returncode}): {tail}")
        if attempt:  # the first run brings the report up to date; it is not the figure
            times.append(watch.seconds)
    spread = summarize(times)
    return Figure(
        "report_rebuild_s",
        title,
        spread.median,
        "s",
        target,
        spread.median <= TARGETS["report_rebuild_s"],
        [_row("make report (up to date)", "s", spread)],
        noise=spread.relative,
    )


# --- the run ----------------------------------------------------------------------------------


def noise_summary(figures: Sequence[Figure], load_before: float, load_after: float, cpus: int) -> str:
    spreads = [(f.noise, f.name) for f in figures if f.value is not None and not math.isnan(f.noise)]
    worst, name = max(spreads) if spreads else (float("nan"), "")
    verdict = ("quiet" if worst < 0.05 else "moderately noisy" if worst < 0.15 else "noisy") if spreads else "n/a"
    return (
        f"noise: {verdict}: the largest spread of repetitions was {worst:.0%} ({name}); "
        f"load average {load_before:.1f} before and {load_after:.1f} after, on {cpus} logical CPUs"
    )


def format_figure(figure: Figure) -> str:
    lines = [f"== {figure.title}"]
    if figure.value is None:
        lines.append(f"   {figure.note}")
        return "\n".join(lines)
    lines.append(f"   {'series':<36} {'median':>10} {'min':>10} {'max':>10} {'spread':>7} {'vs base':>8}")
    for row in figure.rows:
        ratio = "" if row["ratio"] is None else f"{row['ratio']:.3f}"
        lines.append(
            f"   {row['series']:<36} {row['median']:>10.3f} {row['min']:>10.3f} {row['max']:>10.3f} "
            f"{row['spread']:>6.1%} {ratio:>8}  {row['unit']}"
        )
    status = "met" if figure.met else "MISSED"
    lines.append(
        f"   -> {figure.name} = {figure.value:.3f} {figure.unit} (target {figure.target}: {status})"
        + (f"; {figure.note}" if figure.note else "")
        + f"; measured in {figure.elapsed_s:.0f} s"
    )
    return "\n".join(lines)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def hardware(device: torch.device) -> dict[str, Any]:
    from lablib.core.provenance import provenance

    facts = provenance(device)
    keys = (
        "device",
        "device_name",
        "cpu",
        "cpu_count",
        "torch_threads",
        "gpu",
        "driver_version",
        "driver_cuda",
        "torch",
        "torchvision",
        "cuda",
        "cudnn",
        "python",
        "host",
        "platform",
        "git_commit",
        "git_dirty",
    )
    return {key: facts.get(key) for key in keys}


def write_copy(
    out: Path, device: torch.device, facts: dict, figures: Sequence[Figure], noise: str, text: str, argv: Sequence[str]
) -> tuple[Path, Path]:
    """bench/<cpu|gpu>-<device name>.json and .md: the figures to commit, with the hardware named."""
    from lablib.core.runs import now_iso, write_json

    kind = "gpu" if device.type == "cuda" else "cpu"
    stem = f"{kind}-{slug(facts.get('device_name') or device.type)}"
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "date": now_iso(),
        "command": "python -m lablib.bench " + " ".join(argv),
        "hardware": facts,
        "noise": noise,
        "targets": TARGETS,
        "figures": [asdict(f) for f in figures],
        "headline": {f.name: f.value for f in figures},
    }
    write_json(out / f"{stem}.json", record)
    header = (
        f"# Benchmark on {facts.get('device_name')} ({kind})\n\n"
        f"{now_iso()}: torch {facts.get('torch')}, torchvision {facts.get('torchvision')}, "
        f"python {facts.get('python')}, CPU {facts.get('cpu')} ({facts.get('cpu_count')} logical CPUs), "
        f"GPU {facts.get('gpu') or 'none'}, driver {facts.get('driver_version') or '—'}, "
        f"commit {str(facts.get('git_commit'))[:10]}{' (dirty)' if facts.get('git_dirty') else ''}.\n"
        f"Command: `python -m lablib.bench {' '.join(argv)}`. Medians of repetitions run in alternating "
        "order; spread = (max - min) / median.\n\n"
    )
    (out / f"{stem}.md").write_text(header + "```\n" + text + "\n```\n")
    return out / f"{stem}.json", out / f"{stem}.md"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lablib.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto | cuda | cpu: where the training loops run")
    parser.add_argument(
        "--data",
        default=None,
        help="CIFAR-10 image folder/.zip (make bench DATA=PATH); default: torchvision's CIFAR-10, downloaded if needed",
    )
    parser.add_argument("--only", default=",".join(FIGURES), help=f"comma-separated subset of {','.join(FIGURES)}")
    parser.add_argument("--steps", type=int, help="training steps per repetition (default 1 on CPU, 30 on GPU)")
    parser.add_argument("--repeats", type=int, help="repetitions of the loop pair (default 5 on CPU, 7 on GPU)")
    parser.add_argument("--workers", default="0,1,2,4", help="loader worker counts (default 0,1,2,4)")
    parser.add_argument("--loader-images", type=int, default=5120, help="images per loader pass (default 5120)")
    parser.add_argument("--loader-repeats", type=int, default=7, help="repetitions per worker count (default 7)")
    parser.add_argument("--notebook-repeats", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--report-repeats", type=int, default=2, help="timed up-to-date rebuilds (default 2)")
    parser.add_argument("--report-timeout", type=float, default=1800, help="seconds per make report (default 1800)")
    parser.add_argument("--out", default=str(REPO_ROOT / "bench"), help="folder for the committed copy")
    parser.add_argument("--tag", default="", help="tag of the run record")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a measured target is missed")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import pandas as pd

    from lablib.core.errors import LabError
    from lablib.core.runs import start_run
    from lablib.core.train import resolve_device

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        device = resolve_device(args.device)
    except LabError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(only) - set(FIGURES))
    if unknown:
        print(f"error: --only {','.join(unknown)} is unknown; choose from {','.join(FIGURES)}", file=sys.stderr)
        return 2
    try:
        bundle = bench_data(args.data) if {"loading", "report"} & set(only) else None
    except LabError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    data = args.data or "cifar10"  # what `make report DATA=...` is given
    gpu = device.type == "cuda"
    steps = args.steps or (30 if gpu else 1)
    repeats = args.repeats or (7 if gpu else 5)
    facts = hardware(device)
    print(
        f"benchmark on {facts['device_name']} ({device.type}); torch {facts['torch']}, "
        f"{facts['cpu_count']} logical CPUs, {facts['torch_threads']} torch threads",
        flush=True,
    )
    load_before = os.getloadavg()[0]
    figures: list[Figure] = []
    plan = {
        "instrumentation": lambda: instrumentation_cost(device, steps, repeats),
        "loading": lambda: data_loading(
            bundle, [int(w) for w in args.workers.split(",")], args.loader_images, args.loader_repeats
        ),
        "notebook": lambda: notebook_overhead(args.notebook_repeats),
        "report": lambda: report_rebuild(REPO_ROOT, data, args.report_repeats, args.report_timeout),
    }
    with start_run(
        "bench", params=vars(args) | {"steps": steps, "repeats": repeats, "data": data}, tag=args.tag, device=device
    ) as run:
        with Stopwatch() as clock:
            for name in only:
                with Stopwatch() as watch:
                    figure = plan[name]()
                figure.elapsed_s = watch.seconds
                figures.append(figure)
                print(format_figure(figure), flush=True)
        noise = (
            noise_summary(figures, load_before, os.getloadavg()[0], os.cpu_count() or 1)
            + f"; the whole bench took {clock.seconds:.0f} s"
        )
        run.log_results(
            **{f.name: f.value for f in figures},
            noise=noise,
            bench_s=clock.seconds,
            figures=[asdict(f) for f in figures],
        )
        run.save_table("bench", pd.DataFrame([{"figure": f.name, **row} for f in figures for row in f.rows]))
    text = "\n".join([format_figure(f) for f in figures] + [noise] + [f.headline() for f in figures])
    json_path, _ = write_copy(Path(args.out), device, facts, figures, noise, text, argv)
    print(noise)
    print(f"record: {run.path}; copy: {json_path.with_suffix('.{json,md}')}")
    for figure in figures:  # the last lines: one name=value per headline figure
        print(figure.headline())
    missed = [f.name for f in figures if f.met is False]
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
