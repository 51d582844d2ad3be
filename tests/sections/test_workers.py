"""lablib.sections.workers: C3's rule and facts, C3.2's best count for other sections, P-2025-C4."""

import dataclasses

import pandas as pd
import pytest
from factories import epoch_rows, record_measurement

from lablib.core.config import RunConfig, make_config
from lablib.core.errors import ConfigError
from lablib.core.store import lookup
from lablib.sections.workers import (
    LAB_WORKERS,
    analyse_workers,
    best_workers,
    c3_measurements,
    c3_next_workers,
    c3_request,
    c3_walk,
    c3_worker_candidates,
    choose_workers,
    p25_measurements,
    profile_counts,
    profile_counts_sentence,
    profile_results,
    profile_sentences,
    profile_text,
    worker_profile,
)

PARAMS = {"data": "fake", "limit_train": 256, "limit_test": 64, "epochs": 2, "device": "cpu", "workers": -1}


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


def test_oversubscribed_cores_are_blamed_only_when_the_training_measurably_slowed():
    quick = analyse_workers(
        pd.DataFrame([_point(0, 0.025, 3.556, 1), _point(2, 0.046, 3.361, 1)]), cores=2, torch_threads=2
    )
    assert quick.oversubscribed  # 2 workers + 2 threads > 2 cores
    text = " ".join(quick.sentences())
    assert "so 4 threads could compete for 2 cores; the workers did not slow the training measurably here: the " in text
    assert "training time at 2 workers is -5% against 0 workers (3.36 s vs 3.56 s)." in text
    assert "take CPU time away" not in text and "1 intra-op thread" not in text and "2 intra-op threads" in text
    slowed = analyse_workers(pd.DataFrame([_point(0, 4.0, 3.0, 1), _point(2, 1.0, 3.6, 1)]), cores=2, torch_threads=1)
    assert "the workers take CPU time away from the training: the training time at 2 workers is +20%" in " ".join(
        slowed.sentences()
    )


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


@pytest.mark.parametrize(
    "cores, expected", [(16, [0, 4, 8, 12, 16]), (2, [0, 2]), (6, [0, 4, 6]), (4, [0, 4]), (1, [0, 1])]
)
def test_candidates_stop_at_the_cores(cores, expected):
    assert c3_worker_candidates(cores) == expected


@pytest.mark.parametrize(
    "times, expected",
    [({}, 0), ({0: 10.0}, 4), ({0: 10.0, 4: 3.0}, 8), ({0: 10.0, 4: 3.0, 8: 3.5}, None), ({0: 1.0, 4: 2.0}, None)],
)
def test_the_rule_goes_up_until_the_data_time_stops_falling(times, expected):
    assert c3_next_workers(times, max_workers=16) == expected


def _record_point(config: RunConfig, workers: int, data_s_total: float, epoch_s_mean: float):
    return record_measurement(
        c3_request(config, workers),
        results={"data_s_total": data_s_total, "epoch_s_mean": epoch_s_mean},
        epochs=epoch_rows(2),
    )


def test_the_walk_lists_one_count_at_a_time_until_the_rule_stops(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    config = make_config(data="fake", limit_train=256, limit_test=64, epochs=2, device="cpu")
    first = c3_walk(config, lookup)
    assert [r.settings["workers"] for r in first.requests] == [0] and not first.complete
    _record_point(config, 0, 9.0, 6.0)
    _record_point(config, 4, 2.0, 3.0)
    assert [r.settings["workers"] for r in c3_walk(config, lookup).requests] == [0, 4, 8]
    assert best_workers(config, lookup) is None  # not complete: no answer yet
    _record_point(config, 8, 2.5, 3.5)
    walk = c3_walk(config, lookup)
    assert walk.complete and sorted(walk.measured) == [0, 4, 8]
    assert best_workers(config, lookup)[:2] == (4, 3.0)
    needs = c3_measurements(PARAMS, lookup)
    assert [r.settings["workers"] for r in needs.requests] == [0, 4, 8] and not needs.waiting
    fixed = c3_walk(config, lookup, sweep="fixed")
    assert [r.settings["workers"] for r in fixed.requests] == [0, 4, 8, 12, 16] and not fixed.complete
    capped = c3_walk(config, lookup, max_workers=4)
    assert [r.settings["workers"] for r in capped.requests] == [0, 4] and capped.complete
    with pytest.raises(ConfigError, match="sweep='all'"):
        c3_walk(config, lookup, sweep="all")


def test_one_count_asked_for_is_shown_beside_the_recorded_ones(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    config = make_config(data="fake", limit_train=256, limit_test=64, epochs=2, device="cpu")
    _record_point(config, 0, 9.0, 6.0)
    needs = c3_measurements({**PARAMS, "workers": 12}, lookup)
    assert [r.settings["workers"] for r in needs.requests] == [12, 0]
    with pytest.raises(ConfigError, match="workers=-3"):
        c3_measurements({**PARAMS, "workers": -3}, lookup)


def test_choose_workers_takes_c3s_best_else_the_lab_default(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    assert choose_workers({**PARAMS, "workers": 3}, lookup)[0] == 3
    workers, sentence = choose_workers(PARAMS, lookup)
    assert workers == LAB_WORKERS and "not recorded for the same data" in sentence
    config = make_config(data="fake", limit_train=256, limit_test=64, epochs=2, device="cpu")
    _record_point(config, 0, 9.0, 6.0)
    _record_point(config, 4, 2.0, 3.5)
    workers, sentence = choose_workers(PARAMS, lookup)
    assert workers == 4 and "C3.2's best runtime (3.50 s per epoch" in sentence
    # C3's sweep uses the lab's optimiser: a section training Adam still takes the count C3 found
    assert choose_workers({**PARAMS, "optimizer": "adam", "lr": 0.01}, lookup)[0] == 4
    assert choose_workers({**PARAMS, "epochs": 3}, lookup)[0] == LAB_WORKERS  # other epochs: not that sweep
    with pytest.raises(ConfigError, match="workers=-5"):
        choose_workers({**PARAMS, "workers": -5}, lookup)


def test_p25_compares_one_worker_with_the_best_count(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    config = make_config(data="fake", limit_train=256, limit_test=64, epochs=2, device="cpu")
    _record_point(config, 0, 9.0, 6.0)
    _record_point(config, 4, 2.0, 3.5)
    needs = p25_measurements(PARAMS, lookup)
    assert [r.settings["workers"] for r in needs.requests] == [1, 4]
    assert needs.requests[1].key == c3_request(config, 4).key  # C3's best point itself: trained once
    assert dataclasses.asdict(config)["optimizer"] == "sgd"


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
    assert "With 1 worker, an epoch takes 10.00 s: 5.50 s waiting for data (55.0%)" in text and "data-bound" in text
    assert "With 4 workers" in text and "compute-bound" in text
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
