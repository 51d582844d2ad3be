"""Shared test factories: a tiny model, a recorded measurement without training, a small plan.

Tiny()                                    a 12 -> 3 linear model: scripts, compiles and profiles in a unit test
record_measurement(request, results=..., epochs=...)
                                          a complete measurement of `request` in the test's store, written the
                                          way lablib.core.store writes one, so lookup/obtain find it
write_plan(folder, sections, profile=...) a plan file for the report's tests
present_point(section, measured, results=..., notebook=...)
                                          a section's complete point as a build leaves it: the executed notebook,
                                          its presenting record (run.json `uses` naming the measurements, results)
                                          and point.json; returns its SectionState, as the build's states hold it
record_c3(params, best)                   C3's sweep recorded as if data loading fell until `best` workers
E2_RESULTS                                what E2's notebook records for its three answers
processes_marked("NAME=value")            the processes whose environment holds it (what a stopped job left)
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


# What E2's notebook records (section.finish): its three answers' key figures, for the headline and glance tests
E2_RESULTS = {
    "blocks": 17,
    "compared": "mobilenetv2_1.0",
    "reference_accuracy": 70.0,
    "within_network": "mobilenetv2_0.75",
    "within_mmacs": 60.0,
    "within_accuracy": 69.5,
    "reference_mmacs": 556.0,
    "speedup_batch1": 0.8,
    "mac_ratio": 6.2,
    "timing_device": "cpu",
}


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


def present_point(
    section,
    measured: Sequence[Measured] = (),
    results: Mapping[str, Any] | None = None,
    *,
    notebook=None,
    parameters: Mapping[str, Any] | None = None,
    key_parts: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
    tag: str = "quick",
    device: str = "cpu",
):
    """`section` (a lablib.report.plan.Section) presented once: a complete point of its notebook's store.

    notebook: the executed notebook (nbformat; default: a heading and one output line); parameters: the
    notebook's; key_parts: the point key's parts (default: made up, with the measurements' keys); settings:
    the presenting record's (default: the lab's RunConfig with `parameters` applied)."""
    import nbformat

    from lablib.core.config import RunConfig, config_from_params
    from lablib.core.runs import runs_root
    from lablib.report.job import Job, record_point
    from lablib.report.points import index_points, latest_complete, point_key
    from lablib.report.resolve import SectionState
    from lablib.sections.registry import Needs

    parameters = dict(parameters or {"tag": tag})
    if settings is None:
        known = {k: v for k, v in parameters.items() if k in RunConfig.__dataclass_fields__}
        settings = config_from_params(known).to_dict()
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    folder = runs_root() / section.store / f"{stamp}-{secrets.token_hex(3)}"
    record = Run(section.name, dict(settings), parameters, tag, {"fingerprint": "test"}, device, folder=folder)
    record.uses(measured)
    if results:
        record.log_results(**dict(results))
    record.finish()
    if notebook is None:
        notebook = nbformat.v4.new_notebook()
        notebook.cells.append(nbformat.v4.new_markdown_cell(f"# {section.id} · {section.title}\n\nWhat it shows."))
        shown = nbformat.v4.new_code_cell("section.finish()")
        shown.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"{section.name} presented\n")]
        notebook.cells.append(shown)
    nbformat.write(notebook, folder / "notebook.ipynb")
    parts = dict(
        key_parts
        or {
            "notebook": f"the cells of {section.notebook.name}",
            "parameters": {k: v for k, v in parameters.items() if k != "data"},
            "presenting": "presenting",
            "core": "core",
            "measurements": [m.key for m in measured],
            "environment": "environment",
            "device": f"{device}:test",
        }
    )
    key = point_key(parts)
    job = Job(section.name, section.notebook, parameters, key, folder, 60.0, record={"key_parts": parts})
    record_point(job, "complete", started=record.meta["started"], ended=record.meta["ended"], duration_s=1.0)
    state = SectionState(section, parameters=parameters, key=key, key_parts=parts, status="complete")
    state.needs = Needs(tuple(m.request for m in measured))
    state.record = latest_complete(index_points(), key)
    return state


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


def processes_marked(marker: str) -> list[str]:
    """Ids of the processes whose environment holds `marker` (NAME=value): what a stopped job left running."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if marker.encode() in (entry / "environ").read_bytes().split(b"\0"):
                found.append(entry.name)
        except OSError:
            continue
    return found


def record_c3(params: dict, best: int) -> None:
    """C3's sweep recorded at the lab's rule: every count's data loading falls until `best`, then stops."""
    from lablib.core.config import make_config
    from lablib.sections.workers import c3_config, c3_walk

    config = c3_config(make_config(**{**params, "workers": 2}))
    while not (walk := c3_walk(config, lookup)).complete:
        request = walk.requests[-1]
        workers = int(request.settings["workers"])
        data_s = 10.0 - workers if workers <= best else 10.0
        record_measurement(request, results={"data_s_total": data_s, "epoch_s_mean": 5.0 + abs(workers - best)})
