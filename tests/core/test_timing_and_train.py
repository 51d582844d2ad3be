import math

import pytest
import torch

from lablib.core.config import make_config
from lablib.core.data import load_data, make_loader
from lablib.core.errors import DeviceError
from lablib.core.optim import make_optimizer
from lablib.core.timing import EpochTimer, Stopwatch, WholeEpochTimer, time_calls
from lablib.core.train import Hooks, LabStep, evaluate, resolve_device, train, train_epoch, train_epochs

CPU = torch.device("cpu")


def tiny_model() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(4096, 10))


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


def test_whole_epoch_timer_has_no_data_time():
    timer = WholeEpochTimer(CPU)
    timer.start()
    iterator = iter(range(3))
    seen = []
    while (batch := timer.next_batch(iterator)) is not None:
        with timer.training():
            seen.append(batch)
    times = timer.stop()
    assert seen == [0, 1, 2] and times.data_s == 0 and times.train_s == times.total_s > 0


def test_stopwatch_and_time_calls():
    with Stopwatch(torch.device("cpu")) as watch:
        sum(range(1000))
    assert watch.seconds > 0
    assert len(time_calls(lambda: None, torch.device("cpu"), warmup=2, runs=5)) == 5


@pytest.mark.parametrize("workers", [0, 2])
def test_data_plus_train_never_exceeds_total(workers):
    bundle = load_data("fake", limit_train=96, limit_test=32)
    model = tiny_model()
    loader = make_loader(bundle.train, 32, workers, CPU, shuffle=True)
    step = LabStep(model, make_optimizer("sgd", model.parameters(), lr=0.01), CPU)
    for epoch in (1, 2):
        record = train_epoch(step, loader, CPU, epoch)
        assert record.epoch == epoch and record.data_s > 0 and record.train_s > 0
        assert record.data_s + record.train_s <= record.total_s
        assert record.batches == 3 and record.images == 96
        assert math.isclose(record.images_per_s, 96 / record.total_s)


def _batches(count: int, size: int = 8) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [(torch.randn(size, 3, 32, 32, generator=generator), torch.randint(0, 10, (size,))) for _ in range(count)]


def test_the_loop_counts_reads_once_and_calls_its_hooks_in_order():
    calls = []

    class Recording:
        def __init__(self, name):
            self.name = name

        def __enter__(self):
            calls.append(f"{self.name}+")

        def __exit__(self, *exc):
            calls.append(f"{self.name}-")

    def step(inputs, targets):
        calls.append("step")
        return torch.tensor(float(len(targets))), torch.tensor(2)

    step.model = torch.nn.Linear(1, 1).eval()
    hooks = Hooks(
        before_epoch=lambda epoch: calls.append(f"epoch {epoch}"),
        around_data=lambda: Recording("data"),
        around_step=lambda: Recording("timed"),
        after_step=lambda: calls.append("after"),
    )
    record = train_epoch(step, _batches(3), CPU, epoch=4, hooks=hooks, max_steps=2)
    assert step.model.training  # the loop puts the model in training mode
    assert calls == ["epoch 4"] + ["data+", "data-", "timed+", "step", "timed-", "after"] * 2
    assert (record.epoch, record.batches, record.images) == (4, 2, 16)
    assert record.loss == pytest.approx(8.0) and record.accuracy == pytest.approx(100 * 4 / 16)
    whole = train_epoch(step, _batches(3), CPU, sync_steps=False)
    assert whole.batches == 3 and whole.data_s == 0 and whole.train_s == whole.total_s


def test_train_epochs_logs_each_epoch_and_stops_at_divergence():
    logged, told = [], []

    class Run:
        def log_epoch(self, record):
            logged.append(record.epoch)

    losses = iter([1.0, float("nan"), 1.0])

    def step(inputs, targets):
        return torch.tensor(next(losses)), torch.tensor(0)

    step.model = torch.nn.Linear(1, 1)
    records = train_epochs(step, _batches(1), CPU, 3, run=Run(), on_epoch=told.append, progress=False)
    assert [r.epoch for r in records] == logged == [1, 2] and told == records
    assert records[-1].diverged and not records[0].diverged


def test_lab_step_trains_and_returns_device_figures():
    torch.manual_seed(0)
    model = tiny_model()
    step = LabStep(model, make_optimizer("sgd", model.parameters(), lr=0.05), CPU)
    inputs, targets = _batches(1, 16)[0]
    first = [step(inputs, targets)[0].item() for _ in range(5)]
    loss, correct = step(inputs, targets)
    assert first[-1] < first[0] and loss.dtype == torch.float32 and not loss.requires_grad
    assert 0 <= int(correct) <= 16


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
    result = train(config, model=tiny_model(), progress=False)
    assert result.diverged and result.epochs[-1].diverged
    assert len(result.epochs) < 3  # stopped cleanly after the diverged epoch


def test_cuda_without_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(DeviceError, match="device='cuda'.*no CUDA GPU.*device='cpu'"):
        resolve_device("cuda")


def test_three_epochs_on_real_images_loss_falls(cifar_zip):
    """The lab's train() end to end on real images with workers; a small model keeps it a unit test."""
    config = make_config(
        data=str(cifar_zip), limit_train=256, limit_test=100, epochs=3, workers=2, device="cpu", lr=0.02
    )
    result = train(config, model=tiny_model(), progress=False, evaluate_test=True)
    losses = [e.loss for e in result.epochs]
    assert losses[-1] < losses[0], losses
    assert all(e.data_s + e.train_s <= e.total_s and e.images == 256 for e in result.epochs)
    assert result.test.images == 100 and 0 <= result.test.accuracy <= 100


@pytest.mark.slow
def test_resnet18_on_real_images_loss_falls(cifar_zip):
    """Slow (about a minute and a half on 2 busy cores): the lab's ResNet-18 itself."""
    config = make_config(
        data=str(cifar_zip), limit_train=512, limit_test=200, epochs=3, workers=2, device="cpu", lr=0.02
    )
    result = train(config, progress=False, evaluate_test=True)
    losses = [e.loss for e in result.epochs]
    assert losses[-1] < losses[0], losses
    assert result.test.images == 200


@pytest.mark.cuda
def test_cuda_epoch_is_synchronised_and_consistent():
    config = make_config(data="fake", limit_train=512, limit_test=128, epochs=2, device="cuda")
    result = train(config, progress=False, evaluate_test=True)
    assert all(e.data_s + e.train_s <= e.total_s for e in result.epochs)
    assert result.device.type == "cuda"


def test_evaluate_counts_every_image():
    bundle = load_data("fake", limit_train=32, limit_test=40)
    loader = make_loader(bundle.test, 16, 0, CPU, shuffle=False)
    record = evaluate(tiny_model(), loader, CPU)
    assert record.images == 40 and 0 <= record.accuracy <= 100


def test_optimizer_for_takes_the_configs_hyper_parameters():
    from lablib.core.optim import FUSED, make_optimizer, optimizer_for

    config = make_config(optimizer="sgd_nesterov", lr=0.05, momentum=0.8, weight_decay=1e-3)
    group = optimizer_for(config, tiny_model().parameters()).param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"], group["nesterov"]) == (0.05, 0.8, 1e-3, True)
    assert not group["fused"]
    assert "adagrad" not in FUSED  # asked for, a fused update is skipped where the optimiser has none
    assert make_optimizer("adagrad", tiny_model().parameters(), fused=True).param_groups[0]["lr"] == 0.1


@pytest.mark.cuda
def test_fused_optimizer_on_cuda():
    from lablib.core.optim import optimizer_for

    model = tiny_model().cuda()
    assert optimizer_for(make_config(), model.parameters(), fused=True).param_groups[0]["fused"]


def test_a_finite_loss_far_above_its_start_is_divergence_and_stops_the_run():
    from lablib.core.train import DIVERGENCE_FACTOR, divergence, train_epochs

    assert divergence(float("nan"), 2.3) and divergence(float("inf"), 2.3)
    assert divergence(2.3 * DIVERGENCE_FACTOR * 1.01, 2.3) and not divergence(2.3 * DIVERGENCE_FACTOR * 0.99, 2.3)
    assert not divergence(1.0, float("nan"))  # nothing to compare with: only a non-finite loss counts

    class Exploding:
        """A step whose loss starts at 2.3 and grows a hundredfold each epoch, staying finite."""

        def __init__(self):
            self.model, self.calls = torch.nn.Linear(1, 1), 0

        def __call__(self, inputs, targets):
            self.calls += 1
            epoch = (self.calls - 1) // 4
            return torch.tensor(2.3 * 100.0**epoch if self.calls > 1 else 2.3), torch.tensor(0)

    batches = [(torch.zeros(2, 1), torch.zeros(2, dtype=torch.long))] * 4
    records = train_epochs(Exploding(), batches, torch.device("cpu"), epochs=5, progress=False)
    assert [r.diverged for r in records] == [False, True]  # stopped after epoch 2, not trained on to epoch 5
    assert "starting loss" in records[-1].diverged_reason and records[-1].loss < float("inf")


def test_tf32_is_set_with_the_current_switches_without_a_warning_and_restored():
    import warnings

    from lablib.core.train import precision_mode

    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    if not hasattr(matmul, "fp32_precision"):
        pytest.skip(f"torch {torch.__version__} has only the legacy TF32 switches")
    conv.fp32_precision = "ieee"  # the current API used before: the legacy cudnn.allow_tf32 now raises on this torch
    try:
        state = lambda: (matmul.fp32_precision, conv.fp32_precision, torch.get_float32_matmul_precision())
        before = state()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a deprecation warning fails the test
            with precision_mode("tf32", torch.device("cpu")) as dtype:
                # TF32 on; the legacy reading that Inductor's max-autotune makes still answers
                assert dtype is None and state() == ("tf32", "tf32", "high")
            assert state() == before
            with precision_mode("bf16", torch.device("cpu")) as dtype:
                assert dtype is torch.bfloat16 and state() == before
            with pytest.raises(ValueError), precision_mode("tf32", torch.device("cpu")):
                raise ValueError("the block fails")
            assert state() == before  # restored on the way out of a failure
    finally:
        conv.fp32_precision = "tf32"  # torch's default for convolutions
