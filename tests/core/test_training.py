"""lablib.core.training and lablib.core.checkpoint: trainings that stop and continue, the fast engine on digits,
schedules stepped per batch, and what a training costs (Work)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lablib.core import checkpoint
from lablib.core.config import make_config
from lablib.core.errors import ConfigError
from lablib.core.optim import SCHEDULERS, make_scheduler
from lablib.core.store import obtain, work
from lablib.core.training import CHECKPOINT, training_request

TINY_MODEL = {"model": "mobilenet_v2", "width": 0.25}  # BatchNorm and colour augmentation at a few MMACs


def image_zip(path: Path, channels: int, side: int, per_class: int = 4, classes: int = 10) -> Path:
    """A train/<class>/, test/<class>/ image .zip of random pictures whose brightness tells the class."""
    generator = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as archive:
        for split, count in (("train", per_class), ("test", 2)):
            for label in range(classes):
                for number in range(count):
                    pixels = generator.integers(0, 80, (side, side, channels)) + 16 * label
                    image = Image.fromarray(pixels.astype(np.uint8).squeeze(), "L" if channels == 1 else "RGB")
                    stream = io.BytesIO()
                    image.save(stream, "PNG")
                    archive.writestr(f"{split}/{label}/{number}.png", stream.getvalue())
    return path


@pytest.fixture
def colour_zip(tmp_path) -> Path:
    return image_zip(tmp_path / "colour.zip", 3, 32, per_class=2)


@pytest.fixture
def digit_zip(tmp_path) -> Path:
    return image_zip(tmp_path / "digits.zip", 1, 28)


@pytest.fixture
def request_fixture(request):
    """A fixture by name (the parametrised tests choose their images)."""
    return request.getfixturevalue


def tiny_config(data: Path, **overrides):
    settings = {"data": str(data), "device": "cpu", "workers": 0, "batch_size": 8, "epochs": 3, "lr": 0.05}
    return make_config(**{**settings, **overrides})


def request(config, engine: str, **choices):
    """A grid point's request: colour images train the tiny MobileNetV2, digits the small CNN."""
    model = TINY_MODEL if "colour" in config.data else {}
    return training_request(config, engine=engine, timing=False, save_weights=False, **model, **choices)


def same_epochs(left, right) -> None:
    assert [row["epoch"] for row in left] == [row["epoch"] for row in right]
    for mine, theirs in zip(left, right):
        assert mine["loss"] == pytest.approx(theirs["loss"], rel=1e-5, abs=1e-6)
        assert mine["accuracy"] == pytest.approx(theirs["accuracy"])
        assert mine["images"] == theirs["images"]


@pytest.mark.parametrize(
    ("engine", "images", "optimizer", "scheduler"),
    [
        ("fast", "colour_zip", "adam", "onecycle"),  # BatchNorm, crops and flips drawn on the device
        ("faithful", "digit_zip", "sgd", "cosine"),  # the DataLoader's shuffle from its own generator
    ],
)
def test_a_continued_training_gives_the_epochs_of_one_trained_straight_through(
    request_fixture, tmp_path, engine, images, optimizer, scheduler
):
    config = tiny_config(request_fixture(images), optimizer=optimizer, lr=0.01 if optimizer == "adam" else 0.05)
    first = obtain(request(config, engine, scheduler=scheduler, stop_after=1))
    assert first.artifact(CHECKPOINT).is_file() and first.results["checkpoint_kept"]
    assert len(first.epochs) == 1 and first.results["resumed_from_epoch"] == 0

    second = obtain(request(config, engine, scheduler=scheduler, stop_after=2, continue_from=1))
    assert second.results["resumed_from_epoch"] == 1 and second.results["resumed_from_run"] == first.run_id
    assert not first.artifact(CHECKPOINT).exists()  # superseded: the training went on from it
    assert second.artifact(CHECKPOINT).is_file() and len(second.epochs) == 2

    finish = request(config, engine, scheduler=scheduler, continue_from=2)
    straight = request(config, engine, scheduler=scheduler)
    assert finish.key == straight.key  # continuing is not part of what the training is
    continued = obtain(finish)
    assert not second.artifact(CHECKPOINT).exists() and not continued.artifact(CHECKPOINT).exists()
    assert not continued.results["checkpoint_kept"] and continued.results["epochs_run"] == 3

    # the same training straight through, in a store of its own
    whole = obtain(straight, root=tmp_path / "straight")
    same_epochs(continued.epochs, whole.epochs)
    same_epochs(second.epochs, whole.epochs[:2])
    assert continued.results["test_accuracy"] == pytest.approx(whole.results["test_accuracy"])
    assert continued.results["test_loss"] == pytest.approx(whole.results["test_loss"], rel=1e-5)


def test_a_continuation_without_its_checkpoint_trains_from_the_start(colour_zip):
    config = tiny_config(colour_zip, epochs=2)
    first = obtain(request(config, "fast", stop_after=1))
    first.artifact(CHECKPOINT).unlink()
    continued = obtain(request(config, "fast", continue_from=1))
    assert continued.results["resumed_from_epoch"] == 0 and continued.results["resumed_from_run"] == ""
    assert len(continued.epochs) == 2
    same_epochs(continued.epochs[:1], first.epochs)


def test_a_diverged_or_finished_training_keeps_no_checkpoint(digit_zip):
    diverged = obtain(request(tiny_config(digit_zip, lr=1e6), "fast", stop_after=1))
    assert diverged.results["diverged"] and not diverged.artifact(CHECKPOINT).exists()
    finished = obtain(request(tiny_config(digit_zip, epochs=1), "fast"))
    assert not finished.results["checkpoint_kept"] and not finished.artifact(CHECKPOINT).exists()


def test_drop_checkpoints_deletes_the_named_ones_before_training(digit_zip):
    config = tiny_config(digit_zip)
    stopped = obtain(request(config, "fast", stop_after=1))
    other = tiny_config(digit_zip, lr=0.02)
    kept = obtain(request(other, "fast", stop_after=1))
    asking = request(tiny_config(digit_zip, lr=0.03), "fast", stop_after=1, drop_checkpoints=[stopped.key])
    assert asking.key == request(tiny_config(digit_zip, lr=0.03), "fast", stop_after=1).key
    obtain(asking)
    assert not stopped.artifact(CHECKPOINT).exists() and kept.artifact(CHECKPOINT).is_file()
    assert stopped.results["test_accuracy"] is not None  # the record itself stays


def test_stop_and_continue_settings_are_checked_and_keyed():
    config = make_config(device="cpu", data="fake", epochs=4)
    with pytest.raises(ConfigError, match="stop_after=5"):
        training_request(config, stop_after=5)
    with pytest.raises(ConfigError, match="continue_from=2"):
        training_request(config, stop_after=2, continue_from=2)
    assert "stop_after" not in training_request(config, stop_after=4).settings  # the whole training
    assert training_request(config, stop_after=4).key == training_request(config).key
    assert training_request(config, stop_after=2).key != training_request(config).key
    assert training_request(config, stop_after=2).key != training_request(make_config(config, epochs=2)).key
    continued = training_request(config, stop_after=3, continue_from=1, drop_checkpoints=["b", "a"])
    assert continued.settings["drop_checkpoints"] == ["a", "b"]
    assert continued.key == training_request(config, stop_after=3).key
    assert "epochs 1-3 of 4 (continued after epoch 1)" in continued.label
    assert "epoch 1 of 4 on cpu" in training_request(config, stop_after=1).label


def test_work_counts_the_epochs_a_measurement_trains_and_the_fast_engine():
    config = make_config(device="cpu", data="mnist", epochs=5, limit_train=1024)
    (whole,) = work(training_request(config, engine="fast"))
    assert (whole.epochs, whole.images, whole.model) == (5.0, 1024, "small_cnn")
    assert (whole.engine, whole.precision, whole.compiles) == ("fast", "fp32", ())  # the CPU: fp32, not compiled
    (rung,) = work(training_request(config, engine="fast", stop_after=3, continue_from=1))
    assert rung.epochs == 2.0
    (faithful,) = work(training_request(config))
    assert faithful.engine == "faithful" and faithful.workers == config.workers


@pytest.mark.cuda
def test_a_continued_training_on_the_gpu_resumes_where_it_stopped(colour_zip, tmp_path):
    """Compiled, bf16 where the GPU has it, cuDNN choosing its kernels: close to straight through, not bitwise."""
    config = make_config(tiny_config(colour_zip, optimizer="sgd", lr=0.05), device="cuda")
    first = obtain(request(config, "fast", scheduler="cosine", stop_after=2))
    assert first.artifact(CHECKPOINT).is_file()
    assert checkpoint.load(first.artifact(CHECKPOINT))["rng"]["cuda"]  # the GPU's generator travels too
    continued = obtain(request(config, "fast", scheduler="cosine", continue_from=2))
    assert continued.results["resumed_from_epoch"] == 2 and not first.artifact(CHECKPOINT).exists()
    whole = obtain(request(config, "fast", scheduler="cosine"), root=tmp_path / "straight")
    assert [row["epoch"] for row in continued.epochs] == [1, 2, 3]
    assert continued.epochs[-1]["loss"] == pytest.approx(whole.epochs[-1]["loss"], rel=0.1)


@pytest.mark.cuda
def test_work_of_the_fast_engine_on_a_gpu_is_compiled_in_bf16():
    config = make_config(device="cuda", data="cifar10", epochs=2)
    (cost,) = work(training_request(config, engine="fast"))
    assert cost.compiles == ("default",) and cost.engine == "fast"
    assert cost.precision == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")


def test_fast_engine_trains_the_small_cnn_on_digits_without_augmentation(mnist_zip):
    from lablib.core.data import MNIST_MEAN, MNIST_STD, load_data
    from lablib.core.fastpath import DeviceBatches, Normalize, to_device_data, train_fast

    config = make_config(device="cpu", data=str(mnist_zip), limit_train=512, limit_test=200, epochs=2, workers=0)
    config = make_config(config, optimizer="adam", lr=0.002, batch_size=64)
    data = load_data(config.data, limit_train=512, limit_test=200)
    device = torch.device("cpu")
    held = to_device_data(data.train, device, padding=0)
    normalize = Normalize(device, True, MNIST_MEAN, MNIST_STD)
    batches = DeviceBatches(held, normalize, 64, augment=False)
    inputs, _ = batches.batch(torch.arange(4))  # B x 1 x 28 x 28: the digits as they are, MNIST-normalised
    expected = torch.stack([data.train[i][0] for i in range(4)])  # the lab's transform: ToTensor, Normalize
    assert inputs.shape == (4, 1, 28, 28) and torch.allclose(inputs, expected, atol=1e-5)
    result = train_fast(config, data=data, compile=False, progress=False)
    assert type(result.model).__name__ == "SmallCNN" and not result.diverged
    assert result.epochs[-1].loss < result.epochs[0].loss
    assert result.test is not None and result.test.accuracy > 50.0  # 10 classes: chance is 10 %


@pytest.mark.parametrize("scheduler", [name for name in SCHEDULERS if name != "none"])
def test_the_fast_engine_steps_its_schedule_once_per_batch(digit_zip, scheduler):
    from lablib.core.data import load_data
    from lablib.core.fastpath import train_fast

    config = tiny_config(digit_zip, epochs=4)
    data = load_data(config.data)
    result = train_fast(config, data=data, compile=False, progress=False, scheduler=scheduler, stop_after=2)
    batches = result.epochs[0].batches
    state = result.checkpoint["scheduler"]
    assert state["last_epoch"] == 2 * batches  # two epochs of per-batch steps, the warm-up's undone
    reference = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=config.lr, momentum=0.9)
    schedule = make_scheduler(scheduler, reference, config.epochs, batches, config.lr)
    for _ in range(2 * batches):
        reference.step()
        schedule.step()
    assert result.checkpoint["optimizer"]["param_groups"][0]["lr"] == pytest.approx(reference.param_groups[0]["lr"])


def test_checkpoint_restores_every_generator(tmp_path):
    torch.manual_seed(3)
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randn(3, 4)).sum().backward()
    optimizer.step()
    loader = torch.Generator().manual_seed(7)
    state = checkpoint.capture(1, model, optimizer, generators={"loader": loader}, epochs=[{"epoch": 1}])
    path = checkpoint.save(state, tmp_path / CHECKPOINT)
    expected = (torch.rand(3), np.random.rand(), torch.rand(2, generator=loader))
    torch.manual_seed(99)
    loader.manual_seed(0)
    fresh = torch.nn.Linear(4, 2)
    fresh_optimizer = torch.optim.Adam(fresh.parameters(), lr=0.1)
    epoch = checkpoint.restore(checkpoint.load(path), fresh, fresh_optimizer, generators={"loader": loader})
    assert epoch == 1 and torch.equal(fresh.weight, model.weight)
    assert fresh_optimizer.state_dict()["state"][0]["exp_avg"].equal(optimizer.state_dict()["state"][0]["exp_avg"])
    assert torch.equal(torch.rand(3), expected[0]) and np.random.rand() == expected[1]
    assert torch.equal(torch.rand(2, generator=loader), expected[2])
