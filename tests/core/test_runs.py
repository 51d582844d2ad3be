import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from lablib.core.config import make_config
from lablib.core.runs import (
    RUN_DIR_ENV,
    RUN_SECTION_ENV,
    latest_per,
    load_epochs,
    load_run,
    load_runs,
    new_run_folder,
    start_run,
    write_json,
)
from lablib.core.train import EpochRecord


def _epoch(n, loss=1.0):
    return EpochRecord(n, loss, 50.0, 0.1, 0.8, 1.0, 128, 1, 128.0)


def test_a_run_is_complete_only_at_the_end(private_run_store):
    config = make_config(workers=4)
    run = start_run("c3_workers", config, tag="quick", device="cpu", sweep="workers")
    run.log_epoch(_epoch(1))
    assert load_runs("c3_workers").empty  # running runs are not results
    assert len(load_runs("c3_workers", status="running")) == 1
    run.log_results(best=3)
    run.finish()
    runs = load_runs("c3_workers")
    assert runs.loc[0, "workers"] == 4 and runs.loc[0, "best"] == 3 and runs.loc[0, "tag"] == "quick"
    record = load_run(run.path)
    assert record["status"] == "complete" and record["epochs"][0]["epoch"] == 1
    assert record["provenance"]["torch"] and record["provenance"]["device"] == "cpu"
    assert "git_commit" in record["provenance"] and "environment_lock" in record["provenance"]
    assert len(load_epochs("c3_workers")) == 1


def test_an_exception_marks_the_run_failed(private_run_store):
    with pytest.raises(ZeroDivisionError):
        with start_run("c1_training", make_config()) as run:
            _ = 1 / 0
    meta = load_run(run.path)
    assert meta["status"] == "failed" and "ZeroDivisionError" in meta["error"]
    assert load_runs("c1_training").empty


def test_sweep_points_share_a_group_that_excludes_the_swept_setting(private_run_store):
    groups = []
    for workers in (0, 4, 4):
        with start_run("c3_workers", make_config(workers=workers), tag="quick", device="cpu", sweep="workers") as run:
            time.sleep(1.1 if workers == 4 else 0)  # distinct end times
        groups.append(run.meta["group"])
    with start_run("c3_workers", make_config(workers=0, epochs=1), tag="quick", device="cpu", sweep="workers") as other:
        pass
    assert len(set(groups)) == 1 and other.meta["group"] != groups[0]
    points = latest_per(load_runs("c3_workers", group=groups[0]), "workers")
    assert points["workers"].tolist() == [0, 4]


def test_two_runs_at_once_get_their_own_folders(private_run_store):
    first, second = start_run("c1_training"), start_run("c1_training")
    assert first.path != second.path


def test_the_point_run_is_the_first_of_the_points_section_and_claims_once(private_run_store, monkeypatch):
    point = new_run_folder("c2_timing")  # what the report runner makes: runs/<section>/<point-id>/
    monkeypatch.setenv(RUN_DIR_ENV, str(point))
    other = start_run("c1_training")  # another section's run in the same kernel: its own folder
    first, second = start_run("c2_timing"), start_run("c2_timing")
    assert other.path != point and first.path == point and second.path not in (point, other.path)
    assert [load_run(r.path)["point_run"] for r in (other, first, second)] == [False, True, False]
    assert second.path.parent == point.parent  # a second run of the section is recorded beside the point


def test_the_points_section_can_be_named(private_run_store, monkeypatch, tmp_path):
    point = tmp_path / "elsewhere" / "point-1"
    monkeypatch.setenv(RUN_DIR_ENV, str(point))
    monkeypatch.setenv(RUN_SECTION_ENV, "x_fast")
    assert start_run("elsewhere").path != point  # the folder's parent does not decide once the section is named
    run = start_run("x_fast")
    assert run.path == point and load_run(point)["point_run"] is True


def test_without_a_point_every_run_has_its_own_folder(private_run_store):
    run = start_run("c2_timing")
    assert run.path.parent == private_run_store / "c2_timing" and load_run(run.path)["point_run"] is False


def test_write_json_is_atomic_and_plain(tmp_path):
    write_json(tmp_path / "x.json", {"nan": float("nan"), "n": 1})
    assert json.loads((tmp_path / "x.json").read_text()) == {"nan": None, "n": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_a_killed_run_never_looks_complete(private_run_store):
    script = textwrap.dedent("""
        import sys, time
        from lablib.core.config import make_config
        from lablib.core.runs import start_run
        from lablib.core.train import EpochRecord
        run = start_run("c1_training", make_config())
        run.log_epoch(EpochRecord(1, 1.0, 50.0, 0.1, 0.8, 1.0, 128, 1, 128.0))
        print(run.path, flush=True)
        time.sleep(60)
        run.finish()
    """)
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "LABLIB_RUNS_DIR": str(private_run_store)},
    )
    path = process.stdout.readline().strip()
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert load_run(path)["status"] == "running"
    assert load_runs("c1_training").empty
    assert not [p for p in os.listdir(path) if p.startswith(".")]  # no temporary files left
