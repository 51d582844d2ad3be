"""The lab's training loop: one epoch in, one EpochRecord out.

No per-step host-device sync beyond what the measurement demands (the two
synchronize calls around the training interval on CUDA): loss and correct
counts accumulate on the device and are read once per epoch.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from lablib.core.config import RunConfig
from lablib.core.data import DataBundle, load_data_for, make_loader
from lablib.core.errors import DeviceError
from lablib.core.model import SmallCNN, resnet18
from lablib.core.optim import make_optimizer
from lablib.core.timing import EpochTimer


@dataclass(frozen=True)
class EpochRecord:
    epoch: int  # 1-based
    loss: float  # mean of the per-batch training losses
    accuracy: float  # top-1 training accuracy over the epoch's batches, in %
    data_s: float  # blocked waiting for the loader
    train_s: float  # copy to device + zero_grad + forward + loss + backward + step
    total_s: float  # whole epoch, wall clock
    images: int
    batches: int
    images_per_s: float  # images / total_s
    diverged: bool = False  # loss became NaN or inf

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class EvalRecord:
    loss: float  # mean cross entropy per image
    accuracy: float  # top-1, in %
    images: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    model: nn.Module
    epochs: list[EpochRecord]
    data: DataBundle
    device: torch.device
    optimizer: torch.optim.Optimizer
    test: EvalRecord | None = None
    diverged: bool = field(init=False)

    def __post_init__(self) -> None:
        self.diverged = any(e.diverged for e in self.epochs)


def summarise_epochs(epochs: Iterable) -> dict[str, float]:
    """Totals and means of a run's EpochRecords, for its results.

    data_s_total is C3.1's "total data-loading time"; epoch_s_mean is the
    runtime that C3.2 and C4 compare.
    """
    import pandas as pd

    rows = [e.to_dict() if hasattr(e, "to_dict") else dict(e) for e in epochs]
    if not rows:
        return {}
    frame = pd.DataFrame(rows)
    return {
        "epochs_run": int(len(frame)),
        "data_s_total": float(frame["data_s"].sum()),
        "train_s_total": float(frame["train_s"].sum()),
        "epoch_s_total": float(frame["total_s"].sum()),
        "data_s_mean": float(frame["data_s"].mean()),
        "train_s_mean": float(frame["train_s"].mean()),
        "epoch_s_mean": float(frame["total_s"].mean()),
        "images_per_s_mean": float(frame["images_per_s"].mean()),
        "final_loss": float(frame["loss"].iloc[-1]),
        "final_accuracy": float(frame["accuracy"].iloc[-1]),
        "loss_mean": float(frame["loss"].mean()),
        "accuracy_mean": float(frame["accuracy"].mean()),
        "diverged": bool(frame["diverged"].any()) if "diverged" in frame else False,
    }


def resolve_device(name: str) -> torch.device:
    """ "auto" -> cuda when a GPU is visible, else cpu; "cuda" without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError(
            "device='cuda' was asked for, but torch sees no CUDA GPU on this machine "
            f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}); use device='cpu' or "
            "'auto', or run `python -m lablib info` to see why the GPU is not visible."
        )
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def precision_mode(precision: str, device: torch.device) -> Iterator[torch.dtype | None]:
    """Set the float32 math mode for the block; yield the autocast dtype (or None).

    fp32: PyTorch's defaults (cuDNN convolutions may use TF32 on Ampere and
    later; matmuls stay fp32). tf32: TF32 for matmuls too. bf16: autocast to
    bfloat16 (BatchNorm and the loss stay fp32, as autocast keeps them).
    """
    saved = (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32)
    try:
        if precision == "tf32":
            torch.set_float32_matmul_precision("high")
            torch.backends.cudnn.allow_tf32 = True
        yield torch.bfloat16 if precision == "bf16" else None
    finally:
        torch.set_float32_matmul_precision(saved[0])
        torch.backends.cudnn.allow_tf32 = saved[1]


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def train_epoch(
    model: nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    epoch: int = 1,
    scheduler=None,
    autocast_dtype: torch.dtype | None = None,
    progress: Callable[[int], object] | None = None,
) -> EpochRecord:
    """Train one epoch with the lab's timing; `progress(n)` is told of each batch."""
    model.train()
    criterion = nn.CrossEntropyLoss()
    loss_sum = torch.zeros((), device=device)  # stays on the device until the epoch ends
    correct = torch.zeros((), device=device, dtype=torch.long)
    images = batches = 0
    timer = EpochTimer(device)
    iterator = iter(loader)
    timer.start()
    while (batch := timer.next_batch(iterator)) is not None:
        inputs, targets = batch
        with timer.training():
            inputs = inputs.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            with _autocast(device, autocast_dtype):
                outputs = model(inputs)
                loss = criterion(outputs, targets)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            loss_sum += loss.detach().float()
            correct += (outputs.argmax(1) == targets).sum()
        images += len(targets)
        batches += 1
        if progress is not None:
            progress(1)
    times = timer.stop()
    mean_loss = loss_sum.item() / max(batches, 1)  # the epoch's one read from the device
    return EpochRecord(
        epoch=epoch,
        loss=mean_loss,
        accuracy=100.0 * correct.item() / max(images, 1),
        data_s=times.data_s,
        train_s=times.train_s,
        total_s=times.total_s,
        images=images,
        batches=batches,
        images_per_s=images / times.total_s if times.total_s > 0 else float("nan"),
        diverged=not math.isfinite(mean_loss),
    )


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device, autocast_dtype: torch.dtype | None = None) -> EvalRecord:
    """Test loss and top-1 accuracy in eval mode."""
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    images = 0
    for inputs, targets in loader:
        inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        with _autocast(device, autocast_dtype):
            outputs = model(inputs)
        loss_sum += nn.functional.cross_entropy(outputs.float(), targets, reduction="sum")
        correct += (outputs.argmax(1) == targets).sum()
        images += len(targets)
    return EvalRecord(loss_sum.item() / max(images, 1), 100.0 * correct.item() / max(images, 1), images)


def build_model(config: RunConfig, channels: int = 3, num_classes: int = 10) -> nn.Module:
    """ResNet-18 for colour images; the small CNN for grayscale digits (MNIST)."""
    if channels == 1:
        return SmallCNN(num_classes, in_channels=1)
    return resnet18(num_classes, batch_norm=config.batch_norm)


def prepare(
    config: RunConfig, model: nn.Module | None = None, data: DataBundle | None = None, progress: bool = False
) -> tuple[torch.device, DataBundle, nn.Module]:
    """The device, the seeded data and a model (built when not given) for a run of `config`."""
    device = resolve_device(config.device)
    seed_everything(config.seed)
    if data is None:
        data = load_data_for(config, progress=progress)
    if model is None:
        model = build_model(config, data.channels, len(data.classes))
    return device, data, model


def train(
    config: RunConfig,
    run=None,
    model: nn.Module | None = None,
    data: DataBundle | None = None,
    evaluate_test: bool = False,
    progress: bool = True,
    scheduler: str = "none",
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> TrainResult:
    """Train `config.epochs` epochs; log each epoch to `run` (a runs.Run) when given.

    `model` may be a prepared module (e.g. compiled); it is moved to the
    device. A diverged epoch (NaN/inf loss) ends the training: the result is
    reported, not raised.
    """
    from tqdm import tqdm

    from lablib.core.optim import make_scheduler

    device, data, model = prepare(config, model, data, progress)
    model = model.to(device)
    loader = make_loader(
        data.train,
        config.batch_size,
        config.workers,
        device,
        shuffle=True,
        seed=config.seed,
        pin_memory=config.pin_memory,
        persistent_workers=config.persistent_workers,
    )
    optimizer = make_optimizer(config.optimizer, model.parameters(), config.lr, config.momentum, config.weight_decay)
    schedule = make_scheduler(scheduler, optimizer, config.epochs, len(loader), config.lr)
    epochs: list[EpochRecord] = []
    with (
        precision_mode(config.precision, device) as autocast_dtype,
        tqdm(total=config.epochs * len(loader), desc="training", unit="batch", disable=not progress) as bar,
    ):
        for epoch in range(1, config.epochs + 1):
            bar.set_description(f"epoch {epoch}/{config.epochs}")
            record = train_epoch(model, loader, optimizer, device, epoch, schedule, autocast_dtype, progress=bar.update)
            epochs.append(record)
            bar.set_postfix(loss=f"{record.loss:.3f}", acc=f"{record.accuracy:.1f}%")
            if run is not None:
                run.log_epoch(record)
            if on_epoch is not None:
                on_epoch(record)
            if record.diverged:
                break
        test = None
        if evaluate_test and not (epochs and epochs[-1].diverged):
            test_loader = make_loader(
                data.test, 1000, config.workers, device, shuffle=False, seed=config.seed, pin_memory=config.pin_memory
            )
            test = evaluate(model, test_loader, device, autocast_dtype)
    result = TrainResult(model, epochs, data, device, optimizer, test)
    if run is not None:
        run.log_results(
            **{**summarise_epochs(epochs), "diverged": result.diverged},
            **({"test_loss": test.loss, "test_accuracy": test.accuracy} if test else {}),
        )
    return result
