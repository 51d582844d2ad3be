"""P-2025-XC: torch.profiler over training steps, with data loading made visible.

The profiler records the operators this process runs. Data loading is its
known blind spot: with DataLoader workers the images are decoded and
augmented in other processes, and the main process only waits inside
next(iterator), which the profiler shows as a gap between operators (with
0 workers, the PIL/torchvision work is Python that mostly shows no operator
either). `profile_training` wraps that next() in
torch.profiler.record_function("data_loading") and each step's computation in
record_function("train_step"), so both appear as named ranges in the trace
and the table, beside the operators.

Schedule: `wait` steps unrecorded, `warmup` steps recorded and discarded (the
profiler's own start-up), `active` steps kept; the Chrome trace of the active
steps is written to `trace_path` (open it in chrome://tracing or Perfetto).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function, schedule

from lablib.core.config import RunConfig
from lablib.core.data import DataBundle, load_data, make_loader
from lablib.core.errors import ConfigError
from lablib.core.optim import make_optimizer
from lablib.core.train import build_model, resolve_device, seed_everything

DATA_RANGE = "data_loading"  # record_function name around the loader's next()
STEP_RANGE = "train_step"  # record_function name around copy + zero_grad + forward + loss + backward + step
RANGES = (DATA_RANGE, STEP_RANGE)


@dataclass
class ProfileResult:
    trace_path: Path  # Chrome trace (JSON) of the active steps
    operators: pd.DataFrame  # one row per operator name (our two ranges included), times in ms
    device: torch.device
    activities: list[str]  # "CPU", and "CUDA" on a GPU
    wait: int
    warmup: int
    active: int
    workers: int

    def range_ms(self, name: str, column: str = "cpu_total_ms") -> float:
        """Total time of one of our record_function ranges over the active steps, in ms."""
        rows = self.operators[self.operators["name"] == name]
        return float(rows[column].sum()) if len(rows) else float("nan")

    @property
    def data_share(self) -> float:
        """data_loading / (data_loading + train_step), from the ranges' CPU wall times."""
        data, step = self.range_ms(DATA_RANGE), self.range_ms(STEP_RANGE)
        return data / (data + step) if data + step > 0 else float("nan")


def check_schedule(wait: int, warmup: int, active: int) -> None:
    for name, value, low in (("wait", wait, 0), ("warmup", warmup, 0), ("active", active, 1)):
        if value < low:
            raise ConfigError(f"{name}={value} is not allowed; expected an integer >= {low}.")


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
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["self_cpu_percent"] = 100.0 * table["self_cpu_ms"] / table["self_cpu_ms"].sum()
    if "self_cuda_ms" in table and table["self_cuda_ms"].sum() > 0:
        table["self_cuda_percent"] = 100.0 * table["self_cuda_ms"] / table["self_cuda_ms"].sum()
    return table.sort_values("self_cpu_ms", ascending=False, ignore_index=True)


def top_operators(
    table: pd.DataFrame, by: str = "self_cpu_ms", count: int = 15, include_ranges: bool = False
) -> pd.DataFrame:
    """The `count` operators with the most `by` time; our own ranges left out unless asked."""
    if by not in table:
        raise ConfigError(f"by={by!r} is not a column of the operator table; expected one of {list(table.columns)}.")
    ours = table["name"].isin(RANGES) | table["name"].str.startswith("ProfilerStep")  # ranges, not operators
    rows = table if include_ranges else table[~ours]
    return rows.sort_values(by, ascending=False).head(count).reset_index(drop=True)


def share_of(table: pd.DataFrame, pattern: str, column: str = "self_cpu_ms") -> float:
    """Percentage of `column` (summed over operators, our ranges excluded) in operators named like `pattern`."""
    rows = top_operators(table, column, count=len(table))
    total = rows[column].sum()
    return (
        100.0 * rows.loc[rows["name"].str.contains(pattern, regex=False), column].sum() / total
        if total > 0
        else float("nan")
    )


def check_trace(path: str | Path) -> int:
    """Parse a Chrome trace; return its number of events (raises on invalid JSON)."""
    data = json.loads(Path(path).read_text())
    events = data["traceEvents"] if isinstance(data, dict) else data
    return len(events)


def profile_training(
    config: RunConfig,
    trace_path: str | Path,
    data: DataBundle | None = None,
    model: nn.Module | None = None,
    wait: int = 1,
    warmup: int = 1,
    active: int = 3,
    progress: bool = True,
) -> ProfileResult:
    """Profile wait + warmup + active training steps of the lab's setup; write the Chrome trace."""
    from tqdm import tqdm

    check_schedule(wait, warmup, active)
    device = resolve_device(config.device)
    seed_everything(config.seed)
    if data is None:
        data = load_data(
            config.data, config.data_dir, config.download, config.limit_train, config.limit_test, config.seed
        )
    model = (model or build_model(config, data.channels, len(data.classes))).to(device).train()
    loader = make_loader(
        data.train,
        config.batch_size,
        config.workers,
        device,
        shuffle=True,
        seed=config.seed,
        pin_memory=config.pin_memory,
    )
    steps = wait + warmup + active
    if steps > len(loader):
        raise ConfigError(
            f"the schedule needs {steps} steps but one epoch has only {len(loader)} batches "
            f"({len(data.train)} images, batch {config.batch_size}); use more images or fewer steps."
        )
    optimizer = make_optimizer(config.optimizer, model.parameters(), config.lr, config.momentum, config.weight_decay)
    criterion = nn.CrossEntropyLoss()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    trace_path = Path(trace_path)
    iterator = iter(loader)
    with (
        profile(
            activities=activities,
            schedule=schedule(wait=wait, warmup=warmup, active=active, repeat=1),
            on_trace_ready=lambda finished: finished.export_chrome_trace(str(trace_path)),
            record_shapes=False,
        ) as profiler,
        tqdm(total=steps, desc="profiled steps", unit="batch", disable=not progress) as bar,
    ):
        for _ in range(steps):
            with record_function(DATA_RANGE):
                inputs, targets = next(iterator)  # the wait the profiler cannot see by itself
            with record_function(STEP_RANGE):
                inputs = inputs.to(device, non_blocking=True)
                targets = targets.to(device, non_blocking=True)
                optimizer.zero_grad(set_to_none=True)
                loss = criterion(model(inputs), targets)
                loss.backward()
                optimizer.step()
            profiler.step()
            bar.update(1)
    table = operator_table(profiler.key_averages(), device)
    return ProfileResult(trace_path, table, device, [a.name for a in activities], wait, warmup, active, config.workers)
