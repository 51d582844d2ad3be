import pandas as pd
import pytest

from lablib.core.config import make_config
from lablib.core.runs import start_run
from lablib.core.train import EpochRecord, summarise_epochs
from lablib.sections.sweeps import (
    best_point,
    c3_best_workers,
    c3_next_workers,
    c3_worker_candidates,
    group_points,
    group_runs,
    sweep_points,
)


def test_candidates_stop_at_the_cores():
    assert c3_worker_candidates(16) == [0, 4, 8, 12, 16]
    assert c3_worker_candidates(2) == [0, 2]
    assert c3_worker_candidates(10) == [0, 4, 8, 10]


@pytest.mark.parametrize(
    "points, expected",
    [
        ({}, 0),
        ({0: 10.0}, 4),
        ({0: 10.0, 4: 3.0}, 8),
        ({0: 10.0, 4: 3.0, 8: 3.5}, None),  # stopped decreasing
        ({0: 10.0, 4: 3.0, 8: 2.0, 12: 1.5, 16: 1.4}, None),  # reached the cores
    ],
)
def test_c3_rule(points, expected):
    assert c3_next_workers(points, max_workers=16) == expected


def test_summary_and_best_point():
    epochs = [
        EpochRecord(1, 2.0, 10.0, 1.0, 4.0, 5.5, 100, 1, 18.0),
        EpochRecord(2, 1.5, 20.0, 0.5, 4.0, 4.5, 100, 1, 22.0),
    ]
    summary = summarise_epochs(epochs)
    assert summary["data_s_total"] == 1.5 and summary["epoch_s_mean"] == 5.0
    assert summary["final_accuracy"] == 20.0 and summary["diverged"] is False
    points = pd.DataFrame({"workers": [0, 4, 8], "epoch_s_mean": [9.0, 4.0, 4.5]})
    assert best_point(points, "workers")["workers"] == 4


def test_sweep_points_and_best_workers_from_records():
    for workers, seconds in ((0, 9.0), (4, 4.0)):
        with start_run(
            "c3_workers",
            make_config(workers=workers),
            tag="quick",
            device="cpu",
            sweep="workers",
            data={"fingerprint": "abc"},
        ) as run:
            run.log_results(epoch_s_mean=seconds, data_s_total=seconds / 2)
    current = start_run(
        "c3_workers", make_config(workers=8), tag="quick", device="cpu", sweep="workers", data={"fingerprint": "abc"}
    )
    current.log_results(epoch_s_mean=4.5, data_s_total=2.5)
    points = sweep_points(current, "workers")
    assert points["workers"].tolist() == [0, 4, 8]
    assert c3_best_workers("quick", "abc", "cpu") == (4, 4.0)  # the running point is not a result yet
    assert c3_best_workers("full", "abc", "cpu") is None
    assert c3_best_workers("quick", "other-data", "cpu") is None


def _c3_record(config, results, tag="t"):
    with start_run("c3_workers", config, tag=tag, device="cpu", sweep="workers", data={"fingerprint": "abc"}) as run:
        run.log_results(**results)
    return run


def test_group_points_sees_the_group_a_run_would_join():
    config = make_config(epochs=1, limit_train=256)
    for workers, seconds in ((0, 9.0), (4, 3.0)):
        _c3_record(make_config(config, workers=workers), {"data_s_total": seconds, "epoch_s_mean": seconds})
    _c3_record(make_config(config, workers=8, epochs=2), {"data_s_total": 1.0})
    points = group_points("c3_workers", config, "t", "abc", "cpu", "workers", "workers")
    assert points["workers"].tolist() == [0, 4]  # the 2-epoch run is another group
    assert group_points("c3_workers", config, "other", "abc", "cpu", "workers", "workers").empty
    assert group_points("c3_workers", config, "t", "abc", "cuda", "workers", "workers").empty


def test_group_runs_holds_the_complete_runs_and_the_running_one_last():
    config = make_config(epochs=1)
    done = _c3_record(make_config(config, workers=0), {"epoch_s_mean": 2.0})
    failed = start_run(
        "c3_workers",
        make_config(config, workers=4),
        tag="t",
        device="cpu",
        sweep="workers",
        data={"fingerprint": "abc"},
    )
    failed.finish("failed", "boom")
    current = start_run(
        "c3_workers",
        make_config(config, workers=8),
        tag="t",
        device="cpu",
        sweep="workers",
        data={"fingerprint": "abc"},
    )
    runs = group_runs(current)
    assert runs["run_id"].tolist() == [done.run_id, current.run_id] and runs["ended"].iloc[-1] == "9999"
