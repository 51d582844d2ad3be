"""lablib.sections.fast: device data and augmentation, the fast training path on the CPU, FLOPs, peaks and MFU,
and the X-FAST notebook executed by papermill with tiny parameters."""

import math

import numpy as np
import pytest
import torch
from conftest import TINY, notebook_text
from torch.utils.data import Subset
from torch.utils.flop_counter import FlopCounterMode

from lablib.core.config import make_config
from lablib.core.data import ArrayImageDataset, eval_transform, load_data
from lablib.core.errors import ConfigError, DataError
from lablib.core.model import resnet18
from lablib.core.runs import latest_per, load_epochs, load_runs
from lablib.sections import fast

CPU = torch.device("cpu")


def small_model() -> torch.nn.Module:
    """A few-thousand-parameter CNN: fast mode's path without ResNet-18's CPU cost."""
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


def test_device_data_is_padded_uint8_and_follows_subsets():
    dataset = _toy_dataset()
    data = fast.to_device_data(Subset(dataset, [4, 1]), CPU, padding=4)
    assert data.images.dtype == torch.uint8 and data.images.shape == (2, 3, 40, 40)
    assert data.targets.tolist() == [4, 1] and len(data) == 2
    assert torch.equal(data.images[0, :, 4:36, 4:36], torch.from_numpy(dataset.data[4]).permute(2, 0, 1))
    assert data.images[:, :, :4].sum() == 0 and data.images[:, :, :, 36:].sum() == 0  # zero padding


def test_fast_mode_needs_uint8_images():
    with pytest.raises(DataError, match="uint8 array.*'fake'"):
        fast.uint8_arrays(load_data("fake", limit_train=8, limit_test=8).train)


def test_random_crop_flip_is_a_padded_crop_possibly_flipped():
    dataset = _toy_dataset(count=4)
    data = fast.to_device_data(dataset, CPU, padding=4)
    generator = torch.Generator().manual_seed(0)
    index = torch.tensor([0, 1, 2, 3] * 50)
    crops = fast.random_crop_flip(data, index, generator)
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
    no_flip = fast.random_crop_flip(data, index, torch.Generator().manual_seed(1), flip=False)
    assert no_flip.shape == crops.shape


def test_normalize_matches_torchvision_to_tensor_and_normalize():
    dataset = _toy_dataset(count=2)
    data = fast.to_device_data(dataset, CPU, padding=0)
    normalize = fast.Normalize(CPU, channels_last=True)
    ours = normalize(fast.center(data, torch.tensor([0, 1])))
    reference = torch.stack([eval_transform()(dataset[i][0]) for i in range(2)])
    assert torch.allclose(ours, reference, atol=1e-5)
    assert ours.is_contiguous(memory_format=torch.channels_last)


def test_scaled_lr():
    assert fast.scaled_lr(0.1, 512, 128, "linear") == pytest.approx(0.4)
    assert fast.scaled_lr(0.1, 512, 128, "sqrt") == pytest.approx(0.2)
    assert fast.scaled_lr(0.1, 512, 128, "none") == 0.1
    with pytest.raises(ConfigError, match="lr_scaling='cubic'"):
        fast.scaled_lr(0.1, 512, 128, "cubic")
    config = fast.fast_config(make_config(), 512, "sqrt")
    assert (config.precision, config.batch_size, config.lr) == ("bf16", 512, pytest.approx(0.2))


def test_training_flops_match_the_flop_counter_and_the_lab_figure():
    model = resnet18()
    per_image = fast.training_flops_per_image(model)
    forward = fast.forward_flops_per_image(model)
    # The library's own count, done here independently on a batch of 4.
    inputs = torch.randn(4, 3, 32, 32)
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(resnet18()(inputs), torch.zeros(4, dtype=torch.long)).backward()
    assert per_image == pytest.approx(counter.get_total_flops() / 4, rel=1e-6)
    assert 0.5e9 < forward / 2 < 0.6e9  # LAB_SPEC: about 0.56 GMACs forward per image
    assert 2.8 < per_image / forward <= 3.0  # backward ~ 2x forward (no input gradient for the first conv)


def test_peaks_and_mfu_show_a_dash_for_unknown_devices():
    assert fast.peak_flops("NVIDIA H200", "bf16") == pytest.approx(989.5e12)
    assert fast.find_gpu_peak("NVIDIA H100 PCIe").name == "H100 PCIe"
    assert fast.find_gpu_peak("NVIDIA H100 80GB HBM3").name == "H100 SXM"
    assert fast.find_gpu_peak("NVIDIA A100-SXM4-80GB").name == "A100"
    assert fast.find_gpu_peak("NVIDIA A10").name == "A10"
    assert fast.find_gpu_peak("NVIDIA L4").name == "L4"
    assert fast.find_gpu_peak("NVIDIA GeForce RTX 4090").name == "RTX 4090"
    assert fast.peak_flops("Tesla T4", "bf16") is None and fast.peak_flops("Tesla T4", "fp32") == 8.1e12
    for unknown in ("NVIDIA A10G", "NVIDIA GeForce GTX 1080", "AMD EPYC", None):
        assert fast.peak_flops(unknown, "bf16") is None
    use = fast.Utilisation(3e9, 1000, 2.0, "bf16", None)
    assert use.mfu is None and use.lower_bound_s is None and fast.format_mfu(use.mfu) == "—"
    assert use.achieved_flops == pytest.approx(1.5e12)
    known = fast.Utilisation(3e9, 1000, 2.0, "bf16", 6e12)
    assert known.mfu == pytest.approx(0.25) and known.lower_bound_s == pytest.approx(0.5)
    assert fast.format_mfu(known.mfu) == "25.0 %" and fast.format_mfu(float("nan")) == "—"
    assert fast.math_precision(CPU, None) == "fp32" and fast.math_precision(CPU, torch.bfloat16) == "bf16"


def test_fast_path_on_cpu_loss_falls(cifar_zip):
    bundle = load_data(str(cifar_zip), limit_train=32, limit_test=20)
    config = fast.fast_config(make_config(device="cpu", epochs=5, batch_size=16, lr=0.02))
    result = fast.train_fast(
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
    assert result.compile_s > 0
    summary = fast.speed_summary(result.epochs, 3.3e9, CPU, "bf16")
    assert summary["mfu"] is None and summary["lower_bound_s"] is None and summary["peak_tflops"] is None
    assert summary["images_per_s"] == pytest.approx(32 / summary["epoch_s"])


def test_fast_warmup_is_undone(cifar_zip):
    bundle = load_data(str(cifar_zip), limit_train=16, limit_test=10)
    config = fast.fast_config(make_config(device="cpu", epochs=1, batch_size=16, lr=0.02))
    losses = []
    for warmup_steps in (0, 2):  # the same start: the warm-up's steps are undone
        result = fast.train_fast(
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
        fast.train_fast(make_config(config, batch_size=32), data=bundle, compile=False, progress=False)


def test_device_batches_are_full_shuffled_and_augmented():
    dataset = _toy_dataset(count=10)
    data = fast.to_device_data(dataset, CPU, padding=4)
    batches = fast.DeviceBatches(data, fast.Normalize(CPU, channels_last=False), 4, torch.Generator().manual_seed(0))
    assert len(batches) == 2  # full batches only: 2 of 4 from 10 images
    first, second = list(batches), list(batches)
    assert [tuple(x.shape) for x, _ in first] == [(4, 3, 32, 32)] * 2 and first[0][0].dtype == torch.float32
    labels = [y.tolist() for _, y in first]
    assert len(set(labels[0] + labels[1])) == 8  # no image twice in an epoch
    assert labels != [y.tolist() for _, y in second]  # a new order each epoch
    evaluated = list(fast.eval_batches(data, fast.Normalize(CPU, channels_last=False), batch_size=4))
    assert [len(y) for _, y in evaluated] == [4, 4, 2] and torch.cat([y for _, y in evaluated]).tolist() == list(
        range(10)
    )


def test_fast_epochs_run_in_the_lab_loop_without_data_time():
    toy = _toy_dataset(count=32)
    dataset = ArrayImageDataset(toy.data, [i % 10 for i in range(32)], toy.classes)
    bundle = load_data("fake", limit_train=8, limit_test=8)
    bundle.train, bundle.test = dataset, dataset
    logged = []

    class Run:
        def log_epoch(self, record):
            logged.append(record.epoch)

        def log_results(self, **values):
            logged.append(values)

    config = fast.fast_config(make_config(device="cpu", epochs=2, batch_size=16, lr=0.02))
    result = fast.train_fast(config, data=bundle, run=Run(), compile=False, progress=False, model=small_model())
    assert logged[:2] == [1, 2] and logged[2]["epochs_run"] == 2 and logged[2]["test_accuracy"] is not None
    assert logged[2]["compiled"] is False and logged[2]["compile_s"] == result.compile_s
    assert all(e.data_s == 0 and e.train_s == e.total_s and e.batches == 2 for e in result.epochs)


def test_speed_table_orders_modes_and_dashes(tmp_path):
    import pandas as pd

    runs = pd.DataFrame(
        [
            {
                "mode": "fast-large",
                "batch_size": 512,
                "lr": 0.2,
                "math_precision": "bf16",
                "epoch_s": 1.0,
                "epoch1_s": 1.1,
                "images_per_s": 5e4,
                "compile_s": 30.0,
                "achieved_tflops": 2.0,
                "peak_tflops": None,
                "mfu": float("nan"),
                "lower_bound_s": None,
                "test_accuracy": 50.0,
            },
            {
                "mode": "faithful",
                "batch_size": 128,
                "lr": 0.1,
                "math_precision": "fp32",
                "epoch_s": 9.0,
                "epoch1_s": 9.5,
                "images_per_s": 5e3,
                "compile_s": None,
                "achieved_tflops": 1.0,
                "peak_tflops": 989.5,
                "mfu": 0.01,
                "lower_bound_s": 0.17,
                "test_accuracy": 51.0,
            },
        ]
    )
    table = fast.speed_table(runs)
    assert table["mode"].tolist() == ["faithful", "fast-large"]
    assert table.loc[0, "MFU"] == "1.0 %" and table.loc[1, "MFU"] == "—"
    assert table.loc[0, "compile s"] == "—" and table.loc[1, "lower bound"] == "—"


@pytest.mark.slow
def test_fast_path_compiled_on_cpu(cifar_zip):
    bundle = load_data(str(cifar_zip), limit_train=32, limit_test=20)
    config = fast.fast_config(make_config(device="cpu", epochs=2, batch_size=16, lr=0.02))
    result = fast.train_fast(config, data=bundle, compile=True, cuda_graphs=True, progress=False)
    assert result.compiled and not result.cuda_graphs  # CUDA graphs only on CUDA
    assert all(math.isfinite(e.loss) and e.images == 32 for e in result.epochs)
    assert result.compile_s > 0 and result.test.images == 20


@pytest.mark.cuda
def test_fast_path_on_cuda_compiled_with_cuda_graphs(cifar_zip):
    bundle = load_data(str(cifar_zip), limit_train=1024, limit_test=200)
    config = fast.fast_config(make_config(device="cuda", epochs=2, lr=0.05))
    result = fast.train_fast(config, data=bundle, compile=True, cuda_graphs=True, progress=False)
    assert result.compiled and result.cuda_graphs and result.compile_s > 0
    assert all(math.isfinite(e.loss) and e.images == 1024 for e in result.epochs)
    assert result.test.images == 200
    device = torch.device("cuda")
    if torch.cuda.get_device_capability()[0] >= 8:
        assert fast.math_precision(device, None) == "tf32"


@pytest.mark.cuda
def test_fast_step_has_no_host_sync_on_cuda(cifar_zip):
    device = torch.device("cuda")
    data = fast.to_device_data(load_data(str(cifar_zip), limit_train=256, limit_test=10).train, device)
    model = resnet18().to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, fused=True)
    step = fast.FastStep(model, optimizer, torch.bfloat16, device, compile=False, cuda_graphs=False)
    normalize = fast.Normalize(device, channels_last=True)
    index = torch.arange(128, device=device)
    step(normalize(fast.random_crop_flip(data, index)), data.targets[index])  # first call: lazy init
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any implicit device-to-host sync now raises
    try:
        total = torch.zeros((), device=device)
        for inputs, targets in fast.DeviceBatches(data, normalize, 128):  # the batch source the loop iterates
            loss, correct = step(inputs, targets)
            total += loss
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert math.isfinite(total.item())


@pytest.mark.notebook
def test_x_fast_notebook(run_notebook, cifar_zip):
    params = {**TINY, "limit_train": 128, "limit_test": 50, "batch_size": 64, "large_batch": 128, "use_compile": False}
    executed = run_notebook("x_fast", data=str(cifar_zip), tag="test", **params)
    runs = latest_per(load_runs("x_fast", tag="test"), "mode")
    assert set(runs["mode"]) == {"faithful", "fast", "fast-large"}
    by_mode = runs.set_index("mode")
    assert by_mode.loc["fast-large", "batch_size"] == 128
    assert by_mode.loc["fast-large", "lr"] == pytest.approx(0.1 * math.sqrt(2))
    assert by_mode.loc["fast", "precision"] == "bf16" and by_mode.loc["faithful", "precision"] == "fp32"
    assert runs["mfu"].isna().all()  # a CPU has no peak in the table
    epochs = load_epochs("x_fast", tag="test")
    assert len(epochs) == 3
    assert (runs["epochs_run"] == 1).all()  # the shared epoch summaries are in every mode's record
    text = notebook_text(executed)
    for paragraph in fast.findings(by_mode, "sqrt", "cpu"):  # the sentences, from the records
        assert paragraph in text
    fast_s, faithful_s = by_mode.loc["fast", "epoch_s"], by_mode.loc["faithful", "epoch_s"]
    assert f"{fast_s:.2f} s" in text and f"{faithful_s:.2f} s" in text  # the prose quotes the records
    gap = by_mode.loc["fast", "test_accuracy"] - by_mode.loc["faithful", "test_accuracy"]
    assert f"{gap:+.2f} points" in text and "not judged" in text  # 1 epoch on 128 images: no verdict
    assert fast.flops_sentence(by_mode.loc["fast", "flops_per_image"], "cpu") in text
    assert executed.cells[0].source.startswith("# X-FAST · How fast can this go")
    assert "—" in text and "issue" not in text.lower()


def test_importing_fast_and_bench_has_no_side_effects():
    import subprocess
    import sys

    code = (
        "import sys, lablib.sections.fast, lablib.bench;"
        "print(__import__('torch').cuda.is_initialized(), 'papermill' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def _mode_rows(**changes):
    import pandas as pd

    base = {
        "device_label": "NVIDIA H200",
        "limit_train": 0,
        "epochs": 5,
        "epoch_images": 50_000,
        "math_precision": "bf16",
        "compile_s": 20.0,
        "lr": 0.1,
    }
    rows = {
        "faithful": {"batch_size": 128, "epoch_s": 2.0, "images_per_s": 25_000, "mfu": 0.05, "test_accuracy": 80.0},
        "fast": {"batch_size": 128, "epoch_s": 0.6, "images_per_s": 83_000, "mfu": 0.2, "test_accuracy": 79.0},
        "fast-large": {"batch_size": 512, "epoch_s": 0.4, "images_per_s": 125_000, "mfu": 0.3, "test_accuracy": 77.5},
    }
    for mode, values in changes.items():
        rows[mode.replace("_", "-")].update(values)
    frame = pd.DataFrame([{**base, "mode": mode, "lower_bound_s": 0.17, **row} for mode, row in rows.items()])
    return frame.set_index("mode", drop=False)


def test_findings_quote_the_records():
    one, two, three, four, targets = fast.findings(_mode_rows(), "sqrt", "cuda")
    assert "2.00 s per epoch" in one and "0.60 s" in one and "3.3× faster" in one and "20.0 s" in one
    assert "MFU 5.0 %" in one and "MFU 20.0 %" in one
    assert "0.170 s against the measured 0.60 s" in two
    assert "batch 512" in three and "sqrt scaling" in three and "MFU 30.0 %" in three
    assert "-1.00 points" in four and "77.50 %" in four
    assert "issue" not in " ".join([one, two, three, four, targets]).lower()


def test_findings_without_a_peak_say_so():
    rows = _mode_rows(
        faithful={"mfu": None, "lower_bound_s": None, "device_label": "cpu"},
        fast={"mfu": float("nan"), "lower_bound_s": None, "device_label": "cpu"},
        fast_large={"mfu": None, "lower_bound_s": None, "device_label": "cpu"},
    )
    _, two, _, _, _ = fast.findings(rows, "sqrt", "cpu")
    assert "GPU figures are still to be measured on a GPU" in two and "—" in two
    _, on_other_gpu, _, _, _ = fast.findings(rows, "sqrt", "cuda")
    assert "still to be measured" not in on_other_gpu


def test_accuracy_target_is_judged_only_after_five_epochs_on_the_full_data():
    rows = _mode_rows()
    assert "met, -1.00 points" in fast.accuracy_target_sentence(rows.loc["faithful"], rows.loc["fast"])
    far = _mode_rows(fast={"test_accuracy": 77.0})
    assert "missed, -3.00 points" in fast.accuracy_target_sentence(far.loc["faithful"], far.loc["fast"])
    short = _mode_rows(fast={"epochs": 1})
    assert "not judged" in fast.accuracy_target_sentence(short.loc["faithful"], short.loc["fast"])
    subset = _mode_rows(faithful={"limit_train": 1024})
    assert "not judged" in fast.accuracy_target_sentence(subset.loc["faithful"], subset.loc["fast"])


def test_time_targets_are_judged_only_on_the_target_gpu_over_the_full_data():
    def verdict(**changes):
        rows = _mode_rows(**changes)
        return fast.time_targets_sentence(rows.loc["faithful"], rows.loc["fast"])

    assert "faithful setting meets" in verdict() and "fast mode meets its target at 0.60 s" in verdict()
    assert "meets the stretch goal" in verdict(fast={"epoch_s": 0.45})
    assert "fast mode misses its target" in verdict(fast={"epoch_s": 0.9})
    assert "faithful setting misses" in verdict(faithful={"epoch_s": 3.0})
    assert "not judged" in verdict(fast={"device_label": "NVIDIA L4"})
    assert "not judged" in verdict(fast={"limit_train": 1024, "epoch_images": 1024})
    assert f"{fast.TARGETS['fast_epoch_s']} s per fast epoch" in verdict()
