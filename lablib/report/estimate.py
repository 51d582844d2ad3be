"""Estimate: what the measurements a build would run cost, here and on named GPUs, before anything runs.

Each measurement says what it costs in units (lablib.core.store.Work: training epochs of a model on a
device with an engine, single-image calls, cold compiles, fixed seconds). A machine prices them:

- this machine: the last duration of the same measurement (same kind and settings, any code version)
  when there is one; else a probe: ResNet-18 forward + backward on one batch of 16 on the device the
  measurement uses (its CPU points on the CPU, its GPU points on the GPU), scaled by the model's FLOPs;
- an NVIDIA L4, A100 or H100: the FLOPs at the GPU's datasheet peak (lablib.core.counts.GPU_PEAKS) times a
  utilisation per engine calibrated on one published measurement each: the lab's loop (fp32 with TF32
  convolutions) from the 2025 lab report's L4 (7.54 s of training per 50,000-image epoch = 37 % of the L4's
  dense TF32 peak), the fast engine (bf16, compiled) from airbench's A100 ResNet-18 baseline (32.3 PFLOPs
  in 7 min = 25 % of the A100's dense bf16 peak); the lab's loop is never faster than its DataLoader
  workers decode (about LOADER_IMAGES_PER_WORKER images/s each). Work on the CPU is priced as on this
  machine's CPU. These are estimates, and every line that prints them says so.

`Prediction` is what the dry run stands in for a measurement it would run: a Measured whose results
(epoch times from the estimate, accuracies unknown) let the sections' planners go on listing what
follows (C3's walk, the sections that take C3.2's best count), so the plan's cost is known in full.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from lablib.core.store import Measured, Request, Work, store_root, work

NOTEBOOK_S = 6.0  # kernel start, imports and presenting of one papermill execution (4-6 s measured on 2 CPU cores)
JOB_START_S = 4.0  # a measuring job's Python start and imports
# One more measurement of a walk (one process: lablib.report.measure.walk_job) beyond its epochs, warm-up and
# compile: its data from the decoded cache, the test, the checkpoint and the record. Measured on this machine's
# CPU in quick E1 walks: 0.13-0.15 s for MNIST's small CNN, 0.48-0.55 s for CIFAR-10's ResNet-18 (its test
# on the CPU included); loading the full CIFAR-10 training set from the decoded cache takes 0.2 s of it.
WALK_MEASUREMENT_S = 0.5
EPOCH_OVERHEAD_S = 0.5  # the lab's loop per epoch: worker start-up, the test set's evaluation aside
LOADER_IMAGES_PER_WORKER = 11_000.0  # images/s one DataLoader worker decodes and augments (two: ~20-25 k/s)
# Utilisation of the datasheet peak, per engine (see the module docstring for the published sources).
UTILISATION = {"faithful": 0.37, "fast": 0.25}
# Cold torch.compile seconds per mode on a GPU: an upper estimate until a GPU measures them.
GPU_COMPILE_S = {"default": 45.0, "reduce-overhead": 60.0, "max-autotune": 300.0}
CPU_COMPILE_S = {"default": 60.0, "reduce-overhead": 60.0, "max-autotune": 240.0}
# A compile of what the plan already compiled (same mode, device, model, width, precision and engine) is
# served by Inductor's caches: measured on this machine's CPU for ResNet-18's forward + backward (torch
# 2.13), 28.0 s cold, 5.9 s in a new process from the on-disk cache (0.21), 1.6 s for a new model in the
# same process (0.06). The fast engine's training step compiles nothing at all for a further setting in
# the same process (a new model, optimiser, learning rate and seed: 0 compile events, and its 3 warm-up
# steps take 3.0 step times, measured here for ResNet-18 bf16 with SGD, Adam and RMSprop): Dynamo's cached
# graph takes the new model's parameters as inputs. A section's measurements of one round run in one
# process (the local executor, JOBS=1), and so does a walking section's whole walk (E1's halving, any
# executor); else each in its own (JOBS > 1, Slurm).
REPEAT_COMPILE_SHARE = {"same process": 0.06, "fast step, same process": 0.0, "new process": 0.21}
GPU_CALL_S = 0.002  # one single-image forward on a GPU: launch-bound (the 2026 report: 2.03 ms eager)
NAMED_GPUS = ("L4", "A100", "H100 SXM")  # the estimates printed by the dry run, by GPU_PEAKS name prefix


@lru_cache(maxsize=32)
def flops_per_image(model: str, width: float = 1.0) -> tuple[float, float]:
    """(training, forward) FLOPs per image of a model, counted once by torch.utils.flop_counter."""
    from lablib.core.counts import forward_flops_per_image, training_flops_per_image
    from lablib.core.training import build_model

    channels, size = (1, 28) if model == "small_cnn" else (3, 32)
    name = {"small_cnn": "auto"}.get(model, model)
    built = build_model({"model": name, "width": width}, channels, 10)
    return training_flops_per_image(built, size, channels), forward_flops_per_image(built, size, channels)


@lru_cache(maxsize=32)
def module_calls(model: str, width: float = 1.0) -> tuple[int, int]:
    """(leaf modules called, of them convolutions and linear layers) in one forward pass of a model."""
    import torch

    from lablib.core.training import build_model

    channels, size = (1, 28) if model == "small_cnn" else (3, 32)
    built = build_model({"model": {"small_cnn": "auto"}.get(model, model), "width": width}, channels, 10).eval()
    calls = [0, 0]

    def count(module, _inputs, _output) -> None:
        calls[0] += 1
        calls[1] += isinstance(module, (torch.nn.Conv2d, torch.nn.Linear))

    hooks = [m.register_forward_hook(count) for m in built.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            built(torch.zeros(1, channels, size, size))
    finally:
        for hook in hooks:
            hook.remove()
    return calls[0], calls[1]


def step_floor_s(item: Work) -> float:
    """The least one training step takes on a GPU however few its FLOPs: its kernel launches. An eager
    step launches about three times a forward pass's (forward, backward; the fused optimizer aside), each
    leaf module's at the cost measured for eager ResNet-18 at batch 1 (GPU_CALL_S over its leaf calls); a
    compiled step fuses the rest into the convolutions' and linear layers' kernels."""
    calls, convolutions = module_calls(item.model or "resnet18", item.width)
    per_call = GPU_CALL_S / module_calls("resnet18")[0]
    return 3 * (convolutions if item.compiles else calls) * per_call


def repeat_share(item: Work, separate: bool) -> float:
    """The share of a cold compile that compiling the same again costs (REPEAT_COMPILE_SHARE)."""
    if separate:
        return REPEAT_COMPILE_SHARE["new process"]
    fast_step = item.engine == "fast" and bool(item.model)  # a training on the fast engine
    return REPEAT_COMPILE_SHARE["fast step, same process" if fast_step else "same process"]


@dataclass
class Machine:
    """Prices Work on one machine: `seconds(work)`; `name` says which, `estimate` that it is one."""

    name: str
    peaks: Any = None  # a lablib.core.counts.GpuPeak for a named GPU; None for this machine
    probe: Any = None  # this machine's Probe (also prices CPU work on a named GPU's host)

    def seconds(self, item: Work, compiled: set[tuple] | None = None, separate: bool = False) -> float:
        """The item's seconds; `compiled` (updated) holds what the plan compiled before it, a repeat of which
        costs `repeat_share` of a cold compile (`separate`: each measurement in a process of its own)."""
        seconds = item.fixed_s
        if item.epochs and item.images:
            train_flops, forward_flops = flops_per_image(item.model or "resnet18", item.width)
            rate = self.flops_per_s(item)
            per_epoch = item.images * train_flops / rate
            if item.device == "cuda" and self.peaks is not None and item.batch:
                per_epoch = max(per_epoch, math.ceil(item.images / item.batch) * step_floor_s(item))
            if item.engine == "faithful":
                loader = LOADER_IMAGES_PER_WORKER * max(item.workers, 0.8)
                per_epoch = max(per_epoch, item.images / loader) + EPOCH_OVERHEAD_S
            seconds += item.epochs * per_epoch
        if item.calls:
            seconds += item.calls * self.call_s(item)
        for mode in item.compiles:
            table = GPU_COMPILE_S if item.device == "cuda" else CPU_COMPILE_S
            signature = (mode, item.device, item.model, item.width, item.precision, item.engine)
            share = repeat_share(item, separate) if compiled is not None and signature in compiled else 1.0
            seconds += share * table.get(mode, table["default"])
            if compiled is not None:
                compiled.add(signature)
        return seconds

    def flops_per_s(self, item: Work) -> float:
        if item.device == "cuda" and self.peaks is not None:
            precision = "bf16" if item.precision in ("bf16", "fp16") else "tf32"
            peak = getattr(self.peaks, precision) or self.peaks.fp32
            return peak * UTILISATION.get(item.engine, UTILISATION["faithful"])
        return self.probe.flops_per_s(item.device)

    def call_s(self, item: Work) -> float:
        if item.device == "cuda" and self.peaks is not None:
            return GPU_CALL_S
        _, forward = flops_per_image(item.model or "resnet18", item.width)
        return max(forward / self.probe.flops_per_s(item.device), 1e-4)


PROBE_BATCH = 16  # images in the probe's one timed ResNet-18 step (a second or two on a laptop CPU)


class Probe:
    """This machine's training speed per device: ResNet-18 forward + backward on one batch, timed once."""

    def __init__(self, cuda: bool):
        self.cuda = cuda
        self._rates: dict[str, float] = {}

    def flops_per_s(self, device: str) -> float:
        device = "cuda" if device == "cuda" and self.cuda else "cpu"
        if device not in self._rates:
            self._rates[device] = self._measure(device)
            if device == "cuda":  # the measurements use the GPU next: leave it empty
                import torch

                torch.cuda.empty_cache()
        return self._rates[device]

    @staticmethod
    def _measure(device_type: str) -> float:
        import torch

        from lablib.core.model import resnet18
        from lablib.core.timing import time_calls

        device = torch.device(device_type)
        model = resnet18().to(device)
        images = torch.randn(PROBE_BATCH, 3, 32, 32, device=device)
        labels = torch.randint(0, 10, (PROBE_BATCH,), device=device)

        def step() -> None:
            model.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(images), labels).backward()

        seconds = min(time_calls(step, device, warmup=1, runs=1))
        return PROBE_BATCH * flops_per_image("resnet18")[0] / seconds


def named_machines(probe: Probe) -> list[Machine]:
    from lablib.core.counts import GPU_PEAKS

    machines = []
    for prefix in NAMED_GPUS:
        row = next(p for p in GPU_PEAKS if p.name.startswith(prefix))
        machines.append(Machine(f"NVIDIA {row.name}", row, probe))
    return machines


class Estimator:
    """Seconds of measurements and notebook executions on this machine and on named GPUs."""

    def __init__(
        self, cuda: bool | None = None, root: Path | None = None, separate: bool = False, gpu: str | None = None
    ):
        """`separate`: every measurement runs in its own process (JOBS > 1, Slurm), so a repeated compile
        is served by the on-disk caches rather than the process's own. `gpu`: the named GPU that prices the
        predictions of GPU work (default: the first, the L4) when this machine has none."""
        import torch

        self.separate = separate
        self.predicted_compiles: set[tuple] = set()  # what the dry run's predictions compiled so far

        self.probe = Probe(torch.cuda.is_available() if cuda is None else cuda)
        self.here = Machine("this machine", None, self.probe)
        self.gpus = named_machines(self.probe)
        self.gpu = gpu
        self.root = root
        self._previous: dict[str, dict[str, float]] | None = None

    def previous_seconds(self, request: Request) -> float | None:
        """How long the same measurement (same kind and settings, any code version) took last time here."""
        if self._previous is None:
            self._previous = {}
            for meta_path in store_root(self.root).glob("*/*/run.json"):
                try:
                    meta = json.loads(meta_path.read_text())
                except (OSError, json.JSONDecodeError):
                    continue
                if meta.get("status") == "complete" and meta.get("duration_s") and meta.get("request"):
                    kind = meta["request"].get("kind", meta.get("section"))
                    self._previous.setdefault(kind, {})[_settings_id(meta["request"]["settings"])] = float(
                        meta["duration_s"]
                    )
        return self._previous.get(request.kind, {}).get(_settings_id(request.settings))

    def can_run(self, request: Request, machine: Machine | None = None) -> bool:
        """Whether `machine` (default: this one) has the devices the request's work needs."""
        machine = machine or self.here
        return machine.peaks is not None or self.probe.cuda or all(i.device != "cuda" for i in work(request))

    def stand_in(self, request: Request) -> Machine:
        """The machine that prices a prediction: this one, or the first named GPU for GPU work without a GPU here."""
        if self.can_run(request):
            return self.here
        return next((m for m in self.gpus if m.name == self.gpu), self.gpus[0])

    def seconds(
        self, request: Request, machine: Machine | None = None, compiled: set[tuple] | None = None, walk: bool = False
    ) -> float | None:
        """A measurement's estimated seconds on `machine` (default: this one, from its last duration when known);
        None when this machine lacks the device (GPU work planned on a machine without a GPU). Its compiles
        are cold unless `compiled` (updated) says the plan compiled the same before. `walk`: one of a walk's
        measurements, in the walk's process (WALK_MEASUREMENT_S, not a share of a job's start)."""
        machine = machine or self.here
        if machine is self.here:
            known = self.previous_seconds(request)
            if known is not None:
                return known
            if not self.can_run(request):
                return None
        separate = self.separate and not walk
        start = WALK_MEASUREMENT_S if walk else JOB_START_S / 4
        return start + sum(machine.seconds(item, compiled, separate) for item in work(request))

    def total(
        self, requests: Iterable[Request], notebooks: int, machine: Machine | None = None, walk: bool = False
    ) -> float | None:
        """The seconds of all of them in order (a compile repeated from an earlier one served by the caches),
        None when one cannot run on `machine`. `walk`: they are one walk, measured in one job."""
        compiled: set[tuple] = set()
        requests = list(requests)
        seconds = [self.seconds(r, machine, compiled, walk) for r in requests]
        start = JOB_START_S if walk and requests else 0.0
        return None if None in seconds else sum(seconds) + start + notebooks * NOTEBOOK_S


def _settings_id(settings: Mapping[str, Any]) -> str:
    from lablib.core.store import NOT_IN_KEY

    return json.dumps({k: v for k, v in settings.items() if k not in NOT_IN_KEY}, sort_keys=True, default=str)


# --- the dry run's stand-in for a measurement --------------------------------------------------------


def prediction(request: Request, estimator: Estimator, walk: bool = False) -> Measured:
    """A Measured for a measurement the dry run would run: estimated epoch times, accuracies unknown (0);
    `walk`: one of a walk's measurements (its overhead is WALK_MEASUREMENT_S and a repeat compiles nothing).

    The data-loading time falls with every worker added, so C3's rule is planned to its largest count
    (the most it can cost); the predicted best count is then the one the sections that need it use."""
    settings = dict(request.settings)
    results: dict[str, Any] = {}
    epochs: list[dict[str, Any]] = []
    if request.kind == "training":
        items = work(request)
        item = items[0] if items else Work()
        count = max(int(item.epochs), 1)
        images = item.images or 1
        train_flops, _ = flops_per_image(item.model or "resnet18", item.width)
        train_s = images * train_flops / estimator.stand_in(request).flops_per_s(item)
        data_s = images / (LOADER_IMAGES_PER_WORKER * max(item.workers, 0.8)) if item.engine == "faithful" else 0.0
        total_s = train_s + data_s
        for epoch in range(1, count + 1):
            epochs.append(
                {
                    "epoch": epoch,
                    "loss": float("nan"),
                    "accuracy": 0.0,
                    "data_s": data_s,
                    "train_s": train_s,
                    "total_s": total_s,
                    "images": images,
                    "batches": max(images // int(settings.get("batch_size", 128)), 1),
                    "images_per_s": images / total_s if total_s else 0.0,
                    "diverged": False,
                }
            )
        machine = estimator.stand_in(request)
        overhead_s, compile_s = WALK_MEASUREMENT_S if walk else JOB_START_S / 4, 0.0
        separate = estimator.separate and not walk
        for item in items:  # its compile (a repeat: the caches' share) and its start
            with_compile = machine.seconds(replace(item, epochs=0.0), estimator.predicted_compiles, separate)
            overhead_s += with_compile
            compile_s += with_compile - machine.seconds(replace(item, epochs=0.0, compiles=()))
        results = {
            "wall_s": total_s * count + overhead_s,
            "compile_s": compile_s,
            "epochs_run": count,
            "data_s_total": data_s * count,
            "train_s_total": train_s * count,
            "epoch_s_total": total_s * count,
            "data_s_mean": data_s,
            "train_s_mean": train_s,
            "epoch_s_mean": total_s,
            "images_per_s_mean": images / total_s if total_s else 0.0,
            "final_loss": float("nan"),
            "final_accuracy": 0.0,
            "loss_mean": float("nan"),
            "accuracy_mean": 0.0,
            "diverged": False,
            "diverged_reason": "",
            "test_accuracy": 0.0,
            "train_images": images,
        }
    meta = {"key": request.key, "status": "complete", "ended": "", "provenance": {}, "predicted": True}
    return Measured(request, Path("(not measured yet)"), meta, reused=False, _results=results, _epochs=epochs)
