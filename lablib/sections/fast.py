"""Fast mode: the lab's ResNet-18 trained as fast as the hardware allows (section X-FAST).

The faithful lab loop (lablib.core.train) decodes PIL images in DataLoader workers,
trains in fp32 at batch 128 and synchronises the GPU twice per step for its
timing. Fast mode trains the same model on the same data with the same
augmentation, but
- keeps the whole training set on the device as uint8 (50,000 x 3 x 32 x 32 =
  154 MB), padded once by 4 pixels on each side;
- draws each batch's random crop (padding 4) and horizontal flip on the device
  with one gather, and normalises in the same expression (uint8 -> float);
- trains in channels_last with bf16 autocast (parameters, BatchNorm statistics
  and the loss stay fp32), torch.compile (its time reported apart from the
  epochs), CUDA graphs (mode "reduce-overhead") on CUDA, a fused SGD step;
- never reads from the device inside the epoch: loss and correct counts
  accumulate there and are read once per epoch.
The epochs run in the lab's one loop (lablib.core.train.train_epochs) with
fast mode's own step (FastStep) and batch source (DeviceBatches), timed whole:
the device is synchronised at the start and the end of each epoch, never inside.
Batches are full: the last partial batch of each epoch is dropped (80 of
50,000 images at batch 128; the shuffle differs each epoch, so every image is
still seen), so compiled code and CUDA graphs see one static shape.

Model-FLOPs utilisation (MFU) = training FLOPs per image (counted by
torch.utils.flop_counter, forward + backward) x images / seconds / the GPU's
datasheet peak for the precision used. The physical lower bound of an epoch
is FLOPs / peak. Unknown GPUs and CPUs have no peak here: they show "—".
"""

from __future__ import annotations

import contextlib
import copy
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from lablib.core.config import RunConfig, make_config
from lablib.core.data import CIFAR10_MEAN, CIFAR10_STD, DataBundle
from lablib.core.errors import ConfigError, DataError
from lablib.core.optim import optimizer_for
from lablib.core.timing import Stopwatch
from lablib.core.train import (
    EpochRecord,
    EvalRecord,
    evaluate,
    precision_mode,
    prepare,
    train_epochs,
    training_results,
)

NOT_AVAILABLE = "—"  # shown for a figure that has no trustworthy value on this hardware

# --- peaks ----------------------------------------------------------------------


@dataclass(frozen=True)
class GpuPeak:
    """Dense (no sparsity) peak rates of one GPU model, in FLOP/s; None = no such tensor-core path."""

    name: str
    pattern: str  # regex searched in torch.cuda.get_device_name()
    fp32: float
    tf32: float | None
    bf16: float | None
    source: str


T = 1e12
# Datasheet numbers; the datasheets print tensor-core rates "with sparsity" (2x): the dense
# halves are used here. Order matters: the first matching pattern wins (H100 PCIe before H100).
GPU_PEAKS: tuple[GpuPeak, ...] = (
    # NVIDIA H200 datasheet (Tensor Core GPU, 2024): SXM FP32 67 TF, TF32 989 TF*, BF16 1,979 TF*;
    # NVL FP32 60 TF, TF32 835 TF*, BF16 1,671 TF* (* with sparsity).
    GpuPeak("H200 NVL", r"H200 NVL", 60 * T, 417.5 * T, 835.5 * T, "NVIDIA H200 datasheet (NVL)"),
    GpuPeak("H200 SXM", r"H200", 67 * T, 494.5 * T, 989.5 * T, "NVIDIA H200 datasheet (SXM)"),
    # NVIDIA H100 datasheet: SXM FP32 67, TF32 989*, BF16 1,979*; PCIe FP32 51, TF32 756*, BF16 1,513*;
    # NVL FP32 60, TF32 835*, BF16 1,671*.
    GpuPeak("H100 PCIe", r"H100.*PCIe", 51 * T, 378 * T, 756.5 * T, "NVIDIA H100 datasheet (PCIe)"),
    GpuPeak("H100 NVL", r"H100 NVL", 60 * T, 417.5 * T, 835.5 * T, "NVIDIA H100 datasheet (NVL)"),
    GpuPeak("H100 SXM", r"H100", 67 * T, 494.5 * T, 989.5 * T, "NVIDIA H100 datasheet (SXM)"),
    # NVIDIA A100 datasheet (40/80 GB, SXM and PCIe): FP32 19.5, TF32 156 (312*), BF16 312 (624*).
    GpuPeak("A100", r"A100", 19.5 * T, 156 * T, 312 * T, "NVIDIA A100 datasheet"),
    # NVIDIA L4 datasheet: FP32 30.3, TF32 120*, BF16 242*.
    GpuPeak("L4", r"\bL4\b", 30.3 * T, 60 * T, 121 * T, "NVIDIA L4 datasheet"),
    # NVIDIA A10 datasheet: FP32 31.2, TF32 62.5 (125*), BF16 125 (250*). Not the A10G (different clocks).
    GpuPeak("A10", r"\bA10\b", 31.2 * T, 62.5 * T, 125 * T, "NVIDIA A10 datasheet"),
    # NVIDIA T4 datasheet: FP32 8.1, mixed FP16 65; Turing has neither TF32 nor BF16 tensor cores.
    GpuPeak("T4", r"\bT4\b", 8.1 * T, None, None, "NVIDIA T4 datasheet"),
    # NVIDIA Ada (RTX 4090) whitepaper, appendix: FP32 82.6, TF32 82.6 (165.2*),
    # BF16 with FP32 accumulate 165.2 (330.3*).
    GpuPeak("RTX 4090", r"RTX 4090", 82.6 * T, 82.6 * T, 165.2 * T, "NVIDIA Ada GPU architecture whitepaper"),
)


def find_gpu_peak(device_name: str | None) -> GpuPeak | None:
    """The table row for a device name such as 'NVIDIA H200', or None (unknown GPU, or a CPU)."""
    if not device_name:
        return None
    for row in GPU_PEAKS:
        if re.search(row.pattern, device_name):
            return row
    return None


def peak_flops(device_name: str | None, precision: str) -> float | None:
    """Datasheet peak in FLOP/s for `precision` ("fp32", "tf32", "bf16"); None when unknown."""
    if precision not in ("fp32", "tf32", "bf16"):
        raise ConfigError(f"precision={precision!r} has no peak; expected fp32, tf32 or bf16.")
    row = find_gpu_peak(device_name)
    return None if row is None else getattr(row, precision)


def math_precision(device: torch.device, autocast_dtype: torch.dtype | None) -> str:
    """The arithmetic the convolutions actually run in, which decides the peak to compare with.

    bf16 autocast -> "bf16". In fp32 on an Ampere-or-later GPU cuDNN runs the
    convolutions in TF32 by default (torch.backends.cudnn.allow_tf32), and the
    convolutions are almost all of ResNet-18's FLOPs -> "tf32". Otherwise "fp32".
    """
    if autocast_dtype == torch.bfloat16:
        return "bf16"
    if device.type == "cuda" and torch.backends.cudnn.allow_tf32 and torch.cuda.get_device_capability(device)[0] >= 8:
        return "tf32"
    return "fp32"


def device_label(device: torch.device) -> str:
    from lablib.core.provenance import device_name

    return device_name(device)


# --- FLOPs ----------------------------------------------------------------------------


def _count_flops(model: nn.Module, batch: int, image_size: int, channels: int, backward: bool) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    copy_ = copy.deepcopy(model).cpu().float().train()  # leave the caller's model and BN stats alone
    inputs = torch.randn(batch, channels, image_size, image_size)
    targets = torch.zeros(batch, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        if backward:
            F.cross_entropy(copy_(inputs), targets).backward()
        else:
            with torch.no_grad():
                copy_(inputs)
    return counter.get_total_flops() / batch


def training_flops_per_image(model: nn.Module, image_size: int = 32, channels: int = 3, batch: int = 2) -> float:
    """FLOPs of one training step per image (forward + backward), counted by torch.utils.flop_counter.

    About 3x the forward's 2 x 0.56 GMAC for ResNet-18 (the backward computes the
    gradients of the inputs and of the weights; the first conv needs no input
    gradient, so slightly under 3x). Only convolutions and matmuls are counted,
    as the flop counter does; BatchNorm, ReLU and the optimiser are memory-bound extras.
    """
    return _count_flops(model, batch, image_size, channels, backward=True)


def forward_flops_per_image(model: nn.Module, image_size: int = 32, channels: int = 3, batch: int = 2) -> float:
    return _count_flops(model, batch, image_size, channels, backward=False)


@dataclass(frozen=True)
class Utilisation:
    """Measured speed against the hardware's limit."""

    flops_per_image: float  # training FLOPs per image
    images: int
    seconds: float
    precision: str  # fp32 | tf32 | bf16: the peak compared with
    peak_flops: float | None  # FLOP/s; None for unknown GPUs and CPUs

    @property
    def achieved_flops(self) -> float:
        return self.flops_per_image * self.images / self.seconds if self.seconds > 0 else float("nan")

    @property
    def mfu(self) -> float | None:
        """Model-FLOPs utilisation as a fraction of the peak; None without a known peak."""
        return None if self.peak_flops is None else self.achieved_flops / self.peak_flops

    @property
    def lower_bound_s(self) -> float | None:
        """The time the FLOPs would take at the peak: no epoch can be faster."""
        return None if self.peak_flops is None else self.flops_per_image * self.images / self.peak_flops


def format_mfu(value: float | None) -> str:
    """'23.4 %', or '—' when there is no peak to compare with."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NOT_AVAILABLE
    return f"{100 * value:.1f} %"


def format_seconds(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NOT_AVAILABLE
    return f"{value:.3f} s"


def steady_epoch_s(epochs: Sequence[EpochRecord]) -> float:
    """The median epoch time after the first (which pays cuDNN autotuning and worker start-up);
    the first epoch's when there is only one."""
    times = [e.total_s for e in epochs]
    later = times[1:] or times
    return float(np.median(later)) if later else float("nan")


def speed_summary(
    epochs: Sequence[EpochRecord], flops_per_image: float, device: torch.device, precision: str
) -> dict[str, Any]:
    """The numbers the X-FAST table shows for one mode (names do not clash with RunConfig fields)."""
    seconds = steady_epoch_s(epochs)
    images = int(np.median([e.images for e in epochs])) if epochs else 0
    name = device_label(device) if device.type == "cuda" else None
    use = Utilisation(flops_per_image, images, seconds, precision, peak_flops(name, precision))
    return {
        "epoch_s": seconds,
        "epoch1_s": epochs[0].total_s if epochs else float("nan"),
        "epoch_images": images,
        "images_per_s": images / seconds if seconds > 0 else float("nan"),
        "flops_per_image": flops_per_image,
        "achieved_tflops": use.achieved_flops / 1e12,
        "math_precision": precision,
        "peak_tflops": None if use.peak_flops is None else use.peak_flops / 1e12,
        "mfu": use.mfu,
        "lower_bound_s": use.lower_bound_s,
        "device_label": device_label(device),
    }


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
    compile_s: float  # the warm-up steps before the first epoch: compilation, CUDA graph capture
    compiled: bool
    cuda_graphs: bool
    test: EvalRecord | None = None
    diverged: bool = field(init=False)

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
    ):
        self.model, self.optimizer, self.device = model, optimizer, device
        self.cuda_graphs = cuda_graphs and compile and device.type == "cuda"
        self.loss = TrainingLoss(model, autocast_dtype, device.type)
        if compile:
            mode = "reduce-overhead" if self.cuda_graphs else "default"  # reduce-overhead = CUDA graphs
            self.loss = torch.compile(self.loss, mode=mode)

    def __call__(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()  # a new iteration: the last step's graph outputs are done
        self.optimizer.zero_grad(set_to_none=True)
        loss, correct = self.loss(inputs, targets)
        loss.backward()
        self.optimizer.step()
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
        self, data: DeviceData, normalize: Normalize, batch_size: int, generator: torch.Generator | None = None
    ):
        self.data, self.normalize, self.batch_size, self.generator = data, normalize, batch_size, generator
        self.count = _batches(len(data), batch_size)

    def __len__(self) -> int:
        return self.count

    def __iter__(self):
        size = self.batch_size
        order = torch.randperm(len(self.data), device=self.data.targets.device, generator=self.generator)
        for number in range(self.count):
            index = order[number * size : (number + 1) * size]
            yield self.normalize(random_crop_flip(self.data, index, self.generator)), self.data.targets[index]


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
) -> FastResult:
    """Train `config.epochs` epochs in fast mode; log each epoch to `run` when given.

    The settings come from `config` as in lablib.core.train.train (batch_size, lr,
    momentum, weight decay, seed, precision: use "bf16" for fast mode). The
    `warmup_steps` (default 3 when compiling, else 1) run before the first epoch,
    timed as compile_s, and are then undone (weights, BatchNorm statistics and
    optimiser state restored), so the epochs train from the same start as the
    faithful mode.
    """

    device, data, model = prepare(config, model, data, progress)
    memory_format = torch.channels_last if channels_last else torch.preserve_format
    model = model.to(device, memory_format=memory_format)
    train_data = to_device_data(data.train, device, padding=4)
    normalize = Normalize(device, channels_last, *_statistics(data.channels))
    batches = DeviceBatches(train_data, normalize, config.batch_size, generator)
    # One fused kernel for the whole parameter update on CUDA instead of a few per tensor.
    optimizer = optimizer_for(config, model.parameters(), fused=device.type == "cuda")
    warmup_steps = (3 if compile else 1) if warmup_steps is None else warmup_steps
    with precision_mode(config.precision, device) as autocast_dtype, _cudnn_benchmark(device.type == "cuda"):
        step = FastStep(model, optimizer, autocast_dtype, device, compile, cuda_graphs)
        saved = (copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict()))
        with Stopwatch(device) as warmup:
            index = torch.arange(config.batch_size, device=device)
            # Its own random numbers, so the epochs draw the same crops with or without a warm-up.
            warmup_generator = torch.Generator(device=device).manual_seed(config.seed)
            for _ in range(warmup_steps):
                step(normalize(random_crop_flip(train_data, index, warmup_generator)), train_data.targets[index])
        model.load_state_dict(saved[0])  # in place: compiled code and CUDA graphs keep their parameters
        optimizer.load_state_dict(saved[1])
        epochs = train_epochs(
            step, batches, device, config.epochs, run, sync_steps=False, progress=progress, label="fast epoch"
        )
        test = None
        if evaluate_test and not epochs[-1].diverged:
            test_data = to_device_data(data.test, device, padding=0)
            test = evaluate(model, eval_batches(test_data, normalize), device, autocast_dtype)
    result = FastResult(
        model, epochs, device, config.batch_size, config.lr, warmup.seconds, compile, step.cuda_graphs, test
    )
    if run is not None:  # the same results as lablib.core.train.train logs, and fast mode's own
        run.log_results(
            **training_results(epochs, test),
            compile_s=result.compile_s,
            compiled=compile,
            cuda_graphs=step.cuda_graphs,
            channels_last=channels_last,
        )
    return result


def _statistics(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    from lablib.core.data import MNIST_MEAN, MNIST_STD

    return (MNIST_MEAN, MNIST_STD) if channels == 1 else (CIFAR10_MEAN, CIFAR10_STD)


def fast_config(config: RunConfig, batch_size: int | None = None, lr_scaling: str = "sqrt") -> RunConfig:
    """The fast mode's settings: bf16, and for a larger batch the learning rate scaled by `lr_scaling`."""
    batch = batch_size or config.batch_size
    lr = scaled_lr(config.lr, batch, config.batch_size, lr_scaling)
    return make_config(config, precision="bf16", batch_size=batch, lr=lr)


MODES = ("faithful", "fast", "fast-large")  # the X-FAST rows, in the order the table shows them


def speed_table(runs) -> Any:
    """The X-FAST comparison table from run records (one row per mode), '—' where there is no peak."""
    columns = [
        "mode",
        "batch_size",
        "lr",
        "math_precision",
        "epoch_s",
        "epoch1_s",
        "images_per_s",
        "compile_s",
        "achieved_tflops",
        "peak_tflops",
        "mfu",
        "lower_bound_s",
        "test_accuracy",
    ]
    table = runs.reindex(columns=columns).copy()
    table["order"] = [MODES.index(m) if m in MODES else len(MODES) for m in table["mode"]]
    table = table.sort_values(["order", "batch_size"])
    out = pd.DataFrame(
        {
            "mode": table["mode"],
            "batch": table["batch_size"],
            "lr": table["lr"].round(4),
            "precision": table["math_precision"],
            "epoch s (steady)": table["epoch_s"].round(3),
            "epoch 1 s": table["epoch1_s"].round(3),
            "images/s": table["images_per_s"].round(0),
            "compile s": [NOT_AVAILABLE if _missing(v) else f"{v:.2f}" for v in table["compile_s"]],
            "TFLOP/s": table["achieved_tflops"].round(3),
            "peak TFLOP/s": [NOT_AVAILABLE if _missing(v) else f"{v:.1f}" for v in table["peak_tflops"]],
            "MFU": [format_mfu(None if _missing(v) else float(v)) for v in table["mfu"]],
            "lower bound": [format_seconds(None if _missing(v) else float(v)) for v in table["lower_bound_s"]],
            "test top-1 %": table["test_accuracy"].round(2),
        }
    )
    return out.reset_index(drop=True)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


# --- the sentences of X-FAST ---------------------------------------------------------------

TARGET_GPU = "H200"  # the GPU the lab's time targets are set for (GPU_PEAKS names it "H200 SXM" / "H200 NVL")
FULL_TRAINING_SET = 50_000  # CIFAR-10's training images: the targets are for the whole set
TARGETS = {
    "faithful_epoch_s": 2.5,  # the faithful lab setting, s per epoch, at most
    "fast_epoch_s": 0.7,  # fast mode at batch 128, s per epoch, at most
    "fast_stretch_epoch_s": 0.5,  # fast mode's stretch goal
    "accuracy_gap_points": 2.0,  # fast minus faithful test top-1 after `accuracy_epochs`, at most this far apart
    "accuracy_epochs": 5,
}


def flops_sentence(flops_per_image: float, device_type: str) -> str:
    return (
        "Training FLOPs per image (forward + backward, `torch.utils.flop_counter`): "
        f"**{flops_per_image / 1e9:.3f} GFLOP**; device `{device_type}`."
    )


def _on_full_data(row) -> bool:
    return int(row.get("limit_train") or 0) == 0 or int(row.get("limit_train")) >= FULL_TRAINING_SET


def _on_target_gpu(row) -> bool:
    peak = find_gpu_peak(row.get("device_label"))
    return peak is not None and peak.name.startswith(TARGET_GPU)


def time_targets_sentence(faithful, fast) -> str:
    """The lab's epoch-time targets, judged only for a run on the target GPU over the whole training set."""
    goal = (
        f"The lab's time targets on an {TARGET_GPU} over the full {FULL_TRAINING_SET:,} images are at most "
        f"{TARGETS['faithful_epoch_s']} s per faithful epoch and {TARGETS['fast_epoch_s']} s per fast epoch "
        f"({TARGETS['fast_stretch_epoch_s']} s as a stretch)"
    )
    if not (_on_target_gpu(fast) and _on_full_data(fast) and _on_full_data(faithful)):
        return (
            f"{goal}; this run (`{fast['device_label']}`, {int(fast['epoch_images']):,} images per epoch) is not "
            "judged against them."
        )
    faithful_met = faithful["epoch_s"] <= TARGETS["faithful_epoch_s"]
    if fast["epoch_s"] <= TARGETS["fast_stretch_epoch_s"]:
        fast_verdict = "meets the stretch goal"
    elif fast["epoch_s"] <= TARGETS["fast_epoch_s"]:
        fast_verdict = "meets its target"
    else:
        fast_verdict = "misses its target"
    return (
        f"{goal}: the faithful setting {'meets' if faithful_met else 'misses'} its target at "
        f"{faithful['epoch_s']:.2f} s, and fast mode {fast_verdict} at {fast['epoch_s']:.2f} s."
    )


def accuracy_target_sentence(faithful, fast) -> str:
    """Whether fast mode keeps the faithful accuracy: judged after the target's epochs on the whole training set."""
    limit, epochs = TARGETS["accuracy_gap_points"], TARGETS["accuracy_epochs"]
    goal = (
        f"The lab's accuracy target is fast mode within {limit:g} points of the faithful setting after {epochs} "
        "epochs on the full data"
    )
    if not (int(fast["epochs"]) == epochs and _on_full_data(fast) and _on_full_data(faithful)):
        return (
            f"{goal}; this run ({int(fast['epochs'])} epoch(s), {int(fast['epoch_images']):,} images per epoch) "
            "is not judged against it."
        )
    gap = fast["test_accuracy"] - faithful["test_accuracy"]
    return f"{goal}: {'met' if abs(gap) <= limit else 'missed'}, {gap:+.2f} points."


def findings(records, lr_scaling: str, device_type: str) -> list[str]:
    """X-FAST's conclusions from its records (latest run per mode, indexed by mode)."""
    faithful, fast, large = records.loc["faithful"], records.loc["fast"], records.loc["fast-large"]
    if pd.notna(fast["lower_bound_s"]):
        bound = f"{fast['lower_bound_s']:.3f} s against the measured {fast['epoch_s']:.2f} s."
    else:
        bound = f"— on `{fast['device_label']}`, which has no datasheet peak in the table, so MFU shows — too."
        if device_type == "cpu":
            bound += (
                " **GPU figures are still to be measured on a GPU**: this run was on the CPU, where fast mode runs "
                "(bf16 autocast, on-device augmentation) but its speed says nothing about a GPU's."
            )
    gap = fast["test_accuracy"] - faithful["test_accuracy"]
    return [
        f"**X-FAST.1:** on {faithful['device_label']} the faithful lab setting takes {faithful['epoch_s']:.2f} s per "
        f"epoch ({faithful['images_per_s']:,.0f} images/s, MFU {format_mfu(_number(faithful['mfu']))} of the "
        f"{faithful['math_precision']} peak); fast mode at batch {int(fast['batch_size'])} takes "
        f"{fast['epoch_s']:.2f} s ({fast['images_per_s']:,.0f} images/s, MFU {format_mfu(_number(fast['mfu']))} of "
        f"the bf16 peak), {faithful['epoch_s'] / fast['epoch_s']:.1f}× faster, after {fast['compile_s']:.1f} s of "
        "compilation and warm-up.",
        "**X-FAST.2:** the physical lower bound of a fast epoch (its FLOPs at the bf16 peak) is " + bound,
        f"**X-FAST.3:** at batch {int(large['batch_size'])} with lr {large['lr']:.3g} ({lr_scaling} scaling) an epoch "
        f"takes {large['epoch_s']:.2f} s ({large['images_per_s']:,.0f} images/s, MFU "
        f"{format_mfu(_number(large['mfu']))}).",
        f"**X-FAST.4:** after {int(fast['epochs'])} epoch(s) the test accuracy is {fast['test_accuracy']:.2f} % in "
        f"fast mode against {faithful['test_accuracy']:.2f} % in the faithful setting ({gap:+.2f} points), and "
        f"{large['test_accuracy']:.2f} % at batch {int(large['batch_size'])}. "
        + accuracy_target_sentence(faithful, fast),
        time_targets_sentence(faithful, fast),
    ]


def _number(value: Any) -> float | None:
    return None if _missing(value) else float(value)
