"""Stitch the executed notebooks into one report: report.html and report.pdf.

`merge` builds one notebook: a title page (lab title, profile, date, git state,
a provenance table from the run records, each section's time), a table of
contents, then each section's executed notebook in plan order, cleaned for
reading: parameters cells, `remove-cell` cells, papermill's error banners,
stderr streams (progress bars) and error outputs dropped, code inputs hidden
unless tagged `show-code`. A failed section shows what failed instead; a
missing notebook says so. `export_html` and `export_pdf` render it with
nbconvert (the PDF through pandoc and xelatex, run here so that a LaTeX error
is reported as the lines of the log that matter).
"""

from __future__ import annotations

import copy
import html
import re
import shutil
import subprocess
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from lablib.core.progress import counted
from lablib.report.latex import add_latex_tables, dataframe_latex, drop_index_columns  # noqa: F401
from lablib.report.variants import Entry, Variant

DROPPED_TAGS = {"parameters", "injected-parameters", "remove-cell", "papermill-error-cell-tag"}
PDF_TOOLS = ("pandoc", "xelatex")
PDF_PACKAGES = "pandoc texlive-xetex texlive-fonts-recommended texlive-plain-generic"
INSTALL_PDF_TOOLS = f"sudo apt-get install {PDF_PACKAGES}"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
PROVENANCE_ROWS = (  # (label, keys in a run's provenance joined by ", ")
    ("GPU", ("gpu",)),
    ("NVIDIA driver", ("driver_version",)),
    ("CPU", ("cpu",)),
    ("Python", ("python",)),
    ("torch", ("torch",)),
    ("torchvision", ("torchvision",)),
    ("CUDA (torch build)", ("cuda",)),
    ("cuDNN", ("cudnn",)),
    ("host", ("host",)),
)


@dataclass
class SectionReport:
    """What the report shows for one section."""

    name: str
    id: str
    title: str
    part: str
    status: str  # complete | failed | missing | not built
    notebook: Path | None = None  # the executed notebook shown (complete sections)
    failures: list[dict[str, Any]] = field(default_factory=list)  # {label, status, error, executed, log}
    points: int = 0  # the measurements it shows
    duration_s: float = 0.0  # measuring what it asked for first, and executing its notebook
    parallel: int = 0  # points that ran beside others (JOBS > 1)
    notebook_name: str = ""  # the section's notebook file (default: <name>.ipynb)
    retitle: bool = False  # the notebook serves several sections: its first heading becomes the plan's

    @property
    def heading(self) -> str:
        return f"# {self.id} · {self.title}"


@dataclass
class TitlePage:
    title: str
    profile: str
    description: str
    lab_settings: bool
    banner: str
    date: str
    git_commit: str | None
    git_dirty: bool | None
    provenance: list[dict[str, Any]]  # run records' provenance dicts
    variant: str = ""  # the lab variant's name ("2025"), shown on the title page
    variant_title: str = ""  # its title ("HPML Lab 2 (2025): ...")
    student: dict[str, str] = field(default_factory=dict)  # author, student_id, course, term (as typed)
    command: str = ""  # the command that reproduces this build


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def provenance_table(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(label, value) rows; a value that differs between records lists each one."""
    rows = []
    for label, keys in PROVENANCE_ROWS:
        values = []
        for record in records:
            value = ", ".join(str(record[k]) for k in keys if record.get(k) not in (None, ""))
            if value and value not in values:
                values.append(value)
        if label == "GPU" and not values:
            values = ["none (CPU only)"]
        rows.append((label, "; ".join(values) if values else "–"))
    return rows


# --- cells ------------------------------------------------------------------------------


def _raw(text: str, mimetype: str) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_raw_cell(text)
    cell.metadata["raw_mimetype"] = mimetype
    cell.metadata["format"] = mimetype
    return cell


def _html(text: str) -> nbformat.NotebookNode:
    """HTML-only content: a display output (raw cells are sanitised by nbconvert, outputs are not;
    the LaTeX export has no text/html in its display priority, so the PDF leaves it out)."""
    cell = nbformat.v4.new_code_cell("")
    cell.outputs = [nbformat.v4.new_output("display_data", data={"text/html": text})]
    cell.metadata["transient"] = {"remove_source": True}
    cell.metadata["tags"] = ["html-only"]
    return cell


def _tex(text: Any) -> str:
    from nbconvert.filters import escape_latex

    return escape_latex(str(text))


def title_cells(
    page: TitlePage, sections: list[SectionReport], variant: Variant | None = None
) -> list[nbformat.NotebookNode]:
    variant = variant or variant_of(sections)
    by_name = {s.name: s for s in sections}
    shown = [(e, by_name[e.section]) for e in variant.entries if e.section in by_name]
    commit = (page.git_commit or "unknown")[:12]
    dirty = {True: " (working tree had uncommitted changes)", False: " (clean)", None: ""}[page.git_dirty]
    provenance = provenance_table(page.provenance)
    first = {}  # section -> the first entry that shows it: a notebook answering several questions is counted once
    times = []
    for e, s in shown:
        status = s.status + (f", {s.parallel} in parallel" if s.parallel else "")
        if s.name in first:
            times.append((f"{e.number} · {e.title}", status, f"with {first[s.name]}", format_duration(None)))
            continue
        first[s.name] = e.number
        times.append((f"{e.number} · {e.title}", status, s.points, format_duration(s.duration_s if s.points else None)))
    total = format_duration(sum(s.duration_s for s in {s.name: s for _, s in shown}.values()))
    lab_line = page.variant_title or variant.title

    banner_tex = ""
    if not page.lab_settings:
        banner_tex = (
            r"\vspace{0.6cm}\fcolorbox{red!70!black}{red!6}{\parbox{0.92\linewidth}{\centering"
            r"\vspace{4pt}{\Huge\bfseries\color{red!70!black} "
            + _tex(page.profile.upper())
            + r" PROFILE\par}\vspace{4pt}{\Large\color{red!70!black} not the lab's settings\par}"
            r"\vspace{4pt}\normalsize "
            + _tex(page.banner or page.description)
            + r"\vspace{4pt}}}\par\vspace{0.4cm}"
            + "\n"
        )
    student_tex, student_html = student_lines(page)
    rows_tex = "\n".join(f"{_tex(k)} & {_tex(v)} \\\\" for k, v in provenance)
    times_tex = "\n".join(f"{_tex(n)} & {_tex(st)} & {p} & {_tex(d)} \\\\" for n, st, p, d in times)
    tex = "\n".join(
        [
            r"\begin{titlepage}\centering",
            r"{\LARGE\bfseries " + _tex(page.title) + r"\par}\vspace{0.3cm}",
            student_tex,
            r"{\Large Lab variant \textbf{" + _tex(page.variant or variant.name) + "}: " + _tex(lab_line) + r"\par}"
            r"\vspace{0.4cm}",
            r"{\large Profile: \textbf{" + _tex(page.profile) + "}, " + _tex(page.description) + r"\par}",
            banner_tex,
            r"{\normalsize " + _tex(page.date) + r" \quad git " + _tex(commit + dirty) + r"\par}\vspace{0.4cm}",
            r"{\small\begin{tabular}{ll}\hline \multicolumn{2}{l}{\textbf{Provenance (from the run records)}}\\\hline",
            rows_tex,
            r"\hline\end{tabular}\par}\vspace{0.4cm}",
            r"{\footnotesize\begin{tabular}{llrr}\hline \textbf{Section} & \textbf{status} & \textbf{measurements} & "
            r"\textbf{time} \\\hline",
            times_tex,
            r"\hline \textbf{Total} & & & " + _tex(total) + r" \\\hline",
            r"\end{tabular}\par}",
            r"\end{titlepage}",
            r"\setcounter{secnumdepth}{0}\setcounter{tocdepth}{1}\tableofcontents\clearpage",
        ]
    )

    esc = html.escape
    banner_html = ""
    if not page.lab_settings:
        banner_html = (
            f'<div class="lab-banner"><div class="big">{esc(page.profile.upper())} PROFILE</div>'
            f"<div>not the lab's settings</div><p>{esc(page.banner or page.description)}</p></div>"
        )
    toc = ['<li><a href="#lab-glance">Answers at a glance</a></li>']
    for part in dict.fromkeys(e.part for e, _ in shown):
        items = "".join(
            f'<li><a href="#{e.anchor}">{esc(e.number)} · {esc(e.title)}</a>'
            + ("" if s.status == "complete" else f' <span class="lab-status">({esc(s.status)})</span>')
            + "</li>"
            for e, s in shown
            if e.part == part
        )
        toc.append(f"<li>{esc(part)}<ul>{items}</ul></li>")
    toc.append('<li><a href="#lab-settings">Appendix: settings</a></li>')
    html_text = "\n".join(
        [
            STYLE,
            f'<div class="lab-title"><h1 class="lab-doc-title">{esc(page.title)}</h1>',
            student_html,
            f'<p class="lab-variant">Lab variant <b>{esc(page.variant or variant.name)}</b>: {esc(lab_line)}</p>',
            f"<p>Profile: <b>{esc(page.profile)}</b>, {esc(page.description)}</p>",
            banner_html,
            f"<p>{esc(page.date)} · git <code>{esc(commit)}</code>{esc(dirty)}</p>",
            '<table class="lab-table"><tr><th colspan="2">Provenance (from the run records)</th></tr>',
            "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in provenance),
            "</table>",
            '<table class="lab-table"><tr><th>Section</th><th>status</th><th>measurements</th><th>time</th></tr>',
            "".join(
                f"<tr><td>{esc(n)}</td><td>{esc(st)}</td><td>{p}</td><td>{esc(d)}</td></tr>" for n, st, p, d in times
            ),
            f"<tr><th>Total</th><td></td><td></td><th>{esc(total)}</th></tr></table>",
            f'<h2 class="lab-toc-title">Contents</h2><ul class="lab-toc">{"".join(toc)}</ul></div>',
        ]
    )
    return [_raw(tex, "text/latex"), _html(html_text)]


STUDENT_FIELDS = (("author", "Author"), ("student_id", "Student id"), ("course", "Course"), ("term", "Term"))
HOW_TO_NAME = (
    "No author on this report: set AUTHOR, STUDENT_ID, COURSE and TERM on the make command line, or fill in "
    "report/student.yaml once (a copy of report/student.example.yaml)."
)


def student_lines(page: TitlePage) -> tuple[str, str]:
    """(LaTeX, HTML) of the title page's student block: the fields as typed and the reproducing command,
    or one line saying how to set them."""
    from html import escape

    given = [(label, page.student[name]) for name, label in STUDENT_FIELDS if page.student.get(name)]
    command = page.command or "make report"
    if given:
        tex = "".join(rf"{{\large {_tex(label)}: \textbf{{{_tex(value)}}}\par}}" for label, value in given)
        html_text = "".join(
            f'<p class="lab-student">{escape(label)}: <b>{escape(value)}</b></p>' for label, value in given
        )
    else:
        tex = rf"{{\normalsize\itshape {_tex(HOW_TO_NAME)}\par}}"
        html_text = f'<p class="lab-student"><i>{escape(HOW_TO_NAME)}</i></p>'
    tex += rf"\vspace{{0.2cm}}{{\small Reproduce this build: \texttt{{{_tex(command)}}}\par}}\vspace{{0.3cm}}"
    html_text += f'<p class="lab-command">Reproduce this build: <code>{escape(command)}</code></p>'
    return tex, html_text


STYLE = """<style>
.lab-title { margin-bottom: 2em; }
.lab-banner { border: 3px solid #a00; background: #fff0f0; color: #900; padding: 0.8em 1.2em; margin: 1em 0; }
.lab-banner .big { font-size: 2.4em; font-weight: bold; }
.lab-table { border-collapse: collapse; margin: 1em 0; }
.lab-table td, .lab-table th { border: 1px solid #ccc; padding: 2px 8px; text-align: left !important; }
.lab-part { border-bottom: 2px solid #444; margin-top: 2.5em; color: #333; }
.lab-status { color: #a00; }
.lab-failed { border-left: 4px solid #a00; padding-left: 1em; }
.lab-variant { font-size: 1.3em; }
.jp-OutputArea-output pre, .jp-RenderedText pre, pre { white-space: pre-wrap; overflow-wrap: anywhere; }
blockquote { border-left: 4px solid #4a6fa5; background: #f3f6fb; margin: 0.8em 0; padding: 0.4em 1em; }
</style>"""


def _clean_cell(cell: nbformat.NotebookNode) -> nbformat.NotebookNode | None:
    """A section cell as the reader sees it, or None when nothing of it is shown."""
    tags = set(cell.get("metadata", {}).get("tags", []))
    if tags & DROPPED_TAGS:
        return None
    cell = copy.deepcopy(cell)
    cell.metadata.pop("papermill", None)
    cell.metadata.pop("execution", None)
    if cell.cell_type != "code":
        return cell
    outputs = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            continue  # tracebacks never reach the report; failures are summarised instead
        if output.get("output_type") == "stream":
            if output.get("name") == "stderr":
                continue  # progress bars and warnings
            output["text"] = _ANSI.sub("", output.get("text", ""))
        outputs.append(output)
    cell.outputs = outputs
    if "show-code" not in tags:
        cell.metadata["transient"] = {"remove_source": True}
        if not outputs:
            return None
    return cell


def _heading(section: SectionReport, source: Path | None) -> str:
    """The section's own first heading (`# C1 · Training in PyTorch`), else one from the plan."""
    if source and source.is_file():
        try:
            first = nbformat.read(source, as_version=4).cells[0]
            line = first.source.strip().splitlines()[0] if first.cell_type == "markdown" else ""
            if line.startswith(f"# {section.id} ") and not section.retitle:  # the notebook's own title
                return line
        except (OSError, IndexError, ValueError):
            pass
    return section.heading


def _wrap(text: str, width: int = 92) -> str:
    return "\n".join(
        textwrap.fill(line, width, subsequent_indent="    ", break_long_words=True, replace_whitespace=False) or line
        for line in text.splitlines()
    )


def variant_of(sections: list[SectionReport]) -> Variant:
    """The sections as they are (every one under its plan id): the report without a lab variant."""
    entries = tuple(Entry(s.id, s.name, s.title, s.part, question_id=s.id) for s in sections)
    return Variant("all", "every section of the plan", entries, {s.name: s.id for s in sections})


def _headings(cells: list[nbformat.NotebookNode]) -> list[tuple[int, str]]:
    return [
        (n, line.lstrip("#").strip())
        for n, c in enumerate(cells)
        if c.cell_type == "markdown"
        for line in c.source.splitlines()[:1]
        if line.startswith("#")
    ]


def _slice(cells: list[nbformat.NotebookNode], entry: Entry) -> list[nbformat.NotebookNode]:
    """The cells an entry shows: from / until a Markdown heading (a notebook answering two questions)."""
    found = dict((text, n) for n, text in reversed(_headings(cells)))
    if entry.until_heading and entry.until_heading in found:
        cells = cells[: found[entry.until_heading]]
    if entry.from_heading and entry.from_heading in found:
        cells = copy.deepcopy(cells[found[entry.from_heading] :])
        _, _, rest = cells[0].source.partition("\n")
        cells[0].source = rest.strip()
        cells = [c for c in cells if c.cell_type != "markdown" or c.source]
    return cells


def _renumber_headings(
    cells: list[nbformat.NotebookNode], lab_id: str, number: str, others: dict | None = None
) -> None:
    """The notebook's Markdown in the variant's numbering: its own sub-headings ("## C5.1" -> "## C6.1") and
    the sections it names (`others`: plan id -> the variant's number; "C5's SGD run" -> "C6's SGD run")."""
    mapping = {k: v for k, v in (others or {}).items() if k != v}
    if lab_id and lab_id != number:
        mapping[lab_id] = number
    if not mapping:
        return
    ids = sorted(mapping, key=len, reverse=True)
    pattern = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, ids)) + r")(?![\w-])")

    def swap(text: str) -> str:
        return pattern.sub(lambda m: mapping[m.group(1)], text)

    for cell in cells:
        if cell.cell_type == "markdown":
            cell.source = swap(cell.source)
        for output in cell.get("outputs", []):  # the answers' Markdown ("**C4:** ...")
            data = output.get("data", {})
            if "text/markdown" in data:
                data["text/markdown"] = swap("".join(data["text/markdown"]))


def section_cells(
    section: SectionReport,
    source_notebook: Path | None,
    entry: Entry | None = None,
    variant: Variant | None = None,
    context: Any = None,
    reuse: str = "",
) -> list[nbformat.NotebookNode]:
    """The section under the entry's heading: the lab's question, then the notebook's answer (cleaned),
    which measurements it shares with other sections (`reuse`), then the published figures beside this
    build's (`context`); or why it is not shown."""
    from lablib.report.appendix import context_cells, question_cell

    entry = entry or Entry(section.id, section.name, section.title, section.part, question_id=section.id)
    variant = variant or Variant("all", "", (entry,), {section.name: section.id})
    anchor = _html(f'<a id="{entry.anchor}"></a>')
    target = _raw(rf"\phantomsection\label{{{entry.anchor}}}", "text/latex")
    question = question_cell(entry, variant)
    own_heading = entry.heading  # the variant's number and title, whatever the notebook calls itself
    if section.status == "complete" and section.notebook:
        executed = nbformat.read(section.notebook, as_version=4)
        cells = [c for c in (_clean_cell(c) for c in executed.cells) if c is not None]
        cells = _slice(cells, entry)
        others = {}
        for other in variant.entries:  # the first entry of each plan section gives its number
            others.setdefault(variant.lab_ids.get(other.section, ""), other.number)
        others.pop("", None)
        _renumber_headings(cells, variant.lab_ids.get(section.name, section.id), entry.number, others)
        head = []
        if cells and cells[0].cell_type == "markdown" and cells[0].source.startswith("# "):
            first, _, rest = cells[0].source.partition("\n")
            head = [nbformat.v4.new_markdown_cell(own_heading or first)]
            cells[0].source = rest.strip()
            if not cells[0].source:
                cells = cells[1:]
        else:
            head = [nbformat.v4.new_markdown_cell(own_heading or entry.heading)]
        shared = [nbformat.v4.new_markdown_cell(reuse)] if reuse else []
        return [anchor, target, *head, *([question] if question else []), *cells, *shared, *context_cells(context)]
    heading = own_heading or _heading(section, source_notebook)
    if section.status == "missing":
        body = (
            f"*Not in this report:* `notebooks/{section.notebook_name or section.name + '.ipynb'}` is not in this "
            "checkout. "
            "The plan lists it; it is built once the notebook is there."
        )
    elif section.status == "not built":
        body = (
            f"*Not built yet:* no complete run of this section for the current settings. "
            f"Build it with `make report ONLY={section.name}`."
        )
    else:
        parts = [
            f"**This section failed** ({counted(len(section.failures), 'failure')} among its "
            f"{counted(section.points, 'measurement')} and its notebook); its results are not shown."
        ]
        for failure in section.failures:
            parts.append(
                f"\n**Failed:** `{section.name}{' ' + failure['label'] if failure['label'] else ''}`: "
                f"{failure['status']}.\n\n"
                f"```text\n{_wrap(_ANSI.sub('', failure.get('error') or 'no error text recorded'))}\n```\n\n"
                f"Executed notebook: `{failure.get('executed')}`  \nLog: `{failure.get('log')}`"
            )
        body = "\n".join(parts)
    cells = [anchor, target, nbformat.v4.new_markdown_cell(heading)]
    return cells + ([question] if question else []) + [nbformat.v4.new_markdown_cell(body)]


@dataclass
class Extras:
    """What the report shows beside the sections, computed from the run store by the build."""

    glance: list[Any] = field(default_factory=list)  # appendix.GlanceRow
    contexts: dict[str, Any] = field(default_factory=dict)  # section name -> sections.context.Context
    reuse: dict[str, str] = field(
        default_factory=dict
    )  # section name -> which measurements it shares (appendix.reuse_notes)
    settings: tuple[list, dict] | None = None  # appendix.settings_summary()
    changes: dict[str, list] | None = None  # appendix.changes()
    manifest: dict[str, Any] | None = None  # appendix.manifest(): kept in the notebook's metadata


def merge(
    page: TitlePage,
    sections: list[SectionReport],
    notebooks_dir: Path,
    variant: Variant | None = None,
    extras: Extras | None = None,
) -> nbformat.NotebookNode:
    """One notebook: title page, answers at a glance, the variant's sections in its order under its parts,
    then the appendices (settings, what changed); figures numbered, index columns dropped."""
    from lablib.report.appendix import changes_cells, glance_cells, settings_cells

    variant = variant or variant_of(sections)
    extras = extras or Extras()
    by_name = {s.name: s for s in sections}
    merged = nbformat.v4.new_notebook()
    merged.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (lablib)", "language": "python"}
    merged.metadata["language_info"] = {"name": "python"}
    merged.metadata["title"] = page.title
    merged.metadata["lablib"] = {
        "variant": variant.name,
        "student": dict(page.student),
        "command": page.command,
        **(extras.manifest or {}),
    }
    merged.cells.extend(title_cells(page, sections, variant))
    merged.cells.append(_html('<a id="lab-glance"></a>'))
    merged.cells.extend(glance_cells(extras.glance, variant))
    merged.cells.append(_raw(r"\clearpage", "text/latex"))
    part = None
    for entry in variant.entries:
        section = by_name.get(entry.section)
        if section is None:
            continue
        if entry.part != part:
            part = entry.part
            merged.cells.append(
                _raw(r"\part*{" + _tex(part) + r"}\addcontentsline{toc}{part}{" + _tex(part) + "}", "text/latex")
            )
            merged.cells.append(_html(f'<h1 class="lab-part">{html.escape(part)}</h1>'))
        source = notebooks_dir / (section.notebook_name or f"{section.name}.ipynb")
        context = extras.contexts.get(section.name) if not entry.from_heading else None
        reuse = extras.reuse.get(section.name, "") if not entry.from_heading else ""
        merged.cells.extend(section_cells(section, source, entry, variant, context, reuse))
    merged.cells.append(_raw(r"\clearpage", "text/latex"))
    merged.cells.append(_html('<a id="lab-settings"></a>'))
    if extras.settings:
        merged.cells.extend(settings_cells(*extras.settings, variant))
    if extras.changes:
        merged.cells.extend(changes_cells(extras.changes, variant))
    number_figures(merged)
    drop_index_columns(merged)
    for number, cell in enumerate(merged.cells):  # the sections' own ids repeat across notebooks
        cell["id"] = f"cell-{number}"
    return merged


def number_figures(notebook: nbformat.NotebookNode) -> int:
    """Number the notebooks' figure captions in report order ("**Figure 3:** ..."); returns the count."""
    from lablib.sections.tables import FIGURE_PREFIX

    count = 0
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            text = output.get("data", {}).get("text/markdown")
            if text is None:
                continue
            text = "".join(text)
            if text.startswith(FIGURE_PREFIX):
                count += 1
                output["data"]["text/markdown"] = f"**Figure {count}:** " + text[len(FIGURE_PREFIX) :]
                if "text/plain" in output["data"]:
                    output["data"]["text/plain"] = f"Figure {count}: " + text[len(FIGURE_PREFIX) :]
    return count


def export_html(notebook: nbformat.NotebookNode, target: Path) -> Path:
    """The report as one HTML file; its <head> names the author, id, course and term (when given)."""
    from html import escape

    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", exclude_input_prompt=True, exclude_output_prompt=True)
    student = notebook.metadata.get("lablib", {}).get("student") or {}
    title = notebook.metadata["title"] + (f" — {student['author']}" if student.get("author") else "")
    body, _ = exporter.from_notebook_node(notebook, resources={"metadata": {"name": title}})
    meta = "".join(
        f'<meta name="{escape(name)}" content="{escape(value, quote=True)}">\n'
        for name, value in (
            ("author", student.get("author")),
            ("lablib:student-id", student.get("student_id")),
            ("lablib:course", student.get("course")),
            ("lablib:term", student.get("term")),
            ("lablib:command", notebook.metadata.get("lablib", {}).get("command")),
        )
        if value
    )
    body = body.replace("</head>", meta + "</head>", 1)
    _write_atomic(target, body.encode())
    return target


LATEX_TEMPLATE = r"""((*- extends 'index.tex.j2' -*))
((* block docclass *))\documentclass[11pt,a4paper]{article}((* endblock docclass *))
((* block margins *))\geometry{verbose,tmargin=2cm,bmargin=2cm,lmargin=2cm,rmargin=2cm}((* endblock margins *))
((* block maketitle *))((* endblock maketitle *))
((* block packages *))
((( super() )))
% Long code lines and outputs (a model graph) wrap instead of running off the page.
\usepackage{fvextra}
\fvset{breaklines=true,breakanywhere=true}
\usepackage{array}
% Glyphs Latin Modern lacks: DejaVu Sans Mono for outputs (box drawing, ≈, ✓), and math
% equivalents for the text (when newunicodechar is installed: texlive-latex-extra).
\IfFontExistsTF{DejaVu Sans Mono}{\setmonofont{DejaVu Sans Mono}[Scale=MatchLowercase]}{}
\IfFileExists{newunicodechar.sty}{
  \usepackage{newunicodechar}
%UNICODE%
}{}
((* endblock packages *))
"""
# Characters outside Latin Modern's text fonts that notebooks' prose uses, as math.
UNICODE_MATH = {
    "≈": r"\approx",
    "≤": r"\leq",
    "≥": r"\geq",
    "≠": r"\neq",
    "→": r"\rightarrow",
    "←": r"\leftarrow",
    "✓": r"\checkmark",
    "✗": r"\times",
    "∞": r"\infty",
    "α": r"\alpha",
    "β": r"\beta",
    "γ": r"\gamma",
    "δ": r"\delta",
    "ε": r"\epsilon",
    "η": r"\eta",
    "λ": r"\lambda",
    "μ": r"\mu",
    "σ": r"\sigma",
    "Δ": r"\Delta",
    "∑": r"\sum",
}


def missing_pdf_tools() -> list[str]:
    return [tool for tool in PDF_TOOLS if shutil.which(tool) is None]


class PdfError(Exception):
    """xelatex failed; the message holds the log lines that matter."""


def latex_errors(log: str, context: int = 3) -> str:
    """The lines of a LaTeX log that explain a failure: each '!' error with a few lines after it."""
    lines = log.splitlines()
    picked: list[str] = []
    for number, line in enumerate(lines):
        if line.startswith("!") or "Fatal error" in line:
            picked.extend(lines[number : number + context + 1])
            picked.append("...")
    return "\n".join(picked[:40]) or "\n".join(lines[-20:])


def export_pdf(notebook: nbformat.NotebookNode, target: Path, build_dir: Path) -> Path:
    """LaTeX through nbconvert, then xelatex twice (the second pass fills the contents)."""
    from nbconvert import LatexExporter

    build_dir.mkdir(parents=True, exist_ok=True)
    template = build_dir / "lab_report.tex.j2"
    mappings = "\n".join(
        f"  \\newunicodechar{{{char}}}{{\\ensuremath{{{command}}}}}" for char, command in UNICODE_MATH.items()
    )
    template.write_text(LATEX_TEMPLATE.replace("%UNICODE%", mappings))
    exporter = LatexExporter(template_file=str(template), exclude_input_prompt=True, exclude_output_prompt=True)
    notebook = copy.deepcopy(notebook)
    notebook.cells = [c for c in notebook.cells if "html-only" not in c.metadata.get("tags", [])]
    add_latex_tables(notebook)
    body, resources = exporter.from_notebook_node(
        notebook, resources={"metadata": {"name": "report"}, "output_files_dir": "figures"}
    )
    for name, data in resources.get("outputs", {}).items():
        path = build_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (build_dir / "report.tex").write_text(body)
    for _ in range(2):
        done = subprocess.run(
            ["xelatex", "-interaction=nonstopmode", "-halt-on-error", "report.tex"],
            cwd=build_dir,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=600,
        )
        if done.returncode != 0 or not (build_dir / "report.pdf").is_file():
            log = (
                (build_dir / "report.log").read_text(errors="replace")
                if (build_dir / "report.log").is_file()
                else done.stdout
            )
            raise PdfError(
                f"xelatex failed on {build_dir / 'report.tex'}:\n{latex_errors(log)}\n"
                f"(full log: {build_dir / 'report.log'})"
            )
    _write_atomic(target, (build_dir / "report.pdf").read_bytes())
    return target


def content_digest(notebook: nbformat.NotebookNode, ignore: str = "") -> str:
    """sha256 of what the report shows (the cells without their random ids, `ignore` (the date) removed)
    and of how it is rendered (this module)."""
    import hashlib
    import json

    cells = [{k: v for k, v in cell.items() if k != "id"} for cell in notebook.cells]
    digest = hashlib.sha256(json.dumps(cells, sort_keys=True).replace(ignore, "").encode())
    digest.update(Path(__file__).read_bytes())  # a new way of rendering is a new report
    return digest.hexdigest()


def _write_atomic(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.write_bytes(data)
    temporary.replace(target)
