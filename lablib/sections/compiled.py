"""P-2025-C8: training under torch.compile, with the compile cost made visible.

One run trains `config.epochs` epochs with one compile mode (eager, default,
reduce-overhead or max-autotune). torch.compile is lazy: the model is traced
(TorchDynamo), its backward derived (AOTAutograd) and kernels generated
(Inductor: Triton on a GPU, C++/OpenMP on a CPU, which needs a C++ compiler) at
the first call, i.e. inside epoch 1's first training step. So besides the
lab's per-epoch times this module records every batch's duration (from the
same clock as the epoch timer, lablib.core.timing.now, via train_epoch's `progress`
hook) and estimates the compile time as the first step's duration minus the
median step of epoch 1. A compile failure is caught and returned as text.
"""

from __future__ import annotations

import statistics
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from lablib.core.config import RunConfig
from lablib.core.data import DataBundle, load_data, make_loader
from lablib.core.errors import ConfigError
from lablib.core.optim import make_optimizer
from lablib.core.timing import now
from lablib.core.train import EpochRecord, build_model, precision_mode, resolve_device, seed_everything, train_epoch

COMPILE_MODES = ("eager", "default", "reduce-overhead", "max-autotune")


def check_mode(mode: str) -> str:
    if mode not in COMPILE_MODES:
        raise ConfigError(f"compile_mode={mode!r} is not allowed; expected one of {', '.join(COMPILE_MODES)}.")
    return mode


def prepare_model(model: nn.Module, mode: str) -> nn.Module:
    """`model` itself for "eager", else torch.compile(model, mode=mode) (lazy: nothing compiles yet)."""
    check_mode(mode)
    return model if mode == "eager" else torch.compile(model, mode=mode)


def steady_epochs(epochs: int) -> list[int]:
    """The epochs averaged as the steady state: those after the first half (6-10 of 10).

    With one epoch there is no later epoch, so the list is [1] (the caller must say so).
    """
    if epochs < 1:
        raise ConfigError(f"epochs={epochs}: need at least one epoch.")
    later = list(range(epochs // 2 + 1, epochs + 1))
    return later if epochs > 1 else [1]


def cuda_graphs_apply(mode: str, device: torch.device) -> bool:
    """reduce-overhead and max-autotune capture CUDA graphs, which exist only for CUDA tensors."""
    return mode in ("reduce-overhead", "max-autotune") and device.type == "cuda"


class BatchClock:
    """Timestamps at the end of each training step (train_epoch's `progress` hook).

    The first timestamp is taken by `start()` just before the epoch; each
    step's duration includes its wait for data, as the epoch's total does.
    """

    def __init__(self, device: torch.device, forward: Callable[[int], object] | None = None):
        self.device = device
        self.forward = forward
        self.stamps: list[float] = []

    def start(self) -> None:
        self.stamps = [now(self.device)]

    def __call__(self, count: int) -> None:
        self.stamps.append(now(self.device))
        if self.forward is not None:
            self.forward(count)

    @property
    def durations(self) -> list[float]:
        return [b - a for a, b in zip(self.stamps, self.stamps[1:])]


@dataclass
class CompiledTraining:
    mode: str
    device: torch.device
    epochs: list[EpochRecord] = field(default_factory=list)
    first_epoch_steps_s: list[float] = field(default_factory=list)  # each step of epoch 1, data wait included
    error: str | None = None  # the compile/training failure, as text

    @property
    def failed(self) -> bool:
        return self.error is not None

    def summary(self, planned_epochs: int) -> dict:
        """The numbers the notebook reports (and logs), computed from the epochs and steps."""
        window = [e for e in self.epochs if e.epoch in steady_epochs(planned_epochs)]
        steps = self.first_epoch_steps_s
        typical = statistics.median(steps[1:]) if len(steps) > 1 else float("nan")
        steady = statistics.fmean(e.total_s for e in window) if window else float("nan")
        first = self.epochs[0].total_s if self.epochs else float("nan")
        return {
            "compile_mode": self.mode,
            "compile_failed": self.failed,
            "compile_error": self.error,
            "epochs_done": len(self.epochs),
            "first_epoch_s": first,
            "steady_epoch_s": steady,
            "steady_epochs": [e.epoch for e in window],
            "first_epoch_excess_s": first - steady if window and self.epochs and window[0].epoch > 1 else float("nan"),
            "first_step_s": steps[0] if steps else float("nan"),
            "median_step_s": typical,
            "compile_s": steps[0] - typical if len(steps) > 1 else float("nan"),
            "last_step_s": steps[-1] if len(steps) > 1 else float("nan"),
            "final_loss": self.epochs[-1].loss if self.epochs else float("nan"),
            "final_accuracy": self.epochs[-1].accuracy if self.epochs else float("nan"),
        }

    def to_dict(self) -> dict:
        return {**asdict(self), "device": str(self.device)}


def compile_caches(cold: bool):
    """A context in which Inductor's on-disk caches are off (`cold`), or left as they are.

    Inductor caches compiled graphs on disk (FX graph and AOTAutograd caches),
    so compiling the same model a second time is much faster; a cold compile
    is what a first run on a fresh machine pays.
    """
    import contextlib

    if not cold:
        return contextlib.nullcontext()
    import torch._inductor.config as inductor_config

    return inductor_config.patch(force_disable_caches=True)


def train_compiled(
    config: RunConfig,
    mode: str,
    run=None,
    data: DataBundle | None = None,
    progress: bool = True,
    cold: bool = True,
    model: nn.Module | None = None,
) -> CompiledTraining:
    """Train like lablib.core.train.train, with the model under `mode`; never raises for a compile failure.

    `cold` turns Inductor's on-disk caches off, so epoch 1 pays the whole compile. `model`
    replaces the config's ResNet-18 (tests use a small one).
    """
    from tqdm import tqdm

    check_mode(mode)
    device = resolve_device(config.device)
    seed_everything(config.seed)
    if data is None:
        data = load_data(
            config.data, config.data_dir, config.download, config.limit_train, config.limit_test, config.seed
        )
    model = (model or build_model(config, data.channels, len(data.classes))).to(device)
    loader = make_loader(
        data.train,
        config.batch_size,
        config.workers,
        device,
        shuffle=True,
        seed=config.seed,
        pin_memory=config.pin_memory,
        persistent_workers=config.persistent_workers,
    )
    optimizer = make_optimizer(config.optimizer, model.parameters(), config.lr, config.momentum, config.weight_decay)
    result = CompiledTraining(mode, device)
    prepared = prepare_model(model, mode)
    with (
        compile_caches(cold and mode != "eager"),
        precision_mode(config.precision, device) as autocast_dtype,
        tqdm(total=config.epochs * len(loader), desc=mode, unit="batch", disable=not progress) as bar,
    ):
        for epoch in range(1, config.epochs + 1):
            bar.set_description(f"{mode} epoch {epoch}/{config.epochs}")
            clock = BatchClock(device, bar.update)
            clock.start()
            try:
                record = train_epoch(prepared, loader, optimizer, device, epoch, None, autocast_dtype, progress=clock)
            except Exception as error:  # Inductor/Dynamo failures have many types; all are reported
                result.error = (
                    f"{type(error).__name__} in epoch {epoch}: "
                    + "".join(traceback.format_exception_only(type(error), error)).strip()[-3000:]
                )
                break
            if epoch == 1:
                result.first_epoch_steps_s = clock.durations
            result.epochs.append(record)
            bar.set_postfix(loss=f"{record.loss:.3f}", acc=f"{record.accuracy:.1f}%")
            if run is not None:
                run.log_epoch(record)
            if record.diverged:
                break
    return result
