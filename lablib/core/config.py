"""A run's settings: one frozen dataclass, one function that applies overrides.

Every field has the lab's default (LAB_SPEC "Common setup"). Notebooks mirror
these fields in their `parameters` cell and build a config with `make_config`,
which rejects unknown keys, wrong types and out-of-range values with a message
that names the field and what is allowed.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from lablib.core.errors import ConfigError

DEVICES = ("auto", "cuda", "cpu")
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")


@dataclass(frozen=True)
class RunConfig:
    """Settings of one training run. Units are in the comments."""

    device: str = "auto"  # auto | cuda | cpu; auto picks cuda when a GPU is visible
    data: str = (
        "cifar10"  # "cifar10" / "mnist" (torchvision), a folder/.zip with train/<class>/ and test/<class>/, or "fake"
    )
    data_dir: str = ""  # where torchvision's CIFAR-10 and the decode cache live; "" = <repo>/data
    download: bool = True  # allow torchvision to download CIFAR-10 when it is not in data_dir
    workers: int = 2  # DataLoader num_workers (the lab's default is 2)
    batch_size: int = 128  # images per training batch
    epochs: int = 5  # training epochs
    optimizer: str = "sgd"  # sgd | sgd_nesterov | adagrad | adadelta | adam | adamw | rmsprop
    lr: float = 0.1  # learning rate
    momentum: float = 0.9  # used by optimisers that have momentum
    weight_decay: float = 5e-4  # L2 penalty
    batch_norm: bool = True  # False replaces every BatchNorm with identity (C6)
    seed: int = 0  # seeds model init, shuffling, augmentation and subsets
    limit_train: int = 0  # class-balanced training subset size in images; 0 = all 50,000
    limit_test: int = 0  # class-balanced test subset size in images; 0 = all 10,000
    pin_memory: bool = True  # pinned host memory for the loader; only takes effect on CUDA
    persistent_workers: bool = False  # keep workers between epochs; off so start-up stays in the lab's timing
    precision: str = "fp32"  # fp32 (PyTorch defaults: TF32 convolutions on Ampere+) | tf32 | bf16 | fp16 autocast

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _optimizer_names() -> tuple[str, ...]:
    from lablib.core.optim import OPTIMIZERS  # local import: optim imports torch

    return tuple(OPTIMIZERS)


# Field -> (check, what is allowed). Checks run after the type check.
_RANGES = {
    "device": (lambda v: v in DEVICES, f"one of {', '.join(DEVICES)}"),
    "precision": (lambda v: v in PRECISIONS, f"one of {', '.join(PRECISIONS)}"),
    "optimizer": (lambda v: v in _optimizer_names(), "one of the optimisers in lablib.core.optim.OPTIMIZERS"),
    "data": (lambda v: v != "", "'cifar10', 'fake' or a path to an image-folder tree or .zip"),
    "workers": (lambda v: v >= 0, "an integer >= 0"),
    "batch_size": (lambda v: v >= 1, "an integer >= 1"),
    "epochs": (lambda v: v >= 1, "an integer >= 1"),
    "lr": (lambda v: v > 0, "a number > 0"),
    "momentum": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "weight_decay": (lambda v: v >= 0, "a number >= 0"),
    "limit_train": (lambda v: v >= 0, "an integer >= 0 (0 = the whole training set)"),
    "limit_test": (lambda v: v >= 0, "an integer >= 0 (0 = the whole test set)"),
    "seed": (lambda v: v >= 0, "an integer >= 0"),
}


def _coerce(name: str, expected: type, value: Any) -> Any:
    """Return value as `expected`, or raise ConfigError naming the field."""
    if expected is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
    elif expected is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
    elif expected is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif expected is str:
        if isinstance(value, str):
            return value
        if isinstance(value, os.PathLike):
            return os.fspath(value)
    raise ConfigError(f"{name}={value!r} has type {type(value).__name__}; expected {expected.__name__}.")


_TYPES = {"bool": bool, "int": int, "float": float, "str": str}


def make_config(base: RunConfig | None = None, **overrides: Any) -> RunConfig:
    """Return `base` (default: the lab's settings) with `overrides` applied and checked.

    >>> make_config(workers=4).workers
    4
    """
    base = base or RunConfig()
    known = {f.name: f for f in fields(RunConfig)}
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; known settings: {', '.join(known)}.")
    checked = {}
    for name, value in overrides.items():
        # `from __future__ import annotations` makes f.type a string such as "int".
        expected = _TYPES[known[name].type] if isinstance(known[name].type, str) else known[name].type
        value = _coerce(name, expected, value)
        if name in ("optimizer", "device", "precision"):
            value = value.lower()
        check = _RANGES.get(name)
        if check and not check[0](value):
            allowed = check[1]
            if name == "optimizer":
                allowed = f"one of {', '.join(_optimizer_names())}"
            raise ConfigError(f"{name}={value!r} is not allowed; expected {allowed}.")
        checked[name] = value
    return dataclasses.replace(base, **checked)


def config_from_params(params: Mapping[str, Any], base: RunConfig | None = None) -> RunConfig:
    """Build a config from a notebook's parameters, ignoring names that are not settings.

    Notebooks have parameters of their own (e.g. `tag`, `warmup_runs`); those
    are not settings of a training run and are left to the notebook.
    """
    names = {f.name for f in fields(RunConfig)}
    return make_config(base, **{k: v for k, v in params.items() if k in names})
