"""Every notebook's preamble: its settings checked, its device and data ready, its settings shown.

    config, data, device = setup(globals())

`namespace` is the notebook's globals after its `parameters` cell (and papermill's
injected one). The names that are RunConfig fields build the config through
lablib.core.config.config_from_params (unknown values and wrong types are a
ConfigError naming the field); `fixed` overrides them for sections whose design
fixes a setting (C6 trains without BatchNorm). The device is resolved
("cuda" without a GPU is a clear error), the data is loaded with the config's
source, subsets and seed, and the settings that differ from the lab's common
setup are shown as one small table, so a section shows what is particular to it.

Sections whose `workers` parameter may be -1 ("choose for me") use one of two
variants of the same path, which resolve the count after the data is loaded
(the choice depends on the data's fingerprint and the device) and before the
settings are shown:

    prepared = setup_best_workers(globals())   # C4, C5, C6, P-2025-C4: C3.2's best count
    prepared = setup_next_workers(globals())   # C3: the next count of the lab's rule
    config, data, device = prepared            # prepared.workers says which count and why
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import pandas as pd
import torch

from lablib.core.config import RunConfig, config_from_params, make_config
from lablib.core.data import COLOUR_32, DataBundle, DataKind, load_data_for, require_kind
from lablib.core.train import resolve_device
from lablib.sections.analysis import DeviceChoice, WorkersChoice, c3_choose_workers, resolve_workers
from lablib.sections.parameters import check_namespace
from lablib.sections.sweeps import group_points

# Settings that say where things are, not what is measured: never shown as a difference.
NOT_SHOWN = ("data_dir", "download")
CHOOSE_WORKERS = -1  # the `workers` parameter value that asks the section to choose the count


@dataclass(frozen=True)
class Setup:
    config: RunConfig
    data: DataBundle | None  # None when the section needs no data (load=False)
    device: torch.device | None  # None only when a section records an unavailable device (C4 without a GPU)
    workers: WorkersChoice | None = None  # how the worker count was chosen (the choosing variants only)

    def __iter__(self):  # config, data, device = setup(globals())
        return iter((self.config, self.data, self.device))

    def run_params(self) -> dict[str, Any]:
        """What a run records about the worker choice, beside its settings."""
        return {} if self.workers is None else self.workers.record()


def differences(config: RunConfig, base: RunConfig | None = None) -> pd.DataFrame:
    """The settings of `config` that differ from `base` (the lab's common setup), one row each."""
    base = base or RunConfig()
    rows = [
        {"setting": f.name, "this section": getattr(config, f.name), "common setup": getattr(base, f.name)}
        for f in fields(RunConfig)
        if f.name not in NOT_SHOWN and getattr(config, f.name) != getattr(base, f.name)
    ]
    return pd.DataFrame(rows, columns=["setting", "this section", "common setup"])


def setup(
    namespace: Mapping[str, Any],
    load: bool = True,
    show: bool = True,
    kinds: Sequence[DataKind] = (COLOUR_32,),
    **fixed: Any,
) -> Setup:
    """Build the config from the notebook's parameters, resolve the device, load the data, show the settings.

    The data must be one of `kinds` (the lab's sections: CIFAR-10-like colour images; E1 also takes
    MNIST-like digits): another data set is a DataError, never a silently different experiment.
    """
    check_namespace(namespace)  # papermill's -p names and types against the parameters cell
    config = config_from_params({**namespace, **fixed})
    device = resolve_device(config.device)
    data = load_data_for(config) if load else None
    if data is not None:
        require_kind(data, kinds)
    if show:
        _show(differences(config))
    return Setup(config, data, device)


# (requested count, config with a placeholder count, data, device type) -> the count to use and why
WorkersRule = Callable[[int, RunConfig, DataBundle, str], WorkersChoice]


def setup_best_workers(
    namespace: Mapping[str, Any], target: DeviceChoice | None = None, show: bool = True, **fixed: Any
) -> Setup:
    """setup() for C4, C5, C6 and P-2025-C4: `workers` -1 is C3.2's best count from the c3_workers
    records with the same tag, data and device (else the lab's default).

    `target` is the device the point stands for when the section resolved it itself (C4 records a
    missing GPU instead of failing); by default the config's device is resolved as setup() does.
    """
    tag = str(namespace.get("tag", ""))

    def best(requested: int, config: RunConfig, data: DataBundle, device_type: str) -> WorkersChoice:
        return resolve_workers(requested, tag, data.fingerprint, device_type)

    return _setup_choosing(namespace, best, target, show, fixed)


def setup_next_workers(namespace: Mapping[str, Any], show: bool = True, **fixed: Any) -> Setup:
    """setup() for C3: `workers` -1 is the next count the lab's rule asks for, given the points
    already recorded for this setting (or the best point again once the rule is complete)."""
    tag = str(namespace.get("tag", ""))

    def following(requested: int, config: RunConfig, data: DataBundle, device_type: str) -> WorkersChoice:
        recorded = group_points("c3_workers", config, tag, data.fingerprint, device_type, "workers", "workers")
        return c3_choose_workers(requested, recorded, os.cpu_count())

    return _setup_choosing(namespace, following, None, show, fixed)


def _setup_choosing(
    namespace: Mapping[str, Any], rule: WorkersRule, target: DeviceChoice | None, show: bool, fixed: Mapping
) -> Setup:
    check_namespace(namespace)  # papermill's -p names and types against the parameters cell
    settings = {**namespace, **fixed}
    requested = settings.get("workers", RunConfig.workers)
    choosing = requested == CHOOSE_WORKERS or requested == str(CHOOSE_WORKERS)
    # A count the section chooses is not known yet: the lab's default stands in until the data is loaded.
    config = config_from_params({**settings, "workers": RunConfig.workers if choosing else requested})
    device = target.device if target is not None else resolve_device(config.device)
    device_type = target.target if target is not None else device.type
    data = load_data_for(config)
    require_kind(data, (COLOUR_32,))
    choice = rule(CHOOSE_WORKERS if choosing else config.workers, config, data, device_type)
    config = make_config(config, workers=choice.workers)
    if show:
        _show(differences(config), choice.sentence(device_type, available=device is not None))
    return Setup(config, data, device, choice)


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


def _show(table: pd.DataFrame, note: str = "") -> None:
    try:
        from IPython.display import Markdown, display
    except ImportError:  # outside IPython (a script): nothing to show
        return
    if note:
        display(Markdown(note))
    if table.empty:
        display(Markdown("Settings: the lab's common setup."))
    else:
        display(Markdown("Settings that differ from the lab's common setup:"))
        display(settings_table(table))
