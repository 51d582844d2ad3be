"""lablib.core.training.training_request: the fast engine's precision, as asked."""

import pytest

from lablib.core.config import make_config
from lablib.core.errors import ConfigError
from lablib.core.training import training_request

CONFIG = make_config(device="cpu", data="fake", epochs=1)


def test_the_fast_engine_takes_the_precision_asked_for():
    default = training_request(CONFIG, engine="fast", model="mobilenet_v2", width=0.5)
    assert default.settings["precision"] == "fp32"  # the CPU's fast default
    for precision in ("fp32", "fp16", "bf16"):
        asked = training_request(CONFIG, engine="fast", precision=precision)
        assert asked.settings["precision"] == precision
    explicit = training_request(CONFIG, engine="fast", model="mobilenet_v2", width=0.5, precision="fp32")
    assert explicit.key == default.key  # the same measurement: asked for explicitly or by default
    assert "bf16" in training_request(CONFIG, engine="fast", precision="bf16").label


def test_an_unknown_precision_is_refused():
    with pytest.raises(ConfigError, match="precision='fp8'"):
        training_request(CONFIG, engine="fast", precision="fp8")
