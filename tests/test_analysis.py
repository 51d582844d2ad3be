"""lablib.sections.analysis: the facts behind C3.3, C4, C5, C6 and P-2025-C4, from records made here."""

import math

import pandas as pd
import pytest
import torch

from lablib.core.config import make_config
from lablib.core.errors import ConfigError
from lablib.core.runs import start_run
from lablib.sections.analysis import (
    LAB_WORKERS,
    analyse_workers,
    batchnorm_comparison,
    c3_choose_workers,
    c4_points,
    c4_speedup,
    find_c5_sgd,
    group_points,
    optimizer_discussion,
    optimizer_table,
    profile_results,
    profile_sentences,
    resolve_or_unavailable,
    resolve_workers,
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


def test_group_points_sees_the_group_a_run_would_join():
    config = make_config(epochs=1, limit_train=256)
    for workers, seconds in ((0, 9.0), (4, 3.0)):
        _record(
            "c3_workers",
            make_config(config, workers=workers),
            {"data_s_total": seconds, "epoch_s_mean": seconds},
            sweep="workers",
        )
    _record("c3_workers", make_config(config, workers=8, epochs=2), {"data_s_total": 1.0}, sweep="workers")
    points = group_points("c3_workers", config, "t", "abc", "cpu", "workers", "workers")
    assert points["workers"].tolist() == [0, 4]  # the 2-epoch run is another group
    assert group_points("c3_workers", config, "other", "abc", "cpu", "workers", "workers").empty


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
        "adagrad": "diverged (loss NaN/inf)",
        "adam": "trained",
        "sgd": "trained",
    }
    assert math.isnan(table.loc[0, "final_loss"])


def test_optimizer_discussion_from_the_numbers():
    text = " ".join(optimizer_discussion(_optimizer_points()))
    assert "`sgd` converged fastest: after 3 epoch(s) its training loss is the lowest, 1.200" in text
    assert "slowest to converge is `adam` (loss 1.800" in text
    assert "10.00 s with `sgd` and 10.50 s with `adam` (5% apart): the optimiser" in text
    assert "Diverged (loss became NaN/inf, training stopped): `adagrad`" in text
    assert "Not recorded yet: `adadelta`, `sgd_nesterov`" in text


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
    sgd = _record("c5_optimizers", base, {"loss_mean": 1.4, "accuracy_mean": 48.0}, sweep=("optimizer", "workers"))
    found = find_c5_sgd("t", "abc", "cpu", 2, 256)
    assert found["run_id"] == sgd.run_id
    assert find_c5_sgd("t", "abc", "cuda", 2, 256) is None and find_c5_sgd("t", "abc", "cpu", 2, 512) is None
    table, sentences = batchnorm_comparison(
        {"epochs_run": 2, "loss_mean": 1.9, "accuracy_mean": 30.0, "final_loss": 1.7, "final_accuracy": 35.0}, found
    )
    assert table["run"].tolist() == ["C6: SGD without BatchNorm", "C5: SGD with BatchNorm"]
    text = " ".join(sentences)
    assert "average training loss over 2 epoch(s) is 1.900" in text
    assert f"C5's SGD run {sgd.run_id}" in text and "by +0.500 and the accuracy by -18.00 points" in text


def test_c6_alone_says_there_is_nothing_to_compare():
    table, sentences = batchnorm_comparison(
        {"epochs_run": 1, "loss_mean": 2.3, "accuracy_mean": 11.0, "final_loss": None, "diverged": True}, None
    )
    assert len(table) == 1 and "No C5 SGD run" in sentences[1] and "diverged" in sentences[0]


# --- P-2025-C4 -----------------------------------------------------------------------


def test_worker_profile_per_batch_and_sentences():
    epochs = pd.DataFrame(
        [
            {"workers": 1, "epoch": 1, "batches": 10, "data_s": 6.0, "train_s": 4.0, "total_s": 10.5},
            {"workers": 1, "epoch": 2, "batches": 10, "data_s": 5.0, "train_s": 4.0, "total_s": 9.5},
            {"workers": 4, "epoch": 1, "batches": 10, "data_s": 1.0, "train_s": 4.2, "total_s": 5.5},
            {"workers": 4, "epoch": 2, "batches": 10, "data_s": 0.6, "train_s": 4.2, "total_s": 5.0},
        ]
    )
    profile = worker_profile(epochs)
    one = profile.set_index("workers").loc[1]
    assert one["data_s_mean"] == 5.5 and one["data_ms_per_batch"] == 550.0 and one["data_share"] == 11 / 20
    results = profile_results(profile)
    assert results["w4_train_ms_per_batch"] == pytest.approx(420.0) and results["w1_epoch_s_mean"] == 10.0
    text = " ".join(profile_sentences(profile))
    assert "With 1 worker(s), an epoch takes 10.00 s: 5.50 s waiting for data (55.0%)" in text and "data-bound" in text
    assert "With 4 worker(s)" in text and "compute-bound" in text
    assert "The wait goes from 5.50 s to 0.80 s per epoch (+4.70 s saved)" in text


def test_worker_profile_when_the_best_is_one_worker():
    epochs = pd.DataFrame([{"workers": 1, "epoch": 1, "batches": 4, "data_s": 0.2, "train_s": 3.0, "total_s": 3.3}])
    sentences = profile_sentences(worker_profile(epochs))
    assert len(sentences) == 1 and "compute-bound" in sentences[0] and "50.0 ms of waiting" in sentences[0]
