import math

import pytest
import torch

from lablib.core.config import make_config
from lablib.core.data import load_data, make_loader
from lablib.core.errors import DeviceError
from lablib.core.model import resnet18
from lablib.core.optim import make_optimizer
from lablib.core.timing import EpochTimer, Stopwatch, time_calls
from lablib.core.train import evaluate, resolve_device, train, train_epoch


def test_epoch_timer_parts_add_up():
    timer = EpochTimer(torch.device("cpu"))
    timer.start()
    iterator = iter(range(3))
    while timer.next_batch(iterator) is not None:
        with timer.training():
            sum(range(10000))
    times = timer.stop()
    assert times.data_s >= 0 and times.train_s > 0
    assert times.data_s + times.train_s <= times.total_s


def test_stopwatch_and_time_calls():
    with Stopwatch(torch.device("cpu")) as watch:
        sum(range(1000))
    assert watch.seconds > 0
    assert len(time_calls(lambda: None, torch.device("cpu"), warmup=2, runs=5)) == 5


@pytest.mark.parametrize("workers", [0, 2])
def test_data_plus_train_never_exceeds_total(workers):
    bundle = load_data("fake", limit_train=96, limit_test=32)
    model = resnet18()
    loader = make_loader(bundle.train, 32, workers, torch.device("cpu"), shuffle=True)
    optimizer = make_optimizer("sgd", model.parameters())
    for epoch in (1, 2):
        record = train_epoch(model, loader, optimizer, torch.device("cpu"), epoch)
        assert record.data_s + record.train_s <= record.total_s
        assert record.batches == 3 and record.images == 96
        assert math.isclose(record.images_per_s, 96 / record.total_s)


def test_divergence_is_a_result_not_a_crash():
    config = make_config(
        data="fake",
        limit_train=64,
        limit_test=16,
        epochs=3,
        batch_size=32,
        workers=0,
        lr=1e12,
        optimizer="sgd",
        device="cpu",
    )
    result = train(config, progress=False)
    assert result.diverged and result.epochs[-1].diverged
    assert len(result.epochs) < 3  # stopped cleanly after the diverged epoch


def test_cuda_without_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(DeviceError, match="device='cuda'.*no CUDA GPU.*device='cpu'"):
        resolve_device("cuda")


def test_three_epochs_on_real_images_loss_falls(cifar_zip):
    config = make_config(
        data=str(cifar_zip), limit_train=512, limit_test=200, epochs=3, workers=2, device="cpu", lr=0.02
    )
    result = train(config, progress=False, evaluate_test=True)
    losses = [e.loss for e in result.epochs]
    assert losses[-1] < losses[0], losses
    assert all(e.data_s + e.train_s <= e.total_s for e in result.epochs)
    assert result.test.images == 200 and 0 <= result.test.accuracy <= 100


@pytest.mark.cuda
def test_cuda_epoch_is_synchronised_and_consistent():
    config = make_config(data="fake", limit_train=512, limit_test=128, epochs=2, device="cuda")
    result = train(config, progress=False, evaluate_test=True)
    assert all(e.data_s + e.train_s <= e.total_s for e in result.epochs)
    assert result.device.type == "cuda"


def test_evaluate_counts_every_image():
    bundle = load_data("fake", limit_train=32, limit_test=40)
    loader = make_loader(bundle.test, 16, 0, torch.device("cpu"), shuffle=False)
    record = evaluate(resnet18(), loader, torch.device("cpu"))
    assert record.images == 40 and 0 <= record.accuracy <= 100
