"""P-2025-C8: training under torch.compile, with the compile cost made visible.

One run trains `config.epochs` epochs with one compile mode (eager, default,
reduce-overhead or max-autotune). torch.compile is lazy: the model is traced
(TorchDynamo), its backward derived (AOTAutograd) and kernels generated
(Inductor: Triton on a GPU, C++/OpenMP on a CPU, which needs a C++ compiler) at
the first call, i.e. inside epoch 1's first training step. So besides the
lab's per-epoch times this module records every batch's duration (from the
same clock as the epoch timer, lablib.core.timing.now, through the loop's
after-step hook) and estimates the compile time as the first step's duration
minus the median step of epoch 1. A compile failure is caught and returned as
text. The sentences the section writes (its result, Q5-2025's answers) are
built here from the records.
"""

from __future__ import annotations

import contextlib
import statistics
import traceback
from dataclasses import asdict, dataclass, field

import pandas as pd
import torch
from torch import nn

from lablib.core.config import RunConfig
from lablib.core.data import DataBundle
from lablib.core.errors import ConfigError
from lablib.core.optim import optimizer_for
from lablib.core.runs import latest_per
from lablib.core.timing import now
from lablib.core.train import EpochRecord, Hooks, LabStep, precision_mode, prepare, train_epochs, train_loader

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
    """Timestamps at the end of each training step (the loop's before-epoch and after-step hooks).

    The first timestamp is taken by `start()` just before the epoch's batches are
    drawn; each step's duration includes its wait for data, as the epoch's total
    does. The lab's timer has just synchronised the device at the end of each
    step, so the step stamps read the clock without a further sync.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.stamps: list[float] = []

    def start(self, epoch: int = 1) -> None:
        self.stamps = [now(self.device)]

    def __call__(self) -> None:
        self.stamps.append(now())

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
    check_mode(mode)
    device, data, model = prepare(config, model, data, progress)
    model = model.to(device)
    loader = train_loader(config, data, device)
    optimizer = optimizer_for(config, model.parameters())
    result = CompiledTraining(mode, device)
    clock = BatchClock(device)

    def keep(record: EpochRecord) -> None:
        result.epochs.append(record)
        if record.epoch == 1:
            result.first_epoch_steps_s = clock.durations

    with compile_caches(cold and mode != "eager"), precision_mode(config.precision, device) as autocast_dtype:
        step = LabStep(prepare_model(model, mode), optimizer, device, autocast_dtype)
        hooks = Hooks(before_epoch=clock.start, after_step=clock)
        try:
            train_epochs(
                step, loader, device, config.epochs, run, hooks=hooks, on_epoch=keep, progress=progress, label=mode
            )
        except Exception as error:  # Inductor/Dynamo failures have many types; all are reported
            result.error = (
                f"{type(error).__name__} in epoch {len(result.epochs) + 1}: "
                + "".join(traceback.format_exception_only(type(error), error)).strip()[-3000:]
            )
    return result


# --- the sentences of the section ------------------------------------------------------

TABLE_COLUMNS = [
    "compile_mode",
    "cold_compile",
    "compile_failed",
    "epochs_done",
    "first_epoch_s",
    "steady_epoch_s",
    "compile_s",
    "first_step_s",
    "median_step_s",
    "final_loss",
    "final_accuracy",
    "run_id",
]


def modes_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The latest run of each mode recorded in `runs` (one group), in COMPILE_MODES order, with its speed-up.

    speedup_vs_eager = eager's steady epoch / the mode's (NaN without an eager run).
    """
    latest = latest_per(runs, "compile_mode").set_index("compile_mode")
    table = latest.reindex([m for m in COMPILE_MODES if m in latest.index]).reset_index()
    table = table.reindex(columns=TABLE_COLUMNS)
    eager = table.set_index("compile_mode")["steady_epoch_s"].get("eager")
    return table.assign(speedup_vs_eager=eager / table["steady_epoch_s"] if eager else float("nan"))


def result_sentence(
    summary: dict, planned_epochs: int, cold: bool, device_type: str, train_images: int, batch_size: int
) -> str:
    """What this run measured (CompiledTraining.summary): its compile time, or its failure, in one paragraph."""
    mode = summary["compile_mode"]
    if summary["compile_failed"]:
        return (
            f"**Compile failed** with `{mode}` on `{device_type}`; the failure, as recorded:\n\n"
            f"```\n{summary['compile_error']}\n```\n\nThe mode's row below shows what was measured before the failure."
        )
    if mode == "eager":
        what, caches = "the first-call overhead without compiling (loader start-up, allocations) is about ", ""
    else:
        what = "compiling ResNet-18 (forward and backward) took about "
        caches = (
            "with Inductor's caches off (a cold compile) "
            if cold
            else "with Inductor's on-disk caches allowed (a repeat compile may reuse earlier work) "
        )
    averaged = f" The averaged epochs are {', '.join(map(str, steady_epochs(planned_epochs)))}" + (
        f" (with {planned_epochs} epochs instead of 10, the epochs after the first half)."
        if planned_epochs != 10
        else "."
    )
    return (
        f"**{mode}:** epoch 1 took {summary['first_epoch_s']:.2f} s; its first training step took "
        f"{summary['first_step_s']:.2f} s against a median step of {summary['median_step_s']:.3f} s, so {what}"
        f"**{summary['compile_s']:.2f} s** on this machine {caches}({train_images:,} training images, "
        f"batch {batch_size}, `{device_type}`).{averaged}"
    )


def conclusions(table: pd.DataFrame, window: list[int]) -> list[str]:
    """Q5-2025's three answers, the measured parts from `modes_table` (failed modes left out)."""
    done = table[~table["compile_failed"].astype(bool)].set_index("compile_mode")
    compiled_modes = [m for m in done.index if m != "eager"]
    span = f"{window[0]}–{window[-1]}"
    if "eager" in done.index and compiled_modes:
        measured = (
            f"Measured here (average of epochs {span}, eager {done.loc['eager', 'steady_epoch_s']:.2f} s): "
            + "; ".join(
                f"`{m}` {done.loc[m, 'steady_epoch_s']:.2f} s ({done.loc[m, 'speedup_vs_eager']:.2f}× eager)"
                for m in compiled_modes
            )
            + "."
        )
    else:
        measured = (
            "The speed-up needs both an eager and a compiled run in this group; record the missing mode(s) with "
            "`-p compile_mode ...`."
        )
    if len(done):
        measured += f" The fastest steady epoch is `{done['steady_epoch_s'].idxmin()}`'s."
    first_epochs = " ".join(
        f"`{m}`: epoch 1 {done.loc[m, 'first_epoch_s']:.2f} s vs {done.loc[m, 'steady_epoch_s']:.2f} s later, "
        f"first step {done.loc[m, 'first_step_s']:.2f} s vs a median step of "
        f"{done.loc[m, 'median_step_s']:.3f} s (first-step excess {done.loc[m, 'compile_s']:.2f} s)."
        for m in done.index
    )
    return [
        "**Q5.1 What torch.compile does:** it turns the model's Python into graphs and compiles them. TorchDynamo "
        "reads the Python bytecode of `forward` at its first call and records the tensor operations as an FX graph "
        "(falling back to Python at a *graph break*); AOTAutograd traces the matching backward graph; Inductor lowers "
        "both to fused kernels: Triton kernels on a GPU, C++/OpenMP loops (compiled with the system's C++ compiler) on "
        "a CPU. Guards on shapes, dtypes and module state decide when the compiled code can be reused and when to "
        "recompile.",
        "**Q5.2 How it speeds training up:** by fusing chains of element-wise operations (BatchNorm's normalise, "
        "scale and shift, the ReLU, the residual add) into one kernel, it reads and writes each activation once "
        "instead of once per operation, and launches fewer kernels; `reduce-overhead` additionally replays the step "
        "as a CUDA graph (one launch for the whole graph), and `max-autotune` benchmarks several kernel "
        "implementations per convolution/matmul and keeps the fastest (with CUDA graphs as well). Convolutions "
        "themselves still run in cuDNN/oneDNN, so the gain is bounded by the share of time outside them. " + measured,
        "**Q5.3 Why epoch 1 is slow:** the compilation happens inside it. The first call traces and compiles the "
        "forward and backward graphs (and, with `max-autotune`, benchmarks kernel candidates; with CUDA graphs, "
        "records them), so the first step takes seconds instead of milliseconds; a last batch of a different size "
        "(the epoch's remainder) can trigger a recompilation. "
        + (first_epochs + " " if first_epochs else "")
        + "Eager's own first-step excess is the baseline every mode pays (loader start-up, first allocations); the "
        "compiled modes' excess above it is the compile time, which a long training amortises and a short one "
        "does not.",
    ]


def cuda_graphs_note(device_type: str) -> str:
    """Whether CUDA graphs apply on this device, and what that means for the modes' differences."""
    if device_type == "cuda":
        return (
            "**CUDA graphs** apply on this GPU to `reduce-overhead` and `max-autotune` (recorded as `cuda_graphs` in "
            "the runs)."
        )
    return (
        f"**On the CPU:** `reduce-overhead` works by capturing CUDA graphs, which exist only for CUDA tensors, so on "
        f"`{device_type}` Inductor skips them and `reduce-overhead` generates the same C++ kernels as `default`; "
        "`max-autotune`'s CUDA graphs do not apply either, and its kernel benchmarking covers only the few CPU "
        "templates Inductor has. Differences between those modes on the CPU are therefore compile-time and noise, "
        "not CUDA-graph savings."
    )
