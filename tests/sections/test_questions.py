"""Q1-Q6 (lablib.sections.questions): counted and demonstrated on the model itself; sentences and headlines."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn

from lablib.core.config import make_config
from lablib.core.model import SmallCNN, count_gradients, count_parameters, resnet18
from lablib.core.optim import make_optimizer, state_size
from lablib.core.torchscript import max_abs_difference, script_model
from lablib.sections.headlines import section_headlines
from lablib.sections.questions import (
    SignBranch,
    VariadicForward,
    conv_layers,
    count_convs,
    counts_table,
    forward_annotations,
    module_shapes,
    optimizer_state_breakdown,
    parameter_breakdown,
    q1_results,
    q1_sentence,
    q2_results,
    q2_sentence,
    q3_results,
    q3_sentence,
    q4_sentence,
    q5_results,
    q5_sentence,
    q6_results,
    q6_sentence,
    scripted_module_types,
    synthetic_batch,
    trace_vs_script,
    try_script,
)
from lablib.sections.torchscript import FLOAT_TOLERANCE

TORCH_DEPRECATES_JIT = tuple(int(part) for part in torch.__version__.split(".")[:2]) >= (2, 13)


def presenting(**answers) -> pd.DataFrame:
    return pd.DataFrame([{"run_id": "run-1", "ended": "2026-01-01T00:00:00", "status": "complete", **answers}])


def test_conv_counts_from_the_model():
    assert count_convs(resnet18()) == count_convs(resnet18(batch_norm=False))
    counts = count_convs(resnet18())
    assert (counts.total, counts.shortcut, counts.without_shortcut) == (20, 3, 17)
    table = conv_layers(resnet18())
    assert table[table.shortcut].name.tolist() == ["layer2.0.shortcut.0", "layer3.0.shortcut.0", "layer4.0.shortcut.0"]
    assert (table[table.shortcut].kernel == "1x1").all() and (table[~table.shortcut].kernel == "3x3").all()
    small = count_convs(SmallCNN())
    assert (small.total, small.shortcut) == (2, 0)


def test_module_shapes_via_hooks_leave_the_model_untouched():
    model = resnet18().train()
    images, _ = synthetic_batch(2)
    shapes = module_shapes(model, images, ["layer4", "fc"]).set_index("module")
    assert shapes.loc["layer4", "output_shape"] == (2, 512, 4, 4)
    assert shapes.loc["fc", "input_shape"] == (2, 512) and shapes.loc["fc", "output_shape"] == (2, 10)
    assert model.training  # mode restored
    assert not model.layer4._forward_hooks and not model.fc._forward_hooks  # hooks removed
    with pytest.raises(KeyError, match="layer9"):
        module_shapes(model, images, ["layer9"])


def test_synthetic_batch_is_seeded():
    first, second = synthetic_batch(4, seed=3), synthetic_batch(4, seed=3)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert first[0].shape == (4, 3, 32, 32) and first[1].shape == (4,) and int(first[1].max()) < 10


def test_parameter_breakdown_without_batch_norm():
    breakdown = parameter_breakdown(resnet18(batch_norm=False)).set_index("layer type")
    assert "BatchNorm2d" not in breakdown.index and breakdown.loc["total", "parameters"] == 11_164_362


def test_tracing_loses_the_branch_scripting_keeps_it():
    demo = trace_vs_script(
        SignBranch(), torch.ones(1, 3), {"positive": torch.ones(1, 3), "negative": -torch.ones(1, 3)}
    )
    rows = demo.table.set_index("input")
    assert rows.loc["positive", "traced matches eager"] and not rows.loc["negative", "traced matches eager"]
    assert rows["scripted matches eager"].all()
    assert rows.loc["negative", "traced"] == [-2.0, -2.0, -2.0] and rows.loc["negative", "eager"] == [1.0, 1.0, 1.0]
    assert not demo.traced_graph_has_branch and demo.scripted_graph_has_branch
    assert any(line.startswith("TracerWarning") for line in demo.trace_warnings)
    # Traced with a negative example, the other branch is the one that is lost.
    flipped = trace_vs_script(SignBranch(), -torch.ones(1, 3), {"positive": torch.ones(1, 3)})
    assert not flipped.table.loc[0, "traced matches eager"]


def test_try_script_and_what_scripting_compiled():
    rejected = try_script(VariadicForward())
    assert not rejected.ok and "variable number of arguments" in rejected.message
    accepted = try_script(resnet18())
    assert accepted.ok and accepted.message == ""
    if TORCH_DEPRECATES_JIT:
        assert any("deprecated" in line for line in accepted.warnings)
    scripted = script_model(resnet18()).module
    types = scripted_module_types(scripted).set_index("class")["compiled modules"]
    assert types["Conv2d"] == 20 and types["BatchNorm2d"] == 20 and types["BasicBlock"] == 8 and types["ResNet"] == 1
    annotations = forward_annotations(resnet18())
    assert annotations["BasicBlock"] == "(x: torch.Tensor) -> torch.Tensor"
    assert "unannotated" in annotations["Sequential"]
    assert isinstance(pd.DataFrame([annotations]), pd.DataFrame)


# --- the sentences of Q1-Q6 -------------------------------------------------------------------------


def test_q1_sentence_counts_from_the_table():
    convs = conv_layers(resnet18())
    text = q1_sentence(convs, linear_layers=1)
    assert (
        "**20 convolutional layers**" in text
        and "the 3 projection convolutions in the shortcuts (1x1)" in text
        and "**17** without them" in text
    )
    assert "1 stem convolution plus 2 per residual block × 8 blocks" in text
    assert "plus 1 linear layer: 18, the number in the name" in text
    assert "`layer2.0.shortcut.0` in block `layer2.0` (64 → 128 channels, stride 2)" in text
    plain = q1_sentence(conv_layers(SmallCNN()), linear_layers=2)  # no blocks, no shortcuts
    assert "**2 convolutional layers**" in plain and "projections sit" not in plain


def test_q2_sentence_explains_the_input_size():
    model = resnet18()
    images, _ = synthetic_batch(2)
    shapes = module_shapes(model, images, ["conv1", "layer1", "layer2", "layer3", "layer4", "fc"])
    with torch.no_grad():
        feature_map = tuple(model.features(images).shape)
    text = q2_sentence(shapes, model.fc.in_features, model.fc.out_features, feature_map)
    assert "takes **512** inputs" in text and "gives 10 class scores" in text
    assert "goes 32 → 32 → 32 → 16 → 8 → 4 through `conv1`, `layer1`" in text and "B × 512 × 4 × 4" in text
    assert "(2, 512)" in text and "512×4×4 = 8,192 inputs" in text


@pytest.mark.parametrize("section,optimizer,ratio", [("q3_params_sgd", "sgd", 1), ("q4_params_adam", "adam", 2)])
def test_q3_q4_counts_sentences_results_and_headlines(section, optimizer, ratio):
    config = make_config(optimizer=optimizer)
    model = resnet18()
    images, labels = synthetic_batch(2)
    optim = make_optimizer(optimizer, model.parameters(), config.lr, config.momentum, config.weight_decay)
    assert count_gradients(model) == 0 and state_size(optim) == 0
    loss = nn.functional.cross_entropy(model(images), labels)
    loss.backward()
    optim.step()
    parameters = count_parameters(model)
    assert count_gradients(model) == parameters == 11_173_962 and state_size(optim) == ratio * parameters
    state = optimizer_state_breakdown(optim)
    assert state.set_index("state").elements.drop("step", errors="ignore").sum() == ratio * parameters
    breakdown = parameter_breakdown(model)
    by_type = breakdown.set_index("layer type")
    assert by_type.loc["total", "parameters"] == parameters and by_type.loc["BatchNorm2d", "parameters"] == 9600

    text = q3_sentence(config, parameters, 0, count_gradients(model), breakdown, state)
    assert f"**{parameters:,} trainable parameters** in 62 tensors" in text and "BatchNorm2d 9,600" in text
    assert f"**{parameters:,} gradients** (before it: 0): one gradient element per trainable parameter" in text
    assert f"{ratio * parameters:,} elements ({ratio}× the parameters)" in text
    assert ("`momentum_buffer`" in text) == ("momentum 0.9" in text) == (optimizer == "sgd")
    assert ("`exp_avg_sq`" in text) == (optimizer == "adam")
    partial = q3_sentence(config, parameters, 0, parameters - 10, breakdown, state)
    assert f"only {parameters - 10:,} of the {parameters:,} parameters" in partial
    text = q4_sentence(config, parameters, parameters, state, 4, parameters)
    assert f"holds **{ratio * parameters:,} elements** = {ratio} × {parameters:,}" in text
    assert f"{ratio * parameters * 4 / 1e6:.1f} MB at 4 bytes per element" in text
    assert ("`step` counters are scalars" in text) == (optimizer == "adam")

    counts = {
        "parameters": parameters,
        "gradients_before": 0,
        "gradients_after": count_gradients(model),
        "optimizer_state_before": 0,
        "optimizer_state_after": state_size(optim),
    }
    answers = q3_results(counts, breakdown, loss.item())
    assert answers["optimizer_state_ratio"] == ratio and answers["parameter_tensors"] == 62
    assert answers["loss_first_step"] == pytest.approx(loss.item()) and answers["gradients_after"] == parameters
    (line,) = section_headlines(section, presenting(**answers, optimizer=optimizer))
    assert line.value == parameters and line.unit == "parameters"
    assert line.text == (
        f"11,173,962 trainable parameters and 11,173,962 gradients; {optimizer} keeps {ratio * parameters:,} "
        "state elements"
    )


def test_q5_sentence_follows_the_demonstration():
    inputs = {"positive": torch.ones(1, 3), "negative": -torch.ones(1, 3)}
    demo = trace_vs_script(SignBranch(), torch.ones(1, 3), inputs)
    text = q5_sentence(demo, torch.ones(1, 3))
    assert "whose sum is 3" in text and "has no branch" in text and "wrong answer for negative inputs" in text
    assert "keeps the branch and matches eager on 2 of 2 inputs" in text and "*TracerWarning" in text
    demo.trace_warnings.clear()
    assert "gave no TracerWarning" in q5_sentence(demo, torch.ones(1, 3))


def test_q6_sentence_from_what_scripting_did():
    model = resnet18()
    scripted = script_model(model)
    types = scripted_module_types(scripted.module)
    methods = {name: hasattr(scripted.module, name) for name in ("forward", "features", "_make_layer")}
    rejected = try_script(VariadicForward())
    text = q6_sentence(types, methods, forward_annotations(model), 0.0, scripted.warnings, rejected)
    assert f"({int(types['compiled modules'].sum())} modules of {len(types)} classes" in text
    assert "identical (bitwise)" in text and "compiled: forward, features; not compiled: _make_layer" in text
    assert "unannotated arguments (Sequential) default to Tensor" in text and "`forward(self, *inputs)`" in text
    accepted = try_script(resnet18())
    text = q6_sentence(types, methods, forward_annotations(model), 2 * FLOAT_TOLERANCE, ["UserWarning: w."], accepted)
    assert "**different**" in text and "forward(self, *inputs)" not in text and text.endswith("UserWarning: w.")


# --- what the records keep, and the headlines --------------------------------------------------------


def test_q1_q2_results_and_headlines():
    answers = q1_results(conv_layers(resnet18()))
    assert answers == {
        "conv_layers_total": 20,
        "conv_layers_shortcut": 3,
        "conv_layers_without_shortcut": 17,
        "shortcut_names": ["layer2.0.shortcut.0", "layer3.0.shortcut.0", "layer4.0.shortcut.0"],
    }
    (line,) = section_headlines("q1_conv_layers", presenting(**answers))
    assert line.value == 20 and line.text == "20 convolutional layers (17 without the 3 1×1 shortcut convolutions)"
    model = resnet18()
    images, _ = synthetic_batch(4)
    shapes = module_shapes(model, images, ["layer4", "fc"])
    with torch.no_grad():
        feature_map = tuple(model.features(images).shape)
    answers = q2_results(shapes, model.fc.in_features, model.fc.out_features, feature_map)
    assert answers["fc_in_features"] == 512 and answers["feature_map_shape"] == [512, 4, 4]
    assert answers["fc_input_shape"] == [512] and answers["fc_out_features"] == 10
    (line,) = section_headlines("q2_last_linear", presenting(**answers))
    assert line.value == 512 and "the 512 channels of the last feature map" in line.text


def test_q5_q6_results_and_headlines():
    demo = trace_vs_script(
        SignBranch(), torch.ones(1, 3), {"positive": torch.ones(1, 3), "negative": -torch.ones(1, 3)}
    )
    answers = q5_results(demo)
    assert answers["traced_wrong_inputs"] == ["negative"] and answers["scripted_all_match"] is True
    assert answers["scripted_has_branch"] is True and answers["traced_has_branch"] is False
    (line,) = section_headlines("q5_trace_vs_script", presenting(**answers))
    assert (
        line.value == 1
        and line.text == "tracing loses the data-dependent branch (wrong on 1 input); scripting keeps it"
    )
    model = resnet18().eval()
    scripted = script_model(model)
    types = scripted_module_types(scripted.module)
    difference = max_abs_difference(model, scripted.module, synthetic_batch(2)[0])
    answers = q6_results(types, difference, scripted.warnings, try_script(VariadicForward()))
    assert answers["compiled_modules"] == int(types["compiled modules"].sum()) and answers["contrast_rejected"]
    assert answers["max_abs_difference"] == 0.0 and "ResNet" in answers["compiled_classes"]
    (line,) = section_headlines("q6_scripting_changes", presenting(**answers))
    assert line.value == answers["compiled_modules"] and line.text.startswith("no change needed: scripted as written")


def test_counts_table_says_what_was_counted_in_words():
    counts = {"parameters": 10, "gradients_before": 0, "gradients_after": 10, "optimizer_state_after": 20}
    table = counts_table(counts)
    assert table["counted"].tolist() == [
        "parameters",
        "gradients before backward",
        "gradients after backward",
        "optimiser state after step",
    ]
    assert table["elements"].tolist() == [10, 0, 10, 20]
