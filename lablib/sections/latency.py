"""C10 (latency comparison): single-image latency of the base training's model, per device and runtime.

C10 presents one "latency" measurement per device (lablib.core.latency: PyTorch eager, TorchScript,
torch.export and AOTInductor, timed after warm-up runs and summarised by lablib.core.timing.summarize),
all of the model C7-C9 present (the base training, trained once), and the model's MAC count (the
"counts" measurement). `device` auto asks for the CPU and the GPU: a machine without a GPU measures
the CPU rows, and the GPU rows say they are not measured here; they come from a GPU machine.
Speed-ups are each runtime's mean against PyTorch eager's on the same device; a noisy timing is the
one noise rule's (lablib.core.timing.Summary.noisy).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch

from lablib.core.config import config_from_params
from lablib.core.counts import counts_request
from lablib.core.errors import ConfigError
from lablib.core.latency import MEASURED, RUNTIMES, SINGLE_IMAGE, latency_request
from lablib.core.progress import counted
from lablib.core.store import Measured
from lablib.core.timing import NOISY_RELATIVE
from lablib.sections.headlines import Headline, answer, latest, missing, number, shown
from lablib.sections.points import row as point_row
from lablib.sections.registry import Needs, Presenter, Recorded
from lablib.sections.torchscript import base_training

LATENCY_DEVICES = ("cpu", "cuda")
NO_GPU = "not measured: no CUDA GPU visible on this machine"
STAT_COLUMNS = ("mean_ms", "median_ms", "std_ms", "p5_ms", "p95_ms", "speedup_vs_eager", "max_abs_diff")
SHOWN_COLUMNS = ["device", "runtime", "status", *STAT_COLUMNS]
KEY_DEVICE = "cuda"  # the headline's key figure: the GPU's TorchScript mean when measured, else the CPU's
WARMUP_RUNS, TIMED_RUNS = 50, 200  # the lab asks for at least 50 warm-up and 200 timed runs


def shape_text(shape: Sequence[int]) -> str:
    """(1, 3, 32, 32) -> "1×3×32×32", as the narrative writes a tensor's shape."""
    return "×".join(str(int(size)) for size in shape)


def wanted_devices(device: str) -> list[str]:
    """The devices C10 reports: "auto" -> cpu and cuda; "cpu" or "cuda" -> that one."""
    if device == "auto":
        return list(LATENCY_DEVICES)
    if device not in LATENCY_DEVICES:
        raise ConfigError(f"device={device!r} is not allowed; expected auto, cpu or cuda.")
    return [device]


def measurable(devices: Sequence[str]) -> list[str]:
    """The devices of `devices` this machine has (the CPU always; the GPU when torch sees one)."""
    return [device for device in devices if device == "cpu" or torch.cuda.is_available()]


# --- what C10 presents ---------------------------------------------------------------------------


def c10_measurements(params: Mapping[str, Any], recorded: Recorded) -> Needs:
    """The base training, one latency measurement per device this machine has, and the model's counts."""
    training = base_training(params)
    devices = wanted_devices(str(params.get("device", "auto")))
    here = measurable(devices)
    requests = [
        latency_request(
            training,
            device,
            params.get("warmup_runs", WARMUP_RUNS),
            params.get("timed_runs", TIMED_RUNS),
            bool(params.get("aoti", True)),
            params.get("cpu_threads", 0),
        )
        for device in here
    ]
    config = config_from_params(params)
    notes = ["The model is the lab's base training (the one C1, C2 and C7–C9 present), trained once."]
    if len(here) < len(devices):
        notes.append(
            "No CUDA GPU is visible on this machine: the GPU rows are not measured here (run this section on a "
            "GPU machine to fill them)."
        )
    return Needs((training, *requests, counts_request(batch_norm=config.batch_norm)), tuple(notes))


# --- the table -------------------------------------------------------------------------------------


def latency_table(measured: Sequence[Measured], devices: Sequence[str]) -> pd.DataFrame:
    """Rows device x runtime from the latency measurements, with each runtime's speed-up against PyTorch
    eager on the same device; a device of `devices` without a measurement gets rows that say so."""
    frames = []
    for item in measured:
        table = item.table("latency")
        table["device_name"] = point_row(item)["device_name"]
        frames.append(table)
    have = {frame["device"].iloc[0] for frame in frames if not frame.empty}
    for device in devices:
        if device not in have:
            frames.append(pd.DataFrame([{"device": device, "runtime": name, "status": NO_GPU} for name in RUNTIMES]))
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["device", "runtime", "status"])
    for column in (*STAT_COLUMNS, "runs", "noisy", "p10_ms", "p90_ms", "min_ms", "max_ms"):
        if column not in table and column != "speedup_vs_eager":
            table[column] = math.nan
    eager = table[(table.runtime == "PyTorch eager") & (table.status == MEASURED)].set_index("device")["mean_ms"]
    table["speedup_vs_eager"] = table["device"].map(eager) / table["mean_ms"]
    order = {device: rank for rank, device in enumerate(LATENCY_DEVICES)}
    table["_order"] = table["device"].map(order)
    return table.sort_values("_order", kind="stable").drop(columns="_order").reset_index(drop=True)


def measured_rows(table: pd.DataFrame) -> pd.DataFrame:
    return table[table.status == MEASURED]


def latency_results(table: pd.DataFrame) -> dict[str, Any]:
    """The latency table as flat record entries ("cpu TorchScript mean_ms": ...), what headlines and the
    context table read."""
    results: dict[str, Any] = {}
    for row in table.to_dict("records"):
        prefix = f"{row['device']} {row['runtime']}"
        results[f"{prefix} status"] = row["status"]
        if row["status"] == MEASURED:
            for column in STAT_COLUMNS:
                results[f"{prefix} {column}"] = row[column]
            results[f"{prefix} noisy"] = bool(row["noisy"])
    return results


# --- the sentences -------------------------------------------------------------------------------


def _spread(row: Mapping[str, Any]) -> float:
    median = float(row["median_ms"])
    return (float(row["p95_ms"]) - float(row["p5_ms"])) / median if median > 0 else math.inf


def describe_latency(table: pd.DataFrame) -> list[str]:
    """One Markdown bullet per device: TorchScript vs eager, the fastest runtime, what was not measured;
    then, when a timing is noisy (lablib.core.timing's rule), which one and what to compare instead."""
    lines = []
    for device, rows in table.groupby("device", sort=False):
        status = rows.set_index("runtime")["status"]
        done = rows[rows.status == MEASURED].set_index("runtime")
        if done.empty:
            lines.append(f"- **{device}**: {status.iloc[0]}.")
            continue
        parts = []
        if {"TorchScript", "PyTorch eager"} <= set(done.index):
            parts.append(
                f"TorchScript {done.loc['TorchScript', 'mean_ms']:.3f} ms (± {done.loc['TorchScript', 'std_ms']:.3f}) "
                f"against eager {done.loc['PyTorch eager', 'mean_ms']:.3f} ms "
                f"(± {done.loc['PyTorch eager', 'std_ms']:.3f}), a speed-up of "
                f"{done.loc['TorchScript', 'speedup_vs_eager']:.2f}×"
            )
        best = done["mean_ms"].idxmin()
        parts.append(
            f"fastest is {best} ({done.loc[best, 'mean_ms']:.3f} ms mean, median {done.loc[best, 'median_ms']:.3f} ms, "
            f"{done.loc[best, 'speedup_vs_eager']:.2f}× eager)"
        )
        parts += [f"{runtime} {status[runtime]}" for runtime in rows.runtime if runtime not in done.index]
        lines.append(f"- **{device}**: " + "; ".join(parts) + ".")
    noisy = measured_rows(table)
    noisy = noisy[noisy["noisy"].fillna(False).astype(bool)]
    if len(noisy):
        spreads = noisy.apply(_spread, axis=1)
        widest = noisy.loc[spreads.idxmax()]
        lines.append(
            f"- {len(noisy)} of the timings are noisy: on {widest['device']} the 5th–95th percentile range of "
            f"{widest['runtime']} is {spreads.max():.1f}× its median (above {NOISY_RELATIVE:g}), so the machine was "
            "not quiet while timing (other processes, frequency changes); compare medians, and rerun on an idle "
            "machine for firm numbers."
        )
    return lines


def c10_paragraphs(table: pd.DataFrame, gmacs: float) -> list[str]:
    """C10's conclusion: how it was timed, one bullet per device (describe_latency), what was not measured.

    `gmacs` is the model's GMACs per image (the "counts" measurement): small enough that per-operator
    overhead is a large share of a call.
    """
    measured = measured_rows(table)
    if measured.empty:
        return ["**C10:** no runtime was measured.", "\n".join(describe_latency(table))]
    first = measured.iloc[0]
    cpu = measured[measured.device == "cpu"]
    cpu_text = ""
    if len(cpu):
        cpu_text = (
            f", CPU rows with {counted(int(cpu['threads'].iloc[0]), 'intra-op thread')} on {cpu['device_name'].iloc[0]}"
        )
    head = (
        f"**C10:** mean single-image latency over {int(first['timed_runs'])} timed runs after "
        f"{int(first['warmup_runs'])} warm-up runs{cpu_text}. One {shape_text(SINGLE_IMAGE)} image costs ResNet-18 "
        f"{gmacs:.2f} GMACs (counted by FlopCounterMode), little enough that per-operator overhead (Python "
        "dispatch, kernel launches on a GPU) is a large share of each call."
    )
    cuda = table[table.device == "cuda"]
    if len(cuda) and cuda.status.str.startswith("not measured").all():
        head += (
            " **No CUDA GPU is visible on this machine, so the GPU rows are not measured**; run this notebook on a "
            "GPU machine to fill them."
        )
    return [head, "\n".join(describe_latency(table))]


def c10_headlines(runs: pd.DataFrame) -> list[Headline]:
    """The TorchScript latency (± the std of its timed runs) against eager's, per device measured."""
    row = latest(runs)
    parts, value, spread = [], None, None
    for device in LATENCY_DEVICES:
        script = number(row.get(f"{device} TorchScript mean_ms"))
        eager = number(row.get(f"{device} PyTorch eager mean_ms"))
        if script is None or eager is None:
            continue
        deviation = number(row.get(f"{device} TorchScript std_ms"))
        plus = f" ± {shown(deviation, 3)}" if deviation is not None else ""
        parts.append(
            f"{device} TorchScript {shown(script, 3)}{plus} ms vs eager {shown(eager, 3)} ms ({shown(eager / script)}×)"
        )
        if value is None or device == KEY_DEVICE:
            value, spread = script, deviation
    if not parts:
        return [missing("c10_latency", "C10", "no latency measured")]
    return [answer("c10_latency", "C10", "; ".join(parts), value, "ms (TorchScript, single image)", row, spread)]


PRESENTS = (Presenter("c10_latency", ("C10",), c10_measurements, c10_headlines),)
