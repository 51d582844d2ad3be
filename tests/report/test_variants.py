"""Lab variants: each variant stitches the same points in its own numbering, order and questions (no training).

The run store holds C1, C2, C5, Q1 and E2 presented once (factories.present_point: an executed notebook
with its headings, answers and sub-headings, its presenting record and point.json); every other section
of the plan is not built. Each variant is stitched from the same store, as `make report LAB=...` does.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import nbformat
import pytest
from conftest import REPO
from factories import E2_RESULTS, epoch_rows, present_point, record_measurement

from lablib.core.config import make_config
from lablib.core.training import training_request
from lablib.report import build
from lablib.report.plan import load_plan
from lablib.report.resolve import SectionState
from lablib.report.variants import VariantError, load_variants

PLAN = load_plan(REPO / "report" / "plan.yaml", "quick")
QUICK = {"data": "cifar10", "device": "cpu", "limit_train": 256, "limit_test": 100, "epochs": 1, "workers": 2}
E2_QUESTIONS = (
    "Question 1: the inverted-residual block",
    "Question 2: MobileNetV2 within a MAC budget",
    "Question 3: why fewer MACs need not be faster",
)
RESULTS = {
    "c1_training": {"final_accuracy": 12.5, "final_loss": 2.5, "epochs_run": 1},
    "c2_timing": {"data_s_mean": 0.07, "train_s_mean": 5.1, "epoch_s_mean": 5.2},
    "c5_optimizers": {
        "optimizer_points": [
            {"optimizer": "sgd", "final_accuracy": 40.0, "epochs_run": 1},
            {"optimizer": "adam", "final_accuracy": 30.0, "epochs_run": 1},
        ]
    },
    "q1_conv_layers": {"conv_layers_total": 20, "conv_layers_shortcut": 3},
    "e2_efficient_blocks": E2_RESULTS,
}


def markdown(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_markdown_cell(text)


def answer(text: str) -> nbformat.NotebookNode:
    """A code cell whose output is one Markdown answer, as the notebooks display their sentences."""
    cell = nbformat.v4.new_code_cell("display(Markdown(...))")
    cell.outputs = [nbformat.v4.new_output("display_data", data={"text/markdown": text, "text/plain": text})]
    return cell


NOTEBOOKS = {
    "c1_training": [markdown("# C1 · Training in PyTorch\n\nOne training."), answer("**C1:** loss 2.500.")],
    "c2_timing": [
        markdown("# C2 · Time measurement\n\nThe same training, timed."),
        markdown("## C2.1 Data-loading time\n\nPer epoch."),
        answer("**C2.1:** 0.07 s per epoch."),
    ],
    "c5_optimizers": [
        markdown("# C5 · Optimisers\n\nFive optimisers with C3.2's best worker count."),
        markdown("## C5.1 Per-epoch times\n\nAs C4's CPU run measures them."),
        answer("**C5:** sgd is the most accurate; C4 trained on the CPU too."),
    ],
    "q1_conv_layers": [markdown("# Q1 · Convolutional layers"), answer("**Q1:** 20 convolutional layers.")],
    "e2_efficient_blocks": [
        markdown("# E2 · Efficient blocks\n\nMobileNetV2 against ResNet-18."),
        markdown(f"## {E2_QUESTIONS[0]}\nThe block as MobileNetV2 builds it."),
        answer("First answer: expand, depthwise, project."),
        markdown(f"## {E2_QUESTIONS[1]}\nA search over the width multiplier."),
        answer("Second answer: the width within the budget."),
        markdown(f"## {E2_QUESTIONS[2]}\nThe compared network against ResNet-18."),
        markdown("### Memory-bound depthwise convolutions\nEach convolution alone."),
        answer("Third answer: memory-bound, not MAC-bound."),
    ],
}


@pytest.fixture
def states() -> dict[str, SectionState]:
    training = record_measurement(training_request(make_config(**QUICK)), {"train_images": 256}, epoch_rows(1))
    found = {section.name: SectionState(section, selected=True) for section in PLAN.sections}
    for name, cells in NOTEBOOKS.items():
        notebook = nbformat.v4.new_notebook(cells=cells)
        shown = [training] if name in ("c1_training", "c2_timing") else []
        found[name] = present_point(PLAN.section(name), shown, RESULTS[name], notebook=notebook)
    return found


def stitched(states, tmp_path, monkeypatch, lab: str, pdf: bool = False, student=None) -> str:
    """The report's HTML for `lab`, stitched as `make report LAB=...` does (without PDF tools unless `pdf`)."""
    if not pdf:
        monkeypatch.setattr("lablib.report.stitch.missing_pdf_tools", lambda: ["pandoc", "xelatex"])
    options = build.Options(profile="quick", output_dir=tmp_path / lab, lab=lab, student=dict(student or {}))
    problems = build.stitch(PLAN, load_variants(PLAN).get(lab), states, frozenset(states), options, lambda *a: None)
    assert problems == ([] if pdf else ["PDF skipped: pandoc, xelatex missing"])
    return (tmp_path / lab / "report.html").read_text()


def headings(page: str, level: int = 1) -> list[str]:
    found = re.findall(rf"<h{level}[^>]*>(.*?)</h{level}>", page, re.S)
    return [re.sub(r"<[^>]+>|¶", "", h).strip() for h in found]


def glance(page: str) -> str:
    return page[page.index("Answers at a glance") : page.index('<h1 class="lab-part"')]


def between(page: str, start: str, end: str | None) -> str:
    """The HTML from one entry's anchor to the next's."""
    first = page.index(f'id="{start}"')
    return page[first : page.index(f'id="{end}"') if end else len(page)]


@pytest.mark.parametrize("lab", ["2026", "2025", "2024", "eml", "all"])
def test_each_variant_stitches_its_sections_in_its_numbering_and_order(states, tmp_path, monkeypatch, lab):
    page = stitched(states, tmp_path, monkeypatch, lab)
    variant = load_variants(PLAN).get(lab)
    assert [h for h in headings(page) if "·" in h] == [f"{e.number} · {e.title}" for e in variant.entries]
    assert f"Lab variant <b>{lab}</b>" in page
    questions = re.findall(r"Question \((\S+) ([^,)]+)[,)]", page)
    assert [number for _, number in questions] == [e.number for e in variant.entries if e.question]
    first = {}
    for entry in variant.entries:
        first.setdefault(entry.question_id, entry)  # E1 on two data sets (all): one row, linked to the first
        assert f'id="{entry.anchor}"' in page
    assert all(f'href="#{entry.anchor}"' in glance(page) for entry in first.values())
    for section in PLAN.sections:  # the variant's sections only
        if section.name not in variant.sections:
            assert f'id="sec-{section.name.replace("_", "-")}-' not in page, section.name


def test_the_2025_variant_renumbers_headings_headlines_and_sub_headings(states, tmp_path, monkeypatch):
    page = stitched(states, tmp_path, monkeypatch, "2025")
    rows = re.findall(r'<tr><td><a href="#([^"]+)">([^<]+)</a></td><td>([^<]+)</td><td>([^<]+)</td>', glance(page))
    numbers = [number for _, number, _, _ in rows]
    assert numbers[:5] == ["C1", "C2.1", "C2.2", "C2.3", "C3"] and "P-2025-C4" not in numbers
    answers = dict(zip(numbers, (text for *_, text in rows)))
    assert "12.50 %" in answers["C1"] and "0.07 s" in answers["C2.1"]  # the figures from the records
    assert answers["C3"] == answers["C4"] == "not built: see the section"  # 2025's C4: the profiling section
    assert "sgd, 40.00 %" in answers["C6"]  # 2026's C5 is 2025's C6
    c6 = between(page, "sec-c5-optimizers-C6", "sec-c6-no-batchnorm-C7")
    assert "C6.1 Per-epoch times" in headings(c6, 2) and "C5.1" not in c6  # its own sub-headings
    assert "<strong>C6:</strong> sgd is the most accurate; C5 trained on the CPU too" in c6  # and the sections named
    assert "As C5's CPU run measures them" in c6 and "C3.2's best worker count" in c6
    assert "C2.1 Data-loading time" in headings(between(page, "sec-c2-timing-C2", "sec-c3-workers-C3"), 2)


def test_the_eml_variant_slices_e2s_notebook_into_its_three_questions(states, tmp_path, monkeypatch):
    page = stitched(states, tmp_path, monkeypatch, "eml")
    assert [h for h in headings(page) if "·" in h] == [
        "Lab 2 Q1 · MNIST, small CNN",
        "Lab 2 Q2 · CIFAR-10, ResNet-18",
        "Lab 3 Q1 · The inverted-residual block",
        "Lab 3 Q2 · A MAC budget",
        "Lab 3 Q3 · Why fewer MACs need not be faster",
    ]
    anchors = [f"sec-e2-efficient-blocks-Lab-3-Q{n}" for n in (1, 2, 3)]
    parts = [between(page, anchor, end) for anchor, end in zip(anchors, [*anchors[1:], "lab-settings"])]
    answers = ("First answer", "Second answer", "Third answer")
    for number, part in enumerate(parts):
        assert [answer in part for answer in answers] == [n == number for n in range(3)], number
    assert "MobileNetV2 against ResNet-18" in parts[0] and "search over the width multiplier" in parts[1]
    assert "Memory-bound depthwise convolutions" in headings(parts[2], 3)
    assert not any(question in headings(page, 2) for question in E2_QUESTIONS[1:])  # each became its entry's heading
    rows = re.findall(r'<a href="#([^"]+)">(Lab 3 Q\d)</a></td><td>[^<]*</td><td>([^<]+)</td>', glance(page))
    assert [(anchor, number) for anchor, number, _ in rows] == list(zip(anchors, ["Lab 3 Q1", "Lab 3 Q2", "Lab 3 Q3"]))
    texts = [text for *_, text in rows]
    assert "17 blocks" in texts[0] and "60.0 M MACs" in texts[1] and "0.80×" in texts[2]  # E2.1, E2.2, E2.3


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
    done = subprocess.run(
        [sys.executable, "-m", "lablib", "report", "--profile", "quick", "--lab", "2023", "--output", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "LAB='2023'" in line and "2026, 2025, 2024, eml, all" in line and not list(tmp_path.iterdir())


@pytest.mark.report
def test_the_2025_pdf_has_its_headings_in_order_the_glance_rows_and_the_student_as_typed(states, tmp_path, monkeypatch):
    if shutil.which("xelatex") is None or shutil.which("pandoc") is None or shutil.which("pdftotext") is None:
        pytest.skip("pandoc, xelatex or pdftotext missing (make test-deps installs them)")
    student = {"author": "Zoë O'Brien & Co_1", "student_id": "zo#2026", "course": "HPML 100%", "term": "Spring 2026"}
    stitched(states, tmp_path, monkeypatch, "2025", pdf=True, student=student)
    text = subprocess.run(
        ["pdftotext", str(tmp_path / "2025" / "report.pdf"), "-"], capture_output=True, text=True, check=True
    ).stdout
    flat = re.sub(r"\s+", " ", text).replace("\u2019", "'")
    title = flat[: flat.index("Answers at a glance")]
    assert all(value in title for value in student.values()), title
    variant = load_variants(PLAN).get("2025")
    start = text.find("Answers at a glance", text.find("Answers at a glance") + 1)  # after the contents
    positions = [text.find(f"{e.number} · {e.title}", start) for e in variant.entries]
    assert start > 0 and all(p > 0 for p in positions) and positions == sorted(positions)
    rows = text[start : positions[0]]
    assert "C2.1" in rows and "0.07 s" in rows and "20 convolutional layers" in rows and "(p. " in rows
