"""lablib.core.fastpath (the fast engine: data and augmentation on the device, its compile counted from torch's
events) and lablib.core.counts (FLOPs per image and datasheet peaks, the two sides of MFU)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils.data import Subset
from torch.utils.flop_counter import FlopCounterMode

from lablib.core import counts, fastpath
from lablib.core.config import make_config
from lablib.core.data import ArrayImageDataset, eval_transform, load_data
from lablib.core.errors import ConfigError, DataError
from lablib.core.model import resnet18

CPU = torch.device("cpu")


def small_model() -> torch.nn.Module:
    """A few-thousand-parameter CNN: the fast engine's path without ResNet-18's CPU cost."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 16 * 16, 10),
    )


def _toy_dataset(count=6, size=32):
    rng = np.random.default_rng(0)
    images = rng.integers(1, 256, size=(count, size, size, 3), dtype=np.uint8)  # no zeros: padding is visible
    return ArrayImageDataset(images, list(range(count)), [str(i) for i in range(10)])


# --- data on the device ----------------------------------------------------------------------


def test_device_data_is_padded_uint8_and_follows_subsets():
    dataset = _toy_dataset()
    data = fastpath.to_device_data(Subset(dataset, [4, 1]), CPU, padding=4)
    assert data.images.dtype == torch.uint8 and data.images.shape == (2, 3, 40, 40)
    assert data.targets.tolist() == [4, 1] and len(data) == 2
    assert torch.equal(data.images[0, :, 4:36, 4:36], torch.from_numpy(dataset.data[4]).permute(2, 0, 1))
    assert data.images[:, :, :4].sum() == 0 and data.images[:, :, :, 36:].sum() == 0  # zero padding


def test_the_fast_engine_needs_uint8_images():
    with pytest.raises(DataError, match="uint8 array.*'fake'"):
        fastpath.uint8_arrays(load_data("fake", limit_train=8, limit_test=8).train)


def test_random_crop_flip_is_a_padded_crop_possibly_flipped():
    dataset = _toy_dataset(count=4)
    data = fastpath.to_device_data(dataset, CPU, padding=4)
    generator = torch.Generator().manual_seed(0)
    index = torch.tensor([0, 1, 2, 3] * 50)
    crops = fastpath.random_crop_flip(data, index, generator)
    assert crops.shape == (200, 3, 32, 32) and crops.dtype == torch.uint8
    offsets, flips = set(), set()
    for crop, image in zip(crops, index.tolist()):
        padded = data.images[image]
        found = [
            (dy, dx, flip)
            for dy in range(9)
            for dx in range(9)
            for flip in (False, True)
            if torch.equal(
                crop, padded[:, dy : dy + 32, dx : dx + 32].flip(-1) if flip else padded[:, dy : dy + 32, dx : dx + 32]
            )
        ]
        assert len(found) == 1, "each output is exactly one of the 9 x 9 x 2 crops"
        offsets.add(found[0][:2])
        flips.add(found[0][2])
    assert flips == {False, True}
    assert {dy for dy, _ in offsets} == set(range(9)) and {dx for _, dx in offsets} == set(range(9))


def test_normalize_matches_torchvision_to_tensor_and_normalize():
    dataset = _toy_dataset(count=2)
    data = fastpath.to_device_data(dataset, CPU, padding=0)
    normalize = fastpath.Normalize(CPU, channels_last=True)
    ours = normalize(fastpath.center(data, torch.tensor([0, 1])))
    reference = torch.stack([eval_transform()(dataset[i][0]) for i in range(2)])
    assert torch.allclose(ours, reference, atol=1e-5)
    assert ours.is_contiguous(memory_format=torch.channels_last)


def test_device_batches_are_full_shuffled_and_augmented():
    dataset = _toy_dataset(count=10)
    data = fastpath.to_device_data(dataset, CPU, padding=4)
    normalize = fastpath.Normalize(CPU, channels_last=False)
    batches = fastpath.DeviceBatches(data, normalize, 4, torch.Generator().manual_seed(0))
    assert len(batches) == 2  # full batches only: 2 of 4 from 10 images
    first, second = list(batches), list(batches)
    assert [tuple(x.shape) for x, _ in first] == [(4, 3, 32, 32)] * 2 and first[0][0].dtype == torch.float32
    labels = [y.tolist() for _, y in first]
    assert len(set(labels[0] + labels[1])) == 8  # no image twice in an epoch
    assert labels != [y.tolist() for _, y in second]  # a new order each epoch
    evaluated = list(fastpath.eval_batches(data, normalize, batch_size=4))
    assert [len(y) for _, y in evaluated] == [4, 4, 2]
    assert torch.cat([y for _, y in evaluated]).tolist() == list(range(10))


def test_scaled_lr():
    assert fastpath.scaled_lr(0.1, 512, 128, "linear") == pytest.approx(0.4)
    assert fastpath.scaled_lr(0.1, 512, 128, "sqrt") == pytest.approx(0.2)
    assert fastpath.scaled_lr(0.1, 512, 128, "none") == 0.1
    with pytest.raises(ConfigError, match="lr_scaling='cubic'"):
        fastpath.scaled_lr(0.1, 512, 128, "cubic")
    config = fastpath.fast_config(make_config(), 512, "sqrt")
    assert (config.precision, config.batch_size, config.lr) == ("bf16", 512, pytest.approx(0.2))


# --- training on the fast engine -------------------------------------------------------------


def test_the_fast_engine_trains_on_the_cpu_and_compiles_nothing_uncompiled(cifar_zip):
    bundle = load_data(str(cifar_zip), limit_train=32, limit_test=20)
    config = fastpath.fast_config(make_config(device="cpu", epochs=5, batch_size=16, lr=0.02))
    result = fastpath.train_fast(
        config,
        data=bundle,
        compile=False,
        warmup_steps=1,
        progress=False,
        generator=torch.Generator().manual_seed(0),
        model=small_model(),
    )
    losses = [e.loss for e in result.epochs]
    assert losses[-1] < losses[0], losses
    assert all(e.images == 32 and e.batches == 2 and e.total_s > 0 and e.data_s == 0 for e in result.epochs)
    assert result.test.images == 20 and not result.compiled and not result.cuda_graphs
    # compile_s is what torch's compile events say: nothing compiled, nothing counted; the warm-up still ran
    assert result.compile_s == 0.0 and result.compile_log.compiles == 0 and result.warmup_s > 0


def test_the_warmup_is_undone(cifar_zip):
    bundle = load_data(str(cifar_zip), limit_train=16, limit_test=10)
    config = fastpath.fast_config(make_config(device="cpu", epochs=1, batch_size=16, lr=0.02))
    losses = []
    for warmup_steps in (0, 2):  # the same start: the warm-up's steps are undone
        result = fastpath.train_fast(
            config,
            data=bundle,
            compile=False,
            warmup_steps=warmup_steps,
            progress=False,
            evaluate_test=False,
            generator=torch.Generator().manual_seed(0),
            model=small_model(),
        )
        losses.append(result.epochs[0].loss)
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    with pytest.raises(ConfigError, match="batch_size=32 is larger than the 16 training images"):
        fastpath.train_fast(make_config(config, batch_size=32), data=bundle, compile=False, progress=False)


def test_fast_epochs_run_in_the_lab_loop_without_data_time():
    toy = _toy_dataset(count=32)
    dataset = ArrayImageDataset(toy.data, [i % 10 for i in range(32)], toy.classes)
    bundle = load_data("fake", limit_train=8, limit_test=8)
    bundle.train, bundle.test = dataset, dataset
    logged = []

    class Run:
        def log_epoch(self, record):
            logged.append(record.epoch)

    config = fastpath.fast_config(make_config(device="cpu", epochs=2, batch_size=16, lr=0.02))
    result = fastpath.train_fast(config, data=bundle, run=Run(), compile=False, progress=False, model=small_model())
    assert logged == [1, 2]
    assert all(e.data_s == 0 and e.train_s == e.total_s and e.batches == 2 for e in result.epochs)


def test_a_fast_training_measurement_records_the_compile_counts(cifar_zip):
    from lablib.core.store import obtain
    from lablib.core.training import training_request

    config = make_config(data=str(cifar_zip), device="cpu", epochs=1, batch_size=32, limit_train=64, limit_test=20)
    measured = obtain(training_request(config, engine="fast", compile="none", save_weights=False))
    results = measured.results
    assert results["compiles"] == 0 and results["compile_s"] == 0.0 and results["compile_counted"]
    assert results["warmup_s"] > 0 and results["compiled"] is False and results["train_images"] == 64
    assert measured.epochs[0]["images"] == 64 and measured.request.settings["precision"] == "fp32"  # no bf16 on a CPU


@pytest.mark.slow
def test_the_fast_engine_compiled_on_the_cpu_compiles_once(cifar_zip):
    """torch.compile on the CPU (a minute): one static shape, one compile, counted from torch's events, in the
    warm-up; CUDA graphs apply on CUDA only."""
    bundle = load_data(str(cifar_zip), limit_train=40, limit_test=20)  # 40 = 2 full batches of 16 and 8 left over
    config = fastpath.fast_config(make_config(device="cpu", epochs=2, batch_size=16, lr=0.02))
    result = fastpath.train_fast(
        config, data=bundle, compile=True, cuda_graphs=True, progress=False, model=small_model()
    )
    assert result.compiled and not result.cuda_graphs
    assert result.compile_log.compiles == 1 and result.compile_log.recompiles == 0
    assert result.compile_log.frame()["epoch"].isna().all()  # before the first epoch: in the warm-up
    assert 0 < result.compile_s <= result.warmup_s
    assert all(math.isfinite(e.loss) and e.images == 32 for e in result.epochs) and result.test.images == 20


@pytest.mark.cuda
def test_the_fast_engine_on_cuda_compiled_with_cuda_graphs(cifar_zip):
    bundle = load_data(str(cifar_zip), limit_train=1024, limit_test=200)
    config = fastpath.fast_config(make_config(device="cuda", epochs=2, lr=0.05))
    result = fastpath.train_fast(config, data=bundle, compile=True, cuda_graphs=True, progress=False)
    assert result.compiled and result.cuda_graphs and result.compile_s > 0
    assert result.compile_log.compiles == 1 and result.compile_log.recompiles == 0
    assert all(math.isfinite(e.loss) and e.images == 1024 for e in result.epochs)
    assert result.test.images == 200
    if torch.cuda.get_device_capability()[0] >= 8:
        assert counts.math_precision(torch.device("cuda"), None) == "tf32"


@pytest.mark.cuda
def test_the_fast_step_has_no_host_sync_on_cuda(cifar_zip):
    device = torch.device("cuda")
    data = fastpath.to_device_data(load_data(str(cifar_zip), limit_train=256, limit_test=10).train, device)
    model = resnet18().to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, fused=True)
    step = fastpath.FastStep(model, optimizer, torch.bfloat16, device, compile=False, cuda_graphs=False)
    normalize = fastpath.Normalize(device, channels_last=True)
    index = torch.arange(128, device=device)
    step(normalize(fastpath.random_crop_flip(data, index)), data.targets[index])  # first call: lazy init
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any implicit device-to-host sync now raises
    try:
        total = torch.zeros((), device=device)
        for inputs, targets in fastpath.DeviceBatches(data, normalize, 128):  # the batch source the loop iterates
            loss, correct = step(inputs, targets)
            total += loss
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert math.isfinite(total.item())


# --- counts: the two sides of MFU ----------------------------------------------------------


def test_training_flops_match_the_flop_counter_and_the_lab_figure():
    model = resnet18()
    per_image = counts.training_flops_per_image(model)
    forward = counts.forward_flops_per_image(model)
    inputs = torch.randn(4, 3, 32, 32)  # the library's own count, done here independently on a batch of 4
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(resnet18()(inputs), torch.zeros(4, dtype=torch.long)).backward()
    assert per_image == pytest.approx(counter.get_total_flops() / 4, rel=1e-6)
    assert 0.5e9 < forward / 2 < 0.6e9  # LAB_SPEC: about 0.56 GMACs forward per image
    assert 2.8 < per_image / forward <= 3.0  # backward ~ 2x forward (no input gradient for the first conv)


def test_datasheet_peaks_by_device_name():
    assert counts.peak_flops("NVIDIA H200", "bf16") == pytest.approx(989.5e12)
    assert counts.find_gpu_peak("NVIDIA H100 PCIe").name == "H100 PCIe"
    assert counts.find_gpu_peak("NVIDIA H100 80GB HBM3").name == "H100 SXM"
    assert counts.find_gpu_peak("NVIDIA A100-SXM4-80GB").name == "A100"
    assert counts.find_gpu_peak("NVIDIA A10").name == "A10"
    assert counts.find_gpu_peak("NVIDIA L4").name == "L4"
    assert counts.find_gpu_peak("NVIDIA GeForce RTX 4090").name == "RTX 4090"
    assert counts.peak_flops("Tesla T4", "bf16") is None and counts.peak_flops("Tesla T4", "fp32") == 8.1e12
    for unknown in ("NVIDIA A10G", "NVIDIA GeForce GTX 1080", "AMD EPYC", None):
        assert counts.peak_flops(unknown, "bf16") is None
    with pytest.raises(ConfigError, match="precision='fp8'"):
        counts.peak_flops("NVIDIA H200", "fp8")
    assert counts.math_precision(CPU, None) == "fp32" and counts.math_precision(CPU, torch.bfloat16) == "bf16"


def test_the_counts_request_follows_the_data():
    assert counts.counts_request_for("cifar10").settings["model"] == "resnet18"
    digits = counts.counts_request_for("/data/mnist-png.zip")
    assert (digits.settings["channels"], digits.settings["image_size"]) == (1, 28) and "small CNN" in digits.label


def test_importing_the_fast_engine_has_no_side_effects():
    import subprocess
    import sys

    code = (
        "import sys, lablib.core.fastpath, lablib.core.compiled, lablib.core.profiler;"
        "print(__import__('torch').cuda.is_initialized(), 'papermill' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"
