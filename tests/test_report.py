"""`make report`: plan validation, point keys and staleness, stitching, and the quick report end to end.

The end-to-end tests (marked `report`) build a small report from a test plan:
the real C1 notebook on 200 real images, two small stand-in notebooks that
record C3's rule sweep and a {best_of: c3_workers} parameter (they run in
seconds), a broken section and a missing one; they check the PDF's text and
pages, the HTML's figures in headless Chromium, reuse on a second run and the
failed section.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import CIFAR_ZIP, NOTEBOOKS, REPO, require_data

from lablib.core.runs import load_runs
from lablib.report.job import Job, error_tail, record_point, run_job
from lablib.report.plan import BestOfGrid, PlanError, Rule, load_plan, parse_duration
from lablib.report.points import index_points, lablib_digest, latest_complete, notebook_digest, point_key
from lablib.report.stitch import SectionReport, _clean_cell, latex_errors, provenance_table, section_cells

LAB_NOTEBOOKS = """c1_training c2_timing c3_workers c4_gpu_vs_cpu c5_optimizers c6_no_batchnorm c7_torchscript
c8_graph c9_eval c10_latency q1_conv_layers q2_last_linear q3_params_sgd q4_params_adam q5_trace_vs_script
q6_scripting_changes xc_libtorch p25_worker_profile p25_compile p25_profiler x_fast e1_hparam_sweep
e2_efficient_blocks""".split()
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]


# --- the plan -------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["full", "quick"])
def test_the_plan_lists_every_section_in_order(profile):
    plan = load_plan(REPO / "report" / "plan.yaml", profile)
    names = [s.name for s in plan.sections]
    assert sorted({s.notebook.stem for s in plan.sections}) == sorted(LAB_NOTEBOOKS)
    assert names[:3] == ["c1_training", "c2_timing", "c3_workers"] and names.index("e1_hparam_sweep") > names.index(
        "p25_profiler"
    )
    # E1: one notebook, two sections (MNIST and CIFAR-10), each a grid whose best settings get more seeds
    mnist, cifar = plan.section("e1_hparam_sweep"), plan.section("e1_cifar10")
    assert mnist.notebook == cifar.notebook and mnist.store == cifar.store == "e1_hparam_sweep"
    assert [s.name for s in plan.select("E1")] == ["e1_hparam_sweep", "e1_cifar10"]
    assert mnist.params["data"] == "mnist" and "data" not in cifar.params
    for section in (mnist, cifar):
        name, rule = section.rule
        assert name == "seed" and isinstance(rule, BestOfGrid) and rule.by == "final_accuracy"
        assert {p["seed"] for p in section.static_points()} == {0}
    if profile == "quick":
        assert (mnist.rule[1].top, mnist.rule[1].seeds, cifar.rule[1].top, cifar.rule[1].seeds) == (2, 2, 2, 2)
        assert len(cifar.static_points()) <= 4 and cifar.params["limit_train"] <= 256
    else:
        assert len(mnist.static_points()) == 5 * 5 * 4 and len(cifar.static_points()) == 4 * 5 * 4
    assert plan.section("c3_workers").rule[0] == "workers"
    assert plan.section("c4_gpu_vs_cpu").sweep == {"device": ["cuda", "cpu"]}
    for name in ("c4_gpu_vs_cpu", "c5_optimizers", "p25_worker_profile"):
        assert plan.section(name).params["workers"] == {"best_of": "c3_workers"}
    for name in ("c2_timing", "c3_workers", "c4_gpu_vs_cpu", "c10_latency", "p25_compile", "x_fast"):
        assert plan.section(name).exclusive  # timing: never shares the machine with JOBS > 1
    assert not plan.section("q1_conv_layers").exclusive
    assert plan.section("c5_optimizers").sweep["optimizer"] == ["sgd", "sgd_nesterov", "adagrad", "adadelta", "adam"]
    compile_section = plan.section("p25_compile")
    if profile == "full":
        assert plan.lab_settings and plan.defaults["limit_train"] == 0 and plan.defaults["epochs"] == 5
        assert compile_section.params["epochs"] == 10 and len(compile_section.sweep["compile_mode"]) == 4
    else:
        assert not plan.lab_settings and "full profile" in plan.banner
        assert 0 < plan.defaults["limit_train"] <= 1000 and plan.defaults["epochs"] == 1
        assert compile_section.sweep["compile_mode"] == ["eager", "default"]
        assert compile_section.timeout_s <= 20 * 60


def _plan(tmp_path, sections, profiles=None) -> Path:
    import yaml

    path = tmp_path / "plan.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "title": "t",
                "notebooks": str(NOTEBOOKS),
                "profiles": profiles or {"quick": {"defaults": {"epochs": 1}, "timeout": "5m"}},
                "parts": [{"title": "P", "sections": sections}],
            }
        )
    )
    return path


@pytest.mark.parametrize(
    "sections, message",
    [
        ([{"notebook": "c1_training", "colour": 1}], r"sections\[0\] \(c1_training\): unknown key\(s\) colour"),
        ([{"notebook": "c1_training", "timeout": "soon"}], r"c1_training.*timeout 'soon' is not a duration"),
        ([{"notebook": "c1_training", "params": {"workers": [0, 2]}}], r"params.workers.*belong under 'sweep'"),
        ([{"notebook": "c1_training", "sweep": {"workers": "c9_rule"}}], r"sweep.workers.*not a known rule"),
        ([{"notebook": "c1_training", "sweep": {"workers": []}}], r"sweep.workers: expected a non-empty list"),
        ([{"notebook": "c1_training", "sweep": {"seed": {"rule": "best_of_grid", "top": 2}}}], r"seeds must be"),
        (
            [{"notebook": "c1_training", "sweep": {"seed": {"rule": "best_of_grid", "top": 2, "seeds": 2}}}],
            r"needs a grid",
        ),
        (
            [
                {
                    "notebook": "c1_training",
                    "sweep": {"lr": [0.1], "seed": {"rule": "best_of_grid", "top": 0, "seeds": 1}},
                }
            ],
            r"top must be a whole number >= 1, got 0",
        ),
        (
            [
                {
                    "notebook": "c1_training",
                    "sweep": {"lr": [0.1], "seed": {"rule": "best_of_grid", "top": 1, "seed": 1}},
                }
            ],
            r"not a known rule",
        ),
        (
            [{"notebook": "c1_training", "sweep": {"lr": [0.1], "workers": {"rule": "c3"}}}],
            r"cannot be combined",
        ),
        ([{"notebook": "c1_training", "name": "C1 copy"}], r"'name' must be"),
        ([{"notebook": "c1_training", "params": {"workers": {"best_of": "c3_workers"}}}], r"names no section"),
        ([{"notebook": "c1_training", "params": {"workers": {"worst_of": "c1_training"}}}], r"must be a reference"),
        (["c1_training", "c1_training"], r"appears twice"),
        ([{"notebook": "C1 Training"}], r"must be a notebook stem"),
        (
            [{"notebook": "c1_training", "params": {"workers": 1}, "sweep": {"workers": [0, 2]}}],
            r"both a fixed parameter and swept",
        ),
    ],
)
def test_plan_errors_name_the_bad_entry(tmp_path, sections, message):
    with pytest.raises(PlanError, match=message):
        load_plan(_plan(tmp_path, sections), "quick")


def test_plan_profiles_overrides_and_selection(tmp_path):
    path = _plan(
        tmp_path,
        [
            {
                "notebook": "c1_training",
                "id": "C1",
                "sweep": {"optimizer": ["sgd", "adam"]},
                "timeout": 60,
                "profiles": {"quick": {"sweep": {"optimizer": ["sgd"]}, "timeout": "2m"}},
            },
            {"notebook": "c3_workers", "id": "C3", "sweep": {"workers": {"rule": "c3", "max": 8}}},
            {"notebook": "c4_gpu_vs_cpu", "id": "C4", "params": {"workers": {"best_of": "c3_workers"}}},
        ],
        profiles={"quick": {"timeout": "5m"}, "full": {"timeout": "3h"}},
    )
    quick, full = load_plan(path, "quick"), load_plan(path, "full")
    assert quick.section("c1_training").static_points() == [{"optimizer": "sgd"}]
    assert len(full.section("c1_training").static_points()) == 2
    assert quick.section("c1_training").timeout_s == 120 and full.section("c1_training").timeout_s == 60
    assert quick.section("c4_gpu_vs_cpu").timeout_s == 300 and full.section("c4_gpu_vs_cpu").timeout_s == 3 * 3600
    assert quick.section("c3_workers").rule == ("workers", Rule("c3", 8, 4))
    assert quick.section("c1_training").exists
    assert quick.section("c3_workers").exists == (NOTEBOOKS / "c3_workers.ipynb").is_file()
    assert [s.name for s in quick.select("C3,c1_training")] == ["c1_training", "c3_workers"]
    with pytest.raises(PlanError, match="unknown section.*C99"):
        quick.select("C99")
    with pytest.raises(PlanError, match="profile 'huge' is not in"):
        load_plan(path, "huge")


def test_durations():
    assert parse_duration(90, "x") == 90 and parse_duration("20m", "x") == 1200 and parse_duration("3h", "x") == 10800
    with pytest.raises(PlanError, match="x: timeout '-1s'"):
        parse_duration("-1s", "x")


# --- keys and staleness ------------------------------------------------------------------------


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


def test_point_key_changes_with_each_part():
    parts = dict(notebook="n", parameters={"workers": 2}, lablib="l", data="d", environment="e", device="cpu:x")
    base = point_key(**parts)
    assert point_key(**parts) == base
    changed = [
        {**parts, "notebook": "n2"},
        {**parts, "parameters": {"workers": 4}},
        {**parts, "lablib": "l2"},
        {**parts, "data": "d2"},
        {**parts, "environment": "e2"},
        {**parts, "device": "cuda:H200"},
    ]
    assert len({point_key(**p) for p in changed} | {base}) == 7


@pytest.fixture
def package_copy(tmp_path):
    """A copy of the real lablib package, so its files can be edited."""
    import shutil

    import lablib

    copy = tmp_path / "lablib"
    shutil.copytree(Path(lablib.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


@pytest.mark.parametrize(
    "edited", ["report/executors.py", "report/build.py", "report/stitch.py", "cli.py", "bench.py", "__main__.py"]
)
def test_editing_the_report_layer_or_the_commands_keeps_every_key(package_copy, edited):
    before = lablib_digest(package_copy)
    with open(package_copy / edited, "a") as module:
        module.write("\n# an edit\n")
    assert lablib_digest(package_copy) == before


@pytest.mark.parametrize("edited", ["core/train.py", "core/data.py", "sections/analysis.py", "sections/fast.py"])
def test_editing_the_core_or_a_section_changes_every_key(package_copy, edited):
    before = lablib_digest(package_copy)
    with open(package_copy / edited, "a") as module:
        module.write("\n# an edit\n")
    assert lablib_digest(package_copy) != before


def test_a_module_in_a_new_sub_folder_of_the_core_changes_the_key(package_copy):
    before = lablib_digest(package_copy)
    (package_copy / "core" / "kernels").mkdir()
    (package_copy / "core" / "kernels" / "fused.py").write_text("A = 1\n")
    assert lablib_digest(package_copy) != before
    renamed = lablib_digest(package_copy)
    (package_copy / "core" / "kernels" / "fused.py").rename(package_copy / "core" / "kernels" / "other.py")
    assert lablib_digest(package_copy) != renamed


def _fake_point(root: Path, key: str, status: str, started: str, with_notebook: bool = True, section="c1_training"):
    folder = root / section / f"{started}-{status}-{key}"
    folder.mkdir(parents=True)
    if with_notebook:
        (folder / "notebook.ipynb").write_text("{}")
    record_point(Job(section, Path("nb.ipynb"), {}, key, folder, 60), status, started=started, duration_s=1.0)
    return folder


def test_staleness_only_a_complete_point_with_its_notebook_counts(private_run_store):
    root = private_run_store
    _fake_point(root, "k1", "failed", "20260101-000000")
    _fake_point(root, "k2", "running", "20260101-000001")  # killed mid-way
    _fake_point(root, "k3", "complete", "20260101-000002", with_notebook=False)
    good = _fake_point(root, "k4", "complete", "20260101-000003")
    newer = _fake_point(root, "k4", "complete", "20260101-000004")
    index = index_points()
    assert latest_complete(index, "k1") is None and latest_complete(index, "k2") is None
    assert latest_complete(index, "k3") is None and latest_complete(index, "missing") is None
    assert latest_complete(index, "k4")["folder"] == str(newer) != str(good)


GRID_STANDIN = [
    ("markdown", "# G · Grid", []),
    (
        "code",
        'optimizer: str = "sgd"  # the optimiser\nlr: float = 0.1  # learning rate\nseed: int = 0  # seed\n'
        'data: str = "cifar10"  # the data\ntag: str = ""  # the plan/profile',
        ["parameters"],
    ),
]


def _complete(state, results: dict) -> None:
    """Record a state's point as complete with `results`, as a finished notebook would."""
    from lablib.report.points import new_point_folder

    folder = new_point_folder(state.section.store)
    (folder / "notebook.ipynb").write_text("{}")
    (folder / "results.json").write_text(json.dumps(results))
    record_point(Job(state.section.name, state.section.notebook, state.parameters, state.key, folder, 60), "complete")


def _resolver(plan, **context):
    from lablib.report.resolve import Context, Resolver

    defaults = {**plan.defaults, "tag": plan.profile}
    settings = dict(defaults=defaults, lablib="l", environment="e", device="cpu:x", cuda=False)
    selected = frozenset(s.name for s in plan.sections)
    return Resolver(plan, Context(**settings, selected=selected, **context), index_points())


def test_best_of_grid_reruns_the_best_settings_once_the_grid_is_recorded(tmp_path):
    import yaml

    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    _write_notebook(notebooks / "grid.ipynb", GRID_STANDIN)
    rule = {"rule": "best_of_grid", "top": 2, "seeds": 2}
    sections = [
        {"notebook": "grid", "id": "G", "sweep": {"optimizer": ["sgd", "adam"], "lr": [0.01, 0.1], "seed": rule}},
        {
            "notebook": "grid",
            "name": "grid_b",
            "id": "G",
            "params": {"data": "fake"},
            "sweep": {"lr": [1.0], "seed": rule},
        },
    ]
    plan_path = tmp_path / "plan.yaml"
    plan_path.write_text(
        yaml.safe_dump(
            {
                "title": "t",
                "notebooks": "notebooks",
                "profiles": {"quick": {"timeout": "5m"}},
                "parts": [{"title": "P", "sections": sections}],
            },
            sort_keys=False,
        )
    )
    plan = load_plan(plan_path, "quick")
    section = plan.section("grid")
    resolver = _resolver(plan)
    grid = resolver.points(section)
    assert [(s.own["optimizer"], s.own["lr"], s.own["seed"]) for s in grid] == [
        ("sgd", 0.01, 0),
        ("sgd", 0.1, 0),
        ("adam", 0.01, 0),
        ("adam", 0.1, 0),
    ]
    assert all(s.status == "stale" for s in grid) and resolver.more_possible(section) == 4
    accuracy = {("sgd", 0.01): 50.0, ("sgd", 0.1): None, ("adam", 0.01): 70.0, ("adam", 0.1): 60.0}  # None: diverged
    for state in grid[:3]:
        _complete(state, {"final_accuracy": accuracy[(state.own["optimizer"], state.own["lr"])]})
    resolver = _resolver(plan)
    assert len(resolver.points(section)) == 4  # one grid point is not recorded: no re-runs yet
    _complete(grid[3], {"final_accuracy": 60.0})
    resolver = _resolver(plan)
    listed = resolver.points(section)
    assert [s.status for s in listed[:4]] == ["complete"] * 4
    reruns = [(s.own["optimizer"], s.own["lr"], s.own["seed"], s.status) for s in listed[4:]]
    assert reruns == [
        ("adam", 0.01, 1, "stale"),
        ("adam", 0.01, 2, "stale"),
        ("adam", 0.1, 1, "stale"),
        ("adam", 0.1, 2, "stale"),
    ]
    assert listed[4].label == "optimizer=adam lr=0.01 seed=1" and listed[4].parameters["seed"] == 1
    assert len({s.key for s in listed}) == 8 and resolver.more_possible(section) == 0
    # the second section on the same notebook: its own points, recorded under the notebook's name
    other = resolver.points(plan.section("grid_b"))
    assert len(other) == 1 and other[0].parameters["data"] == "fake" and other[0].key not in {s.key for s in listed}
    # a grid whose notebook records no ranking result: one clear failure, no guessing
    for state in other:
        _complete(state, {"accuracy": 1.0})
    failed = _resolver(plan).points(plan.section("grid_b"))[-1]
    assert failed.status == "failed" and "final_accuracy" in failed.error


def test_only_the_selected_sections_unresolved_points_are_failures(tmp_path):
    from lablib.report.build import failed
    from lablib.report.resolve import PointState

    plan = load_plan(REPO / "report" / "plan.yaml", "quick")
    c4, c1 = plan.section("c4_gpu_vs_cpu"), plan.section("c1_training")
    waiting = PointState(c4, "device=cpu", status="unresolved", error="C3.2's best worker count is not known")
    assert not failed(waiting, frozenset({"e1_hparam_sweep"}))  # ONLY=E1 on a fresh store: C4 is just not built
    assert failed(waiting, frozenset({"c4_gpu_vs_cpu"}))
    # a recorded failure of a section not asked for is not this build's: ONLY=E1 exits on E1's outcome alone
    assert not failed(PointState(c1, "", status="timeout"), frozenset({"e1_hparam_sweep"}))
    assert failed(PointState(c1, "", status="timeout"), frozenset({"c1_training"}))
    assert failed(PointState(c1, "", status="abandoned"), frozenset({"c1_training"}))
    assert not failed(PointState(c1, "", status="complete"), frozenset({"c1_training"}))


def test_error_tail_reads_the_executed_notebooks_error(tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1/0")])
    notebook.cells[0].outputs = [
        nbformat.v4.new_output(
            "error",
            ename="ConfigError",
            evalue="optimizer='nonsense' is not allowed",
            traceback=[
                "\x1b[31m---------\x1b[0m",
                "Traceback line",
                "\x1b[31mConfigError\x1b[0m: optimizer='nonsense' is not allowed",
            ],
        )
    ]
    nbformat.write(notebook, tmp_path / "x.ipynb")
    tail = error_tail(tmp_path / "x.ipynb")
    assert "ConfigError: optimizer='nonsense' is not allowed" in tail and "\x1b" not in tail
    (tmp_path / "log").write_text("a\nb\nlast words\n")
    assert error_tail(tmp_path / "none.ipynb", tmp_path / "log").endswith("last words")


# --- stitching -------------------------------------------------------------------------------------


def test_cells_are_cleaned_for_the_reader():
    parameters = nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]})
    hidden = nbformat.v4.new_code_cell(
        "y = 2",
        outputs=[
            nbformat.v4.new_output("stream", name="stderr", text="progress 10%"),
            nbformat.v4.new_output("stream", name="stdout", text="\x1b[1mshown\x1b[0m"),
            nbformat.v4.new_output("error", ename="E", evalue="v", traceback=["t"]),
        ],
    )
    shown = nbformat.v4.new_code_cell("z = 3", metadata={"tags": ["show-code"]})
    silent = nbformat.v4.new_code_cell("w = 4")
    removed = nbformat.v4.new_markdown_cell("gone", metadata={"tags": ["remove-cell"]})
    assert _clean_cell(parameters) is None and _clean_cell(silent) is None and _clean_cell(removed) is None
    cleaned = _clean_cell(hidden)
    assert [o["text"] for o in cleaned.outputs] == ["shown"]
    assert cleaned.metadata["transient"] == {"remove_source": True}
    assert "transient" not in _clean_cell(shown).metadata


def test_a_failed_section_shows_the_error_and_the_notebook(tmp_path):
    section = SectionReport(
        "c5_optimizers",
        "C5",
        "Optimisers",
        "P",
        "failed",
        points=5,
        failures=[
            {
                "label": "optimizer=adam",
                "status": "timeout",
                "error": "timed out after 600 s",
                "executed": "/runs/c5/x/notebook.ipynb",
                "log": "/runs/c5/x/papermill.log",
            }
        ],
    )
    text = "".join(c.source for c in section_cells(section, tmp_path / "none.ipynb") if c.cell_type == "markdown")
    assert text.startswith("# C5 · Optimisers") and "This section failed" in text
    assert "optimizer=adam" in text and "timed out after 600 s" in text and "/runs/c5/x/notebook.ipynb" in text
    missing = SectionReport("c8_graph", "C8", "Print the model graph", "P", "missing")
    assert "not in this checkout" in section_cells(missing, tmp_path / "none.ipynb")[-1].source


def test_provenance_table_lists_differing_values():
    rows = dict(
        provenance_table(
            [{"python": "3.11.7", "torch": "2.13.0", "gpu": None}, {"python": "3.11.7", "torch": "2.13.1", "gpu": None}]
        )
    )
    assert rows["Python"] == "3.11.7" and rows["torch"] == "2.13.0; 2.13.1" and rows["GPU"] == "none (CPU only)"


def test_latex_errors_pick_the_lines_that_matter():
    log = "This is XeTeX\n(./report.tex\n! Undefined control sequence.\nl.42 \\foo\n   \nmore\nmore\n"
    assert latex_errors(log).startswith("! Undefined control sequence.\nl.42 \\foo")


def test_missing_pdf_tools_give_the_install_command(tmp_path, monkeypatch, capsys):
    import lablib.report.stitch as stitch

    monkeypatch.setattr(stitch.shutil, "which", lambda tool: None)
    assert stitch.missing_pdf_tools() == ["pandoc", "xelatex"]
    assert stitch.INSTALL_PDF_TOOLS.startswith("sudo apt-get install pandoc texlive-xetex")


# --- end to end ----------------------------------------------------------------------------------

# Stand-ins for C3 and C4: they record what the runner needs (C3's data_s_total and epoch_s_mean per
# worker count; the workers C4 was given) in seconds instead of minutes. Times: 0 -> 5 s, 1 -> 3 s,
# 2 -> 4 s, so C3's rule (step 1, max 2) measures 0, 1, 2, stops, and C3.2's best is 1 worker.
C3_STANDIN = [
    ("markdown", "# C3 · I/O optimisation\n\nA stand-in that records fixed times.", []),
    (
        "code",
        'workers: int = 0  # DataLoader workers\ndata: str = "cifar10"  # the data\n'
        'tag: str = ""  # the plan/profile this run belongs to',
        ["parameters"],
    ),
    (
        "code",
        "from IPython.display import Markdown, display\nfrom lablib.core.runs import start_run\n"
        "seconds = {0: 5.0, 1: 3.0, 2: 4.0}[workers]\n"
        'run = start_run("c3_workers", None, params={"workers": workers}, tag=tag, device="cpu", sweep="workers",'
        ' data={"fingerprint": "stand-in"})\n'
        "run.log_results(data_s_total=seconds, epoch_s_mean=seconds + 1)\nrun.finish()\n"
        'display(Markdown(f"**C3.1:** {workers} workers load data in {seconds:.1f} s."))',
        [],
    ),
]
C4_STANDIN = [
    ("markdown", "# C4 · GPU vs CPU\n\nA stand-in that shows the workers it was given.", []),
    (
        "code",
        'workers: int = -1  # C3.2 best workers\ndevice: str = "auto"  # the device\n'
        'tag: str = ""  # the plan/profile this run belongs to',
        ["parameters"],
    ),
    (
        "code",
        "from IPython.display import Markdown, display\n"
        'display(Markdown(f"**C4:** measured with {workers} workers (C3.2 best) on {device}."))',
        [],
    ),
]


def _write_notebook(path: Path, cells) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (lablib)", "language": "python"}
    for kind, source, tags in cells:
        cell = nbformat.v4.new_markdown_cell(source) if kind == "markdown" else nbformat.v4.new_code_cell(source)
        cell.metadata["tags"] = tags
        notebook.cells.append(cell)
    nbformat.write(notebook, path)


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    """A quick report built once through the CLI: C1 on 200 real images, C3 and C4 stand-ins, a missing section."""
    import yaml

    require_data(CIFAR_ZIP, "CIFAR-10", "LABLIB_TEST_CIFAR")
    base = tmp_path_factory.mktemp("report")
    notebooks = base / "notebooks"
    notebooks.mkdir()
    shutil.copy(NOTEBOOKS / "c1_training.ipynb", notebooks / "c1_training.ipynb")
    _write_notebook(notebooks / "c3_workers.ipynb", C3_STANDIN)
    _write_notebook(notebooks / "c4_gpu_vs_cpu.ipynb", C4_STANDIN)
    shutil.copy(NOTEBOOKS / "c1_training.ipynb", notebooks / "c6_no_batchnorm.ipynb")  # broken below
    sections = [
        {"notebook": "c1_training", "id": "C1", "title": "Training in PyTorch"},
        {
            "notebook": "c3_workers",
            "id": "C3",
            "title": "I/O optimisation",
            "sweep": {"workers": {"rule": "c3", "max": 2, "step": 1}},
        },
        {
            "notebook": "c4_gpu_vs_cpu",
            "id": "C4",
            "title": "GPU vs CPU",
            "params": {"workers": {"best_of": "c3_workers"}},
            "sweep": {"device": ["cpu"]},
        },
    ]
    later = {"notebook": "q1_conv_layers", "id": "Q1", "title": "Convolutional layers"}
    profiles = {
        "quick": {
            "description": "test profile",
            "banner": "A test of the report, not the lab's settings.",
            "defaults": {"device": "cpu", "limit_train": 200, "limit_test": 100, "epochs": 1, "workers": 0},
            "timeout": "5m",
        }
    }
    plan = {
        "title": "Lab report test",
        "notebooks": "notebooks",
        "profiles": profiles,
        "parts": [{"title": "Main lab", "sections": sections}, {"title": "Later", "sections": [later]}],
    }
    (base / "plan.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
    broken = {
        **plan,
        "parts": [
            {
                "title": "Main lab",
                "sections": [
                    *sections,
                    {
                        "notebook": "c6_no_batchnorm",
                        "id": "C6",
                        "title": "Without batch norm",
                        "params": {"optimizer": "nonsense"},
                    },
                ],
            },
            {"title": "Later", "sections": [later]},
        ],
    }
    (base / "broken.yaml").write_text(yaml.safe_dump(broken, sort_keys=False))

    env = {**os.environ, "LABLIB_RUNS_DIR": str(base / "runs"), "PYTHONPATH": str(REPO)}
    env.pop("LABLIB_RUN_DIR", None)
    command = [
        sys.executable,
        "-m",
        "lablib",
        "report",
        "--profile",
        "quick",
        "--data",
        str(CIFAR_ZIP),
        "--plan",
        str(base / "plan.yaml"),
        "--output",
        str(base / "out"),
    ]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    return {"base": base, "done": done, "command": command, "env": env, "out": base / "out"}


def _pdf_text(path: Path) -> str:
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext missing (make test-deps installs poppler-utils)")
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout


@pytest.mark.report
def test_quick_report_builds_both_files(quick_report, monkeypatch):
    done, out = quick_report["done"], quick_report["out"]
    assert done.returncode == 0, done.stdout + done.stderr
    assert (out / "report.html").stat().st_size > 10_000
    lines = done.stdout
    assert re.search(r"\[1/\d+\] c1_training", lines) and "c3_workers workers=2" in lines
    assert "missing notebooks (1" in lines and "q1_conv_layers" in lines
    if shutil.which("xelatex") is None or shutil.which("pandoc") is None:
        assert "sudo apt-get install pandoc" in lines
        pytest.skip("pandoc/xelatex missing: PDF skipped with the install command (checked)")
    assert (out / "report.pdf").stat().st_size > 10_000
    monkeypatch.setenv("LABLIB_RUNS_DIR", str(quick_report["base"] / "runs"))
    c3 = load_runs("c3_workers", tag="quick")
    assert sorted(c3["workers"]) == [0, 1, 2]  # the rule stopped when 2 workers were slower than 1


@pytest.mark.report
def test_quick_report_pdf_holds_headings_in_order_and_the_recorded_answers(quick_report, monkeypatch):
    text = _pdf_text(quick_report["out"] / "report.pdf")
    flat = re.sub(r"\s+", " ", text).replace("\u2019", "'")
    headings = ["C1 · Training in PyTorch", "C3 · I/O optimisation", "C4 · GPU vs CPU", "Q1 · Convolutional layers"]
    positions = [flat.rfind(h) for h in headings]  # the last occurrence: the section, not the contents
    assert all(p >= 0 for p in positions) and positions == sorted(positions), positions
    assert "QUICK PROFILE" in flat and "not the lab's settings" in flat
    monkeypatch.setenv("LABLIB_RUNS_DIR", str(quick_report["base"] / "runs"))
    c1 = load_runs("c1_training", tag="quick").iloc[-1]
    assert f"the average training loss is {c1['final_loss']:.3f}" in flat
    assert "measured with 1 workers (C3.2 best)" in flat
    assert "2 workers load data in 4.0 s" in flat  # the newest C3 point's notebook is the one shown
    assert "q1_conv_layers.ipynb is not in this checkout" in flat
    assert "Traceback" not in flat and "papermill" not in flat.lower().replace("papermill.log", "")


@pytest.mark.report
def test_quick_report_pdf_pages_render(quick_report, tmp_path):
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm missing (make test-deps installs poppler-utils)")
    pdf = quick_report["out"] / "report.pdf"
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    pages = int(re.search(r"Pages:\s+(\d+)", info).group(1))
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(pdf), str(tmp_path / "page")], check=True, timeout=300)
    images = sorted(tmp_path.glob("page-*.png"))
    assert pages >= 3 and len(images) == pages and all(i.stat().st_size > 1000 for i in images)


@pytest.mark.report
def test_quick_report_html_shows_every_figure_in_chromium(quick_report, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium missing: `make test-deps` installs Debian's chromium")
    page = tmp_path / "check.html"
    page.write_text(
        (quick_report["out"] / "report.html").read_text()
        + """
<script>window.addEventListener("load", function () {
  var images = Array.from(document.images);
  var broken = images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); });
  var note = document.createElement("div"); note.id = "image-check";
  note.textContent = "images=" + images.length + " broken=" + broken.length;
  document.body.appendChild(note); });</script>"""
    )
    done = subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    found = re.search(r'id="image-check">images=(\d+) broken=(\d+)<', done.stdout)
    assert found, done.stderr[-2000:]
    assert int(found.group(1)) >= 1 and int(found.group(2)) == 0  # C1's figure at least, none broken
    assert "C1 · Training in PyTorch" in done.stdout and "QUICK PROFILE" in done.stdout


@pytest.mark.report
def test_a_second_run_reuses_every_point_and_a_broken_section_fails(quick_report):
    base, env = quick_report["base"], quick_report["env"]
    again = subprocess.run(quick_report["command"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 to run" in again.stdout and "0 point(s) ran, 5 reused" in again.stdout
    assert "report unchanged" in again.stdout
    command = [*quick_report["command"][:-4], "--plan", str(base / "broken.yaml"), "--output", str(base / "broken")]
    broken = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "1 point(s) ran, 5 reused" in broken.stdout
    assert "c6_no_batchnorm" in broken.stdout.split("point(s) failed:")[1]
    html = (base / "broken" / "report.html").read_text()
    assert "This section failed" in html and "optimizer=&#x27;nonsense&#x27;" in html.replace("'", "&#x27;")
    attempts = [json.loads(p.read_text()) for p in (base / "runs" / "c6_no_batchnorm").glob("*/point.json")]
    assert [a["status"] for a in attempts] == ["failed"] and Path(attempts[0]["executed"]).is_file()
    assert attempts[0]["executed"] in html


# --- the full profile without a GPU, timeouts ---------------------------------------------------


def test_the_implicit_full_profile_stops_without_a_gpu(tmp_path):
    import torch

    from lablib.report.build import Options, build

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: the full profile runs")
    lines: list[str] = []
    plan = _plan(
        tmp_path,
        [{"notebook": "c1_training", "id": "C1"}],
        profiles={"full": {"defaults": {"epochs": 5}, "timeout": "3h"}},
    )
    status = build(
        Options(profile="full", profile_explicit=False, plan=plan, output_dir=tmp_path / "out"),
        out=lambda *a, **k: lines.append(" ".join(map(str, a))),
    )
    text = "\n".join(lines)
    assert status == 3 and "No GPU is visible" in text and "make report PROFILE=quick DATA=PATH" in text
    assert "../shared" not in text  # the hint names the user's DATA, or a placeholder
    assert "1 to run, estimated" in text and not (tmp_path / "out" / "report.html").exists()
    assert not list(Path(os.environ["LABLIB_RUNS_DIR"]).glob("*/*/point.json"))  # nothing ran


@pytest.mark.report
def test_a_point_past_its_timeout_is_ended_and_reported(tmp_path):
    from lablib.report.points import new_point_folder

    notebook = tmp_path / "sleeper.ipynb"
    _write_notebook(
        notebook,
        [
            ("markdown", "# S · Sleeper", []),
            ("code", 'tag: str = ""  # the plan/profile', ["parameters"]),
            ("code", "import time\ntime.sleep(300)", []),
        ],
    )
    job = Job("sleeper", notebook, {"tag": "t"}, "key-sleep", new_point_folder("sleeper"), timeout_s=15)
    outcome = run_job(job)
    assert outcome.status == "timeout" and 15 <= outcome.seconds < 60
    assert "timed out after 15 s" in outcome.error
    assert json.loads((job.folder / "point.json").read_text())["status"] == "timeout"
    assert _processes_marked(f"LABLIB_RUN_DIR={job.folder}") == []  # papermill, its kernel and children are gone


def _processes_marked(marker: str) -> list[str]:
    """Ids of the processes whose environment holds `marker` (NAME=value)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if marker.encode() in (entry / "environ").read_bytes().split(b"\0"):
                found.append(entry.name)
        except OSError:
            continue
    return found


@pytest.mark.report
@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM"])  # Ctrl-C, and a build ended by kill or a scheduler
def test_ctrl_c_keeps_completed_points_and_marks_the_running_one(tmp_path, stop):
    import signal
    import time

    import yaml

    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    _write_notebook(notebooks / "c4_gpu_vs_cpu.ipynb", C4_STANDIN)
    _write_notebook(
        notebooks / "c8_graph.ipynb",
        [
            ("markdown", "# C8 · Sleeper", []),
            ("code", 'tag: str = ""  # the plan/profile', ["parameters"]),
            ("code", "import time\ntime.sleep(300)", []),
        ],
    )
    plan = {
        "title": "t",
        "notebooks": "notebooks",
        "profiles": {"quick": {"timeout": "10m"}},
        "parts": [
            {
                "title": "P",
                "sections": [{"notebook": "c4_gpu_vs_cpu", "params": {"workers": 2}}, {"notebook": "c8_graph"}],
            }
        ],
    }
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    runs = tmp_path / "runs"
    env = {**os.environ, "LABLIB_RUNS_DIR": str(runs), "PYTHONPATH": str(REPO)}
    build = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lablib",
            "report",
            "--profile",
            "quick",
            "--plan",
            str(tmp_path / "plan.yaml"),
            "--output",
            str(tmp_path / "out"),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 240
    sleeper = None
    while time.monotonic() < deadline and sleeper is None:
        logs = list((runs / "c8_graph").glob("*/papermill.log")) if (runs / "c8_graph").is_dir() else []
        if logs and "Executing notebook with kernel" in logs[0].read_text(errors="replace"):
            sleeper = logs[0].parent
        time.sleep(0.5)
    assert sleeper is not None, "the second point never started"
    time.sleep(3)
    build.send_signal(getattr(signal, stop))
    output, _ = build.communicate(timeout=120)
    assert build.returncode == 130, output
    assert "interrupted: completed points are kept" in output
    first = [json.loads(p.read_text()) for p in (runs / "c4_gpu_vs_cpu").glob("*/point.json")]
    assert [p["status"] for p in first] == ["complete"]
    assert json.loads((sleeper / "point.json").read_text())["status"] == "interrupted"
    assert _processes_marked(f"LABLIB_RUN_DIR={sleeper}") == []  # papermill and its kernel were ended


def test_dataframe_tables_get_a_latex_form():
    import pandas as pd

    from lablib.report.stitch import add_latex_tables, dataframe_latex

    frame = pd.DataFrame({"workers": [0, 4], "data_s": [5.25, 1.5]}, index=["a_b", "c"])
    latex = dataframe_latex(frame.to_html())
    assert r"\begin{tabular}{lrr}" in latex and r"\textbf{a\_b} & 0 & 5.25 \\" in latex
    cell = nbformat.v4.new_code_cell(
        "",
        outputs=[
            nbformat.v4.new_output(
                "execute_result", data={"text/html": frame._repr_html_(), "text/plain": str(frame)}, execution_count=1
            )
        ],
    )
    notebook = nbformat.v4.new_notebook(cells=[cell])
    add_latex_tables(notebook)
    assert "tabular" in notebook.cells[0].outputs[0]["data"]["text/latex"]


@pytest.mark.report
def test_force_reruns_only_the_selected_section_and_no_pdf_tools_still_give_html(quick_report, monkeypatch):
    import lablib.report.build as report

    base = quick_report["base"]
    monkeypatch.setenv("LABLIB_RUNS_DIR", str(base / "runs"))
    monkeypatch.setattr(report, "missing_pdf_tools", lambda: ["pandoc", "xelatex"])
    lines: list[str] = []
    options = report.Options(
        profile="quick",
        profile_explicit=True,
        data=str(CIFAR_ZIP),
        only="C4",
        force=True,
        plan=base / "plan.yaml",
        output_dir=base / "no-pdf",
    )
    status = report.build(options, out=lambda *a, **k: lines.append(" ".join(map(str, a))))
    text = "\n".join(lines)
    assert status == 0, text
    assert "[1/1] c4_gpu_vs_cpu device=cpu workers=1" in text and "1 point(s) ran, 4 reused" in text
    assert "PDF skipped: pandoc, xelatex not found" in text and "sudo apt-get install pandoc texlive-xetex" in text
    assert (base / "no-pdf" / "report.html").is_file() and not (base / "no-pdf" / "report.pdf").exists()


@pytest.mark.report
def test_a_latex_error_is_reported_as_the_lines_of_its_log(tmp_path):
    from lablib.report.stitch import PdfError, export_pdf

    if shutil.which("xelatex") is None or shutil.which("pandoc") is None:
        pytest.skip("pandoc/xelatex missing (make system-deps installs them)")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# X · Broken\n\n$\\notamacro{1}$")])
    notebook.metadata["title"] = "t"
    with pytest.raises(PdfError) as failure:
        export_pdf(notebook, tmp_path / "out.pdf", tmp_path / "build")
    message = str(failure.value)
    assert "! Undefined control sequence." in message and "report.log" in message
    assert "Traceback" not in message and not (tmp_path / "out.pdf").exists()


@pytest.mark.report
def test_jobs_run_shared_sections_side_by_side_and_exclusive_ones_alone(tmp_path, monkeypatch):
    import datetime as dt

    import yaml

    from lablib.report.build import Options, build

    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    for name in ("q1_conv_layers", "q2_last_linear", "c4_gpu_vs_cpu"):
        _write_notebook(notebooks / f"{name}.ipynb", C4_STANDIN)
    plan = {
        "title": "t",
        "notebooks": "notebooks",
        "profiles": {"quick": {"timeout": "5m"}},
        "parts": [
            {
                "title": "P",
                "sections": [
                    {"notebook": "q1_conv_layers", "sweep": {"workers": [1, 2]}},
                    {"notebook": "q2_last_linear", "params": {"workers": 3}},
                    {"notebook": "c4_gpu_vs_cpu", "params": {"workers": 4}, "exclusive": True},
                ],
            }
        ],
    }
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    lines: list[str] = []
    status = build(
        Options(
            profile="quick", profile_explicit=True, jobs=2, plan=tmp_path / "plan.yaml", output_dir=tmp_path / "out"
        ),
        out=lambda *a, **k: lines.append(" ".join(map(str, a))),
    )
    assert status == 0, "\n".join(lines)
    points = {
        (p["section"], p["label"]): p
        for p in (json.loads(f.read_text()) for f in Path(os.environ["LABLIB_RUNS_DIR"]).glob("*/*/point.json"))
    }
    assert len(points) == 4 and all(p["status"] == "complete" for p in points.values())
    shared = [
        points[("q1_conv_layers", "workers=1")],
        points[("q1_conv_layers", "workers=2")],
        points[("q2_last_linear", "")],
    ]
    alone = points[("c4_gpu_vs_cpu", "")]
    assert all(p["parallel"] and p["jobs"] == 2 for p in shared) and alone["parallel"] is False
    span = lambda p: (dt.datetime.fromisoformat(p["started"]), dt.datetime.fromisoformat(p["ended"]))  # noqa: E731
    (a0, a1), (b0, b1) = span(shared[0]), span(shared[1])
    assert a0 < b1 and b0 < a1  # the two q1 points overlapped
    assert all(span(p)[1] <= span(alone)[0] for p in shared)  # the exclusive section started after them
    assert "(in parallel)" in "\n".join(lines)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--executor", "foo"], "EXECUTOR='foo' is unknown; use local or slurm."),
        (["--data", "/nonexistent/cifar.zip"], "DATA='/nonexistent/cifar.zip' does not exist"),
        (["--profile", "bogus"], "profile 'bogus' is not in"),
        (["--only", "c99"], "ONLY names unknown section(s) c99"),
        (["--jobs", "0"], "JOBS=0 is not allowed"),
    ],
)
def test_bad_report_options_are_one_clear_line(args, message, tmp_path):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "lablib", "report", "--profile", "quick", *args, "--output", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()
