"""Fault injection: damaged files, bad inputs and races, each with a clear outcome.

Every case does the fault for real (overwrites bytes, truncates a file, races two
processes) and asserts the outcome: a one-line error naming the value and what to
do, or a clean recovery that says so; never a result computed from damaged data.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from PIL import Image

from lablib.core.data import load_data
from lablib.core.errors import DataError


def _image_tree(root: Path, classes=("cat", "dog"), per_class=4) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def _zip_of(tree: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(tree.rglob("*.png")):
            zipped.write(path, path.relative_to(tree).as_posix())
    return archive


@pytest.fixture
def source(tmp_path) -> Path:
    return _zip_of(_image_tree(tmp_path / "tree"), tmp_path / "images.zip")


def _cache_entry(data_dir: Path) -> Path:
    (entry,) = (data_dir / "cache").glob("imagefolder-*")
    return entry


def _truth(source: Path, tmp_path: Path) -> np.ndarray:
    return load_data(str(source), data_dir=tmp_path / "reference").train.data.copy()


def _overwrite_bytes(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    middle = len(raw) // 2
    raw[middle : middle + 64] = bytes(255 - b for b in raw[middle : middle + 64])
    path.write_bytes(bytes(raw))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 3])


def _garble_header(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[10:40] = b"{'descr': 'nonsense', 'x': ((("
    path.write_bytes(bytes(raw))


def _break_meta(path: Path) -> None:
    (path.parent / "meta.json").write_text('{"classes": ["cat", "dog"], "arrays": ')


@pytest.mark.parametrize(
    "damage, reason",
    [
        (_overwrite_bytes, "content hash"),
        (_truncate, "cannot be read"),
        (_garble_header, "cannot be read"),
        (_break_meta, "meta.json"),
    ],
    ids=["bytes-overwritten", "truncated", "garbled-header", "broken-meta"],
)
def test_a_damaged_decode_cache_is_rebuilt_with_one_line_saying_so(source, tmp_path, capsys, damage, reason):
    truth = _truth(source, tmp_path)
    data_dir = tmp_path / "data"
    load_data(str(source), data_dir=data_dir)
    damage(_cache_entry(data_dir) / "train_images.npy")
    capsys.readouterr()

    bundle = load_data(str(source), data_dir=data_dir)

    assert np.array_equal(bundle.train.data, truth)  # trained on the real pixels, not the damaged ones
    said = [line for line in capsys.readouterr().err.splitlines() if "damaged" in line]
    assert len(said) == 1 and reason in said[0] and "rebuilding" in said[0]
    again = load_data(str(source), data_dir=data_dir)  # the rebuilt entry is sound: no second rebuild
    assert np.array_equal(again.train.data, truth)
    assert "damaged" not in capsys.readouterr().err


def _load_in_process(source: str, data_dir: str, out: str) -> None:
    bundle = load_data(source, data_dir=data_dir)
    np.save(out, bundle.train.data)


def test_two_processes_building_the_same_cache_at_once_leave_it_sound(source, tmp_path):
    truth = _truth(source, tmp_path)
    data_dir = tmp_path / "data"
    context = multiprocessing.get_context("spawn")
    outs = [tmp_path / f"out{i}.npy" for i in range(2)]
    processes = [context.Process(target=_load_in_process, args=(str(source), str(data_dir), str(o))) for o in outs]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
        assert process.exitcode == 0
    for out in outs:
        assert np.array_equal(np.load(out), truth)
    entry = _cache_entry(data_dir)  # exactly one entry, no staging folders left behind
    assert not list((data_dir / "cache").glob(".staging-*"))
    meta = json.loads((entry / "meta.json").read_text())
    assert set(meta["arrays"]) == {"train_images", "train_labels", "test_images", "test_labels"}


def test_a_truncated_zip_is_called_damaged(source, tmp_path):
    broken = tmp_path / "broken.zip"
    broken.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    with pytest.raises(DataError) as error:
        load_data(str(broken), data_dir=tmp_path / "data")
    message = str(error.value)
    assert "damaged" in message and "broken.zip" in message and "\n" not in message


def test_a_zip_member_with_changed_bytes_is_called_damaged(tmp_path):
    tree = _image_tree(tmp_path / "tree")
    archive = tmp_path / "stored.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zipped:
        for path in sorted(tree.rglob("*.png")):
            zipped.write(path, path.relative_to(tree).as_posix())
    raw = bytearray(archive.read_bytes())
    offset = raw.index(b"IDAT") + 8  # inside the first image's pixel data: its CRC no longer matches
    raw[offset : offset + 16] = bytes(16)
    archive.write_bytes(bytes(raw))
    with pytest.raises(DataError) as error:
        load_data(str(archive), data_dir=tmp_path / "data")
    assert "damaged" in str(error.value) or "cannot decode" in str(error.value)


def _digit_tree(root: Path) -> Path:
    for split in ("train", "test"):
        for digit in "0123456789":
            folder = root / split / digit
            folder.mkdir(parents=True)
            Image.new("L", (28, 28), int(digit) * 20).save(folder / "0.png")
    return root


def test_mnist_given_to_a_cifar_section_is_refused_not_trained(tmp_path, monkeypatch):
    from lablib.sections.setup import setup

    digits = _digit_tree(tmp_path / "digits")
    with pytest.raises(DataError) as error:
        setup({"data": str(digits), "data_dir": str(tmp_path / "data"), "device": "cpu"}, show=False)
    message = str(error.value)
    assert "1 x 28 x 28" in message and "3 x 32 x 32" in message and "\n" not in message


def test_e1_takes_digits_and_colour_images(tmp_path):
    from lablib.core.data import COLOUR_32, DIGITS_28
    from lablib.sections.setup import setup

    digits = _digit_tree(tmp_path / "digits")
    ready = setup(
        {"data": str(digits), "data_dir": str(tmp_path / "data"), "device": "cpu"},
        show=False,
        kinds=(COLOUR_32, DIGITS_28),
    )
    assert ready.data.channels == 1 and ready.data.image_size == 28


def test_records_and_the_data_cache_are_readable_by_the_group(source, tmp_path):
    import os
    import stat

    from lablib.core.config import make_config
    from lablib.core.runs import start_run

    old = os.umask(0o002)  # a lab's shared file system: group members read each other's records
    try:
        with start_run("c1_training", make_config()) as run:
            run.log_results(final_loss=1.0)
        load_data(str(source), data_dir=tmp_path / "data")
    finally:
        os.umask(old)
    for path in [run.path / "run.json", run.path / "results.json", _cache_entry(tmp_path / "data")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & stat.S_IRGRP, f"{path} is {oct(mode)}: the group cannot read it"


# --- signals, abandoned runs, the store's lock ---------------------------------------------------------
# A real build (python -m lablib report) of a tiny plan: its one point records a run, then waits for a
# file to go away, so a test can signal the build after the notebook finished its record.


def _notebook(path: Path, cells: list[tuple[str, str, list[str]]]) -> None:
    import nbformat

    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (lablib)", "language": "python"}
    for kind, text, tags in cells:
        cell = nbformat.v4.new_markdown_cell(text) if kind == "markdown" else nbformat.v4.new_code_cell(text)
        cell.metadata["tags"] = tags
        notebook.cells.append(cell)
    nbformat.write(notebook, path)


def _holding_plan(base: Path, hold: Path, data: bool = False) -> Path:
    """A plan of one section (c8_graph) whose point records a complete run, then waits while `hold` exists."""
    import yaml

    notebooks = base / "notebooks"
    notebooks.mkdir(parents=True, exist_ok=True)
    parameters = 'tag: str = ""  # the plan/profile' + ('\ndata: str = "cifar10"  # the images' if data else "")
    use_data = (
        "from lablib.core.data import load_data\n"
        "bundle = load_data(data)\n"
        "assert len(bundle.train) == 8, len(bundle.train)\n"
        if data
        else ""
    )
    _notebook(
        notebooks / "c8_graph.ipynb",
        [
            ("markdown", "# C8 · Holder\n\nRecords a run, then waits.", []),
            ("code", parameters, ["parameters"]),
            (
                "code",
                "import os\nfrom pathlib import Path\nfrom lablib.core.runs import Run\n" + use_data + "with Run("
                "Path(os.environ['LABLIB_RUN_DIR']).parent.name, {'tag': tag}) as run:\n"
                "    run.log_results(answer=42)",
                [],
            ),
            ("code", f"import time\nwhile Path({str(hold)!r}).exists():\n    time.sleep(0.2)", []),
        ],
    )
    plan = {
        "title": "t",
        "notebooks": str(notebooks),
        "profiles": {"quick": {"timeout": "10m"}},
        "parts": [{"title": "P", "sections": [{"notebook": "c8_graph", "id": "C8"}]}],
    }
    path = base / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    return path


def _report_command(plan: Path, out: Path, *extra: str) -> list[str]:
    return [
        *[sys.executable, "-m", "lablib", "report", "--profile", "quick", "--plan", str(plan), "--output", str(out)],
        *extra,
    ]


def _environment(runs: Path) -> dict[str, str]:
    env = {**os.environ, "LABLIB_RUNS_DIR": str(runs), "PYTHONPATH": str(REPO)}
    env.pop("LABLIB_RUN_DIR", None)
    return env


def _wait_for(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _recorded_run(runs: Path) -> Path | None:
    """The point's folder once its notebook's run.json says complete."""
    for meta in (runs / "c8_graph").glob("*/run.json") if (runs / "c8_graph").is_dir() else []:
        try:
            if json.loads(meta.read_text()).get("status") == "complete":
                return meta.parent
        except (OSError, json.JSONDecodeError):
            continue
    return None


def _marked(marker: str) -> list[str]:
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if marker.encode() in (entry / "environ").read_bytes().split(b"\0"):
                found.append(entry.name)
        except OSError:
            continue
    return found


@pytest.mark.report
@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM", "SIGKILL"])  # Ctrl-C; Slurm's time limit and scancel; kill -9
def test_a_signal_after_the_record_leaves_point_and_run_agreeing(tmp_path, stop):
    from lablib.core.runs import load_runs
    from lablib.report.points import index_points

    hold = tmp_path / "hold"
    hold.touch()
    plan, runs, out = _holding_plan(tmp_path, hold), tmp_path / "runs", tmp_path / "out"
    env = _environment(runs)
    build = subprocess.Popen(
        _report_command(plan, out), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        folder = _wait_for(lambda: _recorded_run(runs), 240, "the notebook's complete run.json")
        if stop == "SIGTERM":  # meanwhile a second build in the same store is turned away, in one line
            second = subprocess.run(
                _report_command(plan, tmp_path / "out2"), cwd=REPO, env=env, capture_output=True, text=True
            )
            assert second.returncode == 2, second.stdout + second.stderr
            line = second.stderr.strip()
            assert "\n" not in line and f"pid {build.pid}" in line and "in use by another build" in line
            assert "Traceback" not in second.stderr and "plan " not in second.stdout  # nothing printed, nothing run
            assert len(list((runs / "c8_graph").glob("*/point.json"))) == 1 and not (tmp_path / "out2").exists()
        build.send_signal(getattr(signal, stop))
        output, _ = build.communicate(timeout=120)
    finally:
        if build.poll() is None:
            build.kill()
    point = json.loads((folder / "point.json").read_text())
    run = json.loads((folder / "run.json").read_text())
    assert point["pid"] == build.pid and point["host"] and run["pid"] != build.pid and run["host"] == point["host"]
    if stop == "SIGKILL":
        assert build.returncode == -signal.SIGKILL
        assert point["status"] == "running"  # nobody could write its end ...
        (shown,) = index_points(runs).values()
        assert [p["status"] for p in shown] == ["abandoned"]  # ... but no reader takes it for running
        _wait_for(lambda: not _marked(f"LABLIB_RUN_DIR={folder}"), 30, "the point's kernel to end itself")
        run = json.loads((folder / "run.json").read_text())
        assert run["status"] in ("complete", "abandoned")  # the record had finished before the kill
    else:
        assert build.returncode == 130, output
        assert point["status"] == run["status"] == "interrupted", (point["status"], run["status"])
        assert "complete" in run["error"] or "running" in run["error"]  # it says what it was before
        assert _marked(f"LABLIB_RUN_DIR={folder}") == []
    (row,) = load_runs("c8_graph", status=None, root=runs).to_dict("records")
    assert row["status"] == ("abandoned" if stop == "SIGKILL" else "interrupted")  # the store agrees
    assert load_runs("c8_graph", root=runs).empty  # nothing in the store reads as complete

    if stop != "SIGKILL":
        return
    hold.unlink()  # the next build takes the dead build's lock over and runs the abandoned point again
    again = subprocess.run(_report_command(plan, out), cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "1 point(s) of a build that was killed are marked abandoned" in again.stdout
    assert "1 point(s) ran, 0 reused" in again.stdout
    statuses = sorted(json.loads(p.read_text())["status"] for p in (runs / "c8_graph").glob("*/point.json"))
    assert statuses == ["abandoned", "complete"]
    assert json.loads((folder / "run.json").read_text())["status"] == "abandoned"  # written down, agreeing
    assert len(load_runs("c8_graph", root=runs)) == 1  # the new complete run only


def test_a_running_record_whose_process_is_gone_reads_as_abandoned(tmp_path):
    import socket

    from lablib.core.runs import effective_status, load_runs, process_started, this_process

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    gone = {"status": "running", "pid": child.pid, "host": socket.gethostname(), "pid_started": 1}
    assert effective_status(gone) == "abandoned"
    assert effective_status({**this_process(), "status": "running"}) == "running"  # alive: still running
    reused = {**this_process(), "status": "running", "pid_started": process_started(os.getpid()) + 1}
    assert effective_status(reused) == "abandoned"  # the same pid, another process
    assert effective_status({**gone, "host": "node-17"}) == "running"  # another host's process: not known here
    folder = tmp_path / "c1_training" / "r1"
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"run_id": "r1", "section": "c1_training", **gone}))
    assert load_runs("c1_training", status="abandoned", root=tmp_path)["run_id"].tolist() == ["r1"]


def test_a_lock_of_a_dead_build_is_taken_over_and_a_live_one_named(tmp_path):
    from lablib.core.errors import LabError
    from lablib.core.runs import lock_store

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom pathlib import Path\nfrom lablib.core.runs import lock_store\n"
            f"with lock_store(Path({str(tmp_path)!r})):\n    print('held', flush=True)\n    time.sleep(60)",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LabError) as error:
            with lock_store(tmp_path):
                pass
        message = str(error.value)
        assert f"pid {holder.pid}" in message and "since 20" in message and "\n" not in message
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        with lock_store(tmp_path) as path:  # the dead holder's lock is free: taken over
            assert json.loads(path.read_text())["pid"] == os.getpid()
    finally:
        if holder.poll() is None:
            holder.kill()
