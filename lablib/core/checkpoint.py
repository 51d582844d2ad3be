"""A training's state between two of its epochs, so a later measurement continues it instead of starting over.

    state = capture(epoch, model, optimizer, scheduler, scaler, generators, epochs)   # after epoch `epoch`
    save(state, path); state = load(path)
    restore(state, model, optimizer, scheduler, scaler, generators)                   # before epoch `epoch` + 1

What decides the next epoch is all here: the weights and BatchNorm statistics, the optimiser's state
(momentum, Adam's moments), the schedule's step count, the fp16 loss scale, and every random number
generator the epochs draw from (torch's on the CPU and on each GPU, NumPy's, Python's, and the named
generators of the loop: the lab's DataLoader shuffles and seeds its workers from its own). Restored into
a freshly built model and optimiser, the next epoch draws the same batches and the same augmentation as
the training that never stopped. The epochs already trained travel with the state (their rows), so the
continued record holds the whole training.

A checkpoint is a file of tensors, numbers, strings, lists and dicts only: `load` reads it with
`torch.load(weights_only=True)`, which runs no pickled code. ResNet-18 with SGD's momentum is about
90 MB (Adam's two moments: 135 MB); lablib.core.training keeps one only while its training may still
continue.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lablib.core.errors import LabError

FORMAT = 1  # bump when the layout below changes: an older file is then not continued from


def rng_state() -> dict[str, Any]:
    """Every global random number generator's state: torch's CPU and CUDA ones, NumPy's, Python's."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(position), int(has_gauss), cached],
        "python": [version, list(internal), gauss_next],
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def _cpu(value: Any) -> Any:
    """A state dict with every tensor on the CPU (a checkpoint loads on any device)."""
    if torch.is_tensor(value):
        return value.detach().cpu().clone()
    if isinstance(value, Mapping):
        return {key: _cpu(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cpu(item) for item in value)
    return value


def capture(
    epoch: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler=None,
    scaler=None,
    generators: Mapping[str, torch.Generator] | None = None,
    epochs: Sequence[Any] = (),
) -> dict[str, Any]:
    """The training's state after epoch `epoch` (1-based), its tensors copied to the CPU; `epochs` are the
    EpochRecords (or their dicts) trained so far."""
    return {
        "format": FORMAT,
        "epoch": int(epoch),
        "model": _cpu(model.state_dict()),
        "optimizer": _cpu(optimizer.state_dict()),
        "scheduler": None if scheduler is None else _cpu(scheduler.state_dict()),
        "scaler": None if scaler is None else _cpu(scaler.state_dict()),
        "rng": rng_state(),
        "generators": {name: generator.get_state() for name, generator in (generators or {}).items()},
        "epochs": [row.to_dict() if hasattr(row, "to_dict") else dict(row) for row in epochs],
    }


def restore(
    state: Mapping[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler=None,
    scaler=None,
    generators: Mapping[str, torch.Generator] | None = None,
) -> int:
    """Load `state` into a freshly built training (in place: compiled code keeps its parameters); returns
    the epochs it had trained. A part the training has and the state lacks (or the reverse) is a LabError."""
    if state.get("format") != FORMAT:
        raise LabError(f"checkpoint format {state.get('format')!r} is not {FORMAT}; train from the start instead.")
    if (scheduler is None) != (state["scheduler"] is None):
        raise LabError("the checkpoint's learning-rate schedule does not match the training's; train from the start.")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state["scaler"] is not None:
        scaler.load_state_dict(state["scaler"])
    for name, generator in (generators or {}).items():
        if name not in state["generators"]:
            raise LabError(f"the checkpoint has no state for the {name!r} generator; train from the start.")
        generator.set_state(state["generators"][name])
    set_rng_state(state["rng"])
    return int(state["epoch"])


def save(state: Mapping[str, Any], path: Path) -> Path:
    """Write the state to `path` (a temporary name, then renamed: a reader never sees half a file)."""
    import os

    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    torch.save(dict(state), temporary)
    os.replace(temporary, path)
    return path


def load(path: Path) -> dict[str, Any]:
    """A checkpoint written by `save`, its tensors on the CPU (nothing pickled is executed)."""
    return torch.load(Path(path), map_location="cpu", weights_only=True)
