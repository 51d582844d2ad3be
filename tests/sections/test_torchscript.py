"""C7, C8 and C9 (lablib.sections.torchscript): what they ask for, their tables, sentences and headlines."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn

from lablib.core.errors import ConfigError
from lablib.core.model import resnet18
from lablib.core.store import lookup
from lablib.core.torchscript import COMPARE_IMAGES, script_model
from lablib.core.training import WEIGHTS
from lablib.sections.headlines import section_headlines
from lablib.sections.questions import SignBranch
from lablib.sections.registry import presenter
from lablib.sections.torchscript import (
    BASE_NOTE,
    FLOAT_TOLERANCE,
    accuracy_table,
    base_training,
    c7_results,
    c7_sentence,
    c8_results,
    c8_sentence,
    c9_results,
    c9_sentence,
    files_table,
    graph_text,
    operation_sequence,
    output_verdict,
    per_class_table,
    top_level_operations,
    warning_paragraphs,
)
from lablib.sections.training import lab_training

PARAMS = {"data": "fake", "limit_train": 64, "limit_test": 40, "epochs": 1, "workers": 0, "device": "cpu", "tag": "t"}


def presenting(**answers) -> pd.DataFrame:
    """A section's presenting records as load_runs gives them: one complete row with the answers."""
    return pd.DataFrame([{"run_id": "run-1", "ended": "2026-01-01T00:00:00", "status": "complete", **answers}])


@pytest.fixture(scope="module")
def scripted_resnet():
    torch.manual_seed(0)
    return script_model(resnet18().eval()).module


# --- what they ask for ------------------------------------------------------------------------------


def test_the_base_training_is_c1s_request_with_its_weights_kept():
    (c1,) = lab_training(PARAMS, lookup).requests
    training = base_training(PARAMS)
    assert training.key == c1.key and training.keep == (WEIGHTS,)  # one measurement: trained once


def test_c7_c8_c9_ask_for_the_same_two_measurements():
    needs = {name: presenter(name).needs(PARAMS, lookup) for name in ("c7_torchscript", "c8_graph", "c9_eval")}
    keys = {name: [request.key for request in need.requests] for name, need in needs.items()}
    assert keys["c7_torchscript"] == keys["c8_graph"] == keys["c9_eval"]
    training, scripted = needs["c7_torchscript"].requests
    assert training.kind == "training" and scripted.kind == "torchscript"
    assert scripted.settings["source"] == training.key and scripted.settings["compare_images"] == COMPARE_IMAGES
    assert needs["c9_eval"].notes == (BASE_NOTE,) and not needs["c9_eval"].waiting
    other = presenter("c7_torchscript").needs({**PARAMS, "compare_images": 16}, lookup).requests
    assert other[0].key == training.key and other[1].key != scripted.key  # the same training, another check
    with pytest.raises(ConfigError, match="compare_images=0"):
        presenter("c7_torchscript").needs({**PARAMS, "compare_images": 0}, lookup)


# --- C7 ---------------------------------------------------------------------------------------------

C7_RESULTS = {
    "scripted_file": "model_scripted.pt",
    "state_dict_file": "model_state_dict.pt",
    "scripted_bytes": 44_823_810,
    "state_dict_bytes": 44_771_979,
    "compared_images": 16,
    "compared_labels": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3, 4, 5],
    "max_abs_difference": 0.0,
    "identical_outputs": True,
    "deprecation_warnings": ["DeprecationWarning: gone soon"],
    "trained_images": 1234,
}


def test_output_verdict_thresholds():
    assert output_verdict(0.0).startswith("identical")
    assert output_verdict(FLOAT_TOLERANCE / 2).startswith("equal within float rounding")
    assert output_verdict(FLOAT_TOLERANCE * 2).startswith("**different**")


def test_c7_files_and_sentence_quote_the_record():
    files = files_table(C7_RESULTS)
    assert files["file"].tolist() == ["model_scripted.pt", "model_state_dict.pt"]
    assert files["size (MB)"].tolist() == pytest.approx([44.82381, 44.771979])
    epochs = [{"loss": 2.5, "accuracy": 10.0}, {"loss": 1.23456, "accuracy": 55.5}]
    text = c7_sentence(C7_RESULTS, epochs, "cpu")
    assert "after 2 epochs on 1,234 training images on `cpu`" in text
    assert "final training loss 1.235, accuracy 55.50 %" in text
    assert "On 16 test images (10 classes, balanced)" in text and "**0**: the outputs are identical (bitwise)" in text
    different = c7_sentence({**C7_RESULTS, "max_abs_difference": 0.5}, epochs, "cuda")
    assert "**0.5**: the outputs are **different**" in different


def test_warning_paragraphs():
    assert warning_paragraphs({}, "9.9") == ["torch 9.9 raised no warning while scripting, saving and loading."]
    quiet = warning_paragraphs({"torch.jit.save": ["UserWarning: x"], "torch.jit.load": ["UserWarning: x"]}, "9.9")
    assert quiet[0].splitlines() == ["- `torch.jit.save`: *UserWarning: x*", "- `torch.jit.load`: *UserWarning: x*"]
    assert "1 distinct warning" in quiet[1] and "DeprecationWarning" not in quiet[1]
    deprecated = warning_paragraphs({"torch.jit.script": ["DeprecationWarning: gone soon"]}, "9.9")
    assert "*DeprecationWarning: gone soon*" in deprecated[0] and "torch.export" in deprecated[1]


def test_c7_results_and_headline():
    answers = c7_results(C7_RESULTS)
    assert answers["max_abs_difference"] == 0.0 and answers["identical_outputs"] is True
    assert answers["compared_images"] == 16 and answers["deprecation_warnings"] == ["DeprecationWarning: gone soon"]
    (line,) = section_headlines("c7_torchscript", presenting(**answers))
    assert line.complete and line.value == 0.0 and "identical outputs, max abs difference 0.0e+00" in line.text
    (differs,) = section_headlines("c7_torchscript", presenting(max_abs_difference=0.25, identical_outputs=False))
    assert "outputs differ" in differs.text and differs.value == 0.25


# --- C8 ---------------------------------------------------------------------------------------------


def test_graph_and_top_level_operations_follow_the_model(scripted_resnet):
    assert graph_text(scripted_resnet).startswith("graph(%self")
    assert 'prim::CallMethod[name="features"]' in graph_text(scripted_resnet)
    assert 'name="layer4"' in graph_text(scripted_resnet, "features")
    operations = top_level_operations(scripted_resnet)
    assert operations.operation.tolist() == [
        "conv1.forward",
        "bn1.forward",
        "F.relu",
        "layer1.forward",
        "layer2.forward",
        "layer3.forward",
        "layer4.forward",
        "F.adaptive_avg_pool2d",
        "aten::flatten",
        "fc.forward",
    ]
    assert operations.step.tolist() == list(range(1, 11))
    assert operations.set_index("operation").loc["layer1.forward", "type"] == "Sequential"
    assert set(operations["in method"]) == {"features", "forward"}


def test_top_level_operations_shows_a_branch_as_one_operator():
    scripted = script_model(SignBranch()).module
    kinds = top_level_operations(scripted).operation.tolist()
    assert "prim::If" in kinds and "aten::sum" in kinds


def test_c8_sentence_and_results_read_the_steps_from_the_module(scripted_resnet):
    operations = top_level_operations(scripted_resnet)
    sequence = operation_sequence(operations)
    assert sequence[:4] == ["conv1", "bn1", "F.relu", "layer1"] and sequence[-1] == "fc"
    text = c8_sentence(scripted_resnet, operations)
    assert f"performs {len(sequence)} top-level operations: " + " → ".join(f"`{n}`" for n in sequence) in text
    assert "`layer1`–`layer4` (each a Sequential of 2 × BasicBlock)" in text  # four groups, one description
    assert "`conv1` (a Conv2d)" in text and "`fc` (a Linear)" in text
    small = script_model(nn.Sequential(nn.Linear(4, 4))).module
    assert "one `prim::CallMethod`" in c8_sentence(small, top_level_operations(small))
    graphs = {"forward": graph_text(scripted_resnet), "features": graph_text(scripted_resnet, "features")}
    answers = c8_results(operations, graphs)
    assert answers["operations"] == sequence and answers["operation_count"] == 10
    assert answers["forward_graph_lines"] == len(graphs["forward"].splitlines()) > 3
    (line,) = section_headlines("c8_graph", presenting(**answers))
    assert line.value == 10 and line.text == "10 top-level operations in the scripted forward graph"


# --- C9 ---------------------------------------------------------------------------------------------


def c9_record(scripted_per_class=(50.0, 100.0, 0.0), disagreements=0, difference=0.0) -> dict:
    eager = {"loss": 1.5, "accuracy": 50.0, "images": 6, "per_class": [50.0, 100.0, 0.0]}
    scripted = {
        "loss": 1.5,
        "accuracy": sum(scripted_per_class) / 3,
        "images": 6,
        "per_class": list(scripted_per_class),
    }
    return {
        "classes": ["cat", "dog", "ship"],
        "per_class_images": [2, 2, 2],
        "eager": eager,
        "scripted": scripted,
        "test_images": 6,
        "test_disagreements": disagreements,
        "test_max_abs_difference": difference,
    }


def test_c9_tables():
    results = c9_record()
    table = accuracy_table(results)
    assert table["model"].tolist() == ["PyTorch (eager)", "TorchScript (reloaded)"]
    assert table["test_accuracy"].tolist() == [50.0, 50.0] and table["images"].tolist() == [6, 6]
    per_class = per_class_table(c9_record((50.0, 50.0, 0.0), 1, 0.3))
    assert per_class["class"].tolist() == ["cat", "dog", "ship"] and per_class["images"].tolist() == [2, 2, 2]
    assert per_class["same_accuracy"].tolist() == [True, False, True]
    assert per_class["accuracy_difference"].tolist() == [0.0, -50.0, 0.0]


def test_c9_sentence_checks_overall_and_per_class():
    text = c9_sentence(c9_record(), "cpu")
    assert "on 6 test images on `cpu`" in text and "50.00 % top-1" in text and "**identical**, as checked" in text
    assert "Per class they agree on all 3 classes" in text
    assert "weakest class is `ship` (0.00 %) and its strongest `dog` (100.00 %)" in text
    assert "a different class on 0 images" in text and "identical (bitwise)" in text
    differing = c9_sentence(c9_record((50.0, 50.0, 0.0), 1, 0.3), "cuda")
    assert "**different** (by 16.6667 points)" in differing
    assert "agree on 2 of 3 classes (not on `dog`)" in differing and "on 1 image," in differing
    assert "**different** (above the float tolerance" in differing


def test_c9_results_and_headline():
    answers = c9_results(c9_record())
    assert answers["accuracy_eager"] == answers["accuracy_scripted"] == 50.0 and answers["same_accuracy"] is True
    assert answers["classes_agreeing"] == answers["classes_tested"] == 3 and answers["images"] == 6
    assert answers["per_class_scripted"] == [50.0, 100.0, 0.0]
    (line,) = section_headlines("c9_eval", presenting(**answers))
    assert line.value == 50.0 and line.unit == "%"
    assert line.text == "test top-1 50.00 % PyTorch, 50.00 % TorchScript on 6 images; per class equal on 3 of 3"
