"""The "profile" measurement (P-2025-XC): torch.profiler over training steps, data loading made visible.

    request = profile_request(config, wait=1, warmup=1, active=5)
    measured = obtain(request)                  # lablib.core.store
    measured.artifact("trace.json")             # the Chrome trace of the active steps (chrome://tracing, Perfetto)
    measured.table("operators")                 # one row per operator name: calls, self / total CPU (and CUDA) ms
    measured.table("steps")                     # every step: its schedule phase, data wait and step in ms
    measured.results                            # the two ranges' totals, the data share, the trace's size

The profiler records the operators this process runs. Data loading is its known blind spot: with
DataLoader workers the images are decoded and augmented in other processes, and the main process
only waits inside next(iterator), which the profiler shows as a gap between operators (with 0
workers the PIL/torchvision work is Python that mostly shows no operator either). The lab's training
loop (lablib.core.train) runs with hooks that wrap that next() in record_function("data_loading")
and each step in record_function("train_step"), so both appear as named ranges in the trace and the
table, beside the operators. The step range holds the lab's timed interval: on a GPU it ends after
the lab's synchronize, so it lasts until the step's kernels have finished, not just until they are
queued. The same hooks time each wait and step (lablib.core.timing.Intervals), profiler overhead included.

Schedule: `wait` steps unrecorded, `warmup` steps recorded and discarded (the profiler's own start-up),
`active` steps kept.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function, schedule

from lablib.core.config import RunConfig
from lablib.core.data import DataBundle
from lablib.core.errors import ConfigError
from lablib.core.optim import optimizer_for
from lablib.core.store import Request, Work
from lablib.core.timing import Intervals
from lablib.core.train import EpochRecord, Hooks, LabStep, precision_mode, prepare, train_epochs, train_loader

DATA_RANGE = "data_loading"  # record_function name around the loader's next()
STEP_RANGE = "train_step"  # record_function name around copy + zero_grad + forward + loss + backward + step
RANGES = (DATA_RANGE, STEP_RANGE)
TRACE = "trace.json"


def check_schedule(wait: int, warmup: int, active: int) -> None:
    for name, value, low in (("wait", wait, 0), ("warmup", warmup, 0), ("active", active, 1)):
        if value < low:
            raise ConfigError(f"{name}={value} is not allowed; expected an integer >= {low}.")


def profile_request(config: RunConfig, wait: int = 1, warmup: int = 1, active: int = 5, label: str = "") -> Request:
    """The measurement of profiling wait + warmup + active training steps of `config`'s setting."""
    from lablib.core.training import run_settings

    check_schedule(wait, warmup, active)
    settings = {**run_settings(config), "wait": int(wait), "warmup": int(warmup), "active": int(active)}
    label = label or (
        f"profile of {wait}+{warmup}+{active} training steps (wait + warm-up + active), batch {config.batch_size}, "
        f"{config.workers} workers on {settings['device']}"
    )
    return Request("profile", settings, timing=True, label=label)


@dataclass
class Profiled:
    trace_path: Path  # Chrome trace (JSON) of the active steps
    operators: pd.DataFrame  # one row per operator name (our two ranges included), times in ms
    device: torch.device
    activities: list[str]  # "CPU", and "CUDA" on a GPU
    wait: int
    warmup: int
    active: int
    steps: EpochRecord  # the lab's timing of the profiled steps (profiler overhead included)
    data_wait: Intervals  # each step's wait for its batch
    step_time: Intervals  # each step's training interval

    def range_ms(self, name: str, column: str = "cpu_total_ms") -> float:
        """Total time of one of our record_function ranges over the active steps, in ms."""
        rows = self.operators[self.operators["name"] == name] if not self.operators.empty else self.operators
        return float(rows[column].sum()) if len(rows) else float("nan")

    @property
    def data_share(self) -> float:
        """data_loading / (data_loading + train_step), from the ranges' CPU wall times."""
        data, step = self.range_ms(DATA_RANGE), self.range_ms(STEP_RANGE)
        return data / (data + step) if data + step > 0 else float("nan")

    def steps_frame(self) -> pd.DataFrame:
        """One row per step: step (1-based), phase (wait | warmup | active), data_ms, train_ms."""
        phases = ["wait"] * self.wait + ["warmup"] * self.warmup + ["active"] * self.active
        rows = [
            {"step": number, "phase": phase, "data_ms": 1000.0 * data, "train_ms": 1000.0 * train}
            for number, (phase, data, train) in enumerate(
                zip(phases, self.data_wait.seconds, self.step_time.seconds), start=1
            )
        ]
        return pd.DataFrame(rows, columns=["step", "phase", "data_ms", "train_ms"])


def operator_table(key_averages, device: torch.device) -> pd.DataFrame:
    """The profiler's per-name averages as a DataFrame (µs -> ms), sorted by self CPU time."""
    rows = []
    for event in key_averages:
        row = {
            "name": event.key,
            "calls": event.count,
            "self_cpu_ms": event.self_cpu_time_total / 1000.0,
            "cpu_total_ms": event.cpu_time_total / 1000.0,
        }
        if device.type == "cuda":
            row["self_cuda_ms"] = event.self_device_time_total / 1000.0
            row["cuda_total_ms"] = event.device_time_total / 1000.0
        rows.append(row)
    columns = ["name", "calls", "self_cpu_ms", "cpu_total_ms"]
    table = pd.DataFrame(rows, columns=columns + (["self_cuda_ms", "cuda_total_ms"] if device.type == "cuda" else []))
    if table.empty:
        return table
    table["self_cpu_percent"] = 100.0 * table["self_cpu_ms"] / table["self_cpu_ms"].sum()
    if "self_cuda_ms" in table and table["self_cuda_ms"].sum() > 0:
        table["self_cuda_percent"] = 100.0 * table["self_cuda_ms"] / table["self_cuda_ms"].sum()
    return table.sort_values("self_cpu_ms", ascending=False, ignore_index=True)


def trace_events(path: str | Path) -> int:
    """Parse a Chrome trace; return its number of events (raises on invalid JSON)."""
    data = json.loads(Path(path).read_text())
    events = data["traceEvents"] if isinstance(data, dict) else data
    return len(events)


@contextlib.contextmanager
def _both(*contexts) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for context in contexts:
            stack.enter_context(context)
        yield


def profile_training(
    config: RunConfig,
    trace_path: str | Path,
    data: DataBundle | None = None,
    model: nn.Module | None = None,
    wait: int = 1,
    warmup: int = 1,
    active: int = 3,
    progress: bool = False,
) -> Profiled:
    """Profile wait + warmup + active training steps of the lab's setting; write the Chrome trace."""
    check_schedule(wait, warmup, active)
    device, data, model = prepare(config, model, data, progress)
    model = model.to(device)
    loader = train_loader(config, data, device)
    steps = wait + warmup + active
    if steps > len(loader):
        raise ConfigError(
            f"the schedule needs {steps} steps but one epoch has only {len(loader)} batches "
            f"({len(data.train)} images, batch {config.batch_size}); use more images or fewer steps."
        )
    optimizer = optimizer_for(config, model.parameters())
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    trace_path = Path(trace_path)
    data_wait, step_time = Intervals(), Intervals()
    with (
        profile(
            activities=activities,
            schedule=schedule(wait=wait, warmup=warmup, active=active, repeat=1),
            on_trace_ready=lambda finished: finished.export_chrome_trace(str(trace_path)),
            record_shapes=False,
        ) as profiler,
        precision_mode(config.precision, device) as autocast_dtype,
    ):
        hooks = Hooks(
            # the wait the profiler cannot see by itself, as a named range, and timed
            around_data=lambda: _both(record_function(DATA_RANGE), data_wait.timed()),
            around_step=lambda: _both(record_function(STEP_RANGE), step_time.timed()),
            after_step=profiler.step,
        )
        step = LabStep(model, optimizer, device, autocast_dtype)
        (record,) = train_epochs(
            step, loader, device, 1, hooks=hooks, progress=progress, label="profiled steps", max_steps=steps
        )
    return Profiled(
        trace_path,
        operator_table(profiler.key_averages(), device),
        device,
        [a.name for a in activities],
        wait,
        warmup,
        active,
        record,
        data_wait,
        step_time,
    )


def profile_results(profiled: Profiled) -> dict[str, Any]:
    """What the measurement records: the trace's size, the two ranges over the active steps, the data share."""
    return {
        "trace_file": profiled.trace_path.name,
        "trace_events": trace_events(profiled.trace_path),
        "trace_mb": profiled.trace_path.stat().st_size / 1e6,
        "activities": profiled.activities,
        "profiled_steps": profiled.active,
        "data_loading_ms": profiled.range_ms(DATA_RANGE),
        "train_step_ms": profiled.range_ms(STEP_RANGE),
        "data_share": profiled.data_share,
        "torch_version": torch.__version__,
    }


def measure_profile(request: Request, record) -> None:
    """Profile as the request says, into `record`: the trace, the operator table, the steps, the results."""
    from lablib.core.training import config_of, data_and_model, data_and_model_results

    settings = request.settings
    config = config_of(settings)
    data, model = data_and_model(settings, config)
    profiled = profile_training(
        config, record.artifact(TRACE), data, model, settings["wait"], settings["warmup"], settings["active"]
    )
    record.save_table("operators", profiled.operators)
    record.save_table("steps", profiled.steps_frame())
    record.log_epoch(profiled.steps)
    record.log_results(**profile_results(profiled), **data_and_model_results(data, model))


def work_profile(request: Request) -> tuple[Work, ...]:
    """A fraction of an epoch: wait + warmup + active steps of the lab's loop (profiler overhead aside)."""
    from lablib.core.data import source_sizes

    settings: Mapping[str, Any] = request.settings
    train, _ = source_sizes(str(settings.get("data", "cifar10")))
    limit = int(settings.get("limit_train") or 0)
    images = min(limit or train, train) if train else limit
    batch = int(settings.get("batch_size", 128))
    steps = int(settings["wait"]) + int(settings["warmup"]) + int(settings["active"])
    batches = max(-(-images // batch), 1) if images else steps
    return (
        Work(
            model="resnet18",
            device=str(settings.get("device", "cpu")),
            epochs=min(steps / batches, 1.0),
            images=images,
            engine="faithful",
            precision=str(settings.get("precision", "fp32")),
            workers=int(settings.get("workers", 0)),
        ),
    )
