"""`make report EXECUTOR=slurm` against a real single-node Slurm cluster (marker `slurm`).

The same small plan is built twice, once locally and once with its measuring jobs as Slurm job arrays
(the notebooks present here either way); the records must be equal in content, apart from timings,
provenance and where.
"""

import json

import pytest
from conftest import CIFAR_ZIP, MNIST_ZIP, require_data
from test_executors import _plan, records, same

pytestmark = pytest.mark.slurm


def test_a_slurm_build_records_what_a_local_build_records(tmp_path, monkeypatch, capsys):
    from slurm_local import local_slurm, missing_tools

    from lablib.cli import build_parser
    from lablib.report.build import Options, build, main

    if missing_tools():
        pytest.skip(f"Slurm is not installed here (missing {missing_tools()}); `make test-slurm` installs it")
    require_data(CIFAR_ZIP, "CIFAR-10", "LABLIB_TEST_CIFAR")
    require_data(MNIST_ZIP, "MNIST", "LABLIB_TEST_MNIST")
    plan = _plan(tmp_path)
    stores = {}
    for executor in ("local", "slurm"):
        store = tmp_path / f"runs-{executor}"
        monkeypatch.setenv("LABLIB_RUNS_DIR", str(store))
        lines: list[str] = []
        if executor == "slurm":
            with local_slurm(tmp_path / "cluster") as env:
                monkeypatch.setenv("SLURM_CONF", env["SLURM_CONF"])
                monkeypatch.setenv("PATH", env["PATH"])
                monkeypatch.setenv("SLURM_CPUS", "2")
                monkeypatch.setenv("SLURM_MEM_GB", "4")
                capsys.readouterr()
                # through the command line, as `make report EXECUTOR=slurm` calls it
                arguments = ["report", "--profile", "quick", "--executor", "slurm", "--plan", str(plan)]
                status = main(build_parser().parse_args([*arguments, "--output", str(tmp_path / "out-slurm")]))
                lines = capsys.readouterr().out.splitlines()
        else:
            options = Options(profile="quick", profile_explicit=True, plan=plan, output_dir=tmp_path / "out-local")
            status = build(options, out=lambda *a, **k: lines.append(" ".join(map(str, a))))  # noqa: B023
        assert status == 0, "\n".join(lines)
        assert (tmp_path / f"out-{executor}" / "report.html").exists()
        stores[executor] = records(store)
        jobs = [json.loads(p.read_text()) for p in (store / "jobs").glob("*/point.json")]
        assert all(job["executor"] == executor and job["status"] == "complete" for job in jobs), jobs
        if executor == "slurm":
            assert any(line.strip().startswith("slurm:") and "done" in line for line in lines)
            assert len(jobs) == 3  # each of the grid's trainings, and the timing, a job of its own
    local, slurm = stores["local"], stores["slurm"]
    assert len(local) == 6 and local.keys() == slurm.keys()  # 3 measurements, 3 sections
    for name in local:
        assert local[name]["status"] in ("complete", ("complete", "complete"))
        assert same(local[name], slurm[name]), (name, local[name], slurm[name])
