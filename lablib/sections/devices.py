"""C4 (GPU vs CPU): the average epoch time of the same training on each device, and the speed-up.

Both points train with C3.2's best worker count (lablib.sections.workers.choose_workers), so the GPU
point is the same measurement as C3's best point and is not trained again. Without a usable GPU the
GPU point is not requested: the section shows the CPU figure and says what is missing and why.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from lablib.core.config import config_from_params
from lablib.core.errors import DeviceError
from lablib.core.provenance import driver_warning
from lablib.core.training import resolve_device_type, training_request
from lablib.sections.headlines import Headline, answer, having, latest, missing, shown
from lablib.sections.parameters import parse_names
from lablib.sections.registry import Needs, Presenter, Recorded
from lablib.sections.training import finite
from lablib.sections.workers import choose_workers

DEVICES = ("cuda", "cpu")


def parse_devices(text: str) -> list[str]:
    """'cuda,cpu' -> ['cuda', 'cpu'], each checked."""
    return parse_names(text, "devices", DEVICES, "(e.g. cuda,cpu)")


def unavailable(device: str) -> str | None:
    """Why `device` cannot be measured here (the driver line when a GPU is present but unusable), else None."""
    try:
        resolve_device_type(device)
    except DeviceError as error:
        if device == "cuda" and driver_warning() is None:  # no GPU at all: C4's GPU half needs a GPU machine
            import torch

            return (
                f"this machine has no CUDA GPU that torch sees (torch {torch.__version__}, built for CUDA "
                f"{torch.version.cuda}); the GPU half of C4 needs a machine with a GPU (`python -m lablib info` says "
                "why none is visible)"
            )
        return str(error)
    return None


def c4_measurements(params: Mapping[str, Any], recorded: Recorded) -> Needs:
    """One training per device of `devices` that is usable here, with C3.2's best workers."""
    workers, note = choose_workers(params, recorded)
    config = config_from_params({**params, "workers": workers})
    requests, notes = [], [note]
    for device in parse_devices(params.get("devices", "cuda,cpu")):
        why = unavailable(device)
        if why is not None:
            notes.append(f"**Not measured on `{device}`:** {why}")
            continue
        requests.append(training_request(dataclasses.replace(config, device=device)))
    return Needs(tuple(requests), tuple(notes))


@dataclass(frozen=True)
class SpeedUp:
    cpu_epoch_s: float | None
    gpu_epoch_s: float | None
    gpu_unavailable: bool  # a cuda point exists but says no GPU was usable

    @property
    def speedup(self) -> float | None:
        if self.cpu_epoch_s is None or self.gpu_epoch_s is None or self.gpu_epoch_s <= 0:
            return None
        return self.cpu_epoch_s / self.gpu_epoch_s

    def results(self) -> dict[str, Any]:
        return {"cpu_epoch_s": self.cpu_epoch_s, "gpu_epoch_s": self.gpu_epoch_s, "speedup": self.speedup}

    def sentence(self) -> str:
        cpu = f"{self.cpu_epoch_s:.2f} s per epoch on the CPU" if self.cpu_epoch_s is not None else None
        gpu = f"{self.gpu_epoch_s:.2f} s per epoch on the GPU" if self.gpu_epoch_s is not None else None
        if self.speedup is not None and self.speedup >= 1:
            return f"{gpu} against {cpu}: the GPU is {self.speedup:.1f}× faster."
        if self.speedup is not None:
            return (
                f"{gpu} against {cpu}: the CPU is {1 / self.speedup:.1f}× faster here: at these settings the "
                "GPU's fixed costs per step (kernel launches, copies to the device) outweigh its faster computation."
            )
        missing = []
        if gpu is None:
            missing.append(
                "no GPU on this machine could be measured"
                if self.gpu_unavailable
                else "the GPU point is not measured (`devices` leaves out cuda)"
            )
        if cpu is None:
            missing.append("the CPU point is not measured (`devices` leaves out cpu)")
        measured = " and ".join(x for x in (gpu, cpu) if x)
        lead = measured[:1].upper() + measured[1:] + "; " if measured else ""
        return f"{lead}no speed-up can be computed: " + "; ".join(missing) + "."

    def text(self) -> str:
        """C4's answer, with what to run when this machine cannot complete it."""
        incomplete = self.gpu_epoch_s is None and self.gpu_unavailable
        return f"**C4:** {self.sentence()}" + (
            " The CPU figure above is what this machine can measure; run this notebook with "
            "`-p devices cuda,cpu` on a machine with a GPU to complete the comparison."
            if incomplete and self.cpu_epoch_s is not None
            else ""
        )


def speedup_of(points: pd.DataFrame, devices: list[str]) -> SpeedUp:
    """GPU vs CPU average epoch time from C4's measured points (one row per device)."""
    values: dict[str, float | None] = {"cpu": None, "cuda": None}
    for row in points.to_dict("records") if not points.empty else []:
        if finite(row.get("epoch_s_mean")):
            values[str(row["resolved_device"])] = float(row["epoch_s_mean"])
    return SpeedUp(
        values["cpu"], values["cuda"], "cuda" in devices and values["cuda"] is None and bool(unavailable("cuda"))
    )


def c4_headlines(runs: pd.DataFrame) -> list[Headline]:
    with_speedup = having(runs, "speedup")
    if not with_speedup.empty:
        row = latest(with_speedup)
        text = (
            f"GPU {shown(row['speedup'], 1)}× faster than the CPU: {shown(row['gpu_epoch_s'])} s vs "
            f"{shown(row['cpu_epoch_s'])} s per epoch"
        )
        return [answer("c4_gpu_vs_cpu", "C4", text, float(row["speedup"]), "×", row)]
    for column, device in (("gpu_epoch_s", "cuda"), ("cpu_epoch_s", "cpu")):
        measured = having(runs, column)
        if not measured.empty:
            row = latest(measured)
            text = f"{device}: {shown(row[column])} s per epoch; no speed-up (the other device is not measured)"
            return [answer("c4_gpu_vs_cpu", "C4", text, float(row[column]), "s per epoch", row)]
    return [missing("c4_gpu_vs_cpu", "C4", "no device measured yet")]


PRESENTS = (Presenter("c4_gpu_vs_cpu", ("C4",), c4_measurements, c4_headlines, qualifier="resolved_device"),)
