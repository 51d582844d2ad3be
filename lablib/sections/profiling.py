"""P-2025-XC: torch.profiler over training steps, with data loading made visible.

The profiler records the operators this process runs. Data loading is its
known blind spot: with DataLoader workers the images are decoded and
augmented in other processes, and the main process only waits inside
next(iterator), which the profiler shows as a gap between operators (with
0 workers, the PIL/torchvision work is Python that mostly shows no operator
either). `profile_training` runs the lab's training loop (lablib.core.train)
with hooks that wrap that next() in torch.profiler.record_function("data_loading")
and each step in record_function("train_step"), so both appear as named ranges
in the trace and the table, beside the operators. The step range holds the
lab's timed interval: on a GPU it ends after the lab's synchronize, so it
lasts until the step's kernels have finished, not just until they are queued.
The sentences the section writes are built here from the measured figures.

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
from lablib.core.data import DataBundle
from lablib.core.errors import ConfigError
from lablib.core.optim import optimizer_for
from lablib.core.train import EpochRecord, Hooks, LabStep, precision_mode, prepare, train_epochs, train_loader
from lablib.sections.fast import forward_flops_per_image

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
    steps: EpochRecord  # the lab's timing of the profiled steps (profiler overhead included)
    forward_macs: float  # multiply-accumulates of one image's forward pass, counted by torch.utils.flop_counter

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
    check_schedule(wait, warmup, active)
    device, data, model = prepare(config, model, data, progress)
    size = data.train[0][0].shape[-1]  # one image, C x H x W
    forward_macs = forward_flops_per_image(model, size, data.channels) / 2  # the flop counter counts 2 per MAC
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
            around_data=lambda: record_function(DATA_RANGE),  # the wait the profiler cannot see by itself
            around_step=lambda: record_function(STEP_RANGE),
            after_step=profiler.step,
        )
        step = LabStep(model, optimizer, device, autocast_dtype)
        (record,) = train_epochs(
            step, loader, device, 1, hooks=hooks, progress=progress, label="profiled epoch", max_steps=steps
        )
    table = operator_table(profiler.key_averages(), device)
    return ProfileResult(
        trace_path,
        table,
        device,
        [a.name for a in activities],
        wait,
        warmup,
        active,
        config.workers,
        steps=record,
        forward_macs=forward_macs,
    )


# --- the figures and sentences of the section ----------------------------------------------

DATA_BOUND_SHARE = 0.2  # data loading at or above this share of the step: input is the bottleneck
CONVOLUTIONS_DOMINATE = 50.0  # % of self CPU time in convolution operators above which they dominate


def summary(profiled: ProfileResult, top: int = 15) -> dict:
    """The section's figures from a profile (what the run logs and the sentences quote)."""
    by_cpu = top_operators(profiled.operators, "self_cpu_ms", top)
    cuda = profiled.device.type == "cuda"
    by_cuda = top_operators(profiled.operators, "self_cuda_ms", top) if cuda else None
    return {
        "trace_file": profiled.trace_path.name,
        "trace_events": check_trace(profiled.trace_path),
        "trace_mb": profiled.trace_path.stat().st_size / 1e6,
        "activities": profiled.activities,
        "profiled_steps": profiled.active,
        "data_loading_ms": profiled.range_ms(DATA_RANGE),
        "train_step_ms": profiled.range_ms(STEP_RANGE),
        "data_share": profiled.data_share,
        "top_operator": by_cpu.loc[0, "name"],
        "top_operator_self_cpu_ms": by_cpu.loc[0, "self_cpu_ms"],
        "top_operator_share": by_cpu.loc[0, "self_cpu_percent"],
        "top_three": list(by_cpu["name"].head(3)),
        "top_three_share": float(by_cpu["self_cpu_percent"].head(3).sum()),
        "convolution_share": share_of(profiled.operators, "convolution"),
        "batch_norm_share": share_of(profiled.operators, "batch_norm"),
        "top_cuda_operator": by_cuda.loc[0, "name"] if by_cuda is not None else None,
        "forward_gmacs": profiled.forward_macs / 1e9,
    }


def trace_sentence(figures: dict, device_type: str) -> str:
    """Where the trace is and what it holds."""
    text = (
        f"The trace of the {figures['profiled_steps']} active step(s) is `{figures['trace_file']}` in the run folder "
        f"({figures['trace_events']:,} events, {figures['trace_mb']:.1f} MB; activities: "
        f"{', '.join(figures['activities'])})."
    )
    if device_type != "cuda":
        text += (
            " No GPU here, so only CPU activity is recorded; on a GPU the table also has the self CUDA time of each "
            "operator."
        )
    return text


def conclusion(figures: dict, workers: int, batch_size: int, device_type: str) -> str:
    """P-2025-XC's answer: how much of a step is data loading, and which operators cost the most."""
    active = figures["profiled_steps"]
    data_ms, step_ms, share = figures["data_loading_ms"], figures["train_step_ms"], figures["data_share"]
    if workers > 0:
        blind_spot = (
            f"With {workers} worker process(es), the decoding and augmentation happen outside this process, so "
            "without the `record_function` range this wait would be an unlabelled gap in the trace and missing from "
            "the table. "
        )
    else:
        blind_spot = (
            "With 0 workers the images are decoded and augmented in this process, mostly in Python (PIL, "
            "torchvision), which the operator table barely shows: only the range makes its cost visible. "
        )
    if share < DATA_BOUND_SHARE:
        bound = "Data loading is a small part of the step, so the training is compute-bound here: "
    else:
        bound = (
            "Data loading is a large part of the step, so faster input (more workers, cached decoding) would pay "
            "off before faster kernels; still, "
        )
    if figures["convolution_share"] >= CONVOLUTIONS_DOMINATE:
        convolutions = (
            f": the convolutions dominate, as the model's {figures['forward_gmacs']:.2f} GMACs per image (forward), "
            "almost all in convolutions, predict."
        )
    else:
        convolutions = "; the convolutions do not dominate here, so the per-operator overheads matter."
    gpu = (
        " On the GPU the CPU times are mostly launch and wait costs; the self CUDA column is the kernels' own time."
        if device_type == "cuda"
        else ""
    )
    return (
        f"**P-2025-XC:** over {active} profiled steps with {workers} worker(s) and batch {batch_size} on "
        f"`{device_type}`, the loop waited {data_ms / active:.1f} ms per step for data (`{DATA_RANGE}`) and "
        f"computed for {step_ms / active:.1f} ms per step (`{STEP_RANGE}`): data loading is "
        f"{100 * share:.1f} % of the step. {blind_spot}{bound}"
        f"the costliest operator is `{figures['top_operator']}` with {figures['top_operator_share']:.1f} % of the "
        f"self CPU time ({figures['top_operator_self_cpu_ms'] / active:.1f} ms per step); the top three "
        f"({', '.join('`' + name + '`' for name in figures['top_three'])}) together take "
        f"{figures['top_three_share']:.1f} %. Operators with *convolution* in their name (forward and backward) take "
        f"{figures['convolution_share']:.1f} % of the self CPU time and BatchNorm's "
        f"{figures['batch_norm_share']:.1f} %{convolutions}{gpu}"
    )


NO_CUDA_TABLE = "*No CUDA activity: the self CUDA table needs a GPU.*"


def cuda_view(profiled: ProfileResult, top: int = 15):
    """The top operators by self CUDA time (a table) on a GPU; elsewhere the line that says the table needs one."""
    if profiled.device.type == "cuda":
        return top_operators(profiled.operators, "self_cuda_ms", top).round(2)
    from IPython.display import Markdown

    return Markdown(NO_CUDA_TABLE)


def ranges_table(figures: dict) -> pd.DataFrame:
    """Our two record_function ranges: total and per profiled step, in ms."""
    totals = [figures["data_loading_ms"], figures["train_step_ms"]]
    return pd.DataFrame(
        {
            "range": [DATA_RANGE, STEP_RANGE],
            "total_ms": totals,
            "per_step_ms": [total / figures["profiled_steps"] for total in totals],
        }
    )
