"""lablib.sections.headlines: every section's one-line answers, from its presenting record.

Each section is presented once into the test's run store (factories.present_point: its presenting
run.json and results.json, as its notebook's `section.finish(...)` writes them), and the report reads it
as the build does: one row per section (lablib.report.build.record_frame), then section_headlines.
"""

from __future__ import annotations

import pytest
from conftest import REPO
from factories import E2_RESULTS, present_point

from lablib.core.errors import LabError
from lablib.report.build import record_frame
from lablib.report.plan import load_plan
from lablib.report.resolve import SectionState
from lablib.sections.headlines import NOT_RECORDED, Headline, headline_frame, section_headlines
from lablib.sections.registry import presenters

PLAN = load_plan(REPO / "report" / "plan.yaml", "full")
E1 = {
    "model_class": "SmallCNN",
    "grid_settings": 100,
    "settings_trained": 100,
    "settings_finished": 12,
    "full_epochs": 5,
    "budget_s": 600.0,
    "best_setting": "adam lr 0.001 onecycle",
    "best_accuracy": 98.9,
    "best_seeds": 3,
    "best_std": 0.1,
}
# section -> (what its notebook records with section.finish(...), {part: the key figure its answer carries})
ANSWERS = {
    "c1_training": ({"final_accuracy": 73.83, "final_loss": 0.75, "epochs_run": 5}, {"C1": 73.83}),
    "c2_timing": (
        {"data_s_mean": 0.65, "train_s_mean": 13.41, "epoch_s_mean": 15.77, "epoch_s_spread": 0.9},
        {"C2.1": 0.65, "C2.2": 13.41, "C2.3": 15.77},
    ),
    "c3_workers": (
        {
            "sweep_points": [
                {"workers": 0, "data_s_total": 66.9, "epoch_s_mean": 27.086},
                {"workers": 4, "data_s_total": 3.9, "epoch_s_mean": 13.928},
                {"workers": 8, "data_s_total": 4.1, "epoch_s_mean": 14.123},
            ],
            "sweep_best_workers": 4,
            "sweep_best_data_share": 0.0345,
            "sweep_stopped_at": 8,
        },
        {"C3.1": 3.9, "C3.2": 4, "C3.3": 3.45},
    ),
    "c4_gpu_vs_cpu": ({"speedup": 40.0, "gpu_epoch_s": 5.0, "cpu_epoch_s": 200.0}, {"C4": 40.0}),
    "c5_optimizers": (
        {
            "optimizer_points": [
                {"optimizer": "sgd", "final_accuracy": 73.8, "epochs_run": 5},
                {"optimizer": "adam", "final_accuracy": 40.0, "epochs_run": 5},
                {"optimizer": "adadelta", "final_accuracy": None, "epochs_run": 2},  # diverged
            ]
        },
        {"C5": 73.8},
    ),
    "c6_no_batchnorm": (
        {
            "accuracy_mean": 48.87,
            "reference_accuracy_mean": 54.66,
            "train_s_mean": 15.0,
            "reference_train_s_mean": 17.9,
        },
        {"C6": 48.87},
    ),
    "c7_torchscript": ({"max_abs_difference": 0.0, "identical_outputs": True}, {"C7": 0.0}),
    "c8_graph": ({"operation_count": 11}, {"C8": 11}),
    "c9_eval": ({"accuracy_eager": 70.94, "accuracy_scripted": 70.94, "images": 10000}, {"C9": 70.94}),
    "c10_latency": ({"cpu PyTorch eager mean_ms": 12.17, "cpu TorchScript mean_ms": 11.22}, {"C10": 11.22}),
    "q1_conv_layers": ({"conv_layers_total": 20, "conv_layers_shortcut": 3}, {"Q1": 20}),
    "q2_last_linear": ({"fc_in_features": 512}, {"Q2": 512}),
    "q3_params_sgd": ({"parameters": 11173962, "gradients_after": 11173962}, {"Q3": 11173962}),
    "q4_params_adam": (
        {"parameters": 11173962, "gradients_after": 11173962, "optimizer_state_after": 22347924},
        {"Q4": 11173962},
    ),
    "q5_trace_vs_script": (
        {"traced_has_branch": False, "scripted_has_branch": True, "traced_wrong_inputs": ["negative"]},
        {"Q5": 1},
    ),
    "q6_scripting_changes": (
        {"scripted_unchanged": True, "compiled_modules": 60, "max_abs_difference": 0.0},
        {"Q6": 60},
    ),
    "xc_libtorch": (
        {"cpp_built": True, "same_classes": True, "cpp_mean_ms": 3.5, "python_mean_ms": 4.0},
        {"XC-2026": 3.5},
    ),
    "p25_worker_profile": (
        {
            "compared_workers": [1, 4],
            "w1_data_s_mean": 2.5,
            "w1_train_s_mean": 10.0,
            "w4_data_s_mean": 0.6,
            "w4_train_s_mean": 10.1,
        },
        {"P-2025-C4": 2.5},
    ),
    "p25_compile": (
        {
            "compile_points": [
                {"compile_mode": "eager", "steady_train_s": 8.21, "first_epoch_train_s": 8.27},
                {
                    "compile_mode": "reduce-overhead",
                    "steady_train_s": 3.37,
                    "steady_train_s_std": 0.05,
                    "first_epoch_train_s": 18.11,
                    "compile_s": 9.0,
                },
            ]
        },
        {"P-2025-C8": 3.37},
    ),
    "p25_profiler": (
        {"top_operator": "aten::convolution", "top_operator_share": 41.5, "data_share": 0.2},
        {"P-2025-XC": 41.5},
    ),
    "e1_hparam_sweep": (E1, {"E1": 98.9}),
    "e1_cifar10": ({**E1, "model_class": "ResNet", "best_accuracy": 90.5}, {"E1": 90.5}),
    "e2_efficient_blocks": (
        E2_RESULTS,
        {"E2.1": 17, "E2.2": 60.0, "E2.3": 0.8},
    ),
    "x_fast": (
        {
            "fast_points": [
                {"mode": "faithful", "epoch_s": 10.0, "epoch_images": 50000, "train_images": 50000},
                {"mode": "fast", "epoch_s": 2.0, "epoch_images": 50000, "train_images": 50000},
            ]
        },
        {"X-FAST": 2.0},
    ),
}
PARAMETERS = {"q4_params_adam": {"optimizer": "adam"}}  # the notebook's own parameters, where they matter


def presented(name: str, results) -> list[Headline]:
    state = present_point(PLAN.section(name), results=results, parameters={**PARAMETERS.get(name, {}), "tag": "full"})
    return section_headlines(name, record_frame(state))


def test_every_registered_section_is_answered_here():
    assert set(ANSWERS) == set(presenters()) == {section.name for section in PLAN.sections}


@pytest.mark.parametrize("name", sorted(ANSWERS))
def test_every_section_answers_from_its_presenting_record(name):
    results, figures = ANSWERS[name]
    lines = presented(name, results)
    assert [line.part for line in lines] == list(presenters()[name].parts)
    assert all(line.complete and line.section == name and line.run_id for line in lines), lines
    assert {line.part: line.value for line in lines} == pytest.approx(figures)


def test_answers_carry_their_figures_in_words():
    c2 = {line.part: line for line in presented("c2_timing", ANSWERS["c2_timing"][0])}
    assert c2["C2.3"].text == "total 15.77 ± 0.90 s per epoch" and c2["C2.3"].spread == 0.9
    assert c2["C2.1"].spread is None and c2["C2.3"].unit == "s per epoch"
    c3 = {line.part: line for line in presented("c3_workers", ANSWERS["c3_workers"][0])}
    assert c3["C3.2"].line() == "C3.2 — 4 workers: 13.9 s per epoch"
    assert "8 workers" in c3["C3.3"].text and "3.5 % of the epoch" in c3["C3.3"].text
    (c5,) = presented("c5_optimizers", ANSWERS["c5_optimizers"][0])
    assert c5.text.startswith("best of 2 optimisers: sgd, 73.80 %")  # the diverged one is not a candidate
    (q4,) = presented("q4_params_adam", ANSWERS["q4_params_adam"][0])
    assert "11,173,962 trainable parameters" in q4.text and "adam keeps 22,347,924 state elements" in q4.text
    (fast,) = presented("x_fast", ANSWERS["x_fast"][0])
    assert "fastest mode fast: 2.00 s per epoch" in fast.text and "5.0× the lab's loop" in fast.text
    (e1,) = presented("e1_cifar10", ANSWERS["e1_cifar10"][0])
    assert e1.text.startswith("ResNet: best adam lr 0.001 onecycle, 90.50 ± 0.10 % test top-1 over 3 seeds")


@pytest.mark.parametrize("status", ["stale", "failed", "not built"])
def test_a_section_without_a_complete_record_says_so_for_every_part(status):
    for name, presenter in presenters().items():
        state = SectionState(PLAN.section(name), status=status)
        lines = section_headlines(name, record_frame(state))
        assert [line.part for line in lines] == list(presenter.parts)
        assert all(not line.complete and line.value is None and line.text == NOT_RECORDED for line in lines)
    with pytest.raises(LabError, match="c99"):
        section_headlines("c99", None)


def test_records_lacking_a_figure_are_not_an_answer():
    (q1,) = presented("q1_conv_layers", {"conv_layers_total": 20})  # the shortcut count is missing
    assert not q1.complete and q1.value is None and "conv_layers_shortcut" in q1.text
    c3 = presented("c3_workers", {"sweep_best_workers": 4})  # no worker count's times
    assert [line.complete for line in c3] == [False, False, False]
    (c5,) = presented("c5_optimizers", {"optimizer_points": [{"optimizer": "sgd", "final_accuracy": None}]})
    assert not c5.complete and "diverged" in c5.text


def test_the_headlines_as_a_table():
    lines = presented("c2_timing", ANSWERS["c2_timing"][0])
    frame = headline_frame(lines)
    assert list(frame.columns) == ["section", "part", "text", "value", "unit", "complete", "run_id", "spread"]
    assert frame["part"].tolist() == ["C2.1", "C2.2", "C2.3"]
