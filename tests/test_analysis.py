"""lablib.sections.analysis: the facts and sentences of C1-C6 and P-2025-C4, from records made here."""

import math

import pandas as pd
import pytest
import torch

from lablib.core.config import make_config
from lablib.core.errors import ConfigError
from lablib.core.model import count_parameters, resnet18
from lablib.core.runs import start_run
from lablib.core.train import DIVERGENCE_RULE
from lablib.sections.analysis import (
    BOTTLENECK_SHARE,
    FIRST_EPOCH_SLOWER,
    LAB_WORKERS,
    LOSS_TIE,
    SAME_COST_SPREAD,
    DeviceChoice,
    SpeedUp,
    analyse_workers,
    batchnorm_comparison,
    batchnorm_parameters_sentence,
    c3_choose_workers,
    c4_point_text,
    c4_points,
    c4_speedup,
    find_c5_sgd,
    optimizer_discussion,
    optimizer_table,
    profile_counts,
    profile_counts_sentence,
    profile_results,
    profile_sentences,
    profile_text,
    reference_results,
    resolve_or_unavailable,
    resolve_workers,
    timing_results,
    timing_table,
    timing_text,
    training_setup_sentence,
    training_text,
    worker_profile,
)


def _point(workers, data_s, train_s, epochs=2):
    total = data_s + train_s + 0.1 * epochs
    return {
        "workers": workers,
        "epochs_run": epochs,
        "data_s_total": data_s,
        "train_s_total": train_s,
        "epoch_s_total": total,
        "data_s_mean": data_s / epochs,
        "train_s_mean": train_s / epochs,
        "epoch_s_mean": total / epochs,
    }


def _record(section, config, results, tag="t", fingerprint="abc", device="cpu", sweep=()):
    with start_run(section, config, tag=tag, device=device, sweep=sweep, data={"fingerprint": fingerprint}) as run:
        run.log_results(**results)
    return run


def _epoch(epoch, loss, accuracy, data_s=1.0, train_s=3.0, total_s=4.2, images=256, diverged=False):
    batches = 2
    return {
        "epoch": epoch,
        "loss": loss,
        "accuracy": accuracy,
        "data_s": data_s,
        "train_s": train_s,
        "total_s": total_s,
        "images": images,
        "batches": batches,
        "images_per_s": images / total_s,
        "diverged": diverged,
    }


# --- C1 ------------------------------------------------------------------------------


def test_training_text_follows_the_loss_from_the_first_to_the_last_epoch():
    config = make_config(workers=0, lr=0.05)
    falling = training_text([_epoch(1, 2.1, 20.0), _epoch(2, 1.5, 41.5)], 1024, "cpu", config)
    assert falling.startswith("**C1:** after 2 epochs on 1,024 training images on `cpu` with 0 workers and `sgd`")
    assert "lr 0.05" in falling and "fell from 2.100 in epoch 1 to 1.500" in falling and "41.50 %" in falling
    rising = training_text([_epoch(1, 2.1, 20.0), _epoch(2, 2.3, 18.0)], 1024, "cpu", config)
    assert "did not fall (2.100 in epoch 1, 2.300 in epoch 2" in rising and "fell" not in rising
    single = training_text([_epoch(1, 2.25, 15.0)], 256, "cuda", config)
    assert "after 1 epoch on 256" in single and "loss is 2.250" in single and "no trend" in single
    diverged = training_text(
        [_epoch(1, 2.3, 10.0), _epoch(2, float("nan"), 10.0, diverged=True)], 256, "cpu", make_config(lr=0.7)
    )
    assert "NaN/inf in epoch 2" in diverged and "at lr 0.7" in diverged and "fell" not in diverged
    assert training_text([], 256, "cpu", config) == "**C1:** no epoch was recorded."


def test_training_setup_sentence_states_the_config_it_ran():
    sgd = training_setup_sentence(make_config(epochs=3, batch_size=64, workers=4), "cuda")
    assert "3 epochs of batches of 64 images" in sgd and "`sgd` with lr 0.1, momentum 0.9" in sgd
    assert "weight decay 0.0005" in sgd and "with BatchNorm, 4 loader worker(s), on `cuda`" in sgd
    adam = training_setup_sentence(make_config(optimizer="adam", batch_norm=False), "cpu")
    assert "momentum" not in adam and "without BatchNorm" in adam


# --- C2 ------------------------------------------------------------------------------


def test_timing_table_and_results_from_the_epochs():
    epochs = [_epoch(1, 2.0, 10.0, 1.0, 3.0, 4.5), _epoch(2, 1.8, 12.0, 0.5, 3.0, 3.6)]
    table = timing_table(epochs)
    assert table["epoch"].tolist() == [1, 2, "average"]
    assert table.loc[2, "C2.1 data-loading (s)"] == pytest.approx(0.75)
    assert table.loc[0, "other (s)"] == pytest.approx(0.5) and table.loc[1, "other (s)"] == pytest.approx(0.1)
    results = timing_results(epochs)
    assert results["other_s_mean"] == pytest.approx(0.3)
    assert results["data_share"] == pytest.approx(0.75 / 4.05) and results["train_share"] == pytest.approx(3 / 4.05)


def test_timing_text_judges_the_data_share_and_the_first_epoch():
    slow_first = [_epoch(1, 2.0, 10.0, 1.0, 3.0, 6.0), _epoch(2, 1.8, 12.0, 1.0, 3.0, 4.1)]
    text = timing_text(slow_first, "cpu", 2)
    assert "**C2.1:** waiting for data took 1.00 s per epoch on average (20% of the epoch; epoch 1: 1.00 s)" in text
    assert 1.0 / 5.05 >= BOTTLENECK_SHARE and "bottleneck" in text
    assert "**C2.2:**" in text and "3.00 s per epoch" in text
    assert (
        "**C2.3:** a whole epoch took 5.05 s on average (epoch 1: 6.00 s), 53 images/s" in text
        and "with 2 workers" in text
    )
    assert 6.0 > FIRST_EPOCH_SLOWER * 4.1 and "Epoch 1 is 46% slower than the later epochs' mean (4.10 s)" in text
    even = timing_text([_epoch(1, 2.0, 10.0, 0.1, 3.0, 3.2), _epoch(2, 1.8, 12.0, 0.1, 3.0, 3.2)], "cuda", 8)
    assert "rarely waits for data" in even and "bottleneck" not in even and "slower than the later" not in even
    single = timing_text([_epoch(1, 2.0, 10.0, 0.1, 3.0, 3.2)], "cpu", 0)
    assert "epoch 1:" not in single and "0.100 s per epoch fall outside" in single


# --- C3 ------------------------------------------------------------------------------


def test_workers_analysis_finds_where_the_decrease_stopped():
    points = pd.DataFrame([_point(0, 40.0, 60.0), _point(4, 8.0, 61.0), _point(8, 5.0, 62.0), _point(12, 6.0, 70.0)])
    facts = analyse_workers(points, cores=16, torch_threads=8)
    assert facts.candidates == [0, 4, 8, 12, 16] and facts.measured == [0, 4, 8, 12]
    assert (facts.stopped_at, facts.stopped_after) == (12, 8)
    assert facts.fastest_data_workers == 8 and facts.best_workers == 8
    assert facts.best_epoch_s == pytest.approx((5.0 + 62.0 + 0.2) / 2)
    assert facts.best_data_share == pytest.approx(5.0 / 67.2)
    assert facts.next_workers is None and facts.rule_complete
    assert facts.oversubscribed  # 12 workers + 8 threads > 16 cores
    text = " ".join(facts.sentences())
    assert "The decrease stopped at 12 workers: 6.00 s of data loading against 5.00 s with 8." in text
    assert "from 40.00 s to 5.00 s (35.00 s saved)" in text
    assert "is not the bottleneck" in text  # 7 % of the epoch
    assert "16 logical cores" in text and "20 busy threads" in text
    assert "The rule is satisfied: the data-loading time stopped decreasing at 12 workers" in facts.rule_sentence()
    assert "the best runtime is with 8 workers (33.60 s per epoch" in facts.best_sentence()
    assert facts.results()["sweep_stopped_at"] == 12
    c31 = facts.data_loading_text()
    assert c31.startswith("**C3.1:** total data-loading time: 0 workers 40.00 s, 4 workers 8.00 s, 8 workers 5.00 s")
    assert "(over 2 epochs each)" in c31 and facts.rule_sentence() in c31
    assert facts.best_text() == "**C3.2:** " + facts.best_sentence()
    assert facts.why_text() == "**C3.3:** " + " ".join(facts.sentences())


def test_workers_texts_without_points_and_with_mixed_epochs():
    empty = analyse_workers(pd.DataFrame(columns=["workers", "data_s_total", "epoch_s_total"]), cores=4)
    assert empty.data_loading_text().startswith("**C3.1:** no point is recorded yet.")
    assert "next point to measure is 0 workers" in empty.data_loading_text()
    mixed = analyse_workers(pd.DataFrame([_point(0, 4.0, 9.0, epochs=1), _point(4, 2.0, 9.0, epochs=2)]), cores=8)
    assert "(points with different epochs)" in mixed.data_loading_text()


def test_workers_analysis_asks_for_the_next_point_and_sees_a_data_bound_loader():
    facts = analyse_workers(pd.DataFrame([_point(0, 50.0, 20.0), _point(4, 30.0, 20.0)]), cores=16, torch_threads=4)
    assert facts.stopped_at is None and facts.next_workers == 8 and not facts.rule_complete
    assert "the next point to measure is 8 workers" in facts.rule_sentence()
    text = " ".join(facts.sentences())
    assert "still decreased up to 4 workers" in text and "still a large part of the epoch" in text
    assert not facts.oversubscribed


def test_workers_analysis_on_a_small_machine_and_off_grid_points():
    facts = analyse_workers(
        pd.DataFrame([_point(0, 1.0, 20.0), _point(1, 0.5, 22.0), _point(2, 0.3, 30.0)]), cores=2, torch_threads=2
    )
    assert facts.candidates == [0, 2] and facts.rule_complete and facts.best_workers == 0
    assert "off the rule's grid (1)" in facts.rule_sentence()
    assert "+50% against 0 workers" in " ".join(facts.sentences())


def test_c3_choose_workers_walks_the_rule_then_repeats_the_best():
    empty = pd.DataFrame()
    assert c3_choose_workers(8, empty).workers == 8
    assert c3_choose_workers(-1, empty, cores=16).workers == 0
    two = pd.DataFrame([_point(0, 10.0, 5.0), _point(4, 4.0, 5.0)])
    assert c3_choose_workers(-1, two, cores=16).workers == 8
    done = pd.DataFrame([_point(0, 10.0, 5.0), _point(4, 4.0, 5.0), _point(8, 4.5, 5.0)])
    chosen = c3_choose_workers(-1, done, cores=16)
    assert (chosen.workers, chosen.source) == (4, "best")
    with pytest.raises(ConfigError, match="workers=-2"):
        c3_choose_workers(-2, empty)


# --- workers for C4-C6 ----------------------------------------------------------------


def test_resolve_workers_takes_c3s_best_else_the_lab_default():
    assert resolve_workers(3, "t", "abc", "cpu").workers == 3
    fallback = resolve_workers(-1, "t", "abc", "cpu")
    assert (fallback.workers, fallback.source) == (LAB_WORKERS, "lab default") and "no complete" in fallback.reason
    for workers, seconds in ((0, 9.0), (4, 3.5), (8, 4.0)):
        _record("c3_workers", make_config(workers=workers), {"epoch_s_mean": seconds}, sweep="workers")
    best = resolve_workers(-1, "t", "abc", "cpu")
    assert (best.workers, best.source, best.seconds_per_epoch) == (4, "c3", 3.5) and "3.50 s per epoch" in best.reason
    assert resolve_workers(-1, "t", "abc", "cuda").workers == LAB_WORKERS  # C3 was measured on the CPU only
    with pytest.raises(ConfigError):
        resolve_workers(-5, "t", "abc", "cpu")
    assert best.record() == {"workers_requested": -1, "workers_source": "c3"}
    assert resolve_workers(3, "t", "abc", "cpu").record() == {"workers_requested": 3, "workers_source": "parameter"}
    assert best.sentence("cpu").startswith("This execution runs on `cpu` with 4 workers: C3.2's best")
    assert "stands for the `cuda` point, not available here," in best.sentence("cuda", available=False)


def test_c3_choice_records_what_was_asked():
    chosen = c3_choose_workers(-1, pd.DataFrame(), cores=16)
    assert chosen.record() == {"workers_requested": -1, "workers_source": "next"}
    assert "0 workers, the next count of the lab's rule" in chosen.sentence("cuda")


# --- C4 ------------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the GPU-less path")
def test_cuda_without_a_gpu_is_reported_not_raised():
    choice = resolve_or_unavailable("cuda")
    assert not choice.available and choice.target == "cuda" and choice.device is None
    assert "no CUDA GPU" in choice.reason
    auto = resolve_or_unavailable("auto")
    assert auto.available and auto.target == "cpu"
    with pytest.raises(ConfigError):
        resolve_or_unavailable("tpu")


@pytest.mark.cuda
def test_cuda_with_a_gpu_is_resolved():
    choice = resolve_or_unavailable("cuda")
    assert choice.available and choice.device.type == "cuda" and choice.reason == ""


def test_c4_points_prefer_a_measurement_over_a_later_unavailable_record():
    sweep = ("device", "workers")
    _record(
        "c4_gpu_vs_cpu",
        make_config(device="cuda"),
        {"target_device": "cuda", "device_available": True, "epoch_s_mean": 2.0},
        sweep=sweep,
        device="cpu",
    )
    _record(
        "c4_gpu_vs_cpu",
        make_config(device="cpu"),
        {"target_device": "cpu", "device_available": True, "epoch_s_mean": 30.0},
        sweep=sweep,
    )
    current = start_run("c4_gpu_vs_cpu", make_config(device="cuda"), tag="t", sweep=sweep, data={"fingerprint": "abc"})
    current.log_results(target_device="cuda", device_available=False)
    points = c4_points(current)
    assert points["target_device"].tolist() == ["cpu", "cuda"] and points["measured"].all()
    speed = c4_speedup(points)
    assert speed.speedup == pytest.approx(15.0) and "15.0× faster" in speed.sentence()


def test_c4_speedup_without_a_gpu_says_so_and_keeps_the_cpu_figure():
    sweep = ("device", "workers")
    _record(
        "c4_gpu_vs_cpu",
        make_config(device="cpu"),
        {"target_device": "cpu", "device_available": True, "epoch_s_mean": 12.5},
        sweep=sweep,
    )
    current = start_run(
        "c4_gpu_vs_cpu", make_config(device="cuda", workers=2), tag="t", sweep=sweep, data={"fingerprint": "abc"}
    )
    current.log_results(target_device="cuda", device_available=False)
    points = c4_points(current)
    assert points.set_index("target_device")["measured"].to_dict() == {"cpu": True, "cuda": False}
    speed = c4_speedup(points)
    assert speed.speedup is None and speed.gpu_unavailable and speed.cpu_epoch_s == 12.5
    assert speed.sentence() == (
        "12.50 s per epoch on the CPU; no speed-up can be computed: no GPU on this machine could be measured."
    )
    assert speed.text().startswith("**C4:** " + speed.sentence()) and "`-p device cuda`" in speed.text()


def test_c4_speedup_branches():
    assert "the GPU is 4.0× faster" in SpeedUp(8.0, 2.0, False).text()
    slower = SpeedUp(2.0, 5.0, False)
    assert slower.speedup == pytest.approx(0.4) and "the CPU is 2.5× faster here" in slower.sentence()
    assert "GPU is" not in slower.sentence()
    nothing = SpeedUp(None, None, False)
    assert "the GPU point is not recorded yet" in nothing.sentence() and "the CPU point" in nothing.sentence()
    assert "`-p device cuda` on a machine" not in nothing.text()  # nothing says this machine lacks a GPU


def test_c4_point_text():
    unavailable = DeviceChoice("cuda", "cuda", None, "no CUDA GPU here")
    text = c4_point_text(unavailable, None)
    assert text.startswith("**Not measured:** no GPU is available on this machine: no CUDA GPU here")
    cpu = DeviceChoice("cpu", "cpu", torch.device("cpu"), "")
    measured = c4_point_text(cpu, [_epoch(1, 2.0, 10.0, total_s=5.0), _epoch(2, 1.8, 12.0, total_s=4.0)])
    assert measured == "Measured on `cpu`: 4.50 s per epoch over 2 epochs (last epoch 4.00 s)."
    assert "no epoch was recorded" in c4_point_text(cpu, [])


# --- C5 ------------------------------------------------------------------------------


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
    assert "`sgd` converged fastest: after 3 epoch(s) its training loss is the lowest, 1.200" in text
    assert "slowest to converge is `adam` (loss 1.800" in text
    assert 0.05 < SAME_COST_SPREAD and "10.00 s with `sgd` and 10.50 s with `adam` (5% apart): the optimiser" in text
    assert "Diverged" in text and "`adagrad`" in text and DIVERGENCE_RULE in text  # the rule is said
    assert "Not recorded yet: `adadelta`, `sgd_nesterov`" in text


def test_optimizer_discussion_states_the_recorded_lr():
    points = _optimizer_points().assign(lr=0.5)
    text = " ".join(optimizer_discussion(points))
    assert "`adagrad`; at lr 0.5 their updates grew without bound" in text and "lr 0.1" not in text
    healthy = points[points["optimizer"] != "adagrad"].assign(lr=[0.1, 0.01])
    calm = " ".join(optimizer_discussion(healthy))
    assert "None of the 2 optimiser(s) recorded diverged at their lr (`sgd` 0.1, `adam` 0.01)." in calm
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


# --- C6 ------------------------------------------------------------------------------


def test_c6_finds_c5s_sgd_with_the_same_settings_only():
    base = make_config(epochs=2, limit_train=256)
    _record(
        "c5_optimizers",
        make_config(base, optimizer="adam"),
        {"loss_mean": 2.0, "accuracy_mean": 20.0},
        sweep=("optimizer", "workers"),
    )
    _record(
        "c5_optimizers",
        make_config(base, epochs=3),
        {"loss_mean": 1.0, "accuracy_mean": 60.0},
        sweep=("optimizer", "workers"),
    )
    assert find_c5_sgd("t", "abc", "cpu", 2, 256) is None
    assert reference_results(None) == {
        "reference_run": None,
        "reference_loss_mean": None,
        "reference_accuracy_mean": None,
    }
    sgd = _record("c5_optimizers", base, {"loss_mean": 1.4, "accuracy_mean": 48.0}, sweep=("optimizer", "workers"))
    found = find_c5_sgd("t", "abc", "cpu", 2, 256)
    assert found["run_id"] == sgd.run_id
    assert reference_results(found) == {
        "reference_run": sgd.run_id,
        "reference_loss_mean": 1.4,
        "reference_accuracy_mean": 48.0,
    }
    assert find_c5_sgd("t", "abc", "cuda", 2, 256) is None and find_c5_sgd("t", "abc", "cpu", 2, 512) is None
    table, sentences = batchnorm_comparison(_without(1.9), found, 0.1)
    assert table["run"].tolist() == ["C6: SGD without BatchNorm", "C5: SGD with BatchNorm"]
    text = " ".join(sentences)
    assert "average training loss over 2 epochs is 1.900" in text
    assert f"C5's SGD run {sgd.run_id}" in text and "by +0.500 and the accuracy by -18.00 points" in text
    assert "lets lr 0.1 train the deep network stably" in text and "differ in step size" not in text
    slower_step = " ".join(batchnorm_comparison(_without(1.9), found, 0.02)[1])
    assert "lets lr 0.02 train" in slower_step and "C5's run trained with lr 0.1" in slower_step


def _without(loss_mean, diverged=False):
    return {
        "epochs_run": 2,
        "loss_mean": loss_mean,
        "accuracy_mean": 30.0,
        "final_loss": float("nan") if diverged else loss_mean - 0.2,
        "final_accuracy": 35.0,
        "diverged": diverged,
    }


def test_c6_verdict_follows_the_loss_gap():
    reference = pd.Series({"run_id": "r1", "loss_mean": 1.5, "accuracy_mean": 45.0, "lr": 0.1})
    tie = " ".join(batchnorm_comparison(_without(1.5 + LOSS_TIE / 2), reference, 0.1)[1])
    assert "about equally well" in tie and "stably" not in tie
    better = " ".join(batchnorm_comparison(_without(1.2), reference, 0.1)[1])
    assert "without BatchNorm reached the lower loss over 2 epochs" in better and "by -0.300" in better
    diverged = " ".join(batchnorm_comparison(_without(3.0, diverged=True), reference, 0.1)[1])
    assert "diverged" in diverged and DIVERGENCE_RULE in diverged and "lr 0.1" in diverged
    healthy = " ".join(batchnorm_comparison(_without(1.9), reference, 0.1)[1])
    assert "too large" not in healthy and "diverged" not in healthy


def test_c6_alone_says_there_is_nothing_to_compare():
    table, sentences = batchnorm_comparison(
        {"epochs_run": 1, "loss_mean": 2.3, "accuracy_mean": 11.0, "final_loss": None, "diverged": True}, None, 0.1
    )
    assert len(table) == 1 and "No C5 SGD run" in sentences[1] and "diverged" in sentences[0]


def test_c6_parameter_counts_come_from_the_model():
    text = batchnorm_parameters_sentence()
    with_norm, without = count_parameters(resnet18()), count_parameters(resnet18(batch_norm=False))
    assert (with_norm, without) == (11_173_962, 11_164_362)  # LAB_SPEC "Common setup"
    assert f"{without:,} trainable parameters instead of {with_norm:,}" in text and f"{with_norm - without:,}" in text
    grayscale = batchnorm_parameters_sentence(num_classes=10, in_channels=1)
    assert f"{count_parameters(resnet18(batch_norm=False, in_channels=1)):,}" in grayscale


# --- P-2025-C4 -----------------------------------------------------------------------


def _profile_epochs(best_data_s=(1.0, 0.6), best_train_s=4.2):
    return pd.DataFrame(
        [
            {"workers": 1, "epoch": 1, "batches": 10, "data_s": 6.0, "train_s": 4.0, "total_s": 10.5},
            {"workers": 1, "epoch": 2, "batches": 10, "data_s": 5.0, "train_s": 4.0, "total_s": 9.5},
            {
                "workers": 4,
                "epoch": 1,
                "batches": 10,
                "data_s": best_data_s[0],
                "train_s": best_train_s,
                "total_s": 5.5,
            },
            {
                "workers": 4,
                "epoch": 2,
                "batches": 10,
                "data_s": best_data_s[1],
                "train_s": best_train_s,
                "total_s": 5.0,
            },
        ]
    )


def test_worker_profile_per_batch_and_sentences():
    profile = worker_profile(_profile_epochs())
    one = profile.set_index("workers").loc[1]
    assert one["data_s_mean"] == 5.5 and one["data_ms_per_batch"] == 550.0 and one["data_share"] == 11 / 20
    results = profile_results(profile)
    assert results["w4_train_ms_per_batch"] == pytest.approx(420.0) and results["w1_epoch_s_mean"] == 10.0
    text = " ".join(profile_sentences(profile))
    assert "With 1 worker(s), an epoch takes 10.00 s: 5.50 s waiting for data (55.0%)" in text and "data-bound" in text
    assert "With 4 worker(s)" in text and "compute-bound" in text
    assert "up to 4 batches at once. The wait goes from 5.50 s to 0.80 s per epoch (4.70 s saved)" in text
    assert "training time rises from 4.00 s to 4.20 s (the workers share the cores with it)" in text
    assert profile_text(profile) == "**P-2025-C4:** " + text


def test_worker_profile_when_more_workers_do_not_help():
    text = " ".join(profile_sentences(worker_profile(_profile_epochs(best_data_s=(6.0, 6.0), best_train_s=3.9))))
    assert "The wait does not shrink: 5.50 s per epoch with 1 worker against 6.00 s with 4" in text
    assert "saved" not in text and "share the cores" not in text and "from 4.00 s to 3.90 s" in text


def test_worker_profile_when_the_best_is_one_worker():
    epochs = pd.DataFrame([{"workers": 1, "epoch": 1, "batches": 4, "data_s": 0.2, "train_s": 3.0, "total_s": 3.3}])
    sentences = profile_sentences(worker_profile(epochs))
    assert len(sentences) == 1 and "compute-bound" in sentences[0] and "50.0 ms of waiting" in sentences[0]
    assert profile_counts(1) == [1] and "one training is measured" in profile_counts_sentence(1)
    assert profile_counts(8) == [1, 8] and profile_counts(0) == [0, 1]
    assert "1 worker and 8 workers" in profile_counts_sentence(8)
    assert profile_text(pd.DataFrame()) == "**P-2025-C4:** no training was recorded."
