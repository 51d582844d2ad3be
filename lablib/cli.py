"""`python -m lablib ...`: train from the terminal, show the machine, build the report.

    python -m lablib train --device cpu --workers 2 --optimizer sgd --epochs 5 --data PATH
    python -m lablib info [--preflight] [--json FILE]
    python -m lablib report --profile quick --data PATH [--only c1_training,C3] [--force]

Errors the user can fix are printed as one line (no traceback), exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from lablib.core.errors import LabError

EPOCH_COLUMNS = ("epoch", "loss", "accuracy", "data_s", "train_s", "total_s", "images_per_s")
HEADER = f"{'epoch':>5} {'loss':>8} {'top-1 %':>8} {'data s':>8} {'train s':>8} {'total s':>8} {'img/s':>8}"


def format_epoch(record) -> str:
    flag = "  diverged (loss is not finite)" if record.diverged else ""
    return (
        f"{record.epoch:>5} {record.loss:>8.4f} {record.accuracy:>8.2f} {record.data_s:>8.2f} "
        f"{record.train_s:>8.2f} {record.total_s:>8.2f} {record.images_per_s:>8.0f}{flag}"
    )


def _train(args: argparse.Namespace) -> int:
    from lablib.core.config import make_config
    from lablib.core.data import COLOUR_32, load_data_for, require_kind
    from lablib.core.runs import start_run
    from lablib.core.train import resolve_device, train

    overrides = {
        "device": args.device,
        "data": args.data,
        "workers": args.workers,
        "optimizer": args.optimizer,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "limit_train": args.limit_train,
        "limit_test": args.limit_test,
        "precision": args.precision,
        "batch_norm": not args.no_batch_norm,
        "download": not args.no_download,
    }
    config = make_config(**{k: v for k, v in overrides.items() if v is not None})
    device = resolve_device(config.device)  # fail before loading data
    data = load_data_for(config, progress=not args.json)
    require_kind(data, (COLOUR_32,), "`lablib train` (the lab's ResNet-18)")
    emit = (
        (lambda r: print(json.dumps({"type": "epoch", **r.to_dict()}), flush=True))
        if args.json
        else (lambda r: print(format_epoch(r), flush=True))
    )
    if not args.json:
        print(
            f"device {device}, data {data.source} ({len(data.train)} train images), "
            f"workers {config.workers}, optimizer {config.optimizer}"
        )
        print(HEADER, flush=True)
    with start_run(args.section, config, tag=args.tag, data=data, device=device) as run:
        result = train(config, run=run, data=data, progress=not args.json, on_epoch=emit, evaluate_test=args.evaluate)
    summary = {
        "type": "summary",
        "run": str(run.path),
        "diverged": result.diverged,
        **({"test_accuracy": result.test.accuracy} if result.test else {}),
    }
    if args.json:
        print(json.dumps(summary))
    else:
        if result.test:
            print(f"test accuracy {result.test.accuracy:.2f} % on {result.test.images} images")
        print(f"record: {run.path}")
    return 0


def _preflight(json_path: str | None) -> None:
    """The preflight's lines (lablib.core.preflight); with json_path, its checks and what they turn off as JSON."""
    import torch

    from lablib.core.preflight import run_checks, turned_off
    from lablib.core.provenance import driver_warning

    checks = run_checks(torch.cuda.is_available(), driver_warning())
    print("preflight:")
    for check in checks:
        print(f"  {check.line()}")
    off = turned_off(checks)
    if json_path:
        document = {"checks": [c.to_dict() for c in checks], "off": off}
        with open(json_path, "w") as handle:
            json.dump(document, handle, indent=1)


def _info(args: argparse.Namespace) -> int:
    import shutil

    import torch

    from lablib.core.data import default_data_dir
    from lablib.core.provenance import REPO_ROOT, driver_warning, provenance

    if args.preflight:
        _preflight(args.json)
        return 0
    facts = provenance()
    print("versions:")
    for key in ("python", "torch", "torchvision", "cuda", "cudnn"):
        print(f"  {key:<12} {facts[key]}")
    print("devices:")
    print(
        f"  cpu          {facts['cpu']} ({facts['cpu_count']} logical cores, torch uses "
        f"{facts['torch_threads']} threads)"
    )
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            print(f"  cuda:{index}       {props.name}, {props.total_memory / 2**30:.0f} GiB")
        print(f"  driver       {facts['driver_version']} (supports CUDA {facts['driver_cuda']})")
    else:
        print(
            "  cuda         none visible to torch"
            + (" (an NVIDIA driver is installed)" if facts["driver_version"] else "")
        )
    warning = driver_warning()
    if warning:
        print(f"warning: {warning}")
    data_dir = default_data_dir()
    print("data sources:")
    cifar = data_dir / "cifar-10-batches-py"
    where = (
        f"found in {cifar}" if cifar.is_dir() else f"not downloaded ({data_dir}); downloads on first use when online"
    )
    print(f"  cifar10      {where}")
    archives = sorted({*REPO_ROOT.parent.glob("shared/data/*.zip"), *data_dir.glob("*.zip")})
    for archive in archives:
        print(f"  image folder {archive}")
    caches = sorted((data_dir / "cache").glob("imagefolder-*")) if (data_dir / "cache").is_dir() else []
    print(f"  decoded      {len(caches)} cached image-folder source(s) in {data_dir / 'cache'}")
    print("report tools:")
    for tool in ("pandoc", "xelatex", "pdftotext"):
        print(f"  {tool:<12} {shutil.which(tool) or 'missing (make system-deps installs it)'}")
    _preflight(args.json)
    return 0


def _measure(args: argparse.Namespace) -> int:
    """A build's measuring job: each request of the file measured (or found recorded) in turn; with --walk,
    then the section's next measurements, planned here after each (lablib.report.measure.walk_job)."""
    from lablib.core.store import read_requests
    from lablib.report.measure import walk_job

    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    walk = json.loads(Path(args.walk).read_text()) if args.walk else None
    return walk_job(read_requests(args.requests), walk, Path(args.walk or args.requests).parent)


def _report(args: argparse.Namespace) -> int:
    from lablib.report.build import main as report_main

    return report_main(args)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad option is one line naming it and what is allowed (no usage block), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message}; see `{self.prog} --help`.\n")


def count(text: str) -> int:
    """A whole number >= 1 (JOBS, epochs, batch size): argparse's type, so a bad value is one line."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; use one >= 1") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not allowed; use a whole number >= 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m lablib", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    train = commands.add_parser("train", help="train ResNet-18 with the lab's timing and record the run")
    train.add_argument("--device", help="auto | cuda | cpu (default auto)")
    train.add_argument(
        "--data",
        help="cifar10 (torchvision download), fake, or a folder/.zip with "
        "train/<class>/ and test/<class>/ (default cifar10)",
    )
    train.add_argument("--workers", type=int, help="DataLoader workers (default 2)")
    train.add_argument("--optimizer", help="sgd | sgd_nesterov | adagrad | adadelta | adam | adamw | rmsprop")
    train.add_argument("--epochs", type=count, help="epochs (default 5)")
    train.add_argument("--batch-size", type=count, help="batch size (default 128)")
    train.add_argument("--lr", type=float, help="learning rate (default 0.1)")
    train.add_argument("--seed", type=int, help="random seed (default 0)")
    train.add_argument("--limit-train", type=int, help="class-balanced training subset size (default all)")
    train.add_argument("--limit-test", type=int, help="class-balanced test subset size (default all)")
    train.add_argument("--precision", help="fp32 | tf32 | bf16 (default fp32)")
    train.add_argument("--no-batch-norm", action="store_true", help="replace BatchNorm with identity")
    train.add_argument("--no-download", action="store_true", help="never download CIFAR-10")
    train.add_argument("--evaluate", action="store_true", help="also report test accuracy at the end")
    train.add_argument("--section", default="cli", help="run-store section for the record (default cli)")
    train.add_argument("--tag", default="", help="free label stored with the record")
    train.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    train.set_defaults(handler=_train)

    info = commands.add_parser("info", help="devices, versions, data sources, report tools and the preflight")
    info.add_argument("--preflight", action="store_true", help="only the preflight: compilers, headers, folders, disk")
    info.add_argument("--json", help="also write the preflight's checks and what they turn off to this JSON file")
    info.set_defaults(handler=_info)

    measure = commands.add_parser("measure", help="measure the requests of a file (a build's measuring job)")
    measure.add_argument("requests", help="a JSON list of {request, asked_by, force} (lablib.core.store.read_requests)")
    measure.add_argument("--walk", help="walk.json: then plan and measure the section's next ones here (a build's)")
    measure.set_defaults(handler=_measure)

    report = commands.add_parser("report", help="run the plan's stale points, then write report/report.html and .pdf")
    report.add_argument("--profile", help="full (the lab's settings; default) | quick (a small real subset)")
    report.add_argument("--data", help="data for every section: cifar10, or a folder/.zip with train/ and test/")
    report.add_argument(
        "--mnist",
        help="MNIST as a folder/.zip with train/<digit>/ for E1 (default: mnist-png.zip "
        "beside --data when present, else torchvision's download)",
    )
    report.add_argument("--device", help="auto | cuda | cpu for every section (C4 keeps both)")
    report.add_argument(
        "--only",
        help="comma-separated sections to build, in the variant's numbering or by notebook name (C4,C5 or "
        "c1_training); what they need is built too",
    )
    report.add_argument("--force", action="store_true", help="measure and present the selected sections again")
    report.add_argument("--jobs", default="1", help="measurements at once (default 1); timings still run alone")
    report.add_argument(
        "--executor",
        default="local",
        help="local (default) | slurm: stale points as Slurm job arrays via submitit (SLURM_* variables: resources)",
    )
    report.add_argument("--plan", help="the plan file (default report/plan.yaml)")
    report.add_argument("--output", help="folder for report.html, report.pdf and build/ (default report/)")
    report.add_argument(
        "--lab", help="the lab variant: 2026 (default) | 2025 | 2024 | eml | all (report/variants.yaml)"
    )
    report.add_argument(
        "--records",
        help="a records.tar.gz from make gpu-check: unpack it into the run store and stitch, running nothing here",
    )
    report.add_argument(
        "--no-stitch", action="store_true", help="measure and present only; stitch later (a node without TeX)"
    )
    report.add_argument(
        "--dry-run",
        action="store_true",
        help="print every measurement the build would run or reuse, by section, its cost and estimates; run nothing",
    )
    report.add_argument(
        "--budget", help="the time E1's grids may take together, e.g. 45m (successive halving fits them to it)"
    )
    for flag, what in (
        ("--author", "the student's name, printed as typed on the title page"),
        ("--student-id", "the student's id"),
        ("--course", "the course"),
        ("--term", "the term, e.g. 'Spring 2026'"),
    ):
        report.add_argument(flag, help=what + " (or fill in report/student.yaml once)")
    report.set_defaults(handler=_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except LabError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the run's record is marked failed, not complete", file=sys.stderr)
        return 130
