"""Shared test factories: a tiny model, a recorded measurement without training, a small plan.

Tiny()                                    a 12 -> 3 linear model: scripts, compiles and profiles in a unit test
record_measurement(request, results=..., epochs=...)
                                          a complete measurement of `request` in the test's store, written the
                                          way lablib.core.store writes one, so lookup/obtain find it
write_plan(folder, sections, profile=...) a plan file for the report's tests
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from lablib.core.runs import Run
from lablib.core.store import Measured, Request, key_parts, lookup, store_root


class Tiny(torch.nn.Module):
    """A 12 -> 3 linear model: small enough to script, compile and profile in a unit test."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(x, 1))


def epoch_rows(count: int = 3, data_s: float = 0.5, train_s: float = 2.0, images: int = 256, batches: int = 2):
    """EpochRecord-like rows: loss falling, accuracy rising, the times given (epoch 1 a little slower)."""
    rows = []
    for epoch in range(1, count + 1):
        slower = 1.2 if epoch == 1 else 1.0
        total = (data_s + train_s) * slower + 0.01
        rows.append(
            {
                "epoch": epoch,
                "loss": 2.3 / epoch,
                "accuracy": 10.0 + 15.0 * epoch,
                "data_s": data_s * slower,
                "train_s": train_s * slower,
                "total_s": total,
                "images": images,
                "batches": batches,
                "images_per_s": images / total,
                "diverged": False,
                "start_loss": 2.3,
                "diverged_reason": "",
            }
        )
    return rows


def record_measurement(
    request: Request,
    results: Mapping[str, Any] | None = None,
    epochs: Sequence[Mapping[str, Any]] | None = None,
    alone: bool = True,
    asked_by: str = "a test",
    status: str = "complete",
    root: Path | None = None,
) -> Measured | None:
    """A measurement of `request` recorded with the given results and epochs (nothing is measured)."""
    key = request.key
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    folder = store_root(root) / request.kind / f"{key}-{stamp}-{secrets.token_hex(3)}"
    record = Run(
        request.kind,
        settings=dict(request.settings),
        folder=folder,
        extra={
            "key": key,
            "key_parts": key_parts(request),
            "request": request.to_dict(),
            "alone": alone,
            "asked_by": asked_by,
        },
    )
    for row in epochs or []:
        record.log_epoch(dict(row))
    if results:
        record.log_results(**dict(results))
    record.finish(status)
    return lookup(request, root)


def write_plan(
    folder: Path,
    sections: Sequence[Mapping[str, Any]],
    profile: str = "quick",
    defaults: Mapping[str, Any] | None = None,
    notebooks: Path | None = None,
) -> Path:
    """report/plan.yaml's shape with the given sections in one part; returns its path."""
    plan = {
        "title": "A test report",
        "profiles": {
            profile: {
                "description": "a test profile",
                "lab_settings": False,
                "defaults": dict(defaults or {}),
                "timeout": "10m",
            }
        },
        "parts": [{"title": "Sections", "sections": [dict(s) for s in sections]}],
    }
    if notebooks is not None:
        plan["notebooks"] = str(notebooks)
    path = Path(folder) / "plan.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return path


# --- a measurement kind for the store's own tests ----------------------------------------------------


def measure_dummy(request: Request, record) -> None:
    """The "dummy" kind (tests register it in lablib.core.store.KINDS): sleeps, may fail, counts its runs.

    settings: value (results: doubled), sleep (seconds), fail (raise), counter (a file that gets one line per
    measurement, so a test counts how often the store really measured), artifact (a file name to write)."""
    import os
    import time

    settings = request.settings
    if settings.get("counter"):
        with open(settings["counter"], "a") as counter:
            counter.write(f"{os.getpid()}\n")
    time.sleep(float(settings.get("sleep", 0)))
    if settings.get("fail"):
        raise ValueError(f"the dummy measurement of value {settings.get('value')} failed on purpose")
    if settings.get("artifact"):
        record.artifact(settings["artifact"]).write_text("made")
    record.log_results(doubled=2 * settings.get("value", 0), pid=os.getpid())


def dummy_request(value: float = 1.0, timing: bool = False, keep: tuple[str, ...] = (), **settings) -> Request:
    return Request(
        "dummy", {"value": value, "device": "cpu", **settings}, timing=timing, label=f"dummy {value}", keep=keep
    )
