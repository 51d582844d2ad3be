import dataclasses

import pytest

from lablib.core.config import RunConfig, config_from_params, make_config
from lablib.core.errors import ConfigError


def test_defaults_are_the_labs():
    config = RunConfig()
    assert (config.batch_size, config.epochs, config.workers) == (128, 5, 2)
    assert (config.optimizer, config.lr, config.momentum, config.weight_decay) == ("sgd", 0.1, 0.9, 5e-4)
    assert config.device == "auto" and config.batch_norm is True


def test_overrides_are_applied_and_coerced():
    config = make_config(workers="4", lr=1, batch_norm="false", optimizer="Adam")
    assert config.workers == 4 and config.lr == 1.0 and config.batch_norm is False
    assert config.optimizer == "adam"


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"wokers": 4}, ["wokers", "known settings", "workers"]),
        ({"workers": -1}, ["workers=-1", ">= 0"]),
        ({"workers": 2.5}, ["workers=2.5", "expected int"]),
        ({"workers": True}, ["workers=True", "expected int"]),
        ({"optimizer": "lion"}, ["optimizer='lion'", "sgd", "adadelta", "rmsprop"]),
        ({"device": "tpu"}, ["device='tpu'", "auto, cuda, cpu"]),
        ({"precision": "fp8"}, ["precision='fp8'", "fp32"]),
        ({"lr": 0}, ["lr=0.0", "> 0"]),
        ({"epochs": 0}, ["epochs=0", ">= 1"]),
        ({"momentum": 1.5}, ["momentum=1.5", "[0, 1)"]),
        ({"batch_norm": "maybe"}, ["batch_norm='maybe'", "bool"]),
    ],
)
def test_bad_overrides_name_the_field_and_what_is_allowed(overrides, words):
    with pytest.raises(ConfigError) as error:
        make_config(**overrides)
    for word in words:
        assert word in str(error.value)


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        RunConfig().workers = 3


def test_config_from_params_ignores_notebook_only_names():
    config = config_from_params({"workers": 8, "tag": "quick", "warmup_runs": 50})
    assert config.workers == 8
