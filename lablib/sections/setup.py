"""Every notebook's preamble: parameters checked, measurements obtained, settings shown.

    section = setup(globals(), "c3_workers")
    section.measured        # the measurements the section presents (lablib.core.store.Measured), in order
    section.config          # the notebook's settings (lablib.core.config.RunConfig)
    section.record          # the presenting record: runs/<section>/<run-id>/run.json, its results the answers
    ...
    section.finish(best_workers=4)   # the answers the report's headlines read, then the record is complete

`namespace` is the notebook's globals after its `parameters` cell (and papermill's injected one):
papermill's names and types are checked against the parameters cell (lablib.sections.parameters),
the settings build a RunConfig (unknown values and wrong types are a ConfigError naming the field),
and the section's registered Presenter (lablib.sections.registry) says which measurements it shows.
`realize` obtains them from the measurement store (lablib.core.store): recorded ones are reused,
missing ones are measured here, one after the other, until the section's list is complete (a rule
such as C3's asks for its next point once the last is recorded). In the report's presenting step
(LABLIB_MEASURE=reuse) nothing is measured: a missing measurement is one line saying so.

The settings that differ from the lab's common setup are shown as one small table (from what was
measured, so C6's "no BatchNorm" and C5's worker count show), with the notes of the choices made
(which worker count and why), and a line per measurement that was reused from another section.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import pandas as pd

from lablib.core.config import RunConfig, config_from_params
from lablib.core.progress import counted
from lablib.core.runs import Run, start_run
from lablib.core.store import Measured, Request, lookup, obtain
from lablib.sections.parameters import check_namespace
from lablib.sections.registry import Needs, presenter

# Settings that say where things are, not what is measured: never shown as a difference.
NOT_SHOWN = ("data_dir", "download")
CHOOSE_WORKERS = -1  # the `workers` parameter value that asks the section to choose the count
SCALARS = (bool, int, float, str)


@dataclass(frozen=True)
class DataFacts:
    """What the presented measurements were trained and tested on (for captions and the record)."""

    source: str
    fingerprint: str
    train_images: int | None
    test_images: int | None
    channels: int = 3

    def describe(self) -> dict[str, Any]:
        """Every fact, under its field's name (as DataBundle.describe names them), for the record."""
        return asdict(self)


@dataclass
class Section:
    name: str
    config: RunConfig
    device: str  # the config's device, resolved: "cuda" or "cpu"
    params: dict[str, Any]
    tag: str
    needs: Needs
    measured: list[Measured]
    record: Run
    data: DataFacts
    measured_here: list[str] = field(default_factory=list)  # keys measured by this execution

    def of_kind(self, kind: str) -> list[Measured]:
        return [m for m in self.measured if m.request.kind == kind]

    def finish(self, **results: Any) -> None:
        """Record the section's answers (for the report's headlines and context), then mark it complete."""
        if results:
            self.record.log_results(**results)
        self.record.finish()


def notebook_parameters(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The notebook's parameters: its scalar globals (the parameters cell defines them before this runs)."""
    return {
        name: value
        for name, value in namespace.items()
        if isinstance(value, SCALARS) and not name.startswith("_") and name not in ("In", "Out")
    }


def realize(needs_of, params: Mapping[str, Any], asked_by: str) -> tuple[Needs, list[Measured], list[str]]:
    """Obtain a section's measurements until its list is complete; (needs, measured in order, keys measured here).

    `needs_of(params, recorded)` is the presenter's planner. Each round measures what is missing (in
    the listed order), then asks again: a rule lists its next point only once the last one is recorded.
    """
    measured_here: list[str] = []
    while True:
        needs = needs_of(params, lookup)
        missing = [request for request in needs.requests if lookup(request) is None]
        if not missing:
            break
        for request in _unique(missing):
            obtain(request, asked_by)
            measured_here.append(request.key)
    found = []
    for request in needs.requests:
        measured = lookup(request)
        measured.reused = measured.key not in measured_here
        found.append(measured)
    return needs, found, measured_here


def _unique(requests: Sequence[Request]) -> list[Request]:
    seen, unique = set(), []
    for request in requests:
        if request.key not in seen:
            seen.add(request.key)
            unique.append(request)
    return unique


def data_facts(config: RunConfig, measured: Sequence[Measured]) -> DataFacts:
    """The data of the first measurement that trained on data, else the config's source."""
    for item in measured:
        results = item.results
        if "train_images" in results:
            return DataFacts(
                str(item.request.settings.get("data", config.data)),
                str(results.get("data_fingerprint", "")),
                results.get("train_images"),
                results.get("test_images"),
                1 if results.get("model_class") == "SmallCNN" else 3,
            )
    return DataFacts(config.data, "", None, None)


def measured_settings(config: RunConfig, measured: Sequence[Measured]) -> RunConfig:
    """The RunConfig the first measurement that trained ran with (C6: no BatchNorm; C5 and P-2025-C8: the worker
    count chosen), else `config`: any kind whose settings hold a run's settings."""
    from lablib.core.training import config_of

    needed = {f.name for f in fields(RunConfig)} - set(NOT_SHOWN)
    for item in measured:
        if needed <= set(item.request.settings):
            return config_of(item.request.settings)
    return config


def setup(namespace: Mapping[str, Any], section: str, show: bool = True) -> Section:
    """Check the parameters, obtain the section's measurements, start its record and show its settings."""
    from lablib.core.training import resolve_device_type

    check_namespace(namespace)  # papermill's -p names and types against the parameters cell
    params = notebook_parameters(namespace)
    # workers -1 asks the section to choose the count (its Needs say which and why); the lab's stands in here.
    chosen = {"workers": RunConfig.workers} if params.get("workers") == CHOOSE_WORKERS else {}
    config = config_from_params({**params, **chosen})
    device = resolve_device_type(config.device)
    needs, measured, here = realize(presenter(section).needs, params, section)
    shown = measured_settings(config, measured)
    facts = data_facts(config, measured)
    tag = str(params.get("tag", ""))
    record = start_run(
        section, shown, params={k: v for k, v in params.items()}, tag=tag, data=facts.describe(), device=device
    )
    record.uses(measured)
    result = Section(section, shown, device, params, tag, needs, measured, record, facts, here)
    if show:
        _show(differences(shown), [*needs.notes, *reuse_lines(measured, section)])
    return result


REUSE_LISTED = 3  # measurements another section asked for are named one by one up to this many


def reuse_lines(measured: Sequence[Measured], section: str = "") -> list[str]:
    """What was reused rather than measured: up to REUSE_LISTED lines naming measurements another section asked
    for first, then a count; one line for those this section recorded in an earlier execution."""
    reused = [item for item in measured if item.reused]
    shared = [item for item in reused if item.first_asked_by and item.first_asked_by != section]
    own = [item for item in reused if item not in shared]
    lines = [
        f"Reused, not measured again: {item.request.label} (run `{item.run_id}`, measured for "
        f"`{item.first_asked_by}` {_when(item)})."
        for item in shared[:REUSE_LISTED]
    ]
    if len(shared) > REUSE_LISTED:
        lines.append(
            f"Reused as well: {counted(len(shared) - REUSE_LISTED, 'more measurement')} other sections asked for first."
        )
    if own:
        dates = sorted(_when(item) for item in own)
        since = dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}"
        lines.append(
            f"Reused, not measured again: {counted(len(own), 'measurement')} recorded earlier for this section "
            f"({since})."
        )
    return lines


def _when(item: Measured) -> str:
    return str(item.meta.get("ended") or "")[:16].replace("T", " ")


def differences(config: RunConfig, base: RunConfig | None = None) -> pd.DataFrame:
    """The settings of `config` that differ from `base` (the lab's common setup), one row each."""
    base = base or RunConfig()
    rows = [
        {"setting": f.name, "this section": getattr(config, f.name), "common setup": getattr(base, f.name)}
        for f in fields(RunConfig)
        if f.name not in NOT_SHOWN and getattr(config, f.name) != getattr(base, f.name)
    ]
    return pd.DataFrame(rows, columns=["setting", "this section", "common setup"])


def setting_text(value: Any) -> str:
    """A setting as the reader reads it: 4, 0.05, 5e-04, yes / no, a path as given."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def settings_table(table: pd.DataFrame):
    """The differences as a presented table (no index), each value written as the setting is given."""
    from lablib.sections.tables import present

    shown = table.copy()
    for column in ("this section", "common setup"):
        shown[column] = shown[column].map(setting_text)
    return present(shown, headers={name: name for name in shown.columns})


def _show(table: pd.DataFrame, notes: Sequence[str] = ()) -> None:
    try:
        from IPython.display import Markdown, display
    except ImportError:  # outside IPython (a script): nothing to show
        return
    for note in notes:
        display(Markdown(note))
    if table.empty:
        display(Markdown("Settings: the lab's common setup."))
    else:
        display(Markdown("Settings that differ from the lab's common setup:"))
        display(settings_table(table))


def jsonable(params: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(dict(params), default=str))
