"""Measure what compiling the lab's ResNet-18 costs on this machine, cold, for tools/gpu_check_costs.json.

    python tools/measure_compile_costs.py --data PATH [--device cpu|cuda] [--what train-default,aoti,...]

Each figure is one cold measurement (Inductor's on-disk caches off, as P-2025-C8 measures):
- train-<mode>: torch.compile of the training step (forward and backward) in that mode, the first
  step's duration minus the median step of the same epoch (lablib.sections.compiled.train_compiled);
- inference-default: torch.compile of the model in eval mode, the first batch-1 call minus a later one
  (what E2 pays per model and precision);
- aoti: torch.export + AOTInductor compile and package of the model (what C10 pays per device).
It prints one JSON object: the figures in seconds with the machine, torch version and date, to be copied
into tools/gpu_check_costs.json by hand (a committed cost is a reviewed number, not a side effect).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import tempfile

import torch

from lablib.core.config import make_config
from lablib.core.model import resnet18
from lablib.core.provenance import cpu_model
from lablib.core.timing import Stopwatch
from lablib.sections.compiled import compile_caches, train_compiled

WHAT = ("train-default", "train-max-autotune", "inference-default", "aoti")


def train_compile_s(data: str, device: str, mode: str) -> float:
    # 4 batches of 128: the first pays the compile, the median of the others is the step itself
    config = make_config(data=data, device=device, limit_train=512, limit_test=100, epochs=1, workers=0)
    result = train_compiled(config, mode, progress=False, cold=True)
    if result.error:
        raise RuntimeError(result.error)
    return float(result.summary(config.epochs)["compile_s"])


def inference_compile_s(device: str) -> float:
    model = resnet18().to(device).eval()
    example = torch.randn(1, 3, 32, 32, device=device)
    with compile_caches(True), torch.no_grad():
        compiled = torch.compile(model)
        with Stopwatch(torch.device(device)) as first:
            compiled(example)
        with Stopwatch(torch.device(device)) as later:
            compiled(example)
    return first.seconds - later.seconds


def aoti_compile_s(device: str) -> float:
    import torch._inductor as inductor

    model = resnet18().to(device).eval()
    example = torch.randn(1, 3, 32, 32, device=device)
    with compile_caches(True), torch.no_grad(), tempfile.TemporaryDirectory() as folder:
        with Stopwatch(torch.device(device)) as watch:
            exported = torch.export.export(model, (example,))
            inductor.aoti_compile_and_package(exported, package_path=f"{folder}/resnet18.pt2")
    return watch.seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="the CIFAR-10 image archive or folder")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--what", default=",".join(WHAT), help=f"comma-separated, of {', '.join(WHAT)}")
    args = parser.parse_args(argv)
    wanted = [w for w in args.what.split(",") if w]
    unknown = [w for w in wanted if w not in WHAT]
    if unknown:
        parser.error(f"--what {','.join(unknown)} is unknown; use some of {', '.join(WHAT)}")
    figures = {}
    for what in wanted:
        if what.startswith("train-"):
            seconds = train_compile_s(args.data, args.device, what.removeprefix("train-"))
        elif what == "inference-default":
            seconds = inference_compile_s(args.device)
        else:
            seconds = aoti_compile_s(args.device)
        figures[what] = round(seconds, 1)
        print(f"{what}: {seconds:.1f} s", file=sys.stderr, flush=True)
    machine = torch.cuda.get_device_name(0) if args.device == "cuda" else cpu_model()
    print(
        json.dumps(
            {
                "device": args.device,
                "machine": f"{machine}, {torch.get_num_threads()} torch threads, host {platform.node()}",
                "torch": torch.__version__,
                "date": dt.date.today().isoformat(),
                "seconds": figures,
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
