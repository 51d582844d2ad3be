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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import pandas as pd
import torch

from lablib.core.config import RunConfig, config_from_params
from lablib.core.data import DataBundle, load_data_for
from lablib.core.train import resolve_device

# Settings that say where things are, not what is measured: never shown as a difference.
NOT_SHOWN = ("data_dir", "download")


@dataclass(frozen=True)
class Setup:
    config: RunConfig
    data: DataBundle | None  # None when the section needs no data (load=False)
    device: torch.device

    def __iter__(self):  # config, data, device = setup(globals())
        return iter((self.config, self.data, self.device))


def differences(config: RunConfig, base: RunConfig | None = None) -> pd.DataFrame:
    """The settings of `config` that differ from `base` (the lab's common setup), one row each."""
    base = base or RunConfig()
    rows = [
        {"setting": f.name, "this section": getattr(config, f.name), "common setup": getattr(base, f.name)}
        for f in fields(RunConfig)
        if f.name not in NOT_SHOWN and getattr(config, f.name) != getattr(base, f.name)
    ]
    return pd.DataFrame(rows, columns=["setting", "this section", "common setup"])


def setup(namespace: Mapping[str, Any], load: bool = True, show: bool = True, **fixed: Any) -> Setup:
    """Build the config from the notebook's parameters, resolve the device, load the data, show the settings."""
    config = config_from_params({**namespace, **fixed})
    device = resolve_device(config.device)
    data = load_data_for(config) if load else None
    if show:
        _show(differences(config))
    return Setup(config, data, device)


def _show(table: pd.DataFrame) -> None:
    try:
        from IPython.display import Markdown, display
    except ImportError:  # outside IPython (a script): nothing to show
        return
    if table.empty:
        display(Markdown("Settings: the lab's common setup."))
    else:
        display(Markdown("Settings that differ from the lab's common setup:"))
        display(table)
