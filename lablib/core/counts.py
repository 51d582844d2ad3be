"""Counts from the model and the hardware's limits: FLOPs per image (torch.utils.flop_counter) and
datasheet peaks per GPU, the two sides of model-FLOPs utilisation (MFU).

The "counts" measurement (a model's parameters, forward MACs, forward and training FLOPs per image)
goes through the measurement store like every other number (`counts_request`, `measure_counts`).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lablib.core.errors import ConfigError

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
    convolutions in TF32 by default (cudnn.conv.fp32_precision, or the legacy allow_tf32), and the
    convolutions are almost all of ResNet-18's FLOPs -> "tf32". Otherwise "fp32".
    """
    if autocast_dtype == torch.bfloat16:
        return "bf16"
    if device.type == "cuda" and convolutions_in_tf32() and torch.cuda.get_device_capability(device)[0] >= 8:
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


# --- the "counts" measurement ---------------------------------------------------------------


def counts_request(
    model: str = "resnet18",
    width: float = 1.0,
    batch_norm: bool = True,
    channels: int = 3,
    classes: int = 10,
    image_size: int = 32,
):
    """The counts of one model: trainable parameters, forward MACs, forward and training FLOPs per image."""
    from lablib.core.store import Request

    settings = {
        "model": model,
        "batch_norm": bool(batch_norm),
        "channels": int(channels),
        "classes": int(classes),
        "image_size": int(image_size),
        "device": "cpu",
    }
    if model == "mobilenet_v2":
        settings["width"] = float(width)
    name = model if model != "mobilenet_v2" else f"{model} ×{width:g}"
    return Request("counts", settings, label=f"counts of {name} ({channels} x {image_size} x {image_size})")


def measure_counts(request, record) -> None:
    """Count a freshly built model (counts do not depend on its weights) into `record`."""
    from lablib.core.model import count_macs, count_parameters
    from lablib.core.training import build_model

    settings = request.settings
    model = build_model(settings, settings["channels"], settings["classes"]).eval()
    shape = (1, settings["channels"], settings["image_size"], settings["image_size"])
    record.log_results(
        parameters=count_parameters(model),
        macs=count_macs(model, shape),
        forward_flops=forward_flops_per_image(model, settings["image_size"], settings["channels"]),
        training_flops=training_flops_per_image(model, settings["image_size"], settings["channels"]),
        model_class=type(model).__name__,
    )


def counts_request_for(data: str):
    """The counts of the model a training on `data` builds (lablib.core.training.build_model, model "auto"):
    the small CNN for grey 28 x 28 digits (a source named like MNIST), ResNet-18 for colour images."""
    import dataclasses

    if "mnist" in str(data).lower():
        request = counts_request("auto", channels=1, image_size=28)
        return dataclasses.replace(request, label="counts of the small CNN (1 x 28 x 28)")
    return counts_request("resnet18")


def convolutions_in_tf32() -> bool:
    """Whether cuDNN may run fp32 convolutions in TF32: the current switch where torch has it (reading the
    legacy cudnn.allow_tf32 raises once the current ones are used), the legacy flag on older torch."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    precision = getattr(conv, "fp32_precision", None)
    if precision is not None:
        return precision in ("tf32", "none")  # "none": the global default, which is TF32 for convolutions
    return bool(torch.backends.cudnn.allow_tf32)
