"""Measurements as table rows: what the sections' tables, sentences and headlines are computed from.

    points = frame(section.measured)      # one row per measurement: its settings, its results, its run

A row holds the request's settings (optimizer, workers, device, epochs, ...), the measurement's
results (epoch_s_mean, data_s_total, test_accuracy, ...), and `run_id`, `ended`, `device_name`,
`cpu_count`, `torch_threads` from its record, so a section compares points without knowing where
or when they were measured. `epochs_frame` gives one row per epoch with the point's settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from lablib.core.store import Measured

SETTING_COLUMNS = ("optimizer", "workers", "device", "batch_norm", "lr", "scheduler", "seed", "epochs")


def row(measured: Measured) -> dict[str, Any]:
    provenance = measured.meta.get("provenance", {})
    return {
        **dict(measured.request.settings),
        **measured.results,
        "run_id": measured.run_id,
        "key": measured.key,
        "ended": measured.meta.get("ended"),
        "reused": measured.reused,
        "asked_by": measured.first_asked_by,
        "resolved_device": measured.request.settings.get("device"),
        "device_name": provenance.get("device_name") or provenance.get("gpu") or provenance.get("cpu"),
        "cpu_count": provenance.get("cpu_count"),
        "torch_threads": provenance.get("torch_threads"),
        "alone": measured.meta.get("alone", True),
    }


def frame(measured: Sequence[Measured]) -> pd.DataFrame:
    """One row per measurement, in the order given."""
    return pd.DataFrame([row(item) for item in measured])


def epochs_frame(measured: Sequence[Measured]) -> pd.DataFrame:
    """One row per epoch of each measurement, with its run_id and SETTING_COLUMNS."""
    frames = []
    for item in measured:
        epochs = pd.DataFrame(item.epochs)
        if epochs.empty:
            continue
        epochs["run_id"] = item.run_id
        for column in SETTING_COLUMNS:
            epochs[column] = item.request.settings.get(column)
        frames.append(epochs)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
