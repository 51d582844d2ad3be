"""Stitching: the report a build writes from its points, on points and measurements written here (no training).

Each test writes what a build leaves in the run store (lablib.report.build's states): measurements
recorded the way the store records them (factories.record_measurement), and sections presented once
(factories.present_point: an executed notebook, its presenting run.json whose `uses` name the
measurements, point.json), then stitches them the way `make report` does (build.stitch, merge) or
calls the appendix's pieces on them. Every other section of the plan is not built.
"""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from conftest import REPO
from factories import E2_RESULTS, epoch_rows, present_point, record_measurement

from lablib.core.config import RunConfig, make_config
from lablib.core.training import training_request
from lablib.report import build
from lablib.report.appendix import KEY_PART_WORDS, KEY_PARTS, changes, glance_rows, manifest, reuse_notes
from lablib.report.latex import add_latex_tables, dataframe_latex, drop_index, drop_index_columns
from lablib.report.plan import load_plan
from lablib.report.resolve import SectionState
from lablib.report.stitch import (
    HOW_TO_NAME,
    INSTALL_PDF_TOOLS,
    SectionReport,
    TitlePage,
    _clean_cell,
    latex_errors,
    provenance_table,
    section_cells,
    student_lines,
    title_cells,
)
from lablib.report.variants import load_variants
from lablib.sections.headlines import Headline, section_headlines
from lablib.sections.registry import Needs
from lablib.sections.setup import differences, settings_table
from lablib.sections.tables import figure_caption

PLAN = load_plan(REPO / "report" / "plan.yaml", "quick")
QUICK = {"data": "cifar10", "device": "cpu", "limit_train": 256, "limit_test": 100, "epochs": 1, "workers": 2}
C1_RESULTS = {"final_accuracy": 12.5, "final_loss": 2.5, "epochs_run": 1}
C2_RESULTS = {"data_s_mean": 0.07, "train_s_mean": 5.1, "epoch_s_mean": 5.2, "epoch_s_spread": 0.1}


def executed(heading: str, config: RunConfig, *more: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """An executed notebook as the sections write them: heading, the settings that differ, a DataFrame with
    its default index, a captioned figure, then `more` cells."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells.append(nbformat.v4.new_markdown_cell(f"{heading}\n\nWhat the section measures."))
    settings = nbformat.v4.new_code_cell("section = setup(globals(), ...)")
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
    caption = figure_caption("Loss per epoch", config, "cpu", "quick").text
    figure = nbformat.v4.new_code_cell("plot()")
    figure.outputs = [nbformat.v4.new_output("display_data", data={"text/markdown": caption, "text/plain": caption})]
    notebook.cells += [settings, frame, figure, *more]
    return notebook


def markdown_output(text: str) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell("display(Markdown(...))")
    cell.outputs = [nbformat.v4.new_output("display_data", data={"text/markdown": text, "text/plain": text})]
    return cell


def nothing_built() -> dict[str, SectionState]:
    return {section.name: SectionState(section, selected=True) for section in PLAN.sections}


def lab_training(**settings):
    """The lab's training at the quick profile's settings, recorded with one epoch (C1 and C2 show it)."""
    request = training_request(make_config(**{**QUICK, **settings}))
    return record_measurement(request, {"train_images": 256, "epoch_s_mean": 2.8}, epoch_rows(1))


def c1_and_c2(epochs: int = 1) -> dict[str, SectionState]:
    """C1 and C2 presenting one training, every other section not built."""
    training = lab_training(epochs=epochs)
    config = make_config(**{**QUICK, "epochs": epochs})
    parameters = {**QUICK, "epochs": epochs, "tag": "quick"}
    states = nothing_built()
    states["c1_training"] = present_point(
        PLAN.section("c1_training"),
        [training],
        C1_RESULTS,
        notebook=executed("# C1 · Training in PyTorch", config),
        parameters=parameters,
    )
    states["c2_timing"] = present_point(
        PLAN.section("c2_timing"),
        [training],
        {**C2_RESULTS, "epoch_s_mean": 5.2 * epochs},
        notebook=executed(
            "# C2 · Time measurement", config, nbformat.v4.new_markdown_cell("## C2.1 Data-loading time\n\nPer epoch.")
        ),
        parameters=parameters,
    )
    return states


def stitch(states, out: Path, monkeypatch, lab: str | None = "2026", student=None, pdf: bool = False):
    """build.stitch as `make report` calls it; without `pdf`, as on a machine without pandoc and xelatex."""
    if not pdf:
        monkeypatch.setattr("lablib.report.stitch.missing_pdf_tools", lambda: ["pandoc", "xelatex"])
    options = build.Options(
        profile="quick", output_dir=out, lab=lab, student=dict(student or {}), command="make report PROFILE=quick"
    )
    lines: list[str] = []
    variant = load_variants(PLAN).get(lab)
    problems = build.stitch(
        PLAN, variant, states, frozenset(states), options, lambda *a, **k: lines.append(" ".join(a))
    )
    return "\n".join(lines), problems


# --- a section's cells ------------------------------------------------------------------------------------


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


def _text(cells) -> str:
    return "\n".join(c.source for c in cells if c.cell_type == "markdown")


def test_a_failed_measurement_shows_its_label_status_error_and_log():
    states = nothing_built()
    c5 = states["c5_optimizers"]
    c5.needs = Needs((training_request(make_config(**QUICK)),))
    c5.status, c5.error = "failed", "training adam lr 0.001, 2 workers, 1 epoch on cpu: timeout"
    c5.failed_measurements = [
        {
            "label": "training adam lr 0.001, 2 workers, 1 epoch on cpu",
            "status": "timeout",
            "error": "the measuring job timed out after 600 s",
            "log": "/runs/jobs/20260101-000000-abc123/papermill.log",
        }
    ]
    reports = {r.name: r for r in build.section_reports(PLAN, states, frozenset({"c5_optimizers"}))}
    text = _text(section_cells(reports["c5_optimizers"], PLAN.section("c5_optimizers").notebook))
    assert text.startswith("# C5 · Optimisers") and "This section failed" in text
    assert "training adam lr 0.001, 2 workers, 1 epoch on cpu" in text and "timeout" in text
    assert "timed out after 600 s" in text and "/runs/jobs/20260101-000000-abc123/papermill.log" in text
    assert "not executed (its measurement failed)" in text


def test_a_failed_notebook_shows_its_error_executed_notebook_and_log(tmp_path):
    states = nothing_built()
    c6 = states["c6_no_batchnorm"]
    c6.status, c6.error = "failed", "ConfigError: optimizer='nonsense' is not allowed"
    c6.record = {"executed": str(tmp_path / "notebook.ipynb"), "log": str(tmp_path / "papermill.log")}
    reports = {r.name: r for r in build.section_reports(PLAN, states, frozenset({"c6_no_batchnorm"}))}
    text = _text(section_cells(reports["c6_no_batchnorm"], None))
    assert "This section failed" in text and "optimizer='nonsense' is not allowed" in text
    assert str(tmp_path / "notebook.ipynb") in text and str(tmp_path / "papermill.log") in text
    # a section this build did not select is not built, not failed: its last failure is no failure of this build
    assert build.failed(c6, frozenset({"c6_no_batchnorm"})) and not build.failed(c6, frozenset({"c1_training"}))
    quiet = {r.name: r for r in build.section_reports(PLAN, states, frozenset({"c1_training"}))}
    assert quiet["c6_no_batchnorm"].status == "not built"
    assert "Not built yet" in _text(section_cells(quiet["c6_no_batchnorm"], None))
    missing = SectionReport("c8_graph", "C8", "Print the model graph", "P", "missing")
    assert "not in this checkout" in section_cells(missing, tmp_path / "none.ipynb")[-1].source


# --- the title page ----------------------------------------------------------------------------------------


def test_provenance_table_lists_differing_values():
    rows = dict(
        provenance_table(
            [{"python": "3.11.7", "torch": "2.13.0", "gpu": None}, {"python": "3.11.7", "torch": "2.13.1", "gpu": None}]
        )
    )
    assert rows["Python"] == "3.11.7" and rows["torch"] == "2.13.0; 2.13.1" and rows["GPU"] == "none (CPU only)"


def test_the_provenance_comes_from_the_presenting_records_and_the_measurements_they_show():
    states = c1_and_c2()
    records = build.provenance_records(states, ["c1_training", "c2_timing", "c3_workers"])
    assert len(records) == 4  # two presenting records, and the training each shows (C3 is not built)
    assert all(record["cpu"] and record["torch"] for record in records)


STUDENT = {"author": 'Zoë O\'Brien & "Co"_1 #2', "student_id": "zo_2026", "course": "HPML 50% ~", "term": "Spring 2026"}


def _page(student) -> TitlePage:
    return TitlePage("t", "quick", "d", False, "", "2026-01-01", None, None, [], student=student, command="make report")


def test_the_student_is_printed_as_typed_in_latex_and_html():
    from nbconvert.filters import escape_latex

    tex, page = student_lines(_page(STUDENT))
    for label, name in (("Author", "author"), ("Student id", "student_id"), ("Course", "course"), ("Term", "term")):
        assert rf"{label}: \textbf{{{escape_latex(STUDENT[name])}}}" in tex
        shown = re.search(rf"{label}: <b>(.*?)</b>", page).group(1)
        assert html.unescape(shown) == STUDENT[name] and "<" not in shown
    # the characters LaTeX reads as commands are escaped; accents and quotes are xelatex's as they are
    assert r"""\textbf{Zoë O'Brien \& "Co"\_1 \#2}""" in tex and r"\textbf{HPML 50\% \textasciitilde{}}" in tex
    assert HOW_TO_NAME not in tex and "Reproduce this build" in page


def test_without_a_student_one_line_says_how_to_set_them():
    tex, page = student_lines(_page({}))
    assert tex.count("AUTHOR, STUDENT\\_ID, COURSE and TERM") == 1 and page.count(html.escape(HOW_TO_NAME)) == 1
    assert "Author:" not in page and "report/student.yaml" in page


# --- tables ------------------------------------------------------------------------------------------------


def test_dataframe_tables_get_a_latex_form():
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


def test_the_default_index_is_dropped_and_a_meaningful_one_kept():
    plain = pd.DataFrame({"a": [1, 2]}).to_html()
    assert "<th>0</th>" in plain and "<th>0</th>" not in drop_index(plain)
    named = pd.DataFrame({"a": [1, 2]}, index=["sgd", "adam"]).to_html()
    assert drop_index(named) == named
    cell = nbformat.v4.new_code_cell("")
    cell.outputs = [nbformat.v4.new_output("display_data", data={"text/html": plain, "text/latex": "old"})]
    notebook = nbformat.v4.new_notebook(cells=[cell])
    assert drop_index_columns(notebook) == 1 and "text/latex" not in cell.outputs[0]["data"]  # made again for the PDF


def test_latex_errors_pick_the_lines_that_matter():
    log = "This is XeTeX\n(./report.tex\n! Undefined control sequence.\nl.42 \\foo\n   \nmore\nmore\n"
    assert latex_errors(log).startswith("! Undefined control sequence.\nl.42 \\foo")
    assert latex_errors("a\nb\nno error marker\n").endswith("no error marker")  # else the log's last lines


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


# --- the stitched report -----------------------------------------------------------------------------------


def test_missing_pdf_tools_give_the_install_command_and_the_html_is_still_written(tmp_path, monkeypatch):
    said, problems = stitch(c1_and_c2(), tmp_path / "out", monkeypatch)
    assert f"PDF skipped: pandoc, xelatex not found. Install them with:\n  {INSTALL_PDF_TOOLS}" in said
    assert INSTALL_PDF_TOOLS.startswith("sudo apt-get install pandoc texlive-xetex")
    assert problems == ["PDF skipped: pandoc, xelatex missing"]
    assert (tmp_path / "out" / "report.html").stat().st_size > 10_000 and not (tmp_path / "out" / "report.pdf").exists()


def test_the_report_shows_each_section_cleaned_numbered_and_beside_published_figures(tmp_path, monkeypatch):
    stitch(c1_and_c2(), tmp_path / "out", monkeypatch, student=STUDENT)
    text = (tmp_path / "out" / "report.html").read_text()
    notebook = nbformat.read(tmp_path / "out" / "build" / "report.ipynb", as_version=4)
    # figures numbered in report order, each section's default index dropped, only its differing settings shown
    assert [int(n) for n in re.findall(r"<strong>Figure (\d+):</strong>", text)] == [1, 2]
    appendix = next(n for n, c in enumerate(notebook.cells) if c.source.startswith("# Appendix: settings"))
    index_cells, settings_rows = 0, []
    for cell in notebook.cells[:appendix]:
        for output in cell.get("outputs", []):
            page = "".join(output.get("data", {}).get("text/html", ""))
            if "<table" not in page or 'class="dataframe"' not in page:
                continue
            index_cells += len(re.findall(r"<tr[^>]*>\s*<th[^>]*>\s*\d+\s*</th>", page.split("<tbody>")[-1]))
            if ">common setup<" in page:
                settings_rows.append(page.split("<tbody>")[-1].count("<tr"))
    differing = len(differences(make_config(**QUICK)))
    assert index_cells == 0 and settings_rows == [differing, differing]
    # C2 under its heading: its answer at a glance, what it shares with C1, the published figures beside its own
    c2 = text[text.index('id="sec-c2-timing-C2"') : text.index('id="sec-c3-workers-C3"')]
    assert "C2's figures come from the same measurement as C1" in c2
    assert "This build beside published figures" in c2 and "not like for like" in c2 and "the quick profile" in c2
    assert "15.77" in c2 and "3.01" in c2  # the 2026 report's epoch 1 beside this build's (epoch_rows(1): 1.2 x 2.5)
    assert "Traceback" not in text and "This section failed" not in text
    # the title page names the student as typed, in the page and its <head>
    assert html.escape(STUDENT["author"]) in text and HOW_TO_NAME not in text
    assert f'<meta name="author" content="{html.escape(STUDENT["author"], quote=True)}">' in text
    assert notebook.metadata["lablib"]["student"] == STUDENT


def test_a_failed_section_is_shown_as_failed_in_the_report(tmp_path, monkeypatch):
    states = c1_and_c2()
    states["c3_workers"].status = "failed"
    states["c3_workers"].failed_measurements = [
        {"label": "training sgd lr 0.1, 0 workers", "status": "failed", "error": "DataError: boom", "log": "/l.log"}
    ]
    said, _ = stitch(states, tmp_path / "out", monkeypatch)
    text = (tmp_path / "out" / "report.html").read_text()
    c3 = text[text.index('id="sec-c3-workers-C3"') : text.index('id="sec-c4-gpu-vs-cpu-C4"')]
    assert "This section failed" in c3 and "DataError: boom" in c3 and "/l.log" in c3
    glance = text[text.index("Answers at a glance") : text.index('<h1 class="lab-part"')]
    assert "failed: see the section" in glance


# --- what changed since the previous build -----------------------------------------------------------------


def _line(part: str, value, spread=None, section: str = "c2_timing") -> Headline:
    return Headline(section, part, f"total {value} s per epoch", value, "s per epoch", True, "r", spread)


def test_a_point_that_re_ran_says_which_part_of_its_key_changed():
    first = present_point(PLAN.section("c2_timing"), parameters={"epochs": 1, "tag": "quick"})
    again = present_point(PLAN.section("c2_timing"), parameters={"epochs": 2, "tag": "quick"})
    found = changes(manifest({"c2_timing": [first]}, {}), manifest({"c2_timing": [again]}, {}))
    assert found["points"] == [("c2_timing", "–", "parameters (epochs: 1 → 2)")]
    for part in KEY_PARTS:
        if part == "parameters":
            continue
        parts = {**first.key_parts, part: f"another {part}"}
        moved = present_point(PLAN.section("c2_timing"), parameters={"epochs": 1, "tag": "quick"}, key_parts=parts)
        (row,) = changes(manifest({"c2_timing": [first]}, {}), manifest({"c2_timing": [moved]}, {}))["points"]
        assert row == ("c2_timing", "–", KEY_PART_WORDS[part]), part
    forced = manifest({"c2_timing": [first]}, {})
    forced["points"][0] = {**forced["points"][0], "ended": "2099-01-01T00:00:00"}  # FORCE=1: the same key again
    assert changes(manifest({"c2_timing": [first]}, {}), forced)["points"] == [
        ("c2_timing", "–", "re-run with the same key (forced)")
    ]
    new = manifest({"c2_timing": [first], "c1_training": [present_point(PLAN.section("c1_training"))]}, {})
    assert changes(manifest({"c2_timing": [first]}, {}), new)["points"] == []  # a new section replaced nothing
    assert changes(None, new) == {"points": [], "headlines": []}  # no previous build: nothing changed


@pytest.mark.parametrize(
    "old, new, moved",
    [
        (_line("C2.3", 5.0), _line("C2.3", 5.2, spread=0.3), False),  # within its spread
        (_line("C2.3", 5.0), _line("C2.3", 5.5, spread=0.3), True),  # beyond it
        (_line("C2.3", 5.0), _line("C2.3", 5.01), True),  # no spread recorded: any change
        (_line("C2.3", 5.0), _line("C2.3", 5.0), False),
        (_line("C3.2", "4"), _line("C3.2", "8"), True),  # not a number: any change
    ],
)
def test_a_headline_moved_only_by_more_than_its_spread(old, new, moved):
    found = changes(manifest({}, {"c2_timing": [old]}), manifest({}, {"c2_timing": [new]}))
    assert found["headlines"] == ([("c2_timing", new.part, old.text, new.text)] if moved else [])


def test_the_change_appendix_compares_with_the_previous_build(tmp_path, monkeypatch):
    first = c1_and_c2(epochs=1)
    stitch(first, tmp_path / "out", monkeypatch)
    again = c1_and_c2(epochs=2)
    again["c1_training"] = first["c1_training"]
    stitch(again, tmp_path / "out", monkeypatch)
    assert (tmp_path / "out" / "build" / "previous.ipynb").is_file()  # the build it compares with
    text = (tmp_path / "out" / "report.html").read_text()
    appendix = text[text.index("what changed since the previous build") :]
    points = appendix.split("Answers whose")[0]
    assert "C2" in points and "epochs: 1 → 2" in points and "measurements" in points and "C1" not in points
    assert "C2.3" in appendix.split("Answers whose")[1]  # 5.2 s → 10.4 s per epoch: beyond its spread


# --- measured once, shown by several sections --------------------------------------------------------------


def _frames(states) -> dict[str, pd.DataFrame]:
    return {name: frame for name, state in states.items() if not (frame := build.record_frame(state)).empty}


def test_reuse_notes_name_the_sections_that_show_the_same_measurement_in_the_variants_numbering():
    states = c1_and_c2()
    training = states["c1_training"].record and build.record_frame(states["c1_training"]).iloc[0]["uses"][0]
    notes = reuse_notes(load_variants(PLAN).get("2026"), _frames(states))
    assert notes["c2_timing"] == (
        f"**Measured once:** C2's figures come from the same measurement as C1 ({training['label']}; run "
        f"`{training['run_id']}`)."
    )
    assert notes["c1_training"].startswith("**Measured once:** C1's figures come from the same measurement as C2 (")
    # P-2025-C4 shows C3's training with 1 worker: in 2025 it is C4 and shares with C3; 2026 does not show it
    one_worker = lab_training(workers=1)
    states["c3_workers"] = present_point(PLAN.section("c3_workers"), [one_worker])
    states["p25_worker_profile"] = present_point(PLAN.section("p25_worker_profile"), [one_worker])
    lab_2025 = reuse_notes(load_variants(PLAN).get("2025"), _frames(states))
    assert lab_2025["p25_worker_profile"].startswith(
        "**Measured once:** C4's figures come from the same measurement as C3"
    )
    assert "c3_workers" not in reuse_notes(load_variants(PLAN).get("2026"), _frames(states))


def test_a_reuse_note_names_three_shared_measurements_and_counts_the_rest():
    shared = [lab_training(workers=workers) for workers in range(5)]
    states = nothing_built()
    states["c3_workers"] = present_point(PLAN.section("c3_workers"), shared)
    states["c5_optimizers"] = present_point(PLAN.section("c5_optimizers"), shared)
    note = reuse_notes(load_variants(PLAN).get("2026"), _frames(states))["c5_optimizers"]
    assert note.count("the same measurement as C3") == 3 and "and 2 more shared measurement(s)" in note


# --- the answers at a glance ----------------------------------------------------------------------------


def test_each_of_the_eml_lab_3_questions_shows_one_of_e2s_answers():
    states = nothing_built()
    states["e2_efficient_blocks"] = present_point(PLAN.section("e2_efficient_blocks"), results=E2_RESULTS)
    lines = {name: section_headlines(name, build.record_frame(state)) for name, state in states.items()}
    statuses = {name: "complete" if name == "e2_efficient_blocks" else "not built" for name in states}
    rows = {row.number: row for row in glance_rows(load_variants(PLAN).get("eml"), lines, statuses)}
    e2 = {line.part: line.text for line in lines["e2_efficient_blocks"]}
    assert list(rows) == ["Lab 2 Q1", "Lab 2 Q2", "Lab 3 Q1", "Lab 3 Q2", "Lab 3 Q3"]
    assert [rows[f"Lab 3 Q{n}"].text for n in (1, 2, 3)] == [e2["E2.1"], e2["E2.2"], e2["E2.3"]]
    assert "17 blocks" in rows["Lab 3 Q1"].text and "60.0 M MACs" in rows["Lab 3 Q2"].text
    assert "0.80×" in rows["Lab 3 Q3"].text and all(rows[f"Lab 3 Q{n}"].complete for n in (1, 2, 3))
    assert rows["Lab 2 Q1"].text == "not built: see the section" and not rows["Lab 2 Q1"].complete
    assert [rows[f"Lab 3 Q{n}"].anchor for n in (1, 2, 3)] == [f"sec-e2-efficient-blocks-Lab-3-Q{n}" for n in (1, 2, 3)]


def test_a_notebook_answering_several_questions_counts_its_measurements_and_time_once_on_the_title_page():
    e2 = SectionReport("e2_efficient_blocks", "E2", "Efficient blocks", "", "complete", points=44, duration_s=39.0)
    e1 = SectionReport("e1_hparam_sweep", "E1", "MNIST", "", "complete", points=8, duration_s=20.0)
    cells = title_cells(_page({}), [e1, e2], load_variants(PLAN).get("eml"))
    tex = next(cell.source for cell in cells if cell.cell_type == "raw")
    rows = re.findall(r"^(Lab \d Q\d) · [^&]* & complete & ([^&]*) & ([^&]*) \\\\$", tex, re.M)
    assert rows == [
        ("Lab 2 Q1", "8", "20 s"),
        ("Lab 3 Q1", "44", "39 s"),
        ("Lab 3 Q2", "with Lab 3 Q1", "–"),
        ("Lab 3 Q3", "with Lab 3 Q1", "–"),
    ]
    assert r"\textbf{Total} & & & 59 s" in tex


def test_glance_rows_renumber_and_say_what_is_missing():
    lines = {
        "c4_gpu_vs_cpu": [Headline("c4_gpu_vs_cpu", "C4", "GPU 40.0× faster", 40.0, "×")],
        "e1_hparam_sweep": [Headline("e1_hparam_sweep", "E1", "SmallCNN: best adam", 98.0, "%")],
        "e1_cifar10": [Headline("e1_cifar10", "E1", "ResNet: best sgd", 90.0, "%")],
    }
    rows = {row.number: row for row in glance_rows(load_variants(PLAN).get("2025"), lines)}
    assert rows["C5"].text == "GPU 40.0× faster" and "C4" in rows  # 2026's C4 is 2025's C5
    assert rows["C1"].text == "no answer recorded yet" and not rows["C1"].complete
    every = [row for row in glance_rows(load_variants(PLAN).get("all"), lines) if row.number == "E1"]
    assert [row.text for row in every] == ["SmallCNN: best adam"]  # E1 on two data sets: one row, the first's
