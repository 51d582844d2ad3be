import pandas as pd
import pytest

from lablib.core.config import make_config
from lablib.core.runs import start_run
from lablib.core.train import EpochRecord, summarise_epochs
from lablib.sections.sweeps import best_point, c3_best_workers, c3_next_workers, c3_worker_candidates, sweep_points


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
