"""`make report EXECUTOR=slurm` against a real single-node Slurm cluster (marker `slurm`).

The same small plan is built twice, once locally and once as Slurm job arrays;
the records must be equal in content, apart from timings and provenance.
"""

import pytest
from conftest import CIFAR_ZIP, require_data
from test_executors import _plan, records, same

pytestmark = pytest.mark.slurm


def test_a_slurm_build_records_what_a_local_build_records(tmp_path, monkeypatch, capsys):
    from slurm_local import local_slurm, missing_tools

    from lablib.cli import build_parser
    from lablib.report.build import Options, build, main

    if missing_tools():
        pytest.skip(f"Slurm is not installed here (missing {missing_tools()}); `make test-slurm` installs it")
    require_data(CIFAR_ZIP, "CIFAR-10", "LABLIB_TEST_CIFAR")
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
        if executor == "slurm":
            assert any(line.strip().startswith("slurm:") and "done" in line for line in lines)
            assert sum("(slurm)" in line for line in lines) == 5
    local, slurm = stores["local"], stores["slurm"]
    assert len(local) == 5 and local.keys() == slurm.keys()
    for point in local:
        assert local[point]["status"] == ("complete", "complete")
        assert same(local[point], slurm[point]), (point, local[point], slurm[point])
