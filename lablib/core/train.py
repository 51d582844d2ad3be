"""The lab's one training loop, and the run set-up every training section shares.

    device, data, model = prepare(config)          # device, seeding, data, model
    step = LabStep(model, optimizer, device)       # copy, zero_grad, forward + loss, backward, step
    epochs = train_epochs(step, loader, device, config.epochs, run=run)

`train_epoch` is the epoch loop of every mode: the lab (`train`), torch.compile
(lablib.core.compiled), the profiler (lablib.core.profiler) and the fast engine
(lablib.core.fastpath, with its own step and device-side batches). A step
is any callable (inputs, targets) -> (loss, correct count) with a `model`;
the batches are any re-iterable of (inputs, targets). Sections add what they
measure through `Hooks` (a per-step clock, profiler ranges).

Timing (lablib.core.timing, LAB_SPEC "Time measurement"): with `sync_steps`
(the lab's timing) the wait for each batch and each step are timed apart, the
step between two synchronize calls on CUDA; without it (fast mode) the epoch
is timed whole and the device is synchronised only at its two ends. Either way
loss and correct counts accumulate on the device and are read once per epoch,
after the clock stops.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np
import torch
from torch import nn

from lablib.core.config import RunConfig
from lablib.core.data import DataBundle, load_data_for, make_loader
from lablib.core.errors import DeviceError
from lablib.core.model import SmallCNN, resnet18
from lablib.core.optim import make_scheduler, optimizer_for
from lablib.core.provenance import driver_warning
from lablib.core.timing import EpochTimer, WholeEpochTimer

# A run diverges when its loss is not finite, or when an epoch's mean loss rises above this many times the
# loss of the run's first batch (about ln(10) = 2.3 at initialisation): Adam at a large learning rate reaches
# losses in the tens of thousands at chance accuracy while staying finite, which is not training.
DIVERGENCE_FACTOR = 10.0
DIVERGENCE_RULE = f"the loss became NaN/inf, or rose above {DIVERGENCE_FACTOR:g}× its starting value"


def divergence(mean_loss: float, start_loss: float) -> str:
    """Why an epoch with this mean loss has diverged, given the run's starting loss; "" when it has not."""
    if not math.isfinite(mean_loss):
        return f"the loss became {mean_loss}"
    if math.isfinite(start_loss) and start_loss > 0 and mean_loss > DIVERGENCE_FACTOR * start_loss:
        return (
            f"the epoch's mean loss {mean_loss:,.4g} is more than {DIVERGENCE_FACTOR:g}× the starting loss "
            f"{start_loss:.4g}"
        )
    return ""


@dataclass(frozen=True)
class EpochRecord:
    epoch: int  # 1-based
    loss: float  # mean of the per-batch training losses
    accuracy: float  # top-1 training accuracy over the epoch's batches, in %
    data_s: float  # blocked waiting for the loader (0 in fast mode: its batches are cut on the device)
    train_s: float  # copy to device + zero_grad + forward + loss + backward + step (fast mode: the whole epoch)
    total_s: float  # whole epoch, wall clock
    images: int
    batches: int
    images_per_s: float  # images / total_s
    diverged: bool = False  # the loss became NaN/inf, or rose far above its starting value (DIVERGENCE_FACTOR)
    start_loss: float = float("nan")  # the epoch's first batch loss (read once, at the epoch's end)
    diverged_reason: str = ""  # why the run was stopped as diverged, in words; "" when it was not

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class EvalRecord:
    loss: float  # mean cross entropy per image
    accuracy: float  # top-1, in %
    images: int
    per_class: tuple[float, ...] = ()  # top-1 of each class (by class index), in %
    per_class_images: tuple[int, ...] = ()  # test images of each class

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
    checkpoint: dict | None = None  # the state to continue from, when it stopped before its schedule's end
    diverged: bool = field(init=False)

    def __post_init__(self) -> None:
        self.diverged = any(e.diverged for e in self.epochs)


def epoch_records(rows: Iterable[Mapping]) -> list[EpochRecord]:
    """EpochRecords from their dicts (a checkpoint's or a record's rows)."""
    names = set(EpochRecord.__dataclass_fields__)
    return [EpochRecord(**{k: v for k, v in dict(row).items() if k in names}) for row in rows]


def stop_epoch(config: RunConfig, stop_after: int | None) -> int:
    """The last epoch a training runs: `stop_after` of the schedule's `config.epochs` (all when None)."""
    from lablib.core.errors import ConfigError

    if stop_after is None:
        return config.epochs
    if not 1 <= stop_after <= config.epochs:
        raise ConfigError(
            f"stop_after={stop_after} is not allowed; expected 1 .. {config.epochs} (the schedule's epochs)."
        )
    return int(stop_after)


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
        "diverged_reason": next((r for r in frame.get("diverged_reason", []) if r), ""),
    }


def resolve_device(name: str) -> torch.device:
    """ "auto" -> cuda when a GPU is visible, else cpu; "cuda" without a GPU is an error.

    A GPU that nvidia-smi lists but torch cannot use (a driver too old for this build) is an error for
    "auto" too: a run on a GPU machine never falls back to the CPU silently."""
    if name in ("auto", "cuda") and not torch.cuda.is_available():
        warning = driver_warning()
        if warning:
            raise DeviceError(f"device={name!r}: {warning} (or device='cpu' to run on the CPU knowingly)")
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
    later; matmuls stay fp32). tf32: TF32 for matmuls too. bf16 / fp16: autocast to
    bfloat16 / float16 (BatchNorm and the loss stay fp32, as autocast keeps them;
    fp16 training scales its loss with a GradScaler, see LabStep).
    """
    conv = getattr(torch.backends.cudnn, "conv", None)
    if hasattr(conv, "fp32_precision") and hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        # The current switches (cudnn.allow_tf32 warns, and raises once they were used). Matmuls through
        # set_float32_matmul_precision, which sets the current matmul switches and keeps the value that
        # torch.get_float32_matmul_precision() reads in step: Inductor's max-autotune reads it, and it
        # raises when only torch.backends.cuda.matmul.fp32_precision was changed.
        saved = _current_switches()
        try:
            if precision == "tf32":
                torch.set_float32_matmul_precision("high")
                conv.fp32_precision = "tf32"
            yield torch.bfloat16 if precision == "bf16" else None
        finally:
            _restore_switches(saved)
        return
    # A torch without the current switches: the legacy ones.
    saved = (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32)
    try:
        if precision == "tf32":
            torch.set_float32_matmul_precision("high")
            torch.backends.cudnn.allow_tf32 = True
        yield {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    finally:
        torch.set_float32_matmul_precision(saved[0])
        torch.backends.cudnn.allow_tf32 = saved[1]


def _current_switches() -> tuple[str | None, dict[str, str]]:
    """The legacy matmul value (None when torch cannot tell it: the switches were mixed before) and every
    current fp32_precision switch precision_mode changes, by its module's name."""
    try:
        legacy = torch.get_float32_matmul_precision()
    except RuntimeError:
        legacy = None
    modules = {"cuda.matmul": torch.backends.cuda.matmul, "cudnn.conv": torch.backends.cudnn.conv}
    if hasattr(getattr(torch.backends.mkldnn, "matmul", None), "fp32_precision"):
        modules["mkldnn.matmul"] = torch.backends.mkldnn.matmul
    return legacy, {name: module.fp32_precision for name, module in modules.items()}


def _restore_switches(saved: tuple[str | None, dict[str, str]]) -> None:
    legacy, switches = saved
    if legacy is not None:
        torch.set_float32_matmul_precision(legacy)  # first: it sets the current matmul switches too
    for name, value in switches.items():
        module, attribute = name.split(".")
        getattr(getattr(torch.backends, module), attribute).fp32_precision = value


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, autocast_dtype: torch.dtype | None) -> torch.amp.GradScaler | None:
    """A GradScaler under fp16 autocast, else None: fp16's narrow range underflows small gradients, so the loss
    is scaled up before backward."""
    return torch.amp.GradScaler(device.type) if autocast_dtype == torch.float16 else None


def backward_step(
    loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None, scheduler=None
) -> None:
    """The end of every training step: backward, the optimiser's step (through `scaler` when there is one),
    then the scheduler's step (once per batch)."""
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    if scheduler is not None:
        scheduler.step()


class Step(Protocol):
    """One training step on a batch; returns (loss, correct count) as device tensors, never read there."""

    model: nn.Module

    def __call__(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


class LabStep:
    """The lab's step: copy to the device, zero_grad, forward + loss (autocast when asked), backward, step.

    `model` may be compiled (lablib.core.compiled); `scheduler` is stepped once per batch.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        device: torch.device,
        autocast_dtype: torch.dtype | None = None,
        scheduler=None,
    ):
        self.model, self.optimizer, self.device = model, optimizer, device
        self.autocast_dtype, self.scheduler = autocast_dtype, scheduler
        self.criterion = nn.CrossEntropyLoss()
        self.scaler = grad_scaler(device, autocast_dtype)

    def __call__(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = inputs.to(self.device, non_blocking=True)  # B x C x H x W
        targets = targets.to(self.device, non_blocking=True)  # B
        self.optimizer.zero_grad(set_to_none=True)
        with _autocast(self.device, self.autocast_dtype):
            outputs = self.model(inputs)  # B x classes
            loss = self.criterion(outputs, targets)
        backward_step(loss, self.optimizer, self.scaler, self.scheduler)
        return loss.detach().float(), (outputs.argmax(1) == targets).sum()


@dataclass(frozen=True)
class Hooks:
    """What a section adds to the loop; each hook is optional and none reads from the device.

    before_epoch(epoch): before the epoch's batches are drawn (the compile section starts its clock);
    around_data(): a context around each wait for a batch (the profiler's "data_loading" range);
    around_step(): a context around each step and its timing (the profiler's "train_step" range);
    after_step(): after each step (the compile section's timestamp, profiler.step()).
    """

    before_epoch: Callable[[int], object] | None = None
    around_data: Callable[[], AbstractContextManager] | None = None
    around_step: Callable[[], AbstractContextManager] | None = None
    after_step: Callable[[], object] | None = None


NO_HOOKS = Hooks()


def train_epoch(
    step: Step,
    batches: Iterable,
    device: torch.device,
    epoch: int = 1,
    sync_steps: bool = True,
    hooks: Hooks = NO_HOOKS,
    max_steps: int | None = None,
    progress: Callable[[int], object] | None = None,
) -> EpochRecord:
    """Train one epoch (or its first `max_steps` batches); `progress(1)` is told of each batch.

    sync_steps=True is the lab's timing (data wait and step apart, the step
    synchronised on CUDA); False times the epoch whole (fast mode).
    """
    step.model.train()
    loss_sum = torch.zeros((), device=device)  # stays on the device until the epoch ends
    correct = torch.zeros((), device=device, dtype=torch.long)
    images = count = 0
    first_loss = None  # the first batch's loss, a device tensor: read with the epoch's sums, not in the loop
    around_data = hooks.around_data or contextlib.nullcontext
    around_step = hooks.around_step or contextlib.nullcontext
    timer = EpochTimer(device) if sync_steps else WholeEpochTimer(device)
    if hooks.before_epoch is not None:
        hooks.before_epoch(epoch)
    iterator = iter(batches)
    timer.start()
    while max_steps is None or count < max_steps:
        with around_data():
            batch = timer.next_batch(iterator)
        if batch is None:
            break
        inputs, targets = batch
        with around_step(), timer.training():
            loss, right = step(inputs, targets)
            if first_loss is None:
                first_loss = loss.detach().float().clone()
            loss_sum += loss
            correct += right
        images += len(targets)
        count += 1
        if hooks.after_step is not None:
            hooks.after_step()
        if progress is not None:
            progress(1)
    times = timer.stop()
    mean_loss = loss_sum.item() / max(count, 1)  # the epoch's read from the device, with the first loss
    start_loss = first_loss.item() if first_loss is not None else float("nan")
    reason = divergence(mean_loss, start_loss)
    return EpochRecord(
        epoch=epoch,
        loss=mean_loss,
        accuracy=100.0 * correct.item() / max(images, 1),
        data_s=times.data_s,
        train_s=times.train_s,
        total_s=times.total_s,
        images=images,
        batches=count,
        images_per_s=images / times.total_s if times.total_s > 0 else float("nan"),
        diverged=bool(reason),
        start_loss=start_loss,
        diverged_reason=reason,
    )


def train_epochs(
    step: Step,
    batches: Iterable,
    device: torch.device,
    epochs: int,
    run=None,
    sync_steps: bool = True,
    hooks: Hooks = NO_HOOKS,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    progress: bool = True,
    label: str = "epoch",
    max_steps: int | None = None,
    done: Sequence[EpochRecord] = (),
) -> list[EpochRecord]:
    """Train epochs len(done) + 1 .. `epochs` over `batches`; log each to `run` (a runs.Run) and tell `on_epoch`.

    `done` are the epochs a continued training ran before (lablib.core.checkpoint): numbering goes on
    from them and divergence is judged against their start; only the new epochs are returned. A diverged
    epoch (DIVERGENCE_RULE, judged against the run's first batch loss) ends the training: it is
    reported, not raised.
    """
    from lablib.core.progress import progress_bar

    per_epoch = len(batches) if max_steps is None else min(max_steps, len(batches))
    records: list[EpochRecord] = []
    first = len(done) + 1
    with progress_bar((epochs - first + 1) * per_epoch, label, "batch", enabled=progress) as bar:
        for epoch in range(first, epochs + 1):
            bar.set_description(f"{label} {epoch}/{epochs}")
            record = train_epoch(step, batches, device, epoch, sync_steps, hooks, max_steps, bar.update)
            start = [*done, *records][0].start_loss if done or records else None
            if start is not None and not record.diverged:  # later epochs are judged against the run's start
                reason = divergence(record.loss, start)
                if reason:
                    record = dataclasses.replace(record, diverged=True, diverged_reason=reason)
            records.append(record)
            bar.set_postfix(loss=f"{record.loss:.3f}", acc=f"{record.accuracy:.1f}%")
            if run is not None:
                run.log_epoch(record)
            if on_epoch is not None:
                on_epoch(record)
            if record.diverged:
                break
    return records


@torch.no_grad()
def evaluate(
    model: nn.Module, batches: Iterable, device: torch.device, autocast_dtype: torch.dtype | None = None
) -> EvalRecord:
    """Test loss and top-1 accuracy in eval mode over (inputs, targets) batches (a loader, or device batches)."""
    model.eval()
    loss_sum = torch.zeros((), device=device)
    hits = seen = None  # per class: correct predictions and images, on the device until the end
    for inputs, targets in batches:
        inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        with _autocast(device, autocast_dtype):
            outputs = model(inputs)  # B x classes
        loss_sum += nn.functional.cross_entropy(outputs.float(), targets, reduction="sum")
        classes = outputs.shape[1]
        right = (outputs.argmax(1) == targets).long()
        batch_hits = torch.bincount(targets, weights=right, minlength=classes)
        batch_seen = torch.bincount(targets, minlength=classes)
        hits = batch_hits if hits is None else hits + batch_hits
        seen = batch_seen if seen is None else seen + batch_seen
    if hits is None:
        return EvalRecord(float("nan"), float("nan"), 0)
    hits_list, seen_list = [int(h) for h in hits.tolist()], [int(n) for n in seen.tolist()]
    images = sum(seen_list)
    return EvalRecord(
        loss_sum.item() / max(images, 1),
        100.0 * sum(hits_list) / max(images, 1),
        images,
        tuple(100.0 * h / n if n else float("nan") for h, n in zip(hits_list, seen_list)),
        tuple(seen_list),
    )


def build_model(config: RunConfig, channels: int = 3, num_classes: int = 10) -> nn.Module:
    """ResNet-18 for colour images; the small CNN for grayscale digits (MNIST)."""
    if channels == 1:
        return SmallCNN(num_classes, in_channels=1)
    return resnet18(num_classes, batch_norm=config.batch_norm)


def prepare(
    config: RunConfig, model: nn.Module | None = None, data: DataBundle | None = None, progress: bool = False
) -> tuple[torch.device, DataBundle, nn.Module]:
    """The run set-up of every training mode: the device, the seeded data and a model (built when not given)."""
    device = resolve_device(config.device)
    seed_everything(config.seed)
    if data is None:
        data = load_data_for(config, progress=progress)
    if model is None:
        model = build_model(config, data.channels, len(data.classes))
    return device, data, model


def train_loader(config: RunConfig, data: DataBundle, device: torch.device, drop_last: bool = False):
    """The lab's shuffled training DataLoader for `config` (`drop_last`: full batches only)."""
    return make_loader(
        data.train,
        config.batch_size,
        config.workers,
        device,
        shuffle=True,
        seed=config.seed,
        pin_memory=config.pin_memory,
        persistent_workers=config.persistent_workers,
        drop_last=drop_last,
    )


def training_results(epochs: list[EpochRecord], test: EvalRecord | None) -> dict:
    """What a training run logs as results: the epoch summaries, divergence and the test figures."""
    return {
        **summarise_epochs(epochs),
        "diverged": any(e.diverged for e in epochs),
        "diverged_reason": next((e.diverged_reason for e in epochs if e.diverged_reason), ""),
        **(
            {
                "test_loss": test.loss,
                "test_accuracy": test.accuracy,
                "test_images": test.images,
                "test_per_class": list(test.per_class),
                "test_per_class_images": list(test.per_class_images),
            }
            if test
            else {}
        ),
    }


def train(
    config: RunConfig,
    run=None,
    model: nn.Module | None = None,
    data: DataBundle | None = None,
    evaluate_test: bool = False,
    progress: bool = True,
    scheduler: str = "none",
    on_epoch: Callable[[EpochRecord], None] | None = None,
    stop_after: int | None = None,
    resume: Mapping | None = None,
) -> TrainResult:
    """Train `config.epochs` epochs in the lab's setting; log each epoch to `run` (a runs.Run) when given.

    `model` may be a prepared module (e.g. compiled); it is moved to the
    device. A diverged epoch (NaN/inf loss) ends the training: the result is
    reported, not raised. `stop_after` ends it after that epoch of a schedule
    over `config.epochs` (the result then holds a checkpoint to continue from);
    `resume` is such a checkpoint (lablib.core.checkpoint) to continue from.
    The result's epochs are all of the training's, the resumed ones included.
    """
    from lablib.core import checkpoint

    last = stop_epoch(config, stop_after)
    device, data, model = prepare(config, model, data, progress)
    model = model.to(device)
    loader = train_loader(config, data, device)
    optimizer = optimizer_for(config, model.parameters())
    schedule = make_scheduler(scheduler, optimizer, config.epochs, len(loader), config.lr)
    # The loader shuffles, and seeds its workers, from its own generator: part of the state to continue.
    generators = {"loader": loader.generator}
    with precision_mode(config.precision, device) as autocast_dtype:
        step = LabStep(model, optimizer, device, autocast_dtype, schedule)
        done = []
        if resume is not None:
            checkpoint.restore(resume, model, optimizer, schedule, step.scaler, generators)
            done = epoch_records(resume["epochs"])
        epochs = done + train_epochs(
            step, loader, device, last, run=run, on_epoch=on_epoch, progress=progress, done=done
        )
        state = None
        if len(epochs) < config.epochs and not epochs[-1].diverged:
            state = checkpoint.capture(len(epochs), model, optimizer, schedule, step.scaler, generators, epochs)
        test = None
        if evaluate_test and not epochs[-1].diverged:
            test_loader = make_loader(
                data.test, 1000, config.workers, device, shuffle=False, seed=config.seed, pin_memory=config.pin_memory
            )
            test = evaluate(model, test_loader, device, autocast_dtype)
    result = TrainResult(model, epochs, data, device, optimizer, test, state)
    if run is not None:
        run.log_results(**training_results(epochs, test))
    return result
