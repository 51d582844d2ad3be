"""A point's key follows the layers: a notebook re-executes when what it shows or how it shows it changes."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from conftest import NOTEBOOKS

from lablib.core.store import core_digest
from lablib.report.job import Job, record_point
from lablib.report.points import (
    index_points,
    latest_complete,
    notebook_digest,
    point_key,
    presenting_digest,
    presenting_modules,
)


def test_notebook_digest_ignores_outputs_but_not_code(tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    nbformat.write(notebook, tmp_path / "a.ipynb")
    notebook.cells[0].outputs = [nbformat.v4.new_output("stream", text="1")]
    notebook.cells[0].execution_count = 3
    nbformat.write(notebook, tmp_path / "b.ipynb")
    notebook.cells[0].source = "x = 2"
    nbformat.write(notebook, tmp_path / "c.ipynb")
    a, b, c = (notebook_digest(tmp_path / f"{n}.ipynb") for n in "abc")
    assert a == b != c


def test_a_notebook_depends_on_the_sections_modules_it_imports_and_theirs():
    modules = presenting_modules(NOTEBOOKS / "c5_optimizers.ipynb")
    # optimizers imports workers (the worker choice) and training (a sentence); setup imports registry, ...
    assert {"optimizers", "workers", "training", "setup", "registry", "tables", "points"} <= set(modules)
    assert "fast" not in modules and "compiled" not in modules
    assert "workers" in presenting_modules(NOTEBOOKS / "c1_training.ipynb", extra=["workers"])


@pytest.fixture
def sections_copy(tmp_path):
    """A copy of lablib/sections, so its files can be edited."""
    import lablib.sections

    copy = tmp_path / "sections"
    shutil.copytree(Path(lablib.sections.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def test_editing_a_sentence_changes_only_the_points_that_import_it(sections_copy):
    c1 = presenting_modules(NOTEBOOKS / "c1_training.ipynb", package=sections_copy)
    c5 = presenting_modules(NOTEBOOKS / "c5_optimizers.ipynb", package=sections_copy)
    before = (presenting_digest(c1, sections_copy), presenting_digest(c5, sections_copy))
    with open(sections_copy / "optimizers.py", "a") as module:
        module.write("\n# a reworded sentence\n")
    after = (presenting_digest(c1, sections_copy), presenting_digest(c5, sections_copy))
    assert after[0] == before[0] and after[1] != before[1]


def test_editing_the_report_layer_changes_no_key():
    # The report layer is in no key: a point's parts are the notebook, its parameters, the presenting code it
    # imports, the core's code and the measurements; lablib/report is none of them.
    modules = presenting_modules(NOTEBOOKS / "c2_timing.ipynb")
    assert not any(name.startswith("report") for name in modules)
    assert Path(__import__("lablib.core.store").core.store.__file__).parent.name == "core"
    assert core_digest() == core_digest()


def test_point_key_changes_with_each_part():
    parts = dict(
        notebook="n",
        parameters={"workers": 2},
        presenting="p",
        core="c",
        measurements=["k"],
        environment="e",
        device="cpu:x",
    )
    base = point_key(parts)
    changed = [
        {**parts, name: value}
        for name, value in (
            ("notebook", "n2"),
            ("parameters", {"workers": 4}),
            ("presenting", "p2"),
            ("core", "c2"),
            ("measurements", ["k2"]),
            ("environment", "e2"),
            ("device", "cuda:H200"),
        )
    ]
    assert point_key(dict(parts)) == base and len({point_key(p) for p in changed} | {base}) == 8


def _fake_point(root: Path, key: str, status: str, started: str, with_notebook: bool = True, section="c1_training"):
    folder = root / section / f"{started}-{status}-{key}"
    folder.mkdir(parents=True)
    if with_notebook:
        (folder / "notebook.ipynb").write_text("{}")
    record_point(Job(section, Path("nb.ipynb"), {}, key, folder, 60), status, started=started, duration_s=1.0)
    return folder


def test_only_a_complete_point_with_its_notebook_counts_and_jobs_are_not_points(private_run_store):
    root = private_run_store
    _fake_point(root, "k1", "complete", "2026-01-01", with_notebook=False)
    _fake_point(root, "k1", "failed", "2026-01-02")
    good = _fake_point(root, "k1", "complete", "2026-01-03")
    job = root / "jobs" / "2026-01-04"
    job.mkdir(parents=True)
    record_point(Job("c3_workers", None, {}, "k9", job, 60, kind="measure"), "complete", started="2026-01-04")
    index = index_points(root)
    assert latest_complete(index, "k1")["folder"] == str(good) and "k9" not in index
