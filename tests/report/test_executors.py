"""The executors `make report` uses: LocalExecutor (one or N jobs, exclusive tasks alone) and SlurmExecutor.

The unit tests drive the real LocalExecutor with a stand-in for papermill (a
function that sleeps and notes when and with which environment it ran); the
tests marked `report` run real papermill jobs through it and through the build
(JOBS=2 records what JOBS=1 records); those marked `slurm` submit real jobs to a
single-node Slurm cluster started by the test.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import nbformat
import pytest
import yaml
from conftest import CIFAR_ZIP, MNIST_ZIP, NOTEBOOKS, require_data
from factories import processes_marked

from lablib.core.errors import LabError
from lablib.report.executors import LocalExecutor, SlurmExecutor, SlurmSettings, Task, thread_share
from lablib.report.job import Job, Outcome, error_tail, run_job
from lablib.report.points import new_point_folder, read_point

TIMING_WORDS = ("_s", "per_s", "seconds", "latency", "speed", "duration", "started", "ended")


def _job(name: str, **parameters) -> Job:
    return Job(name, Path(f"{name}.ipynb"), parameters, f"key-{name}", Path(f"/nonexistent/{name}"), 60, label="")


class StandIn:
    """Stands in for run_job: sleeps `sleep_s`, fails when asked, notes its span and environment."""

    def __init__(self):
        self.spans: dict[str, tuple[float, float, dict[str, str], dict]] = {}

    def __call__(self, job: Job, running) -> Outcome:
        start = time.monotonic()
        time.sleep(job.parameters.get("sleep_s", 0.0))
        if job.parameters.get("fail"):
            raise RuntimeError(f"{job.section} failed on purpose")
        self.spans[job.section] = (start, time.monotonic(), dict(job.env), dict(job.record))
        return Outcome("complete", time.monotonic() - start)


def _overlap(a, b) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def test_two_jobs_run_side_by_side_with_a_thread_share_each():
    stand_in = StandIn()
    tasks = [Task(_job("a", sleep_s=0.5)), Task(_job("b", sleep_s=0.5))]
    started = []
    outcomes = LocalExecutor(jobs=2, gpus=[], run=stand_in).run(tasks, on_start=lambda t: started.append(t.job.name))
    spans = stand_in.spans
    assert [o.status for o in outcomes] == ["complete", "complete"] and _overlap(spans["a"], spans["b"])
    assert spans["a"][2]["OMP_NUM_THREADS"] == str(thread_share(2)) == spans["b"][2]["MKL_NUM_THREADS"]
    assert spans["a"][3] == {"executor": "local", "parallel": True, "jobs": 2}
    assert outcomes[0].parallel_with == ["b"] and outcomes[1].parallel_with == ["a"] and started == ["a", "b"]


def test_one_job_at_a_time_gets_the_whole_machine():
    stand_in = StandIn()
    tasks = [Task(_job("a", sleep_s=0.2)), Task(_job("b", sleep_s=0.2))]
    outcomes = LocalExecutor(jobs=1, gpus=["0", "1"], run=stand_in).run(tasks)
    spans = stand_in.spans
    assert not _overlap(spans["a"], spans["b"]) and spans["a"][1] <= spans["b"][0]  # in order
    assert spans["a"][2] == {} and spans["b"][3] == {"executor": "local", "parallel": False, "jobs": 1}
    assert all(o.parallel_with == [] for o in outcomes)


def test_exclusive_tasks_never_share_the_machine():
    stand_in = StandIn()
    tasks = [
        Task(_job("a", sleep_s=0.4)),
        Task(_job("timed", sleep_s=0.4), exclusive=True),
        Task(_job("b", sleep_s=0.4)),
        Task(_job("c", sleep_s=0.4)),
    ]
    outcomes = LocalExecutor(jobs=3, gpus=[], run=stand_in).run(tasks)
    spans = stand_in.spans
    for other in ("a", "b", "c"):
        assert not _overlap(spans["timed"], spans[other])
    assert spans["a"][1] <= spans["timed"][0] <= spans["timed"][1] <= min(spans["b"][0], spans["c"][0])
    assert _overlap(spans["b"], spans["c"])  # after it, the others share the machine again
    assert outcomes[1].parallel_with == [] and spans["timed"][2] == {} and spans["timed"][3]["parallel"] is False


def test_each_parallel_job_gets_its_own_gpu():
    stand_in = StandIn()
    tasks = [Task(_job(name, sleep_s=0.3)) for name in ("a", "b", "c")]
    LocalExecutor(jobs=2, gpus=["0", "1"], run=stand_in).run(tasks)
    spans = stand_in.spans
    assert {spans["a"][2]["CUDA_VISIBLE_DEVICES"], spans["b"][2]["CUDA_VISIBLE_DEVICES"]} == {"0", "1"}
    running_beside_c = [n for n in ("a", "b") if _overlap(spans[n], spans["c"])]
    assert all(spans[n][2]["CUDA_VISIBLE_DEVICES"] != spans["c"][2]["CUDA_VISIBLE_DEVICES"] for n in running_beside_c)


def test_a_failing_task_does_not_stop_the_others():
    stand_in = StandIn()
    ended = []
    tasks = [Task(_job("bad", fail=True)), Task(_job("good"))]
    outcomes = LocalExecutor(jobs=1, gpus=[], run=stand_in).run(tasks, on_end=lambda t, o: ended.append(o.status))
    assert [o.status for o in outcomes] == ["failed", "complete"] == ended
    assert "failed on purpose" in outcomes[0].error and not outcomes[0].ok


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


def test_error_tail_reads_the_executed_notebooks_error(tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1/0")])
    notebook.cells[0].outputs = [
        nbformat.v4.new_output(
            "error",
            ename="ConfigError",
            evalue="optimizer='nonsense' is not allowed",
            traceback=[
                "\x1b[31m---------\x1b[0m",
                "Cell In[3], line 1",
                "\x1b[31mConfigError\x1b[0m: optimizer='nonsense' is not allowed",
            ],
        )
    ]
    nbformat.write(notebook, tmp_path / "x.ipynb")
    tail = error_tail(tmp_path / "x.ipynb")
    assert tail.startswith("ConfigError: optimizer='nonsense' is not allowed") and "\x1b" not in tail
    assert "in the notebook: Cell In[3], line 1" in tail
    (tmp_path / "log").write_text("a\nb\nlast words\n")
    assert error_tail(tmp_path / "none.ipynb", tmp_path / "log").endswith("last words")


# --- real papermill jobs ------------------------------------------------------------------------

PROBE = [
    ("markdown", "# P · Probe", []),
    ("code", 'sleep_s: float = 0.0  # seconds\nfail: bool = False  # raise\ntag: str = ""  # the plan', ["parameters"]),
    (
        "code",
        "import json, os, time\n"
        "start = time.time()\ntime.sleep(sleep_s)\n"
        'assert not fail, "failed on purpose"\n'
        'names = ("OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID", "SLURM_ARRAY_TASK_ID")\n'
        'record = {"start": start, "end": time.time(), "env": {k: os.environ[k] for k in names if k in os.environ}}\n'
        'json.dump(record, open(os.path.join(os.environ["LABLIB_RUN_DIR"], "probe.json"), "w"))',
        [],
    ),
]


def _probe_jobs(tmp_path: Path, specs) -> list[Task]:
    notebook = tmp_path / "probe.ipynb"
    if not notebook.exists():
        cells = []
        for kind, source, tags in PROBE:
            cell = nbformat.v4.new_markdown_cell(source) if kind == "markdown" else nbformat.v4.new_code_cell(source)
            cell.metadata["tags"] = tags
            cells.append(cell)
        probe = nbformat.v4.new_notebook(cells=cells)
        probe.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(probe, notebook)
    return [
        Task(
            Job(name, notebook, {"sleep_s": sleep_s, "fail": fail}, f"key-{name}", new_point_folder("probe"), 120),
            exclusive,
        )
        for name, sleep_s, fail, exclusive in specs
    ]


def _probe_record(task: Task) -> dict:
    return json.loads((task.job.folder / "probe.json").read_text())


@pytest.mark.report
def test_a_job_past_its_timeout_is_ended_whole_and_reported(tmp_path):
    (task,) = _probe_jobs(tmp_path, [("sleeper", 300.0, False, False)])
    job = dataclasses.replace(task.job, timeout_s=15)
    outcome = run_job(job)
    assert outcome.status == "timeout" and 15 <= outcome.seconds < 60
    assert "timed out after 15 s" in outcome.error
    assert read_point(job.folder)["status"] == "timeout"
    assert processes_marked(f"LABLIB_RUN_DIR={job.folder}") == []  # papermill, its kernel and children are gone


@pytest.mark.report
def test_papermill_jobs_run_two_at_a_time_and_record_their_placement(tmp_path):
    tasks = _probe_jobs(tmp_path, [("a", 3.0, False, False), ("b", 3.0, False, False), ("bad", 0, True, False)])
    outcomes = LocalExecutor(jobs=2, gpus=[]).run(tasks)
    assert [o.status for o in outcomes] == ["complete", "complete", "failed"]
    assert "failed on purpose" in outcomes[2].error
    a, b = _probe_record(tasks[0]), _probe_record(tasks[1])
    assert _overlap((a["start"], a["end"]), (b["start"], b["end"]))
    assert a["env"]["OMP_NUM_THREADS"] == str(thread_share(2))
    points = [read_point(t.job.folder) for t in tasks]
    assert [p["status"] for p in points] == ["complete", "complete", "failed"]
    assert all(p["parallel"] is True and p["jobs"] == 2 and p["executor"] == "local" for p in points)
    assert all(p["duration_s"] >= 0 for p in points) and points[0]["duration_s"] >= 3.0


# --- builds: what runs in parallel records what runs alone ------------------------------------------


def _plan(tmp_path: Path) -> Path:
    """E1's grid on real digits (two trainings whose accuracies are the answer: they may share the machine),
    C1 on real CIFAR-10 images (a timing: it runs alone) and Q1 (no measurement)."""
    defaults = {"data": str(CIFAR_ZIP), "limit_train": 64, "limit_test": 50, "epochs": 1, "workers": 0, "device": "cpu"}
    grid = {
        "section_name": "e1_hparam_sweep",
        "data": str(MNIST_ZIP),
        "limit_train": 256,
        "limit_test": 100,
        "optimizers": "sgd,adam",
        "lrs": "0.01",
        "schedulers": "none",
        "top": 1,
        "seeds": 0,
    }
    plan = {
        "title": "executor check",
        "notebooks": str(NOTEBOOKS),
        "profiles": {"quick": {"defaults": defaults, "timeout": "10m"}},
        "parts": [
            {
                "title": "P",
                "sections": [
                    {"notebook": "c1_training", "id": "C1", "title": "Training"},
                    {"notebook": "q1_conv_layers", "id": "Q1", "title": "Convolutional layers"},
                    {"notebook": "e1_hparam_sweep", "id": "E1", "title": "Grid", "params": grid},
                ],
            }
        ],
    }
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return path


def _read(path: Path, default):
    return json.loads(path.read_text()) if path.exists() else default


def _keep(row: dict) -> dict:
    return {k: v for k, v in row.items() if not any(w in k for w in TIMING_WORDS)}


def records(root: Path) -> dict:
    """What a build recorded, without timings, provenance and where: each measurement by its key, each
    section's presenting record by its name."""
    found = {}
    for meta_path in root.glob("measurements/*/*/run.json"):
        meta, folder = json.loads(meta_path.read_text()), meta_path.parent
        found[meta["key"]] = {
            "status": meta["status"],
            "settings": meta["settings"],
            "epochs": [_keep(e) for e in _read(folder / "epochs.json", [])],
            "results": _keep(_read(folder / "results.json", {})),
        }
    for point_file in root.glob("*/*/point.json"):
        point, folder = json.loads(point_file.read_text()), point_file.parent
        if point.get("kind", "notebook") != "notebook":
            continue
        run = _read(folder / "run.json", {})
        found[point["section"]] = {
            "status": (point["status"], run.get("status")),
            "settings": run.get("settings"),
            "params": run.get("params"),
            "uses": [use["key"] for use in run.get("uses", [])],
            "results": _keep(_read(folder / "results.json", {})),
        }
    return found


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-3, abs_tol=1e-6)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def _span(point: dict) -> tuple:
    import datetime as dt

    return dt.datetime.fromisoformat(point["started"]), dt.datetime.fromisoformat(point["ended"])


@pytest.mark.report
def test_two_jobs_record_what_one_job_records(tmp_path, monkeypatch):
    """JOBS=2 measures what is not a timing side by side, each job with its thread share, and a timing alone;
    the records' content (apart from timings, provenance and where) equals a JOBS=1 build's."""
    from lablib.report.build import Options, build

    require_data(CIFAR_ZIP, "CIFAR-10", "LABLIB_TEST_CIFAR")
    require_data(MNIST_ZIP, "MNIST", "LABLIB_TEST_MNIST")
    plan = _plan(tmp_path)
    stores = {}
    for jobs in (1, 2):
        store = tmp_path / f"runs-{jobs}"
        monkeypatch.setenv("LABLIB_RUNS_DIR", str(store))
        lines: list[str] = []
        status = build(
            Options(profile="quick", profile_explicit=True, plan=plan, jobs=jobs, output_dir=tmp_path / f"out-{jobs}"),
            out=lambda *a, **k: lines.append(" ".join(map(str, a))),  # noqa: B023 (called before the loop moves on)
        )
        assert status == 0, "\n".join(lines)
        assert "3 measurement(s) ran, 0 reused" in lines, "\n".join(lines)
        stores[jobs] = records(store)
        measuring = [read_point(p.parent) for p in (store / "jobs").glob("*/point.json")]
        alone = {
            json.loads(p.read_text())["key"]: json.loads(p.read_text())["alone"]
            for p in store.glob("measurements/*/*/run.json")
        }
        timing = [p for p in measuring if p["section"] == "c1_training"]
        grid = [p for p in measuring if p["section"] == "e1_hparam_sweep"]
        assert len(timing) == 1 and not timing[0]["parallel"] and all(p["status"] == "complete" for p in measuring)
        if jobs == 2:  # one job per grid training, side by side, then the timing on its own
            assert len(grid) == 2 and all(p["parallel"] and p["jobs"] == 2 for p in grid)
            (a0, a1), (b0, b1) = _span(grid[0]), _span(grid[1])
            assert a0 < b1 and b0 < a1
            assert all(_span(p)[1] <= _span(timing[0])[0] or _span(timing[0])[1] <= _span(p)[0] for p in grid)
            assert sorted(alone.values()) == [False, False, True]  # the grid's trainings shared the machine
        else:
            assert len(grid) == 1 and not grid[0]["parallel"] and all(alone.values())
    assert len(stores[1]) == 6 and stores[1].keys() == stores[2].keys()  # 3 measurements, 3 sections
    for name in stores[1]:
        assert stores[1][name]["status"] in ("complete", ("complete", "complete"))
        assert same(stores[1][name], stores[2][name]), (name, stores[1][name], stores[2][name])


# --- Slurm --------------------------------------------------------------------------------------


@pytest.mark.slurm
def test_papermill_jobs_as_a_slurm_job_array_on_a_real_local_cluster(tmp_path, monkeypatch):
    from slurm_local import local_slurm, missing_tools

    if missing_tools():
        pytest.skip(f"Slurm is not installed here (missing {missing_tools()}); `make test-slurm` installs it")
    tasks = _probe_jobs(
        tmp_path,
        [("a", 0.2, False, False), ("b", 0.2, False, False), ("bad", 0, True, False), ("timed", 0.2, False, True)],
    )
    lines: list[str] = []
    ended: list[str] = []
    with local_slurm(tmp_path / "cluster") as env:
        monkeypatch.setenv("SLURM_CONF", env["SLURM_CONF"])
        monkeypatch.setenv("PATH", env["PATH"])
        executor = SlurmExecutor(
            tmp_path / "submitit",
            SlurmSettings(cpus_per_task=1, mem_gb=1, time_min=5),
            poll_s=0.5,
            progress=lines.append,
        )
        outcomes = executor.run(tasks, on_end=lambda t, o: ended.append(t.job.name))
    assert [o.status for o in outcomes] == ["complete", "complete", "failed", "complete"]
    assert sorted(ended) == ["a", "b", "bad", "timed"] and "failed on purpose" in outcomes[2].error
    probes = {t.job.name: _probe_record(t) for t in tasks if t.job.name != "bad"}
    assert all(p["env"].get("SLURM_JOB_ID") for p in probes.values())
    assert probes["a"]["env"]["SLURM_ARRAY_TASK_ID"] != probes["b"]["env"]["SLURM_ARRAY_TASK_ID"]  # one array
    points = {t.job.name: read_point(t.job.folder) for t in tasks}
    assert points["a"]["executor"] == "slurm" and points["a"]["parallel"] and not points["timed"]["parallel"]
    assert points["bad"]["status"] == "failed"
    assert any("done" in line for line in lines) and "4 done" not in lines[0]


def test_a_section_that_shares_its_notebook_records_into_its_point(private_run_store, monkeypatch):
    """e1_cifar10 executes e1_hparam_sweep.ipynb: its point lies under the notebook's stem, and the notebook's
    run of section e1_cifar10 must still claim that folder, or the report finds no presenting record."""
    from lablib.core.runs import load_run, start_run
    from lablib.report.job import environment

    job = Job("e1_cifar10", NOTEBOOKS / "e1_hparam_sweep.ipynb", {}, "key", new_point_folder("e1_hparam_sweep"), 60)
    for name, value in environment(job, "token").items():
        if name.startswith("LABLIB_"):
            monkeypatch.setenv(name, value)
    run = start_run("e1_cifar10")
    assert run.path == job.folder and load_run(job.folder)["point_run"] is True
    run.finish("complete")
