"""A section's point: one notebook execution presenting its measurements, its key and point.json.

A point is one papermill execution of a section's notebook with its parameters. It measures
nothing (the build measured first; the notebook runs with LABLIB_MEASURE=reuse) and writes
runs/<notebook>/<run-id>/:

    point.json      key, key parts, status (running -> complete | failed | timeout | interrupted),
                    parameters, the measurements it presents, duration, error tail, executed notebook
                    and log paths, the pid and host of the process that records its end
    notebook.ipynb  the executed notebook (papermill writes it as cells finish)
    papermill.log   papermill's cell progress and the cells' output
    run.json, ...   the notebook's presenting record (its answers, which the headlines read)

point.json is written atomically and says "complete" only after papermill succeeded, so a killed
build never leaves a point that looks finished; a "running" point whose recording process is gone
reads as "abandoned" and runs again.

A point's key hashes what decides its output: the notebook's cells, its parameters, the presenting
code it imports (the lablib/sections modules of its import closure, and the module of its
planner), the core layer's code, the keys of the measurements it presents, the locked environment
and the device kind. Editing a sentence in lablib/sections re-executes only the notebooks that
import it, and they find their measurements recorded; editing lablib/report re-stitches only.
"""

from __future__ import annotations

import ast
import hashlib
import json
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from lablib.core.paths import REPO_ROOT
from lablib.core.runs import effective_status, new_run_folder, now_iso, runs_root, write_json

POINT_FILE = "point.json"
SECTIONS_PACKAGE = REPO_ROOT / "lablib" / "sections"


# --- the key's parts ------------------------------------------------------------------


def notebook_digest(path: Path) -> str:
    """sha256 of the cells' types, sources and tags (outputs, counts and ids excluded)."""
    notebook = json.loads(Path(path).read_text())
    cells = [
        [c.get("cell_type"), "".join(c.get("source", "")), sorted(c.get("metadata", {}).get("tags", []))]
        for c in notebook.get("cells", [])
    ]
    return hashlib.sha256(json.dumps(cells).encode()).hexdigest()


def _sections_imported(source: str) -> set[str]:
    """The lablib.sections modules a piece of code imports (module names, e.g. 'workers')."""
    found = set()
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return found
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[:2] == ["lablib", "sections"] and len(parts) >= 3:
                found.add(parts[2])
    return found


@lru_cache(maxsize=256)
def _module_closure(module: str, package: Path = SECTIONS_PACKAGE) -> frozenset[str]:
    """`module` and every lablib.sections module it imports, recursively."""
    seen, stack = set(), [module]
    while stack:
        name = stack.pop()
        path = package / f"{name}.py"
        if name in seen or not path.is_file():
            continue
        seen.add(name)
        stack.extend(_sections_imported(path.read_text()))
    return frozenset(seen)


def presenting_modules(notebook: Path, extra: Iterable[str] = (), package: Path = SECTIONS_PACKAGE) -> list[str]:
    """The lablib/sections modules a notebook's output depends on: its imports' closure and `extra` (its planner's)."""
    cells = json.loads(Path(notebook).read_text()).get("cells", [])
    code = "\n".join("".join(c.get("source", "")) for c in cells if c.get("cell_type") == "code")
    wanted = {*_sections_imported(_without_magics(code)), *extra}
    modules: set[str] = set()
    for name in wanted:
        modules |= _module_closure(name, package)
    return sorted(modules)


def _without_magics(code: str) -> str:
    return "\n".join(line for line in code.splitlines() if not line.lstrip().startswith(("%", "!")))


def presenting_digest(modules: Iterable[str], package: Path = SECTIONS_PACKAGE) -> str:
    """sha256 of the named lablib/sections modules' files, with their names."""
    digest = hashlib.sha256()
    for name in sorted(set(modules)):
        path = package / f"{name}.py"
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"missing") + b"\0")
    return digest.hexdigest()


def point_key(parts: Mapping[str, Any]) -> str:
    """The key of a point from its parts (see the module docstring)."""
    return hashlib.sha256(json.dumps(dict(parts), sort_keys=True, default=str).encode()).hexdigest()[:20]


# --- the store of points ------------------------------------------------------------------

new_point_folder = new_run_folder  # a point's folder is its presenting run's folder


def read_point(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((Path(folder) / POINT_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def write_point(folder: Path, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Merge `fields` into the folder's point.json (written atomically); returns the whole record."""
    record = {**(read_point(folder) or {}), **fields}
    write_json(Path(folder) / POINT_FILE, record)
    return record


def settle_run(folder: Path, status: str, error: str | None = None) -> None:
    """The point's run (run.json in its folder) takes the point's status when the point did not end complete.

    A notebook may finish its record and still be stopped in a later cell: then run.json would say complete
    for a point that is not, and a killed kernel leaves run.json "running"; after this both say `status`."""
    path = Path(folder) / "run.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return
    if status == "complete" or not meta.get("point_run") or meta.get("status") == status:
        return
    meta.update(
        status=status,
        error=f"the report point ended {status} (its run.json said {meta.get('status')}): "
        + (error or "see point.json"),
        ended=meta.get("ended") or now_iso(),
    )
    write_json(path, meta)


def settle_abandoned(root: Path | None = None) -> list[Path]:
    """Write "abandoned" into every point (and its run) whose recording process is gone; their folders.

    Called by a build holding the store's lock, so no other build on this host can be recording them."""
    settled = []
    for path in sorted((root or runs_root()).glob(f"*/*/{POINT_FILE}")):
        point = read_point(path.parent)
        if point and point.get("status") == "running" and effective_status(point) == "abandoned":
            error = "abandoned: the process recording this point was gone (killed) before the point ended"
            write_point(path.parent, {"status": "abandoned", "error": error, "ended": point.get("ended") or now_iso()})
            settle_run(path.parent, "abandoned", error)
            settled.append(path.parent)
    return settled


def index_points(root: Path | None = None) -> dict[str, list[dict[str, Any]]]:
    """key -> every recorded attempt of that point (oldest first), each with its folder.

    A "running" attempt whose recording process is gone on this host is listed as "abandoned"."""
    found: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((root or runs_root()).glob(f"*/*/{POINT_FILE}")):
        point = read_point(path.parent)
        if point and point.get("key") and point.get("kind", "notebook") == "notebook":
            point["status"] = effective_status(point)
            point["folder"] = str(path.parent)
            found.setdefault(point["key"], []).append(point)
    for attempts in found.values():
        attempts.sort(key=lambda p: p.get("started") or "")
    return found


def latest_complete(index: Mapping[str, list[dict]], key: str) -> dict | None:
    """The newest complete attempt of `key` whose executed notebook exists, else None."""
    complete = [
        p for p in index.get(key, []) if p.get("status") == "complete" and Path(p["folder"], "notebook.ipynb").is_file()
    ]
    return complete[-1] if complete else None


def presenting_record(point: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The run.json the notebook recorded in a point's folder, with its results (None when there is none)."""
    if not point:
        return None
    folder = Path(point["folder"])
    try:
        meta = json.loads((folder / "run.json").read_text())
    except (OSError, json.JSONDecodeError, KeyError):
        return None
    try:
        meta["results"] = json.loads((folder / "results.json").read_text())
    except (OSError, json.JSONDecodeError):
        meta["results"] = {}
    return meta
