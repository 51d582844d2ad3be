"""Tables as the report's LaTeX sets them: the presented DataFrames' HTML turned into longtables.

    dataframe_latex(html_table)   one presented table's HTML -> a longtable (wide ones wrap their columns)
    add_latex_tables(notebook)    every presented table of a notebook gets its text/latex form
    drop_index_columns(notebook)  tables that still show a pandas index lose it

The HTML report shows the tables as they are; nbconvert's LaTeX export uses the text/latex form.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import nbformat


def _tex(text) -> str:
    from nbconvert.filters import escape_latex

    return escape_latex(str(text))


_ROW = re.compile(r"<tr[^>]*>.*?</tr>", re.DOTALL)
_FIRST_TH = re.compile(r"^(<tr[^>]*>\s*)<th[^>]*>(.*?)</th>", re.DOTALL)


def drop_index(html_table: str) -> str:
    """A pandas DataFrame's HTML without its index column when the index is 0, 1, 2, ... (the default)."""
    head, sep, rest = html_table.partition("<tbody>")
    if not sep:
        return html_table
    body, end, tail = rest.partition("</tbody>")
    rows = _ROW.findall(body)
    labels = [m.group(2).strip() if (m := _FIRST_TH.match(r)) else None for r in rows]
    if not rows or labels != [str(n) for n in range(len(rows))]:
        return html_table  # no index, or a named, meaningful one: a column the reader needs
    body = _ROW.sub(lambda m: _FIRST_TH.sub(r"\1", m.group(0), count=1), body)
    head = _ROW.sub(lambda m: _FIRST_TH.sub(r"\1", m.group(0), count=1), head)
    return head + sep + body + end + tail


def drop_index_columns(notebook: nbformat.NotebookNode) -> int:
    """Drop the default index column from every DataFrame's HTML (presented tables have none)."""
    from lablib.sections.tables import PRESENTED_MARK

    changed = 0
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            text = data.get("text/html")
            if text is None:
                continue
            text = "".join(text)
            if 'class="dataframe"' in text and PRESENTED_MARK not in text:
                dropped = drop_index(text)
                if dropped != text:
                    data["text/html"] = dropped
                    data.pop("text/latex", None)
                    changed += 1
    return changed


# --- tables in the PDF -------------------------------------------------------------------------


class _TableParser(HTMLParser):
    """Rows of (text, colspan, is_header) from the first <table> of a pandas DataFrame's HTML."""

    def __init__(self):
        super().__init__()
        self.rows: list[list[tuple[str, int, bool]]] = []
        self.header_rows = 0
        self._cell: list[str] | None = None
        self._span, self._is_header, self._in_head, self._in_style = 1, False, False, False

    def handle_starttag(self, tag, attrs):
        if tag == "style":
            self._in_style = True
        elif tag == "thead":
            self._in_head = True
        elif tag == "tr":
            self.rows.append([])
            self.header_rows += self._in_head
        elif tag in ("td", "th") and self.rows:
            self._cell, self._is_header = [], tag == "th"
            self._span = int(dict(attrs).get("colspan") or 1)

    def handle_endtag(self, tag):
        if tag == "style":
            self._in_style = False
        elif tag == "thead":
            self._in_head = False
        elif tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append((" ".join("".join(self._cell).split()), self._span, self._is_header))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None and not self._in_style:
            self._cell.append(data)


def _numeric(text: str) -> bool:
    try:
        float(text.replace(",", "").rstrip("%") or "0")
        return True
    except ValueError:
        return text.lower() in ("nan", "none", "inf", "-inf", "true", "false", "–", "—", "-")


WIDE_TABLE_CHARS = 110  # a table whose longest cells (or headers) add up to more wraps them
FOOTNOTE_CHAR = 0.0095  # a character's width in \footnotesize, as a fraction of the A4 text width


def dataframe_latex(html_table: str) -> str | None:
    """A pandas DataFrame's HTML as a LaTeX tabular scaled to the text width (None if not a table)."""
    parser = _TableParser()
    parser.feed(html_table)
    rows = [row for row in parser.rows if row]
    if not rows:
        return None
    width = max(sum(span for _, span, _ in row) for row in rows)
    lines = []
    for number, row in enumerate(rows):
        cells = []
        for text, span, header in row:
            text = _tex(text)
            text = rf"\textbf{{{text}}}" if header and text else text
            cells.append(rf"\multicolumn{{{span}}}{{c}}{{{text}}}" if span > 1 else text)
        cells += [""] * (width - sum(span for _, span, _ in row))
        lines.append(" & ".join(cells) + r" \\" + (r" \hline" if number == parser.header_rows - 1 else ""))
    body = [row for row in rows[parser.header_rows :] if sum(span for _, span, _ in row) == width]
    kinds = ["r" if index and all(_numeric(row[index][0]) for row in body) else "l" for index in range(width)]
    longest = [max((len(row[i][0]) for row in body if i < len(row)), default=0) for i in range(width)]
    named = [row for row in rows[: parser.header_rows] if len(row) == width]
    heads = [max(map(len, named[-1][i][0].split()), default=0) if named else 0 for i in range(width)]  # bold words
    columns = "".join(kinds)
    full = [len(named[-1][i][0]) if named else 0 for i in range(width)]
    wide = sum(max(b, h) for b, h in zip(longest, full)) > WIDE_TABLE_CHARS
    if wide:  # every column a paragraph column: long text and long headers wrap instead of shrinking the table
        need = [max(b if k == "r" else min(b, 26), 1.25 * h, 3) for b, h, k in zip(longest, heads, kinds)]
        room = max(0.3, 0.97 - 0.0125 * width)  # 0.0125: a column's separation (tabcolsep 3pt)
        per_char = max(FOOTNOTE_CHAR, room / sum(need))  # too many characters: natural widths, then scaled down
        columns = "".join(
            rf">{{\{'raggedleft' if kind == 'r' else 'raggedright'}\arraybackslash}}"
            rf"p{{{per_char * n:.3f}\linewidth}}"
            for kind, n in zip(kinds, need)
        )
    size = "\\footnotesize" if width > 6 or wide else "\\small"
    size += "\\setlength{\\tabcolsep}{3pt}" if wide else ""
    return (
        "\\begin{center}{"
        + size
        + "\\adjustbox{max width=\\linewidth}{\\begin{tabular}{"
        + columns
        + "}\\hline\n"
        + "\n".join(lines)
        + "\n\\hline\\end{tabular}}}\\end{center}"
    )


def add_latex_tables(notebook: nbformat.NotebookNode) -> None:
    """Give DataFrame outputs a text/latex form, so the PDF shows tables rather than their plain text."""
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            html_text = data.get("text/html")
            if html_text and "text/latex" not in data and 'class="dataframe"' in "".join(html_text):
                latex = dataframe_latex("".join(html_text))
                if latex:
                    data["text/latex"] = latex


# --- export -----------------------------------------------------------------------------
