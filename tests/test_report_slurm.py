"""`make report EXECUTOR=slurm` against a real single-node Slurm cluster (marker `slurm`).

The same small plan is built twice, once locally and once as Slurm job arrays;
the records must be equal in content, apart from timings and provenance.
"""

import json
import math
from pathlib import Path

import pytest
import yaml
from conftest import CIFAR_ZIP, NOTEBOOKS, require_data

pytestmark = pytest.mark.slurm

TIMING_WORDS = ("_s", "per_s", "seconds", "latency", "speed", "duration", "started", "ended")


def _plan(tmp_path: Path) -> Path:
    plan = {
        "title": "slurm check",
        "notebooks": str(NOTEBOOKS),
        "profiles": {
            "quick": {
                "defaults": {
                    "data": str(CIFAR_ZIP),
                    "limit_train": 64,
                    "limit_test": 50,
                    "epochs": 1,
                    "workers": 0,
                    "device": "cpu",
                },
                "timeout": "10m",
            }
        },
        "parts": [
            {
                "title": "P",
                "sections": [
                    {"notebook": "c1_training", "id": "C1", "title": "Training"},
                    {"notebook": "c2_timing", "id": "C2", "title": "Timing", "exclusive": True},
                    {
                        "notebook": "c5_optimizers",
                        "id": "C5",
                        "title": "Optimisers",
                        "params": {"workers": 0},
                        "sweep": {"optimizer": ["sgd", "adam"]},
                    },
                    {"notebook": "q1_conv_layers", "id": "Q1", "title": "Convolutional layers"},
                ],
            }
        ],
    }
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return path


def _records(root: Path) -> dict:
    """(section, point label) -> the run's content without timings and provenance."""
    found = {}
    for point_file in root.glob("*/*/point.json"):
        point = json.loads(point_file.read_text())
        run = json.loads((point_file.parent / "run.json").read_text())
        epochs = (
            json.loads((point_file.parent / "epochs.json").read_text())
            if (point_file.parent / "epochs.json").exists()
            else []
        )
        results = (
            json.loads((point_file.parent / "results.json").read_text())
            if (point_file.parent / "results.json").exists()
            else {}
        )
        keep = lambda row: {k: v for k, v in row.items() if not any(w in k for w in TIMING_WORDS)}  # noqa: E731
        found[(point["section"], point["label"])] = {
            "status": (point["status"], run["status"]),
            "settings": run["settings"],
            "params": run["params"],
            "epochs": [keep(e) for e in epochs],
            "results": keep(results),
        }
    return found


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-3, abs_tol=1e-6)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def test_a_slurm_build_records_what_a_local_build_records(tmp_path, monkeypatch, capsys):
    from slurm_local import local_slurm, missing_tools

    from lablib.report.build import Options, build

    if missing_tools():
        pytest.skip(f"Slurm is not installed here (missing {missing_tools()}); `make test-slurm` installs it")
    require_data(CIFAR_ZIP, "CIFAR-10", "LABLIB_TEST_CIFAR")
    plan = _plan(tmp_path)
    stores = {}
    for executor in ("local", "slurm"):
        store = tmp_path / f"runs-{executor}"
        monkeypatch.setenv("LABLIB_RUNS_DIR", str(store))
        lines: list[str] = []
        options = Options(
            profile="quick",
            profile_explicit=True,
            plan=plan,
            output_dir=tmp_path / f"out-{executor}",
            executor=executor,
        )
        if executor == "slurm":
            from lablib.cli import build_parser
            from lablib.report.build import main

            with local_slurm(tmp_path / "cluster") as env:
                monkeypatch.setenv("SLURM_CONF", env["SLURM_CONF"])
                monkeypatch.setenv("PATH", env["PATH"])
                monkeypatch.setenv("SLURM_CPUS", "2")
                monkeypatch.setenv("SLURM_MEM_GB", "4")
                capsys.readouterr()
                # through the command line, as `make report EXECUTOR=slurm` calls it
                status = main(
                    build_parser().parse_args(
                        [
                            "report",
                            "--profile",
                            "quick",
                            "--executor",
                            "slurm",
                            "--plan",
                            str(plan),
                            "--output",
                            str(tmp_path / "out-slurm"),
                        ]
                    )
                )
                lines = capsys.readouterr().out.splitlines()
        else:
            status = (build(options, out=lambda *a, **k: lines.append(" ".join(map(str, a)))),)  # noqa: B023
        assert status == 0, "\n".join(lines)
        assert (tmp_path / f"out-{executor}" / "report.html").exists()
        stores[executor] = _records(store)
        if executor == "slurm":
            assert any(line.strip().startswith("slurm:") and "done" in line for line in lines)
            assert any("(slurm)" in line for line in lines)
    local, slurm = stores["local"], stores["slurm"]
    assert len(local) == 5 and local.keys() == slurm.keys()
    for point in local:
        assert local[point]["status"] == ("complete", "complete")
        assert _same(local[point], slurm[point]), (point, local[point], slurm[point])


def test_two_jobs_record_what_one_job_records(tmp_path, monkeypatch):
    """JOBS=2 runs non-exclusive points side by side, each with its thread share; the records'
    content (apart from timings and provenance) equals a JOBS=1 build's."""
    from lablib.report.build import Options, build

    require_data(CIFAR_ZIP, "CIFAR-10", "LABLIB_TEST_CIFAR")
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
        stores[jobs] = _records(store)
        points = [json.loads(p.read_text()) for p in store.glob("*/*/point.json")]
        if jobs == 2:
            shared = [p for p in points if p["section"] in ("c1_training", "c5_optimizers", "q1_conv_layers")]
            assert shared and all(p["parallel"] for p in shared)
            assert not any(p["parallel"] for p in points if p["section"] == "c2_timing")  # exclusive
    assert len(stores[1]) == 5 and stores[1].keys() == stores[2].keys()
    for point in stores[1]:
        assert _same(stores[1][point], stores[2][point]), (point, stores[1][point], stores[2][point])
