"""Optimisers and learning-rate schedules by name, with the lab's hyper-parameters.

C5 compares SGD, SGD with Nesterov, Adagrad, Adadelta and Adam, all with
lr 0.1, weight decay 5e-4 and momentum 0.9 where the optimiser has momentum.
E1 adds AdamW and RMSprop and the schedules below.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import optim

from lablib.core.errors import ConfigError

Params = Iterable[torch.nn.Parameter]

OPTIMIZERS: dict[str, Callable[..., optim.Optimizer]] = {
    "sgd": lambda p, lr, m, wd, **kw: optim.SGD(p, lr=lr, momentum=m, weight_decay=wd, **kw),
    "sgd_nesterov": lambda p, lr, m, wd, **kw: optim.SGD(p, lr=lr, momentum=m, weight_decay=wd, nesterov=True, **kw),
    "adagrad": lambda p, lr, m, wd, **kw: optim.Adagrad(p, lr=lr, weight_decay=wd),  # no momentum
    "adadelta": lambda p, lr, m, wd, **kw: optim.Adadelta(p, lr=lr, weight_decay=wd),  # rho, not momentum
    "adam": lambda p, lr, m, wd, **kw: optim.Adam(p, lr=lr, weight_decay=wd, **kw),  # betas (0.9, 0.999)
    "adamw": lambda p, lr, m, wd, **kw: optim.AdamW(p, lr=lr, weight_decay=wd, **kw),
    "rmsprop": lambda p, lr, m, wd, **kw: optim.RMSprop(p, lr=lr, momentum=m, weight_decay=wd),
}
FUSED = ("sgd", "sgd_nesterov", "adam", "adamw")  # optimisers with a fused CUDA update (one kernel for all tensors)

SCHEDULERS = ("none", "step", "cosine", "onecycle")


def make_optimizer(
    name: str,
    params: Params,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    fused: bool = False,
) -> optim.Optimizer:
    """The optimiser `name` with the lab's hyper-parameters; `fused` (CUDA parameters only) where FUSED has it."""
    try:
        factory = OPTIMIZERS[name.lower()]
    except KeyError:
        raise ConfigError(f"optimizer={name!r} is unknown; valid: {', '.join(OPTIMIZERS)}.") from None
    extra = {"fused": True} if fused and name.lower() in FUSED else {}
    return factory(params, lr, momentum, weight_decay, **extra)


def optimizer_for(config, params: Params, fused: bool = False) -> optim.Optimizer:
    """The optimiser a RunConfig names, with its lr, momentum and weight decay."""
    return make_optimizer(config.optimizer, params, config.lr, config.momentum, config.weight_decay, fused)


def make_scheduler(
    name: str, optimizer: optim.Optimizer, epochs: int, steps_per_epoch: int, lr: float
) -> optim.lr_scheduler.LRScheduler | None:
    """A schedule stepped once per batch (so one-cycle works), or None for "none".

    step: lr x 0.1 after half and after three quarters of the training;
    cosine: annealed to 0 over the whole training; onecycle: peak `lr`.
    """
    total = max(1, epochs * steps_per_epoch)
    name = name.lower()
    if name == "none":
        return None
    if name == "step":
        return optim.lr_scheduler.MultiStepLR(optimizer, [total // 2, (3 * total) // 4], gamma=0.1)
    if name == "cosine":
        return optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    if name == "onecycle":
        return optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total)
    raise ConfigError(f"scheduler={name!r} is unknown; valid: {', '.join(SCHEDULERS)}.")


def state_size(optimizer: optim.Optimizer) -> int:
    """Number of tensor elements the optimiser keeps as state (Adam: 2 per parameter)."""
    return sum(
        value.numel()
        for state in optimizer.state.values()
        for value in state.values()
        if torch.is_tensor(value) and value.dim() > 0
    )
