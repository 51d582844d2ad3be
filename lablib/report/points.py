"""A point's key and the store of point.json files.

A point is one papermill execution of a section's notebook with its parameters.
Its folder is runs/<notebook>/<run-id>/ and holds

    point.json      key, status (running -> complete | failed | timeout | interrupted),
                    parameters, duration, error tail, executed notebook and log paths,
                    the pid and host of the process that records its end
    notebook.ipynb  the executed notebook (papermill writes it as cells finish)
    papermill.log   papermill's cell progress and the cells' output
    run.json, ...   the notebook's own record (the kernel records into this folder)

point.json is written atomically and says "complete" only after papermill
succeeded, so a killed build never leaves a point that looks finished. A
"running" point whose recording process is gone (a build killed with SIGKILL)
reads as "abandoned" (lablib.core.runs.effective_status); the next build, which
holds the store's lock, writes that down (`settle_abandoned`) and runs it again.
When a point ends other than complete, the run its notebook recorded in the
same folder takes the point's status (`settle_run`): the two files agree.

The key hashes everything that decides a point's result: the notebook's cells
(no outputs), the parameters, the code of the core and sections layers
(recursively, with file names), the data's fingerprint, the locked environment
and the device kind. A point is up to date when a complete point.json with its
key exists.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lablib.core.paths import REPO_ROOT
from lablib.core.runs import effective_status, new_run_folder, now_iso, runs_root, write_json

# The layers whose code decides what a notebook measures. The report layer and the commands on top
# (cli, bench) are outside the key by construction.
KEYED_LAYERS = ("core", "sections")
POINT_FILE = "point.json"


# --- the key's parts ------------------------------------------------------------------


def notebook_digest(path: Path) -> str:
    """sha256 of the cells' types, sources and tags (outputs, counts and ids excluded)."""
    notebook = json.loads(Path(path).read_text())
    cells = [
        [c.get("cell_type"), "".join(c.get("source", "")), sorted(c.get("metadata", {}).get("tags", []))]
        for c in notebook.get("cells", [])
    ]
    return hashlib.sha256(json.dumps(cells).encode()).hexdigest()


def lablib_digest(package: Path = REPO_ROOT / "lablib", layers: tuple[str, ...] = KEYED_LAYERS) -> str:
    """sha256 of every Python file under the keyed layers (recursively), with its path.

    A module added, removed, renamed or edited anywhere in lablib/core or lablib/sections
    changes the digest; the report layer and the commands on top never do.
    """
    digest = hashlib.sha256()
    for layer in layers:
        for module in sorted((package / layer).rglob("*.py")):
            if "__pycache__" in module.parts:
                continue
            digest.update(module.relative_to(package).as_posix().encode() + b"\0" + module.read_bytes() + b"\0")
    return digest.hexdigest()


def device_kind() -> str:
    """What the measurements run on: 'cuda:<gpu name>' or 'cpu:<cpu model>'."""
    import torch

    from lablib.core.provenance import cpu_model

    if torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(0)}"
    return f"cpu:{cpu_model()}"


def data_fingerprint(data: str, cache_dir: Path | None = None) -> str:
    """The fingerprint lablib.core.data gives a source (equal to the records' data.fingerprint).

    A .zip's sha256 is cached under (path, size, mtime) so an up-to-date check costs no read.
    """
    from lablib.core.data import NAMED_SOURCES, _archive_fingerprint, default_data_dir

    if not data:
        return "no data"
    if data in NAMED_SOURCES:
        return NAMED_SOURCES[data]
    path = Path(data).expanduser().resolve()
    if not path.exists():
        return f"missing:{path}"
    stat = path.stat()
    cache = (cache_dir or default_data_dir() / "cache") / "fingerprints.json"
    stamp = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    try:
        known = json.loads(cache.read_text())
    except (OSError, json.JSONDecodeError):
        known = {}
    if stamp not in known:
        known[stamp] = f"imagefolder-{_archive_fingerprint(path)[:24]}"
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            write_json(cache, known)
        except OSError:
            pass  # read-only data dir: compute again next time
    return known[stamp]


def point_key(
    notebook: str, parameters: Mapping[str, Any], lablib: str, data: str, environment: str, device: str
) -> str:
    """The key of a point from its parts' digests (see the module docstring)."""
    blob = json.dumps(
        {
            "notebook": notebook,
            "parameters": dict(parameters),
            "lablib": lablib,
            "data": data,
            "environment": environment,
            "device": device,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


# --- the store ---------------------------------------------------------------------------

new_point_folder = new_run_folder  # a point's folder is its run's folder


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
        if point and point.get("key"):
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


def results_of(record: Mapping[str, Any] | None) -> dict[str, Any]:
    """The results.json the notebook recorded in a point's folder ({} when there is none)."""
    try:
        return json.loads(Path(record["folder"], "results.json").read_text()) if record else {}
    except (OSError, json.JSONDecodeError, KeyError):
        return {}
