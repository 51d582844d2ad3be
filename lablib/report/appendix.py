"""The report's pages around the sections: answers at a glance, context tables, settings and changes.

    glance_rows(variant, headlines)         -> one GlanceRow per question of the variant
    settings_summary(settings)              -> the build's common setup and each section's differences
    manifest(states, headlines)             -> what a build stitched (its points and headline figures)
    changes(previous, current)              -> the points that re-ran and why, the headlines that moved

Each *_cells function gives notebook cells with an HTML and a LaTeX form of the same table, so the
HTML report links rows to sections by anchor and the PDF by hyperref with a page number.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import nbformat

from lablib.report.variants import Entry, Variant

KEY_PARTS = ("notebook", "parameters", "presenting", "core", "measurements", "environment", "device")
KEY_PART_WORDS = {
    "notebook": "notebook",
    "parameters": "parameters",
    "presenting": "presenting code",
    "core": "measuring code",
    "measurements": "measurements",
    "environment": "environment",
    "device": "device",
}
SHARED_SHOWN = 3  # a section's reuse note names at most this many shared measurements, then counts the rest
SETTINGS_SKIPPED = ("data_dir", "download", "data")  # the data source is on the title page


@dataclass(frozen=True)
class GlanceRow:
    number: str  # the question in the variant's numbering: "C6", "C3.2"
    points: int | None
    text: str  # the one-line answer with its key figure
    anchor: str  # the section's anchor
    complete: bool


def _tex(text: Any) -> str:
    from nbconvert.filters import escape_latex

    return escape_latex(str(text))


def table_cell(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    columns: str,
    links: Sequence[str | None] | None = None,
    css: str = "lab-table",
) -> nbformat.NotebookNode:
    """A display cell holding one table as text/html and text/latex (a longtable; `columns` its spec).

    `links[i]` makes row i's first cell a link to that anchor (and adds its page in the PDF)."""
    links = list(links or [None] * len(rows))
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for row, link in zip(rows, links):
        cells = [esc(str(v)) for v in row]
        if link:
            cells[0] = f'<a href="#{esc(link)}">{cells[0]}</a>'
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    html_text = f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    lines = []
    for row, link in zip(rows, links):
        cells = [_tex(v) for v in row]
        if link:
            cells[0] = rf"\hyperref[{link}]{{{cells[0]}}}"
            cells[-1] = cells[-1] + rf" (p.~\pageref{{{link}}})"
        lines.append(" & ".join(cells) + r" \\")
    latex = (
        "{\\small\\begin{longtable}{"
        + columns
        + "}\\hline\n"
        + " & ".join(rf"\textbf{{{_tex(h)}}}" for h in headers)
        + " \\\\ \\hline\\endhead\n"
        + "\n".join(lines)
        + "\n\\hline\\end{longtable}}"
    )
    cell = nbformat.v4.new_code_cell("")
    cell.outputs = [
        nbformat.v4.new_output(
            "display_data", data={"text/html": html_text, "text/latex": latex, "text/plain": "\n".join(map(str, rows))}
        )
    ]
    cell.metadata["transient"] = {"remove_source": True}
    return cell


# --- answers at a glance ------------------------------------------------------------------------------


def glance_rows(
    variant: Variant, headlines: Mapping[str, Sequence[Any]], statuses: Mapping[str, str] | None = None
) -> list[GlanceRow]:
    """One row per question part of the variant, renumbered; `headlines`: plan section -> its Headlines.

    A question answered by several entries (E1 on two data sets) is one row, linked to its first entry.
    `statuses` (section -> complete | failed | not built | missing): a section the report does not show
    complete gives its status instead of an answer, so the page never shows what the section does not."""
    rows: list[GlanceRow] = []
    seen: set[str] = set()
    for entry in variant.entries:
        if entry.question_id in seen:
            continue
        seen.add(entry.question_id)
        lines = [line for line in headlines.get(entry.section) or [] if not entry.parts or line.part in entry.parts]
        status = (statuses or {}).get(entry.section, "complete")
        if status != "complete":
            rows.append(GlanceRow(entry.question_id, entry.points, f"{status}: see the section", entry.anchor, False))
            continue
        if not lines:
            rows.append(GlanceRow(entry.question_id, entry.points, "no answer recorded yet", entry.anchor, False))
            continue
        for number, line in enumerate(lines):
            rows.append(
                GlanceRow(
                    variant.renumber(line.part, entry),
                    entry.points if number == 0 else None,
                    line.text,
                    entry.anchor,
                    bool(line.complete),
                )
            )
    return rows


def glance_cells(rows: Sequence[GlanceRow], variant: Variant) -> list[nbformat.NotebookNode]:
    known = [r.points for r in rows if r.points is not None]
    total = f" ({sum(known)} points listed)" if known else ""
    heading = nbformat.v4.new_markdown_cell(
        f"# Answers at a glance\n\n{variant.title}: one line per question{total}, each figure from this "
        "build's records; the number links to the section."
    )
    table = table_cell(
        ["question", "points", "answer"],
        [(r.number, "–" if r.points is None else r.points, r.text) for r in rows],
        r"l r p{0.72\linewidth}",
        links=[r.anchor for r in rows],
    )
    return [heading, table]


# --- one section's question and context ---------------------------------------------------------------


def question_cell(entry: Entry, variant: Variant) -> nbformat.NotebookNode | None:
    if not entry.question:
        return None
    points = f", {entry.points} points" if entry.points is not None else ""
    return nbformat.v4.new_markdown_cell(f"> **Question ({variant.name} {entry.number}{points}):** {entry.question}")


def context_cells(context: Any) -> list[nbformat.NotebookNode]:
    """The published figures beside this build's (a lablib.sections.context.Context), with its note."""
    if context is None or context.table.empty:
        return []
    from lablib.report.latex import dataframe_latex
    from lablib.sections.tables import present

    styled = present(context.table, headers={c: c for c in context.table.columns})
    html_text = styled.to_html()
    data = {"text/html": html_text, "text/plain": context.table.to_string(index=False)}
    latex = dataframe_latex(html_text)
    if latex:
        data["text/latex"] = latex
    cell = nbformat.v4.new_code_cell("")
    cell.outputs = [nbformat.v4.new_output("display_data", data=data)]
    cell.metadata["transient"] = {"remove_source": True}
    cell.metadata["tags"] = ["lab-context"]
    note = nbformat.v4.new_markdown_cell(f"**This build beside published figures.** {context.note}")
    note.metadata["tags"] = ["lab-context"]
    return [note, cell]


# --- measured once, shown by several sections -------------------------------------------------------


def reuse_notes(variant: Variant, frames: Mapping[str, Any]) -> dict[str, str]:
    """Section name -> a sentence naming the measurements it shows that other sections of the variant show
    too: "C2's figures come from the same training as C1 (training sgd lr 0.1, ...; run `...`), measured once."

    `frames`: section -> its presenting record as a one-row frame with `uses` (lablib.core.runs.Run.uses)."""
    uses = {name: list(frame.iloc[0].get("uses") or []) for name, frame in frames.items() if len(frame)}
    shown = [name for name in variant.sections if name in uses]
    by_key: dict[str, list[str]] = {}
    for name in shown:
        for use in uses[name]:
            by_key.setdefault(use["key"], []).append(name)
    notes = {}
    for name in shown:
        shared = [(use, [n for n in by_key[use["key"]] if n != name]) for use in uses[name]]
        shared = [(use, others) for use, others in shared if others]
        if not shared:
            continue
        number = variant.number_of(name)
        said = []
        for use, others in shared[:SHARED_SHOWN]:
            names = _and([variant.number_of(n) for n in dict.fromkeys(others)])
            said.append(f"the same measurement as {names} ({use.get('label') or use['kind']}; run `{use['run_id']}`)")
        more = f"; and {len(shared) - SHARED_SHOWN} more shared measurement(s)" if len(shared) > SHARED_SHOWN else ""
        notes[name] = f"**Measured once:** {number}'s figures come from {'; '.join(said)}{more}."
    return notes


def _and(words: Sequence[str]) -> str:
    words = list(words)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


# --- settings once ------------------------------------------------------------------------------------


def _shown(value: Any) -> str:
    from lablib.sections.setup import setting_text

    return setting_text(value)


def settings_summary(
    settings: Mapping[str, Sequence[Mapping[str, Any]]],
) -> tuple[list[tuple[str, str, str]], dict[str, list[str]]]:
    """(common rows, differences) from each section's recorded settings (run.json `settings`).

    Common rows: (setting, this build's common value: the most frequent one, the lab's common setup).
    Differences: section -> "setting: value" for each setting that differs from this build's common."""
    from dataclasses import fields

    from lablib.core.config import RunConfig

    lab = RunConfig()
    names = [f.name for f in fields(RunConfig) if f.name not in SETTINGS_SKIPPED]
    every = [s for listed in settings.values() for s in listed]
    common: dict[str, Any] = {}
    for name in names:
        values = Counter(_shown(s[name]) for s in every if name in s)
        common[name] = values.most_common(1)[0][0] if values else _shown(getattr(lab, name))
    rows = [(name, common[name], _shown(getattr(lab, name))) for name in names]
    differences: dict[str, list[str]] = {}
    for section, listed in settings.items():
        found = []
        for name in names:
            values = list(dict.fromkeys(_shown(s[name]) for s in listed if name in s))
            if values and values != [common[name]]:
                found.append(f"{name}: {', '.join(values)}")
        differences[section] = found
    return rows, differences


def settings_cells(
    rows: Sequence[tuple[str, str, str]], differences: Mapping[str, list[str]], variant: Variant
) -> list[nbformat.NotebookNode]:
    intro = nbformat.v4.new_markdown_cell(
        "# Appendix: settings\n\nThe settings every section of this build recorded, beside the lab's common "
        "setup; each section shows only the settings that differ from the lab's common setup."
    )
    common = table_cell(["setting", "this build", "the lab's common setup"], rows, "l l l")
    listed = []
    for entry in variant.entries:
        if entry.section in differences and entry.section not in [e for e, _ in listed]:
            listed.append((entry.section, entry))
    per_section = [(entry.number, "; ".join(differences[name]) or "none") for name, entry in listed]
    table = table_cell(
        ["section", "settings that differ from this build's common ones"],
        per_section,
        r"l p{0.8\linewidth}",
        links=[entry.anchor for _, entry in listed],
    )
    return [intro, common, nbformat.v4.new_markdown_cell("Per section:"), table]


# --- what changed since the previous build ------------------------------------------------------------


def manifest(states: Mapping[str, Sequence[Any]], headlines: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
    """What a build stitched: each complete point (section, label, key, parameters, key parts) and the
    headline figures (kept in the stitched notebook's metadata, for the next build's comparison)."""
    points = []
    for section, listed in states.items():
        for state in listed:
            if state.status != "complete" or not state.record:
                continue
            points.append(
                {
                    "section": section,
                    "label": state.label,
                    "key": state.record.get("key") or state.key,  # the point shown (RECORDS: measured elsewhere)
                    "parameters": state.record.get("parameters") or state.parameters,
                    "key_parts": state.record.get("key_parts") or {},
                    "ended": state.record.get("ended"),
                }
            )
    lines = [
        {"section": s, "part": h.part, "text": h.text, "value": h.value, "spread": getattr(h, "spread", None)}
        for s, listed in headlines.items()
        for h in listed
        if h.complete
    ]
    return {"points": points, "headlines": lines}


def _why(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """Which parts of the key changed between two points of one section."""
    reasons = []
    before, after = old.get("parameters") or {}, new.get("parameters") or {}
    changed = [k for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]
    if changed:
        reasons.append(
            "parameters (" + ", ".join(f"{k}: {before.get(k, '–')} → {after.get(k, '–')}" for k in changed) + ")"
        )
    parts_old, parts_new = old.get("key_parts") or {}, new.get("key_parts") or {}
    if parts_old and parts_new:
        reasons += [KEY_PART_WORDS[p] for p in KEY_PARTS if p != "parameters" and parts_old.get(p) != parts_new.get(p)]
    elif not changed:
        reasons.append("notebook, code, data, environment or device (a record does not store its key's parts)")
    return "; ".join(reasons) or "re-run with the same key (forced)"


def changes(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> dict[str, list[tuple[str, ...]]]:
    """Points of `current` that replaced points of `previous` (with why), and headlines that moved.

    A headline moved when its value changed by more than its recorded spread (any change when none is
    recorded). Both arguments are manifest() dicts; no previous build: nothing changed."""
    if not previous:
        return {"points": [], "headlines": []}
    old_keys = {p["key"]: p for p in previous.get("points", [])}
    by_section: dict[str, list[Mapping[str, Any]]] = {}
    for point in previous.get("points", []):
        by_section.setdefault(point["section"], []).append(point)
    rows = []
    for point in current.get("points", []):
        if point["key"] in old_keys:
            if point.get("ended") and point.get("ended") != old_keys[point["key"]].get("ended"):
                rows.append((point["section"], point["label"] or "–", "re-run with the same key (forced)"))
            continue
        earlier = by_section.get(point["section"], [])
        if not earlier:
            continue  # a section the previous build did not show: new, not a replacement
        same = [p for p in earlier if p["label"] == point["label"]]
        if not same:  # a swept value that changed: the point whose other parameters match best
            same = sorted(earlier, key=lambda p: -_overlap(p.get("parameters") or {}, point.get("parameters") or {}))
        rows.append((point["section"], point["label"] or "–", _why(same[0], point)))
    old_lines = {(h["section"], h["part"]): h for h in previous.get("headlines", [])}
    moved = []
    for line in current.get("headlines", []):
        old = old_lines.get((line["section"], line["part"]))
        if not old:
            continue
        a, b = _number(old.get("value")), _number(line.get("value"))
        spread = _number(line.get("spread")) or 0.0
        if a is not None and b is not None and abs(b - a) > spread:
            moved.append((line["section"], line["part"], old["text"], line["text"]))
        elif (a is None or b is None) and old.get("value") != line.get("value"):
            moved.append((line["section"], line["part"], old["text"], line["text"]))
    return {"points": rows, "headlines": moved}


def _overlap(a: Mapping[str, Any], b: Mapping[str, Any]) -> int:
    return sum(a.get(k) == v for k, v in b.items())


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def changes_cells(found: Mapping[str, list[tuple[str, ...]]], variant: Variant) -> list[nbformat.NotebookNode]:
    if not found["points"] and not found["headlines"]:
        return []
    numbers: dict[str, str] = {}
    for entry in variant.entries:
        numbers.setdefault(entry.section, entry.number)
    cells = [
        nbformat.v4.new_markdown_cell(
            "# Appendix: what changed since the previous build\n\nPoints this build ran again, and which part of "
            "their key changed (notebook, parameters, code, data, environment or device):"
        )
    ]
    if found["points"]:
        cells.append(
            table_cell(
                ["section", "point", "why it ran again"],
                [(numbers.get(s, s), label, why) for s, label, why in found["points"]],
                r"l p{0.3\linewidth} p{0.5\linewidth}",
            )
        )
    else:
        cells.append(nbformat.v4.new_markdown_cell("No point ran again."))
    if found["headlines"]:
        entries = {e.section: e for e in reversed(variant.entries)}
        rows = []
        for section, part, old, new in found["headlines"]:
            entry = entries.get(section)
            rows.append((variant.renumber(part, entry) if entry else part, old, new))
        cells.append(
            nbformat.v4.new_markdown_cell(
                "Answers whose key figure moved by more than its recorded spread (any change where no spread is "
                "recorded):"
            )
        )
        cells.append(
            table_cell(["question", "previous build", "this build"], rows, r"l p{0.4\linewidth} p{0.4\linewidth}")
        )
    return cells
