"""The fast engine: the lab's training, with the data and its augmentation on the device.

The faithful lab loop (lablib.core.train) decodes PIL images in DataLoader workers,
trains in fp32 at batch 128 and synchronises the GPU twice per step for its
timing. The fast engine trains the same model on the same data with the same
augmentation, but
- keeps the whole training set on the device as uint8 (50,000 x 3 x 32 x 32 =
  154 MB), padded once by 4 pixels on each side;
- draws each batch's random crop (padding 4) and horizontal flip on the device
  with one gather, and normalises in the same expression (uint8 -> float);
  grey digits (MNIST) are only normalised, as the lab's transform does;
- trains in channels_last with bf16 autocast where the device supports it
  (parameters, BatchNorm statistics and the loss stay fp32), torch.compile
  with static shapes (its compilations counted and timed from torch's compile
  events, lablib.core.compiles, apart from the epochs), CUDA graphs (mode
  "reduce-overhead") on CUDA, a fused optimiser step;
- never reads from the device inside the epoch: loss and correct counts
  accumulate there and are read once per epoch.
The epochs run in the lab's one loop (lablib.core.train.train_epochs) with
the engine's own step (FastStep) and batch source (DeviceBatches), timed whole:
the device is synchronised at the start and the end of each epoch, never inside.
Batches are full: the last partial batch of each epoch is dropped (80 of
50,000 images at batch 128; the shuffle differs each epoch, so every image is
still seen), so compiled code and CUDA graphs see one static shape.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lablib.core.compiles import CompileLog, count_compiles
from lablib.core.config import RunConfig, make_config
from lablib.core.data import CIFAR10_MEAN, CIFAR10_STD, DataBundle
from lablib.core.errors import ConfigError, DataError
from lablib.core.optim import make_scheduler, optimizer_for
from lablib.core.timing import Stopwatch
from lablib.core.train import (
    EpochRecord,
    EvalRecord,
    Hooks,
    backward_step,
    epoch_records,
    evaluate,
    grad_scaler,
    precision_mode,
    prepare,
    stop_epoch,
    train_epochs,
)

# --- data on the device -------------------------------------------------------------


def uint8_arrays(dataset) -> tuple[np.ndarray, np.ndarray]:
    """(N x H x W x C uint8 images, N labels) of an in-memory dataset, subsets followed through.

    Works for lablib's ArrayImageDataset and torchvision's CIFAR10 (both keep
    `.data` and `.targets`) and for torch Subsets of them.
    """
    if isinstance(dataset, torch.utils.data.Subset):
        images, labels = uint8_arrays(dataset.dataset)
        index = np.asarray(dataset.indices)
        return images[index], labels[index]
    data = getattr(dataset, "data", None)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        raise DataError(
            f"fast mode needs images held in memory as a uint8 array; {type(dataset).__name__} has none. "
            "Use data='cifar10' or an image folder/.zip (not 'fake')."
        )
    if data.ndim == 3:  # grayscale N x H x W
        data = data[..., None]
    return data, np.asarray(dataset.targets, dtype=np.int64)


@dataclass
class DeviceData:
    """A split held on the device: uint8 images (padded for cropping) and int64 labels."""

    images: torch.Tensor  # N x C x (H + 2 padding) x (W + 2 padding), uint8
    targets: torch.Tensor  # N, int64
    padding: int  # pixels of zero padding on each side
    size: int  # the crop's side (32)

    def __len__(self) -> int:
        return len(self.targets)


def to_device_data(dataset, device: torch.device, padding: int = 4) -> DeviceData:
    """Copy a dataset's uint8 images to the device once, zero-padded as RandomCrop(padding) pads them."""
    images, labels = uint8_arrays(dataset)
    # N x H x W x C -> N x C x H x W view (channels-last in memory), then pad: N x C x H+2p x W+2p.
    tensor = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2)
    padded = F.pad(tensor, (padding, padding, padding, padding)) if padding else tensor.contiguous()
    return DeviceData(padded, torch.from_numpy(labels).to(device), padding, images.shape[1])


def random_crop_flip(
    data: DeviceData, index: torch.Tensor, generator: torch.Generator | None = None, flip: bool = True
) -> torch.Tensor:
    """B x C x size x size uint8 crops of the images at `index`, each at a random offset, half flipped.

    Same distribution as RandomCrop(size, padding) then RandomHorizontalFlip(0.5):
    offsets uniform in [0, 2 * padding] (9 positions each way for padding 4),
    and a flipped crop reads its columns right to left. One gather, no host sync.
    """
    batch, device, size = index.numel(), index.device, data.size
    span = 2 * data.padding + 1
    dy = torch.randint(0, span, (batch, 1), device=device, generator=generator)
    dx = torch.randint(0, span, (batch, 1), device=device, generator=generator)
    steps = torch.arange(size, device=device)
    rows = dy + steps  # B x size
    if flip:
        flipped = torch.rand(batch, 1, device=device, generator=generator) < 0.5
        cols = dx + torch.where(flipped, steps.flip(0), steps)  # B x size
    else:
        cols = dx + steps
    channels = torch.arange(data.images.shape[1], device=device)
    return data.images[
        index[:, None, None, None], channels[None, :, None, None], rows[:, None, :, None], cols[:, None, None, :]
    ]


def center(data: DeviceData, index: torch.Tensor) -> torch.Tensor:
    """The unpadded images at `index` (test time: no augmentation)."""
    p = data.padding
    return data.images[index, :, p : p + data.size, p : p + data.size]


class Normalize:
    """uint8 -> float, (x / 255 - mean) / std in one multiply-add, optionally channels_last."""

    def __init__(self, device: torch.device, channels_last: bool, mean=CIFAR10_MEAN, std=CIFAR10_STD):
        mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        std = torch.tensor(std, device=device).view(1, -1, 1, 1)
        self.scale = 1.0 / (255.0 * std)
        self.shift = -mean / std
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        out = torch.addcmul(self.shift, batch.float(), self.scale)  # shift + x * scale
        return out.contiguous(memory_format=self.memory_format)


# --- training ---------------------------------------------------------------------------


def scaled_lr(lr: float, batch_size: int, base_batch: int = 128, rule: str = "sqrt") -> float:
    """The learning rate for `batch_size` when `lr` suits `base_batch`.

    "linear" (Goyal et al. 2017) needs a warm-up the lab's constant schedule does
    not have; "sqrt" keeps the step's noise scale and is stable without one.
    """
    ratio = batch_size / base_batch
    if rule == "linear":
        return lr * ratio
    if rule == "sqrt":
        return lr * math.sqrt(ratio)
    if rule == "none":
        return lr
    raise ConfigError(f"lr_scaling={rule!r} is unknown; expected linear, sqrt or none.")


@dataclass
class FastResult:
    model: nn.Module  # the eager module (shares its parameters with the compiled one)
    epochs: list[EpochRecord]
    device: torch.device
    batch_size: int
    lr: float
    warmup_s: float  # the warm-up steps before the first epoch: compilation, CUDA graph capture, first steps
    compile_log: CompileLog  # every compilation of the run, from torch's compile events
    compiled: bool
    cuda_graphs: bool
    test: EvalRecord | None = None
    checkpoint: dict | None = None  # the state to continue from, when it stopped before its schedule's end
    diverged: bool = field(init=False)

    @property
    def compile_s(self) -> float:
        """Seconds spent compiling, every compilation of the run included (0 when nothing was compiled)."""
        return self.compile_log.compile_s

    def __post_init__(self) -> None:
        self.diverged = any(e.diverged for e in self.epochs)


class TrainingLoss(nn.Module):
    """The model, the fp32 cross entropy and the correct count as one module, so compile fuses them all.

    forward(B x C x H x W inputs, B targets) -> (scalar loss, scalar correct count), both on the device.
    """

    def __init__(self, model: nn.Module, autocast_dtype: torch.dtype | None, device_type: str):
        super().__init__()
        self.model, self.autocast_dtype, self.device_type = model, autocast_dtype, device_type

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(
            self.device_type, dtype=self.autocast_dtype or torch.float32, enabled=self.autocast_dtype is not None
        ):
            outputs = self.model(inputs)  # B x 10, bf16 under autocast
        loss = F.cross_entropy(outputs.float(), targets)  # fp32 loss
        return loss, (outputs.argmax(1) == targets).sum()


class FastStep:
    """One training step on a device batch: zero_grad, forward + loss under autocast, backward, step.

    Returns (loss, correct) as device tensors, never read here.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        autocast_dtype: torch.dtype | None,
        device: torch.device,
        compile: bool,
        cuda_graphs: bool,
        scheduler=None,
    ):
        self.model, self.optimizer, self.device, self.scheduler = model, optimizer, device, scheduler
        self.cuda_graphs = cuda_graphs and compile and device.type == "cuda"
        self.loss = TrainingLoss(model, autocast_dtype, device.type)
        self.scaler = grad_scaler(device, autocast_dtype)
        if compile:
            mode = "reduce-overhead" if self.cuda_graphs else "default"  # reduce-overhead = CUDA graphs
            self.loss = torch.compile(self.loss, mode=mode, dynamic=False)

    def __call__(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()  # a new iteration: the last step's graph outputs are done
        self.optimizer.zero_grad(set_to_none=True)
        loss, correct = self.loss(inputs, targets)
        backward_step(loss, self.optimizer, self.scaler, self.scheduler)
        # Detached copies: CUDA graph outputs are overwritten by the next replay.
        return loss.detach().clone(), correct.clone()


def _batches(length: int, batch_size: int) -> int:
    if batch_size > length:
        raise ConfigError(
            f"batch_size={batch_size} is larger than the {length} training images; "
            "use a smaller batch or more images (limit_train)."
        )
    return length // batch_size  # full batches only: one static shape for compile and CUDA graphs


class DeviceBatches:
    """One epoch of full training batches from a device-held split, each iteration a new shuffle.

    Each batch is B x C x size x size floats (randomly cropped, half flipped,
    normalised) and B labels, all made on the device; nothing is read back.
    """

    def __init__(
        self,
        data: DeviceData,
        normalize: Normalize,
        batch_size: int,
        generator: torch.Generator | None = None,
        augment: bool = True,
    ):
        self.data, self.normalize, self.batch_size, self.generator = data, normalize, batch_size, generator
        self.augment = augment  # False: the images as they are (the lab's grey digits get no crop or flip)
        self.count = _batches(len(data), batch_size)

    def __len__(self) -> int:
        return self.count

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The normalised (augmented) images at `index` and their labels."""
        images = random_crop_flip(self.data, index, self.generator) if self.augment else center(self.data, index)
        return self.normalize(images), self.data.targets[index]

    def __iter__(self):
        size = self.batch_size
        order = torch.randperm(len(self.data), device=self.data.targets.device, generator=self.generator)
        for number in range(self.count):
            yield self.batch(order[number * size : (number + 1) * size])


def eval_batches(data: DeviceData, normalize: Normalize, batch_size: int = 1000):
    """A device-held split in order, unaugmented and normalised, as (inputs, targets) batches for evaluate()."""
    device = data.targets.device
    for start in range(0, len(data), batch_size):
        index = torch.arange(start, min(start + batch_size, len(data)), device=device)
        yield normalize(center(data, index)), data.targets[index]


@contextlib.contextmanager
def _cudnn_benchmark(enabled: bool):
    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled or saved  # fixed shapes: let cuDNN pick its fastest kernels
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = saved


def train_fast(
    config: RunConfig,
    data: DataBundle | None = None,
    run=None,
    compile: bool = True,
    cuda_graphs: bool = True,
    channels_last: bool = True,
    evaluate_test: bool = True,
    warmup_steps: int | None = None,
    progress: bool = True,
    generator: torch.Generator | None = None,
    model: nn.Module | None = None,
    scheduler: str = "none",
    stop_after: int | None = None,
    resume: Mapping | None = None,
) -> FastResult:
    """Train `config.epochs` epochs on the fast engine; log each epoch to `run` when given.

    The settings come from `config` as in lablib.core.train.train (batch_size, lr,
    momentum, weight decay, seed, precision: bf16 or fp16 autocast, or fp32). The
    `warmup_steps` (default 3 when compiling, else 1) run before the first epoch,
    timed as warmup_s, and are then undone (weights, BatchNorm statistics and
    optimiser state restored), so the epochs train from the same start as the
    faithful loop. The compilations are counted and timed from torch's compile
    events over the whole run (lablib.core.compiles): with full batches and static
    shapes there is one, in the warm-up. `scheduler` (lablib.core.optim.SCHEDULERS)
    is stepped once per batch. `stop_after` and `resume` as in lablib.core.train.train:
    stop after that epoch of the schedule with a checkpoint in the result, or continue
    from one; the result's epochs are all of the training's.
    """
    from lablib.core import checkpoint

    last = stop_epoch(config, stop_after)
    device, data, model = prepare(config, model, data, progress)
    memory_format = torch.channels_last if channels_last else torch.preserve_format
    model = model.to(device, memory_format=memory_format)
    augment = data.channels == 3  # the lab's transform crops and flips colour images only
    train_data = to_device_data(data.train, device, padding=4 if augment else 0)
    normalize = Normalize(device, channels_last, *_statistics(data.channels))
    batches = DeviceBatches(train_data, normalize, config.batch_size, generator, augment)
    # One fused kernel for the whole parameter update on CUDA instead of a few per tensor.
    optimizer = optimizer_for(config, model.parameters(), fused=device.type == "cuda")
    schedule = make_scheduler(scheduler, optimizer, config.epochs, len(batches), config.lr)
    warmup_steps = (3 if compile else 1) if warmup_steps is None else warmup_steps
    with (
        precision_mode(config.precision, device) as autocast_dtype,
        _cudnn_benchmark(device.type == "cuda"),
        count_compiles() as compiles,
    ):
        step = FastStep(model, optimizer, autocast_dtype, device, compile, cuda_graphs)
        saved = (copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict()))
        with Stopwatch(device) as warmup:
            index = torch.arange(config.batch_size, device=device)
            # Its own random numbers, so the epochs draw the same crops with or without a warm-up.
            warmup_batches = DeviceBatches(
                train_data,
                normalize,
                config.batch_size,
                torch.Generator(device=device).manual_seed(config.seed),
                augment,
            )
            for _ in range(warmup_steps):
                step(*warmup_batches.batch(index))
        model.load_state_dict(saved[0])  # in place: compiled code and CUDA graphs keep their parameters
        optimizer.load_state_dict(saved[1])
        step.scheduler = schedule  # from here on: the warm-up steps leave the schedule at its start
        hooks = Hooks(before_epoch=compiles.mark)  # a compile's event says its epoch (none: the warm-up)
        generators = {"batches": generator} if generator is not None else {}  # else torch's, in the RNG state
        done = []
        if resume is not None:
            checkpoint.restore(resume, model, optimizer, schedule, step.scaler, generators)
            done = epoch_records(resume["epochs"])
        epochs = done + train_epochs(
            step, batches, device, last, run, False, hooks, progress=progress, label="fast epoch", done=done
        )
        state = None
        if len(epochs) < config.epochs and not epochs[-1].diverged:
            state = checkpoint.capture(len(epochs), model, optimizer, schedule, step.scaler, generators, epochs)
        test = None
        if evaluate_test and not epochs[-1].diverged:
            test_data = to_device_data(data.test, device, padding=0)
            test = evaluate(model, eval_batches(test_data, normalize), device, autocast_dtype)
    return FastResult(
        model,
        epochs,
        device,
        config.batch_size,
        config.lr,
        warmup.seconds,
        compiles,
        compile,
        step.cuda_graphs,
        test,
        state,
    )


def _statistics(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    from lablib.core.data import MNIST_MEAN, MNIST_STD

    return (MNIST_MEAN, MNIST_STD) if channels == 1 else (CIFAR10_MEAN, CIFAR10_STD)


def fast_config(config: RunConfig, batch_size: int | None = None, lr_scaling: str = "sqrt") -> RunConfig:
    """The fast mode's settings: bf16, and for a larger batch the learning rate scaled by `lr_scaling`."""
    batch = batch_size or config.batch_size
    lr = scaled_lr(config.lr, batch, config.batch_size, lr_scaling)
    return make_config(config, precision="bf16", batch_size=batch, lr=lr)
