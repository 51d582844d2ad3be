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


def test_auto_reads_digits_from_the_images_not_the_name(tmp_path):
    from PIL import Image

    from lablib.core.training import network_of

    for split in ("train", "test"):
        for label in ("0", "1"):
            folder = tmp_path / "handwriting" / split / label
            folder.mkdir(parents=True)
            Image.new("L", (28, 28)).save(folder / "a.png")
    settings = {"model": "auto", "data": str(tmp_path / "handwriting")}
    assert network_of(settings) == "small_cnn"  # one channel: the small CNN, as build_model builds it
    assert network_of({"model": "auto", "data": "cifar10"}) == "resnet18"
    assert network_of({"model": "auto", "data": "mnist"}) == "small_cnn"
