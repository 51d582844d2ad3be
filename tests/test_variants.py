"""Lab variants: each variant's stitching from one small store of recorded points, without re-training.

The store holds fake executed notebooks and run records of three sections (C1, C2 and Q1: a heading,
a settings table of the section's differing rows, a DataFrame with its default index, a captioned
figure, and the results the headlines and context tables read); every other section of the variant
shows as not built. One store serves every test of the module.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from lablib.core.config import RunConfig
from lablib.report.appendix import changes, manifest
from lablib.report.build import Options, stitch
from lablib.report.plan import load_plan
from lablib.report.resolve import PointState
from lablib.report.stitch import drop_index
from lablib.report.variants import VariantError, load_variants
from lablib.sections.setup import differences, settings_table
from lablib.sections.tables import figure_caption

PLAN = load_plan(Path(__file__).resolve().parents[1] / "report" / "plan.yaml", "quick")
QUICK = {"limit_train": 256, "limit_test": 100, "epochs": 1}
RESULTS = {
    "c1_training": {"epochs_run": 1, "final_accuracy": 12.5, "final_loss": 2.5, "epoch_s_mean": 5.0},
    "c2_timing": {"epochs_run": 1, "data_s_mean": 0.07, "train_s_mean": 5.1, "epoch_s_mean": 5.2},
    "q1_conv_layers": {"conv_layers_total": 20, "conv_layers_shortcut": 3},
}


def _notebook(section: str, heading: str, config: RunConfig) -> nbformat.NotebookNode:
    """An executed notebook as the notebooks write them: heading, settings, a raw DataFrame, a figure."""
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell(f"{heading}\n\nWhat the section measures."))
    settings = nbformat.v4.new_code_cell("config, data, device = setup(globals())")
    table = settings_table(differences(config))
    settings.outputs = [
        nbformat.v4.new_output(
            "display_data", data={"text/markdown": "Settings that differ from the lab's common setup:"}
        ),
        nbformat.v4.new_output("display_data", data={"text/html": table.to_html(), "text/plain": repr(table)}),
    ]
    raw = pd.DataFrame({"epoch": [1, 2], "loss": [2.5, 2.1]})
    frame = nbformat.v4.new_code_cell("frame")
    frame.outputs = [
        nbformat.v4.new_output(
            "execute_result", data={"text/html": raw.to_html(), "text/plain": raw.to_string()}, execution_count=1
        )
    ]
    caption = figure_caption("Loss per epoch", config, "cpu", "quick")
    figure = nbformat.v4.new_code_cell("plot()")
    figure.outputs = [
        nbformat.v4.new_output(
            "display_data", data={"text/markdown": caption.text, "text/plain": caption.text}, metadata={}
        )
    ]
    nb.cells += [settings, frame, figure]
    if section == "c2_timing":
        nb.cells.append(nbformat.v4.new_markdown_cell("## C2.1 Data-loading time\n\nPer epoch."))
    return nb


def _record(root: Path, section: str, run: str, parameters: dict, ended: str) -> PointState:
    spec = next(s for s in PLAN.sections if s.name == section)
    folder = root / section / run
    folder.mkdir(parents=True)
    config = RunConfig(**{k: v for k, v in parameters.items() if k in RunConfig.__dataclass_fields__})
    nbformat.write(_notebook(section, f"# {spec.id} · {spec.title}", config), folder / "notebook.ipynb")
    settings = {k: getattr(config, k) for k in RunConfig.__dataclass_fields__}
    meta = {
        "run_id": run,
        "section": section,
        "status": "complete",
        "tag": "quick",
        "sweep": [],
        "settings": settings,
        "params": {"tag": "quick"},
        "data": {"train_images": parameters.get("limit_train", 256), "test_images": 100},
        "group": "g",
        "provenance": {"cpu": "test CPU", "python": "3", "torch": "2"},
        "started": ended,
        "ended": ended,
        "duration_s": 1.0,
    }
    (folder / "run.json").write_text(json.dumps(meta))
    (folder / "results.json").write_text(json.dumps(RESULTS[section]))
    key = f"{section}-{run}"
    parts = {"notebook": "nb1", "parameters": parameters, "lablib": "l1", "data": "d1", "environment": "e1"}
    record = {
        "key": key,
        "status": "complete",
        "folder": str(folder),
        "executed": str(folder / "notebook.ipynb"),
        "ended": ended,
        "duration_s": 1.0,
        "parameters": parameters,
        "key_parts": {**parts, "device": "cpu"},
    }
    (folder / "point.json").write_text(json.dumps(record))
    return PointState(spec, "", parameters, key, "complete", record)


def _states(root: Path, c2_epochs: int = 1, run: str = "r1") -> dict[str, list[PointState]]:
    states = {s.name: [] for s in PLAN.sections}
    for section in RESULTS:
        parameters = {**QUICK, "workers": 2, "tag": "quick"}
        if section == "c2_timing":
            parameters["epochs"] = c2_epochs
        states[section] = [_record(root, section, f"{run}-{section}", parameters, f"2026-01-0{len(run)}T00:00:00")]
    return states


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    return root, _states(root)


def _build(store, tmp_path, monkeypatch, lab: str, pdf: bool = False, states=None) -> tuple[Path, list[str]]:
    root, recorded = store
    monkeypatch.setenv("LABLIB_RUNS_DIR", str(root))
    if not pdf:
        monkeypatch.setattr("lablib.report.build.missing_pdf_tools", lambda: ["xelatex"])
    options = Options(profile="quick", output_dir=tmp_path / lab, lab=lab)
    lines: list[str] = []
    stitch(PLAN, states or recorded, frozenset(), options, lambda *a, **k: lines.append(" ".join(map(str, a))))
    return tmp_path / lab, lines


def _html_text(path: Path) -> str:
    return path.read_text()


def _headings(html_text: str) -> list[str]:
    return [re.sub(r"<[^>]+>|¶", "", h).strip() for h in re.findall(r"<h1[^>]*>(.*?)</h1>", html_text, re.S)]


@pytest.mark.parametrize("lab", ["2026", "2025", "2024", "eml", "all"])
def test_each_variant_stitches_its_sections_in_its_numbering(store, tmp_path, monkeypatch, lab):
    out, _ = _build(store, tmp_path, monkeypatch, lab)
    variant = load_variants(PLAN).get(lab)
    text = _html_text(out / "report.html")
    headings = [h for h in _headings(text) if "·" in h]
    assert headings == [f"{e.number} · {e.title}" for e in variant.entries]
    assert f"Lab variant <b>{lab}</b>" in text
    questions = re.findall(r"Question \((\S+) (\S+?)[,)]", text)
    assert [n for _, n in questions] == [e.number for e in variant.entries if e.question]
    # answers at a glance: one row per question, numbered, linked to its section
    glance = text[text.index("Answers at a glance") : text.index('<h1 class="lab-part"')]
    first = {}
    for entry in variant.entries:
        first.setdefault(entry.question_id, entry)  # E1 on two data sets: one row, linked to the first
        assert f'id="{entry.anchor}"' in text
    assert all(f'href="#{entry.anchor}"' in glance for entry in first.values())


def test_the_2025_variant_renumbers_sections_headlines_and_sub_headings(store, tmp_path, monkeypatch):
    out, _ = _build(store, tmp_path, monkeypatch, "2025")
    text = _html_text(out / "report.html")
    glance = text[text.index("Answers at a glance") : text.index('<h1 class="lab-part"')]
    rows = re.findall(r'<tr><td><a href="#([^"]+)">([^<]+)</a></td><td>([^<]+)</td><td>([^<]+)</td>', glance)
    numbers = [r[1] for r in rows]
    assert numbers[:5] == ["C1", "C2.1", "C2.2", "C2.3", "C3"]  # C3 is not built: one row that says so
    assert "C5" in numbers and "C6" in numbers and "P-2025-C4" not in numbers  # the 2026 C4/C5 renumbered
    answers = dict(zip(numbers, (r[3] for r in rows)))
    assert "12.50 %" in answers["C1"] and "0.07 s" in answers["C2.1"]  # figures from the records
    assert answers["C3"].startswith("not built")
    assert re.search(r"<h2[^>]*>C2\.1 Data-loading", text)


def test_no_index_column_and_only_the_differing_settings_inside_a_section(store, tmp_path, monkeypatch):
    out, _ = _build(store, tmp_path, monkeypatch, "2026")
    notebook = nbformat.read(out / "build" / "report.ipynb", as_version=4)
    index_cells, settings_rows = 0, []
    appendix = next(n for n, c in enumerate(notebook.cells) if c.source.startswith("# Appendix: settings"))
    for cell in notebook.cells[:appendix]:
        for output in cell.get("outputs", []):
            html_text = "".join(output.get("data", {}).get("text/html", ""))
            if "<table" not in html_text:
                continue
            index_cells += len(re.findall(r"<tr[^>]*>\s*<th[^>]*>\s*\d+\s*</th>", html_text.split("<tbody>")[-1]))
            if ">common setup<" in html_text:
                settings_rows.append(html_text.split("<tbody>")[-1].count("<tr"))
    differing = len(differences(RunConfig(limit_train=256, limit_test=100, epochs=1)))
    assert index_cells == 0
    assert settings_rows and all(rows == differing for rows in settings_rows)
    assert differing < len(RunConfig.__dataclass_fields__) - 3
    # the appendix lists the common setup once, the sections' differences beside it
    assert any(
        "limit_train" in "".join(o.get("data", {}).get("text/html", "")) for o in notebook.cells[appendix + 1].outputs
    )


def test_figures_are_numbered_and_the_context_table_sits_under_its_section(store, tmp_path, monkeypatch):
    out, _ = _build(store, tmp_path, monkeypatch, "2026")
    text = _html_text(out / "report.html")
    numbers = [int(n) for n in re.findall(r"<strong>Figure (\d+):</strong>", text)]
    assert numbers == list(range(1, len(RESULTS) + 1))
    c2 = text[text.index('id="sec-c2-timing-C2"') : text.index('id="sec-c3-workers-C3"')]
    assert "This build beside published figures" in c2 and "Not like for like" in c2
    assert re.search(r"5\.20", c2)  # this build's epoch time beside the published ones


def test_drop_index_keeps_a_meaningful_index():
    plain = pd.DataFrame({"a": [1, 2]}).to_html()
    assert "<th>0</th>" in plain and "<th>0</th>" not in drop_index(plain)
    named = pd.DataFrame({"a": [1, 2]}, index=["sgd", "adam"]).to_html()
    assert drop_index(named) == named


def test_the_change_appendix_lists_a_point_whose_parameter_changed(store, tmp_path, monkeypatch):
    root, first = store
    out, _ = _build(store, tmp_path, monkeypatch, "2026")
    again = _states(root, c2_epochs=2, run="r22")
    again["c1_training"], again["q1_conv_layers"] = first["c1_training"], first["q1_conv_layers"]
    out, _ = _build(store, tmp_path, monkeypatch, "2026", states=again)
    assert (out / "build" / "previous.ipynb").is_file()
    text = _html_text(out / "report.html")
    appendix = text[text.index("what changed since the previous build") :]
    assert "C2" in appendix and "epochs: 1 → 2" in appendix and "C1" not in appendix.split("Answers whose")[0]
    found = changes(manifest(first, {}), manifest(again, {}))
    assert [(s, why) for s, _, why in found["points"]] == [("c2_timing", "parameters (epochs: 1 → 2)")]
    forced = manifest(first, {})
    forced["points"][0] = {**forced["points"][0], "ended": "2026-02-01T00:00:00"}  # FORCE=1: same key, new run
    assert [why for _, _, why in changes(manifest(first, {}), forced)["points"]] == [
        "re-run with the same key (forced)"
    ]


def test_unknown_variants_and_sections_are_clear_errors(tmp_path):
    variants = load_variants(PLAN)
    with pytest.raises(VariantError, match=r"LAB='2023'.*2026, 2025, 2024, eml, all"):
        variants.get("2023")
    bad = tmp_path / "variants.yaml"
    bad.write_text(
        "variants:\n  all: {from_plan: true}\n  x:\n    parts:\n      - title: S\n        entries:\n"
        "          - {number: C1, section: c99}\n"
    )
    with pytest.raises(VariantError, match=r"section 'c99' is not in the plan.*c1_training"):
        load_variants(PLAN, bad).get("x")
    assert load_variants(PLAN, bad).get(None).name == "all"  # a plan the default does not fit: the plan itself


def test_lab_2023_on_the_command_line_is_one_clear_line(tmp_path):
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "lablib", "report", "--profile", "quick", "--lab", "2023", "--output", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and "2026, 2025, 2024, eml, all" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.skipif(shutil.which("xelatex") is None or shutil.which("pdftotext") is None, reason="no xelatex")
def test_the_2025_pdf_has_its_headings_in_order_and_the_glance_rows(store, tmp_path, monkeypatch):
    out, lines = _build(store, tmp_path, monkeypatch, "2025", pdf=True)
    assert (out / "report.pdf").is_file(), lines
    text = subprocess.run(["pdftotext", str(out / "report.pdf"), "-"], capture_output=True, text=True).stdout
    variant = load_variants(PLAN).get("2025")
    start = text.find("Answers at a glance", text.find("Answers at a glance") + 1)  # after the contents
    positions = [text.find(f"{e.number} · {e.title}", start) for e in variant.entries]
    assert start > 0 and all(p > 0 for p in positions) and positions == sorted(positions)
    glance = text[start : positions[0]]
    assert "C2.1" in glance and "0.07 s" in glance and "20 convolutional layers" in glance and "(p. 3)" in glance
