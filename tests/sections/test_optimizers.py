"""lablib.sections.optimizers and devices: C4's speed-up, C5's table, ranking and discussion, C6 against C5's SGD."""

import math

import pandas as pd
import pytest
from factories import epoch_rows

from lablib.core.model import count_parameters, resnet18
from lablib.core.store import lookup
from lablib.core.train import DIVERGENCE_RULE
from lablib.sections.devices import SpeedUp, c4_measurements, parse_devices
from lablib.sections.optimizers import (
    LOSS_TIE,
    SAME_COST_SPREAD,
    batchnorm_comparison,
    batchnorm_parameters_sentence,
    c5_measurements,
    c6_measurements,
    optimizer_discussion,
    optimizer_table,
    parse_optimizers,
    ranking,
    ranking_sentence,
)

PARAMS = {"data": "fake", "limit_train": 256, "limit_test": 64, "epochs": 2, "device": "cpu", "workers": 0}


def test_c4_speedup_branches():
    assert "the GPU is 4.0× faster" in SpeedUp(8.0, 2.0, False).text()
    slower = SpeedUp(2.0, 5.0, False)
    assert slower.speedup == pytest.approx(0.4) and "the CPU is 2.5× faster here" in slower.sentence()
    assert "GPU is" not in slower.sentence()
    nothing = SpeedUp(None, None, False)
    assert "the GPU point is not measured" in nothing.sentence() and "the CPU point" in nothing.sentence()
    assert "`-p devices cuda,cpu` on a machine" not in nothing.text()  # nothing says this machine lacks a GPU


def _optimizer_points():
    return pd.DataFrame(
        [
            {
                "run_id": "a",
                "optimizer": "sgd",
                "workers": 2,
                "epochs_run": 3,
                "train_s_mean": 10.0,
                "epoch_s_mean": 11.0,
                "final_loss": 1.2,
                "final_accuracy": 55.0,
                "loss_mean": 1.5,
                "accuracy_mean": 45.0,
                "diverged": False,
            },
            {
                "run_id": "b",
                "optimizer": "adam",
                "workers": 2,
                "epochs_run": 3,
                "train_s_mean": 10.5,
                "epoch_s_mean": 11.4,
                "final_loss": 1.8,
                "final_accuracy": 35.0,
                "loss_mean": 2.0,
                "accuracy_mean": 30.0,
                "diverged": False,
            },
            {
                "run_id": "c",
                "optimizer": "adagrad",
                "workers": 2,
                "epochs_run": 1,
                "train_s_mean": 10.2,
                "epoch_s_mean": 11.1,
                "final_loss": float("nan"),
                "final_accuracy": 10.0,
                "loss_mean": float("nan"),
                "accuracy_mean": 10.0,
                "diverged": None,
            },  # NaN loss, flag lost: still diverged
        ]
    )


def test_optimizer_table_keeps_and_flags_diverged_runs():
    table = optimizer_table(_optimizer_points())
    assert table["optimizer"].tolist() == ["adagrad", "adam", "sgd"]
    assert table.set_index("optimizer")["outcome"].to_dict() == {
        "adagrad": "diverged (stopped)",
        "adam": "trained",
        "sgd": "trained",
    }
    assert math.isnan(table.loc[0, "final_loss"])


def test_optimizer_discussion_from_the_numbers():
    text = " ".join(optimizer_discussion(_optimizer_points()))
    assert "`sgd` converged fastest: after 3 epochs its training loss is the lowest, 1.200" in text
    assert "slowest to converge is `adam` (loss 1.800" in text
    assert 0.05 < SAME_COST_SPREAD and "10.00 s with `sgd` and 10.50 s with `adam` (5% apart): the optimiser" in text
    assert "Diverged" in text and "`adagrad`" in text and DIVERGENCE_RULE in text  # the rule is said
    assert "Not measured: `adadelta`, `sgd_nesterov`" in text


def test_optimizer_discussion_states_the_recorded_lr():
    points = _optimizer_points().assign(lr=0.5)
    text = " ".join(optimizer_discussion(points))
    assert "`adagrad`; at lr 0.5 their updates grew without bound" in text and "lr 0.1" not in text
    healthy = points[points["optimizer"] != "adagrad"].assign(lr=[0.1, 0.01])
    calm = " ".join(optimizer_discussion(healthy))
    assert "None of the 2 optimisers recorded diverged at their lr (`sgd` 0.1, `adam` 0.01)." in calm
    assert "Diverged" not in calm
    assert "diverged at the recorded lr" in " ".join(optimizer_discussion(healthy.drop(columns="lr")))


def test_optimizer_discussion_calls_a_large_time_gap_the_machines_load():
    points = _optimizer_points().assign(lr=0.1)
    points.loc[points["optimizer"] == "adam", "train_s_mean"] = 13.0  # 30 % slower than sgd
    text = " ".join(optimizer_discussion(points))
    assert "(30% apart); the update itself" in text and "machine's load" in text
    assert optimizer_discussion(pd.DataFrame()) == ["No optimiser point is recorded yet."]


def test_optimizer_discussion_with_one_healthy_optimizer_compares_nothing():
    points = _optimizer_points().assign(lr=0.1)
    text = " ".join(optimizer_discussion(points[points["optimizer"] != "adam"]))
    assert "`sgd` is the only optimiser that trained without diverging so far" in text and "1.200" in text
    assert "fastest" not in text and "slowest" not in text and "`adagrad`; at lr 0.1" in text


def test_the_ranking_names_the_winner_of_each_metric():
    table = ranking(_optimizer_points())
    assert table.set_index("optimizer")["time rank"].to_dict() == {"sgd": 1, "adagrad": 2, "adam": 3}
    assert table.set_index("optimizer")["accuracy rank"].to_dict()["adagrad"] == 3  # diverged: last
    sentence = ranking_sentence(_optimizer_points())
    assert "shortest training time per epoch is `sgd` (10.00 s)" in sentence
    assert (
        "lowest last-epoch loss `sgd` (1.200)" in sentence
        and "highest last-epoch top-1 training accuracy `sgd`" in sentence
    )
    assert ranking_sentence(pd.DataFrame()) == "No optimiser is recorded, so nothing is ranked."


def test_c4_c5_c6_plan_their_trainings_with_the_chosen_workers():
    c5 = c5_measurements({**PARAMS, "optimizers": "sgd,adam"}, lookup)
    assert [r.settings["optimizer"] for r in c5.requests] == ["sgd", "adam"]
    assert all(r.settings["workers"] == 0 and r.timing for r in c5.requests)
    c6 = c6_measurements({**PARAMS, "optimizer": "adam"}, lookup)
    without, with_norm = c6.requests
    assert (without.settings["batch_norm"], with_norm.settings["batch_norm"]) == (False, True)
    assert with_norm.key == c5.requests[0].key  # C6's reference is C5's SGD run itself
    c4 = c4_measurements({**PARAMS, "devices": "cpu"}, lookup)
    assert [r.settings["device"] for r in c4.requests] == ["cpu"] and c4.requests[0].key == c5.requests[0].key
    with pytest.raises(Exception, match="optimizers='sgd,lion'"):
        parse_optimizers("sgd,lion")
    with pytest.raises(Exception, match="devices='tpu'"):
        parse_devices("tpu")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the GPU-less path")
def test_c4_without_a_gpu_measures_the_cpu_and_says_why_not_the_gpu():
    needs = c4_measurements({**PARAMS, "devices": "cuda,cpu"}, lookup)
    assert [r.settings["device"] for r in needs.requests] == ["cpu"]
    (gpu,) = [note for note in needs.notes if note.startswith("**Not measured on `cuda`:**")]
    assert "the GPU half of C4 needs a machine with a GPU" in gpu and "use device='cpu'" not in gpu


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the GPU-less path")
def test_c4_with_a_gpu_torch_cannot_use_gives_the_driver_line_and_its_fix(monkeypatch):
    from lablib.sections import devices

    monkeypatch.setattr(devices, "driver_warning", lambda: "the NVIDIA driver is too old: make setup TORCH_INDEX=…")
    monkeypatch.setattr("lablib.core.train.driver_warning", lambda: "the NVIDIA driver is too old: make setup …")
    needs = c4_measurements({**PARAMS, "devices": "cuda,cpu"}, lookup)
    (gpu,) = [note for note in needs.notes if note.startswith("**Not measured on `cuda`:**")]
    assert "the NVIDIA driver is too old" in gpu and "GPU half of C4" not in gpu


# --- C6 ------------------------------------------------------------------------------


def _side(loss_mean, accuracy_mean=30.0, train_s_mean=3.0, diverged=False, run_id="r0", lr=0.1):
    return pd.Series(
        {
            "run_id": run_id,
            "epochs_run": 2,
            "loss_mean": loss_mean,
            "accuracy_mean": accuracy_mean,
            "final_loss": float("nan") if diverged else loss_mean - 0.2,
            "final_accuracy": 35.0,
            "train_s_mean": train_s_mean,
            "epoch_s_mean": train_s_mean + 0.5,
            "diverged": diverged,
            "lr": lr,
        }
    )


def _epochs(train_s):
    return [dict(row, train_s=t) for row, t in zip(epoch_rows(len(train_s)), train_s)]


def test_c6_verdict_follows_the_loss_gap():
    reference = _side(1.5, 45.0, run_id="r1")
    tie = " ".join(batchnorm_comparison(_side(1.5 + LOSS_TIE / 2), reference, [], [])[1])
    assert "about equally well" in tie and "stably" not in tie
    better = " ".join(batchnorm_comparison(_side(1.2, 46.0), reference, [], [])[1])
    assert "without BatchNorm reached the lower loss over 2 epochs" in better and "by -0.300" in better
    assert "did not help" in better  # the accuracy agrees: 46 % without against 45 % with
    disagree = " ".join(batchnorm_comparison(_side(1.2, 40.0), _side(1.5, 45.0, run_id="r1"), [], [])[1])
    assert "lower loss but the lower accuracy over 2 epochs: the two measures disagree" in disagree
    assert "did not help" not in disagree
    diverged = " ".join(batchnorm_comparison(_side(3.0, diverged=True), reference, [], [])[1])
    assert "diverged" in diverged and DIVERGENCE_RULE in diverged and "lr 0.1" in diverged
    healthy = " ".join(batchnorm_comparison(_side(1.9), reference, [], [])[1])
    assert "too large" not in healthy and "C5's SGD run `r1`" in healthy


def test_c6_argues_the_training_time_from_the_numbers_and_their_spread():
    reference = _side(1.5, 45.0, train_s_mean=8.34, run_id="r1")
    clear = " ".join(
        batchnorm_comparison(
            _side(1.9, train_s_mean=5.53), reference, _epochs([6.0, 5.5, 5.6, 5.5]), _epochs([9.0, 8.3, 8.2, 8.4])
        )[1]
    )
    assert "Training takes 5.53 ± 0.06 s per epoch without BatchNorm and 8.34 ± 0.10 s with it" in clear
    assert "2.81 s (34%) faster without BatchNorm, more than twice the larger spread (0.10 s)" in clear
    noisy = " ".join(
        batchnorm_comparison(
            _side(1.9, train_s_mean=8.0), reference, _epochs([8.0, 7.0, 9.0]), _epochs([9.0, 8.3, 8.4])
        )[1]
    )
    assert "within twice the larger spread" in noisy and "no difference is shown" in noisy
    short = " ".join(batchnorm_comparison(_side(1.9, train_s_mean=5.5), reference, _epochs([5.5]), _epochs([8.3]))[1])
    assert "too few epochs to tell" in short


def test_c6_alone_says_there_is_nothing_to_compare():
    table, sentences = batchnorm_comparison(_side(2.3, diverged=True), None, [], [])
    assert len(table) == 1 and "not recorded" in sentences[1] and "diverged" in sentences[0]


def test_c6_parameter_counts_come_from_the_model():
    text = batchnorm_parameters_sentence()
    with_norm, without = count_parameters(resnet18()), count_parameters(resnet18(batch_norm=False))
    assert (with_norm, without) == (11_173_962, 11_164_362)  # LAB_SPEC "Common setup"
    assert f"{without:,} trainable parameters instead of {with_norm:,}" in text and f"{with_norm - without:,}" in text
    grayscale = batchnorm_parameters_sentence(num_classes=10, in_channels=1)
    assert f"{count_parameters(resnet18(batch_norm=False, in_channels=1)):,}" in grayscale
