"""Run records carried between machines: a GPU node's tarball unpacked here, and its short summary.

    python -m lablib.report.records unpack gpu-check/records.tar.gz [--into runs/]
    python -m lablib.report.records summary gpu-check/runs

The GPU check (tools/gpu_check.sh) runs the points on a node without TeX and tars their
run folders (model files left out). `unpack` puts them into this machine's run store:
members are checked (no absolute paths, no `..`, no links), a folder already in the store
is left as it is, and each point.json's paths to its executed notebook and log are
rewritten to where they now are, so the report stitches them as if they had run here.
`summary` prints the headline figures of the records as a Markdown table; a figure for a
full 50,000-image epoch is derived from the measured images/s and labelled so.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

from lablib.core.errors import LabError
from lablib.core.paths import runs_root
from lablib.core.runs import load_runs, write_json

FULL_EPOCH_IMAGES = 50_000
POINT_FILE = "point.json"
PATH_FIELDS = {"executed": "notebook.ipynb", "log": "papermill.log"}


def _safe_members(archive: tarfile.TarFile, where: str) -> list[tarfile.TarInfo]:
    members = []
    for member in archive.getmembers():
        parts = Path(member.name).parts
        if member.name.startswith("/") or ".." in parts:
            raise LabError(f"{where}: member {member.name!r} points outside the run store; not unpacking it.")
        if not (member.isfile() or member.isdir()):
            raise LabError(f"{where}: member {member.name!r} is a link or device file; not unpacking it.")
        members.append(member)
    return members


def unpack(tarball: str | Path, into: Path | None = None) -> list[Path]:
    """Unpack a records tarball (its top folder `runs/`) into the run store; returns the new run folders."""
    tarball, into = Path(tarball), Path(into or runs_root())
    if not tarball.is_file():
        raise LabError(f"RECORDS={tarball} does not exist; give the records.tar.gz the GPU check wrote.")
    try:
        archive = tarfile.open(tarball)
    except (tarfile.TarError, OSError) as error:
        raise LabError(f"RECORDS={tarball} is not a readable tarball ({error}); copy it again.") from None
    added = []
    with archive, tempfile.TemporaryDirectory(prefix="lablib-records-") as scratch:
        members = _safe_members(archive, str(tarball))
        try:
            archive.extractall(scratch, members=members, filter="data")
        except (tarfile.TarError, OSError) as error:
            raise LabError(f"RECORDS={tarball} is damaged ({error}); copy it again.") from None
        source = Path(scratch) / "runs"
        if not source.is_dir():
            raise LabError(f"RECORDS={tarball} has no runs/ folder; it is not a GPU check's records tarball.")
        folders = [*source.glob("*/*/run.json"), *source.glob("measurements/*/*/run.json")]
        for run in sorted(p.parent for p in folders):
            target = into / run.relative_to(source)
            if target.exists():
                continue  # unpacked before: the store keeps what it has
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(run, target)
            _rewrite_point(target)
            added.append(target)
    return added


def _rewrite_point(folder: Path) -> None:
    point_path = folder / POINT_FILE
    try:
        point = json.loads(point_path.read_text())
    except (OSError, json.JSONDecodeError):
        return  # a run without a point (a notebook run by hand): nothing to rewrite
    for field, name in PATH_FIELDS.items():
        if field in point:
            point[field] = str(folder / name)
    point["unpacked_from"] = point.get("unpacked_from") or "records"
    write_json(point_path, point)


def headline_rows(root: Path) -> list[dict]:
    """One row per complete run: its section, what varied, the device, epoch time, images/s and a 50k-epoch figure."""
    runs = load_runs(root=root)
    rows = []
    for run in runs.to_dict("records"):
        images_per_s = run.get("images_per_s_mean") or run.get("images_per_s")
        epoch_s = run.get("epoch_s_mean") or run.get("epoch_s")
        swept = {k: run.get(k) for k in ("workers", "optimizer", "device", "compile_mode", "mode", "batch_size")}
        rows.append(
            {
                "section": run["section"],
                "point": ", ".join(f"{k}={v}" for k, v in swept.items() if v is not None and v == v and v != ""),
                "device": run.get("device_name") or run.get("resolved_device") or "",
                "epoch_s": epoch_s,
                "images_per_s": images_per_s,
                "derived_50k_epoch_s": FULL_EPOCH_IMAGES / images_per_s if images_per_s else None,
            }
        )
    return rows


def summary_markdown(root: Path) -> str:
    rows = headline_rows(root)
    if not rows:
        return f"\nNo complete run records under {root}.\n"
    lines = [
        "",
        "| section | point | device | epoch on the subset (s, measured) | images/s | "
        "50,000-image epoch (s, derived from images/s) |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    for row in rows:

        def number(value, digits):
            return "—" if value is None or value != value else f"{value:,.{digits}f}"

        lines.append(
            f"| {row['section']} | {row['point']} | {row['device']} | {number(row['epoch_s'], 2)} | "
            f"{number(row['images_per_s'], 0)} | {number(row['derived_50k_epoch_s'], 2)} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lablib.report.records", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    unpack_parser = commands.add_parser("unpack", help="unpack a records tarball into the run store")
    unpack_parser.add_argument("tarball")
    unpack_parser.add_argument("--into", default=None, help="the run store (default: runs/ or $LABLIB_RUNS_DIR)")
    summary_parser = commands.add_parser("summary", help="the headline figures of a run store, as Markdown")
    summary_parser.add_argument("root")
    args = parser.parse_args(argv)
    try:
        if args.command == "unpack":
            added = unpack(args.tarball, Path(args.into) if args.into else None)
            print(f"unpacked {len(added)} run folder(s) into {args.into or runs_root()}")
        else:
            print(summary_markdown(Path(args.root)))
    except LabError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
