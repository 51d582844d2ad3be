"""The "torchscript" measurement (lablib.core.torchscript): scripting, the sample picker, the source, the kind."""

from __future__ import annotations

import warnings

import pytest
import torch
from factories import Tiny, record_measurement
from model_factories import recorded_training, tiny_cnn
from torch.utils.data import DataLoader, TensorDataset

from lablib.core.errors import ConfigError, LabError
from lablib.core.store import Request, obtain, work
from lablib.core.torchscript import (
    COMPARE_IMAGES,
    SCRIPTED_FILE,
    STATE_DICT_FILE,
    OutputRecorder,
    captured_warnings,
    compare_logits,
    labels_of,
    load_scripted,
    max_abs_difference,
    sample_images,
    save_scripted,
    script_model,
    source_measurement,
    torchscript_request,
)
from lablib.core.train import evaluate
from lablib.core.training import WEIGHTS

TORCH_DEPRECATES_JIT = tuple(int(part) for part in torch.__version__.split(".")[:2]) >= (2, 13)


def test_captured_warnings_keeps_each_distinct_text_once_in_order():
    with captured_warnings() as texts:
        for _ in range(3):
            warnings.warn("first", DeprecationWarning, stacklevel=2)
        warnings.warn("second", UserWarning, stacklevel=2)
    assert texts == ["DeprecationWarning: first", "UserWarning: second"]


def test_script_save_load_round_trip_keeps_the_outputs(tmp_path):
    model = Tiny().eval()
    scripted = script_model(model)
    if TORCH_DEPRECATES_JIT:
        assert any(line.startswith("DeprecationWarning") and "torch.jit.script" in line for line in scripted.warnings)
    saved = save_scripted(scripted.module, tmp_path / SCRIPTED_FILE)
    reloaded = load_scripted(tmp_path / SCRIPTED_FILE)
    assert not reloaded.module.training
    if TORCH_DEPRECATES_JIT:
        assert any("torch.jit.save" in line for line in saved)
        assert any("torch.jit.load" in line for line in reloaded.warnings)
    inputs = torch.randn(4, 3, 2, 2)
    assert max_abs_difference(model, reloaded.module, inputs) == 0.0


def test_compare_logits_counts_the_difference_and_the_disagreements():
    logits = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.4]])
    same = compare_logits(logits, logits.clone())
    assert same.identical and same.images == 3 and same.disagreements == 0
    flipped = logits.clone()
    flipped[2] = torch.tensor([0.5, 0.4])  # row 3 now predicts class 0
    compared = compare_logits(logits, flipped)
    assert not compared.identical and compared.disagreements == 1
    assert compared.max_abs_difference == pytest.approx(0.2)
    with pytest.raises(LabError, match="same images"):
        compare_logits(logits, logits[:2])


def test_output_recorder_lets_two_evaluations_be_compared_image_by_image():
    torch.manual_seed(1)
    images, labels = torch.randn(40, 3, 8, 8), torch.randint(0, 10, (40,))
    batches = list(DataLoader(TensorDataset(images, labels), batch_size=16))
    model, other = tiny_cnn(), tiny_cnn()
    with torch.no_grad():
        other[4].weight.mul_(-1)  # different predictions
    first, second = OutputRecorder(model), OutputRecorder(other)
    device = torch.device("cpu")
    assert evaluate(first, batches, device) == evaluate(model, batches, device)  # the recorder changes nothing
    evaluate(second, batches, device)
    assert first.logits().shape == (40, 10)
    compared = compare_logits(first.logits(), second.logits())
    with torch.no_grad():
        expected = int((model(images).argmax(1) != other(images).argmax(1)).sum())
    assert compared.disagreements == expected > 0 and compared.images == 40


def test_sample_images_is_class_balanced_on_a_sorted_dataset():
    dataset = [(torch.full((3, 2, 2), float(i)), i // 10) for i in range(50)]  # sorted by class, 5 classes
    inputs, labels = sample_images(dataset, 5)
    assert inputs.shape == (5, 3, 2, 2) and sorted(labels) == [0, 1, 2, 3, 4]
    assert [int(inputs[i, 0, 0, 0]) // 10 for i in range(5)] == labels  # each image with its own label
    assert sample_images(dataset, 5)[1] == labels  # seeded: the same sample every time
    assert len(sample_images(dataset, 500)[1]) == 50
    with pytest.raises(ConfigError, match="count=0"):
        sample_images(dataset, 0)
    with pytest.raises(LabError, match="empty"):
        sample_images([], 3)


def test_labels_of_reads_targets_or_the_items():
    from lablib.core.data import load_data

    fake = load_data("fake", limit_test=12).test  # FakeData has no targets: read item by item
    assert labels_of(fake) == [int(fake[i][1]) for i in range(12)]
    with_targets = TensorDataset(torch.zeros(3, 1), torch.tensor([2, 0, 1]))
    with_targets.targets = [2, 0, 1]
    assert labels_of(with_targets) == [2, 0, 1]


def test_source_measurement_finds_the_complete_record_with_its_files():
    request, measured = recorded_training()
    found = source_measurement("training", request.key, keep=(WEIGHTS,))
    assert found.path == measured.path and found.request.key == request.key and found.reused
    record_measurement(request, status="failed")  # a later attempt that failed is not the source
    assert source_measurement("training", request.key, keep=(WEIGHTS,)).path == measured.path
    with pytest.raises(LabError, match="not recorded.*obtain it first"):
        source_measurement("training", request.key, keep=("missing.pt",))
    with pytest.raises(LabError, match="not recorded"):
        source_measurement("training", "0" * 20)


def test_torchscript_request_settings_and_key():
    training, _ = recorded_training()
    request = torchscript_request(training)
    settings = request.settings
    assert settings["source"] == training.key and settings["device"] == "cpu"
    assert settings["compare_images"] == COMPARE_IMAGES and settings["limit_test"] == 40 and settings["data"] == "fake"
    assert "epochs" not in settings  # the training's settings decide the model through its key
    assert request.keep == (SCRIPTED_FILE, STATE_DICT_FILE) and not request.timing
    assert torchscript_request(training, 64).key != request.key == torchscript_request(training).key
    for wrong in (0, -3, 2.5, True):
        with pytest.raises(ConfigError, match="compare_images"):
            torchscript_request(training, wrong)
    with pytest.raises(ConfigError, match="training request"):
        torchscript_request(Request("counts", {}))


def test_measure_torchscript_scripts_compares_and_evaluates_both_models():
    training, _ = recorded_training()
    measured = obtain(torchscript_request(training, compare_images=16))
    results = measured.results
    assert not measured.reused
    assert measured.artifact(SCRIPTED_FILE).stat().st_size > 1e6 and measured.artifact(STATE_DICT_FILE).exists()
    assert results["scripted_file"] == SCRIPTED_FILE and results["state_dict_file"] == STATE_DICT_FILE
    assert results["compared_images"] == 16 and len(set(results["compared_labels"])) == 10  # class-balanced
    assert results["max_abs_difference"] == 0.0 and results["identical_outputs"]  # same CPU kernels, same weights
    eager, scripted = results["eager"], results["scripted"]
    assert eager["images"] == scripted["images"] == results["test_images"] == 40
    assert eager["accuracy"] == scripted["accuracy"] and eager["per_class"] == scripted["per_class"]
    assert len(eager["per_class"]) == 10 and sum(results["per_class_images"]) == 40
    assert results["test_disagreements"] == 0 and results["test_max_abs_difference"] == 0.0
    assert set(results["warnings"]) == {"torch.jit.script", "torch.jit.save", "torch.jit.load"}
    if TORCH_DEPRECATES_JIT:
        assert len(results["deprecation_warnings"]) == 3
    # The files load back on their own: TorchScript without the class, the state_dict into a new model.
    from lablib.core.model import resnet18

    rebuilt = resnet18().eval()
    rebuilt.load_state_dict(torch.load(measured.artifact(STATE_DICT_FILE), weights_only=True))
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(load_scripted(measured.artifact(SCRIPTED_FILE)).module(images), rebuilt(images))
    again = obtain(torchscript_request(training, compare_images=16))
    assert again.reused and again.path == measured.path  # measured once


def test_work_of_a_torchscript_request():
    training, _ = recorded_training()
    script, evaluation = work(torchscript_request(training))
    assert script.fixed_s > 0 and script.device == "cpu"
    assert evaluation.images == 40 and 0 < evaluation.epochs < 1  # two forward passes: less than an epoch


@pytest.mark.cuda
def test_cuda_script_and_compare():
    model = tiny_cnn().cuda()
    scripted = script_model(model).module
    inputs = torch.randn(4, 3, 32, 32, device="cuda")
    assert max_abs_difference(model, scripted, inputs) < 1e-5
