import pytest
import torch

from lablib.core.errors import ConfigError
from lablib.core.optim import OPTIMIZERS, make_optimizer, make_scheduler, state_size


def _params():
    return [torch.nn.Parameter(torch.randn(10, 10))]


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_every_optimizer_builds_with_the_labs_hyperparameters(name):
    optimizer = make_optimizer(name, _params(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.1 and group["weight_decay"] == 5e-4
    if "momentum" in group and name in ("sgd", "sgd_nesterov", "rmsprop"):
        assert group["momentum"] == 0.9
    assert group.get("nesterov", False) == (name == "sgd_nesterov")


def test_unknown_optimizer_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="lion.*sgd, sgd_nesterov, adagrad"):
        make_optimizer("lion", _params())


def test_adam_state_is_two_tensors_per_parameter():
    params = _params()
    optimizer = make_optimizer("adam", params)
    params[0].sum().backward()
    optimizer.step()
    assert state_size(optimizer) == 2 * 100


@pytest.mark.parametrize("name", ["none", "step", "cosine", "onecycle"])
def test_schedulers(name):
    optimizer = make_optimizer("sgd", _params())
    scheduler = make_scheduler(name, optimizer, epochs=2, steps_per_epoch=5, lr=0.1)
    for _ in range(10):
        optimizer.step()
        if scheduler:
            scheduler.step()
    assert (scheduler is None) == (name == "none")
