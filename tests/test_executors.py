"""Executors: local parallelism and exclusivity; a real Slurm array (marker `slurm`)."""

import json

import pytest

from lablib.core.errors import LabError
from lablib.report.executors import LocalExecutor, SlurmExecutor, SlurmSettings, Task, probe, thread_share


def _tasks(folder, specs):
    return [
        Task(name, {"name": name, "folder": str(folder), "sleep_s": sleep, **extra}, exclusive)
        for name, sleep, exclusive, extra in specs
    ]


def _spans(folder):
    records = {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}
    return {name: (r["start"], r["end"], r["env"]) for name, r in records.items()}


def _overlap(a, b):
    return a[0] < b[1] and b[0] < a[1]


def test_two_jobs_run_side_by_side_with_a_thread_share_each(tmp_path):
    tasks = _tasks(tmp_path, [("a", 1.0, False, {}), ("b", 1.0, False, {})])
    outcomes = LocalExecutor(jobs=2, gpus=[]).run(tasks, probe)
    spans = _spans(tmp_path)
    assert all(o.ok for o in outcomes) and _overlap(spans["a"], spans["b"])
    assert spans["a"][2]["OMP_NUM_THREADS"] == str(thread_share(2))
    assert outcomes[0].parallel_with == ["b"] and outcomes[1].parallel_with == ["a"]


def test_exclusive_tasks_never_share_the_machine(tmp_path):
    tasks = _tasks(
        tmp_path, [("a", 0.5, False, {}), ("timed", 0.5, True, {}), ("b", 0.5, False, {}), ("c", 0.5, False, {})]
    )
    outcomes = LocalExecutor(jobs=3, gpus=[]).run(tasks, probe)
    spans = _spans(tmp_path)
    for other in ("a", "b", "c"):
        assert not _overlap(spans["timed"], spans[other])
    assert outcomes[1].parallel_with == [] and "OMP_NUM_THREADS" not in spans["timed"][2]


def test_each_parallel_job_gets_its_own_gpu(tmp_path):
    tasks = _tasks(tmp_path, [("a", 0.5, False, {}), ("b", 0.5, False, {})])
    LocalExecutor(jobs=2, gpus=["0", "1"]).run(tasks, probe)
    spans = _spans(tmp_path)
    assert {spans["a"][2]["CUDA_VISIBLE_DEVICES"], spans["b"][2]["CUDA_VISIBLE_DEVICES"]} == {"0", "1"}


def test_a_failing_task_does_not_stop_the_others(tmp_path):
    tasks = _tasks(tmp_path, [("bad", 0, False, {"fail": True}), ("good", 0, False, {})])
    outcomes = LocalExecutor(jobs=1, gpus=[]).run(tasks, probe)
    assert [o.status for o in outcomes] == ["failed", "complete"]
    assert "failed on purpose" in outcomes[0].detail


def test_bad_settings_are_named():
    with pytest.raises(LabError, match="JOBS=0"):
        LocalExecutor(jobs=0)
    with pytest.raises(LabError, match="SLURM_CPUS='many'"):
        SlurmSettings.from_env({"SLURM_CPUS": "many"})
    settings = SlurmSettings.from_env(
        {"SLURM_PARTITION": "gpu", "SLURM_GPUS": "1", "SLURM_EXTRA": "--account=lab --qos=short"}
    )
    assert settings.partition == "gpu" and settings.gpus_per_task == 1
    assert settings.extra == {"account": "lab", "qos": "short"}


@pytest.mark.slurm
def test_a_slurm_job_array_on_a_real_local_cluster(tmp_path, monkeypatch):
    from slurm_local import local_slurm, missing_tools

    if missing_tools():
        pytest.skip(f"Slurm is not installed here (missing {missing_tools()}); `make test-slurm` installs it")
    with local_slurm(tmp_path / "cluster") as env:
        monkeypatch.setenv("SLURM_CONF", env["SLURM_CONF"])
        monkeypatch.setenv("PATH", env["PATH"])
        tasks = _tasks(
            tmp_path / "out",
            [("a", 0.2, False, {}), ("b", 0.2, False, {}), ("bad", 0, False, {"fail": True}), ("timed", 0.2, True, {})],
        )
        lines = []
        executor = SlurmExecutor(
            tmp_path / "submitit", SlurmSettings(cpus_per_task=1, mem_gb=1, time_min=5), poll_s=0.5
        )
        outcomes = executor.run(tasks, probe, progress=lines.append)
    assert [o.status for o in outcomes] == ["complete", "complete", "failed", "complete"]
    assert "failed on purpose" in outcomes[2].detail
    spans = _spans(tmp_path / "out")
    assert all(spans[name][2].get("SLURM_JOB_ID") for name in ("a", "b", "timed"))
    assert spans["a"][2]["SLURM_ARRAY_TASK_ID"] != spans["b"][2]["SLURM_ARRAY_TASK_ID"]  # one array
    assert any("done" in line for line in lines) and "4 done" not in lines[0]
