"""The "compiled_training" measurement (P-2025-C8): the lab's training under one torch.compile mode.

    request = compiled_request(config, "max-autotune", cold_compile=True)
    measured = obtain(request)          # lablib.core.store
    measured.epochs                     # the lab's timing per epoch: data loading, training, total
    measured.results                    # first epoch, the steady epochs (6-10 of 10), compile_s, compiles, ...
    measured.table("compiles")          # every compilation torch announced: trigger, id, epoch, seconds
    measured.table("steps")             # every step's synchronised training interval, by epoch

One measurement trains `epochs` epochs of the lab's setting (its DataLoader with the given workers, SGD,
the lab's timing: the wait for each batch and the synchronised training interval apart) with the
model eager or compiled with mode "default", "reduce-overhead" or "max-autotune". torch.compile is
lazy: TorchDynamo traces the model at its first call, AOTAutograd derives the backward and Inductor
generates the kernels (Triton on a GPU, C++/OpenMP on a CPU, which needs a C++ compiler), all inside
epoch 1's first training step.

One input shape, compiled once: the loader drops each epoch's last partial batch (80 of 50,000 images
at batch 128; the shuffle differs each epoch, so every image is still seen) and the model is compiled
with dynamic=False. With the partial batch kept, the end of epoch 1 would compile again (a second
autotune with max-autotune, new CUDA graphs with reduce-overhead) and the later epochs would run a
dynamic-shape graph. Eager drops it too, so every mode trains on the same batches.

The compilations are counted and timed from torch's own compile events (lablib.core.compiles), so
compile_s is every compile that happened, in whichever epoch, and `compiles` says how many; the step
clock shows the first step against the typical one. `cold_compile` turns Inductor's on-disk caches off,
so the compile is what a fresh machine pays; every compiled measurement starts from a reset TorchDynamo.

A compile failure (no C++ compiler for Inductor's CPU code, an Inductor error) is the measurement's
result (compile_failed, compile_error, the epochs done before it), not an exception: it is what this
mode does on this machine with this environment.
"""

from __future__ import annotations

import statistics
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lablib.core.compiles import CompileLog, compile_caches, count_compiles, fresh_compiler
from lablib.core.config import RunConfig
from lablib.core.data import DataBundle
from lablib.core.errors import ConfigError
from lablib.core.optim import optimizer_for
from lablib.core.progress import counted
from lablib.core.store import Request, Work
from lablib.core.timing import Intervals, summarize
from lablib.core.train import (
    EpochRecord,
    Hooks,
    LabStep,
    precision_mode,
    prepare,
    summarise_epochs,
    train_epochs,
    train_loader,
)

COMPILE_MODES = ("eager", "default", "reduce-overhead", "max-autotune")  # P-2025-C8's modes, in its order
GRAPH_MODES = ("reduce-overhead", "max-autotune")  # the modes that record CUDA graphs (on CUDA only)


def check_mode(mode: str) -> str:
    if mode not in COMPILE_MODES:
        raise ConfigError(f"compile mode {mode!r} is not allowed; expected one of {', '.join(COMPILE_MODES)}.")
    return mode


def steady_epochs(epochs: int) -> list[int]:
    """The epochs averaged as the steady state: those after the first half (6-10 of 10).

    With one epoch there is no later epoch, so the list is [1] (the presenter says so).
    """
    if epochs < 1:
        raise ConfigError(f"epochs={epochs}: need at least one epoch.")
    return list(range(epochs // 2 + 1, epochs + 1)) if epochs > 1 else [1]


def cuda_graphs_apply(mode: str, device_type: str) -> bool:
    """reduce-overhead and max-autotune record CUDA graphs, which exist only for CUDA tensors."""
    return mode in GRAPH_MODES and device_type == "cuda"


def compile_model(model: nn.Module, mode: str) -> nn.Module:
    """`model` itself for "eager", else torch.compile(model, mode=mode, dynamic=False) (lazy: nothing compiles yet).

    dynamic=False: one graph per input shape, never a dynamic-shape one (the batches are all full)."""
    check_mode(mode)
    return model if mode == "eager" else torch.compile(model, mode=mode, dynamic=False)


def compiled_request(config: RunConfig, mode: str, cold_compile: bool = True, label: str = "") -> Request:
    """The measurement of training `config` under compile `mode` (eager compiles nothing: no cold_compile)."""
    from lablib.core.training import run_settings

    check_mode(mode)
    settings = {**run_settings(config), "compile_mode": mode, "cold_compile": bool(cold_compile and mode != "eager")}
    return Request("compiled_training", settings, timing=True, label=label or compiled_label(settings))


def compiled_label(settings: Mapping[str, Any]) -> str:
    """'training under torch.compile max-autotune (cold), 4 workers, 10 epochs on cuda'."""
    mode = settings["compile_mode"]
    what = "eager training (no compile)" if mode == "eager" else f"training under torch.compile {mode}"
    cold = " (cold)" if settings.get("cold_compile") else ""
    workers, epochs = counted(settings["workers"], "worker"), counted(settings["epochs"], "epoch")
    return f"{what}{cold}, {workers}, {epochs} on {settings['device']}" + (
        f", {settings['limit_train']:,} images" if settings.get("limit_train") else ""
    )


class MarkedStep:
    """The lab's step, telling CUDA graph trees that a new iteration begins (graph modes on CUDA):
    the last step's graph outputs are done with, so the next replay may overwrite them."""

    def __init__(self, step: LabStep):
        self.step, self.model = step, step.model

    def __call__(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        torch.compiler.cudagraph_mark_step_begin()
        return self.step(inputs, targets)


@dataclass
class CompiledTraining:
    mode: str
    device: torch.device
    batch_size: int
    dropped_images: int  # the last partial batch each epoch leaves out (train images mod batch size)
    epochs: list[EpochRecord] = field(default_factory=list)
    steps: Intervals = field(default_factory=Intervals)  # each step's training interval, marked with its epoch
    compile_log: CompileLog = field(default_factory=CompileLog)
    error: str | None = None  # the compile/training failure, as text

    @property
    def failed(self) -> bool:
        return self.error is not None

    def step_seconds(self, epoch: int) -> list[float]:
        return [s for s, mark in zip(self.steps.seconds, self.steps.marks) if mark == epoch]

    def steps_frame(self):
        """One row per training step: epoch, step (1-based within its epoch), train_ms."""
        import pandas as pd

        rows, count = [], {}
        for seconds, epoch in zip(self.steps.seconds, self.steps.marks):
            count[epoch] = count.get(epoch, 0) + 1
            rows.append({"epoch": epoch, "step": count[epoch], "train_ms": 1000.0 * seconds})
        return pd.DataFrame(rows, columns=["epoch", "step", "train_ms"])

    def summary(self, planned_epochs: int) -> dict[str, Any]:
        """The measurement's results: epoch 1 and the steady epochs (training interval and total), the steps,
        the compilations (from torch's events) and the failure, if any."""
        window = [e for e in self.epochs if e.epoch in steady_epochs(planned_epochs)]
        first = self.epochs[0] if self.epochs else None
        first_steps = self.step_seconds(1)
        typical = statistics.median(first_steps[1:]) if len(first_steps) > 1 else float("nan")
        results: dict[str, Any] = {
            "compile_failed": self.failed,
            "compile_error": self.error,
            "epochs_done": len(self.epochs),
            "steady_epochs": [e.epoch for e in window],
            "first_epoch_s": first.total_s if first else float("nan"),
            "first_epoch_train_s": first.train_s if first else float("nan"),
            "first_epoch_data_s": first.data_s if first else float("nan"),
            **_steady(window, "total_s", "steady_epoch_s"),
            **_steady(window, "train_s", "steady_train_s"),
            **_steady(window, "data_s", "steady_data_s"),
            "first_step_s": first_steps[0] if first_steps else float("nan"),
            "median_step_s": typical,  # epoch 1's steps after the first
            "first_step_excess_s": first_steps[0] - typical if len(first_steps) > 1 else float("nan"),
            "steps_per_epoch": first.batches if first else 0,
            "dropped_images": self.dropped_images,
            "dynamic_shapes": False,
            "cuda_graphs": cuda_graphs_apply(self.mode, self.device.type),
            **self.compile_log.results(),
        }
        return {**summarise_epochs(self.epochs), **results}


def _steady(window: list[EpochRecord], column: str, name: str) -> dict[str, float | None]:
    """The steady epochs' mean of one time and its spread (std over them; None with fewer than two)."""
    if not window:
        return {name: float("nan"), f"{name}_std": None}
    summary = summarize([getattr(e, column) for e in window])
    return {name: summary.mean, f"{name}_std": summary.std if summary.runs > 1 else None}


def train_compiled(
    config: RunConfig,
    mode: str,
    run=None,
    data: DataBundle | None = None,
    model: nn.Module | None = None,
    cold: bool = True,
    progress: bool = False,
) -> CompiledTraining:
    """Train like lablib.core.train.train with full batches only, the model under `mode`; a compile failure
    is returned in the result (`error`), never raised. `cold` turns Inductor's on-disk caches off."""
    check_mode(mode)
    device, data, model = prepare(config, model, data, progress)
    model = model.to(device)
    loader = train_loader(config, data, device, drop_last=True)
    if len(loader) == 0:
        raise ConfigError(
            f"batch_size={config.batch_size} is larger than the {len(data.train)} training images, so no full "
            "batch is left; use a smaller batch or more images (limit_train)."
        )
    optimizer = optimizer_for(config, model.parameters())
    result = CompiledTraining(mode, device, config.batch_size, len(data.train) % config.batch_size)

    def before_epoch(epoch: int) -> None:
        result.steps.mark(epoch)
        log.mark(epoch)

    if mode != "eager":
        fresh_compiler()
    with (
        compile_caches(cold and mode != "eager"),
        precision_mode(config.precision, device) as autocast_dtype,
        count_compiles() as log,
    ):
        step = LabStep(compile_model(model, mode), optimizer, device, autocast_dtype)
        if cuda_graphs_apply(mode, device.type):
            step = MarkedStep(step)
        hooks = Hooks(before_epoch=before_epoch, around_step=result.steps.timed)
        try:
            train_epochs(
                step,
                loader,
                device,
                config.epochs,
                run,
                hooks=hooks,
                on_epoch=result.epochs.append,
                progress=progress,
                label=mode,
            )
        except Exception as error:  # Inductor/Dynamo failures have many types; all are the mode's result
            result.error = (
                f"{type(error).__name__} in epoch {len(result.epochs) + 1}: "
                + "".join(traceback.format_exception_only(type(error), error)).strip()[-3000:]
            )
    result.compile_log = log
    return result


def measure_compiled_training(request: Request, record) -> None:
    """Train as the request says, into `record`: epochs, results, the compile events and the steps."""
    from lablib.core.training import config_of, data_and_model, data_and_model_results

    settings = request.settings
    config = config_of(settings)
    data, model = data_and_model(settings, config)
    result = train_compiled(config, settings["compile_mode"], record, data, model, cold=settings["cold_compile"])
    record.save_table("compiles", result.compile_log.frame())
    record.save_table("steps", result.steps_frame())
    record.log_results(
        **result.summary(config.epochs), **data_and_model_results(data, model), torch_version=torch.__version__
    )


def work_compiled_training(request: Request) -> tuple[Work, ...]:
    """One training of ResNet-18 (the lab's loop) for its epochs on its device; the compiled modes compile cold."""
    from lablib.core.data import source_sizes

    settings = request.settings
    train, _ = source_sizes(str(settings.get("data", "cifar10")))
    limit = int(settings.get("limit_train") or 0)
    images = min(limit or train, train) if train else limit
    mode = str(settings["compile_mode"])
    return (
        Work(
            model="resnet18",
            device=str(settings.get("device", "cpu")),
            epochs=float(settings.get("epochs", 10)),
            images=images,
            batch=int(settings.get("batch_size", 128)),
            engine="faithful",
            precision=str(settings.get("precision", "fp32")),
            workers=int(settings.get("workers", 0)),
            compiles=() if mode == "eager" else (mode,),
        ),
    )
