"""The layout is the architecture: imports inside lablib only point down.

    commands (lablib/cli.py, bench.py, __main__.py)  may import every layer
    report   (lablib/report/)                         the sections and the core
    sections (lablib/sections/)                       the core
    core     (lablib/core/)                           nothing but itself

Every import is read from the source (ast), function-level imports included,
and the notebooks are held to the sections' rule: they import the sections and the core only.
Inside a layer there is no import cycle either (one module's import of another, at any depth, never
leads back to it). The plan's sections and the sections registered by lablib/sections are the same.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import lablib

PACKAGE = Path(lablib.__file__).parent
NOTEBOOKS = PACKAGE.parent / "notebooks"
ORDER = ("core", "sections", "report", "commands")  # lowest first
LAYER_FOLDERS = ORDER[:3]


def layer_of(module: str) -> str:
    """'lablib.core.train' -> 'core'; top-level modules are the commands."""
    parts = module.split(".")
    return parts[1] if len(parts) >= 2 and parts[1] in LAYER_FOLDERS else "commands"


def lablib_imports(source: str) -> set[str]:
    """Every lablib module a piece of Python source imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("lablib"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lablib"):
            if node.module in ("lablib", "lablib.core", "lablib.sections", "lablib.report"):
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            else:
                found.add(node.module)
    return found


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    return ".".join(relative.parts).removesuffix(".__init__")


def upward_imports(importer_layer: str, imported: set[str]) -> list[str]:
    rank = ORDER.index(importer_layer)
    return sorted(m for m in imported if ORDER.index(layer_of(m)) > rank)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path):
    name = module_name(path)
    wrong = upward_imports(layer_of(name), lablib_imports(path.read_text()))
    assert not wrong, f"{name} ({layer_of(name)} layer) imports {wrong} from a layer above it"


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_import_the_sections_and_the_core_only(path):
    cells = json.loads(path.read_text())["cells"]
    source = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    source = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
    wrong = upward_imports("sections", lablib_imports(source))
    assert not wrong, f"{path.name} imports {wrong}; notebooks may use lablib.sections and lablib.core only"


def test_every_layer_says_what_belongs_there():
    for folder in LAYER_FOLDERS:
        docstring = ast.get_docstring(ast.parse((PACKAGE / folder / "__init__.py").read_text()))
        assert docstring and len(docstring.split()) > 20, f"lablib/{folder}/__init__.py needs its docstring"


def test_the_checker_sees_an_upward_import():
    # The rule itself, on sources written for the purpose: a core module importing the report is caught,
    # inside a function too; a section importing the core is not.
    assert upward_imports("core", lablib_imports("def f():\n    from lablib.report.plan import load_plan\n"))
    assert upward_imports("sections", lablib_imports("import lablib.cli\n"))
    assert upward_imports("core", lablib_imports("from lablib.sections import fast\n"))
    assert not upward_imports("sections", lablib_imports("from lablib.core.train import train\n"))


def import_graph() -> dict[str, set[str]]:
    """module -> the lablib modules it imports (a package's name stands for the package's __init__)."""
    names = {module_name(path) for path in modules()}
    graph = {}
    for path in modules():
        found = set()
        for imported in lablib_imports(path.read_text()):
            while imported and imported not in names:  # `from lablib.core.store import Request` -> lablib.core.store
                imported = imported.rpartition(".")[0]
            if imported:
                found.add(imported)
        graph[module_name(path)] = found - {module_name(path)}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm): each holds a cycle."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_no_import_cycle_inside_a_layer():
    found = cycles(import_graph())
    assert not found, f"import cycles: {found}"


def test_the_checker_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_plan_and_the_registered_sections_agree():
    from lablib.core.paths import REPO_ROOT
    from lablib.report.plan import load_plan
    from lablib.sections.registry import presenters

    plan = load_plan(REPO_ROOT / "report" / "plan.yaml", "full")
    assert {s.name for s in plan.sections} == set(presenters())


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_papermill_reads_every_declared_parameter(path):
    """papermill drops a parameter whose comment holds "=" (with a warning only): none may be dropped."""
    import papermill

    from lablib.sections.parameters import declared_parameters

    cells = json.loads(path.read_text())["cells"]
    source = next("".join(c["source"]) for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
    assert set(papermill.inspect_notebook(str(path))) == set(declared_parameters(source))
