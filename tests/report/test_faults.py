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
from factories import processes_marked
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


def test_mnist_given_to_a_cifar_section_is_refused_not_trained(tmp_path, private_run_store):
    from lablib.sections.setup import setup

    digits = _zip_of(_digit_tree(tmp_path / "digits"), tmp_path / "digits.zip")
    # `make report ONLY=C1 DATA=digits.zip`: C1's planner refuses the data before anything is measured
    done = subprocess.run(
        [
            *_report_command(REPO / "report" / "plan.yaml", tmp_path / "out", "--only", "C1", "--no-stitch"),
            *["--data", str(digits)],
        ],
        cwd=REPO,
        env=_environment(private_run_store),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    (line,) = [line for line in done.stdout.splitlines() if "(c1_training): invalid:" in line]
    assert "1 x 28 x 28" in line and "3 x 32 x 32" in line and "MNIST belongs to E1 only" in line
    assert "0 measurement(s) ran, 0 reused" in done.stdout and "Traceback" not in done.stdout + done.stderr
    assert not (private_run_store / "measurements").exists()  # nothing trained, not even a small CNN
    # the notebook run alone (JupyterLab, papermill): its preamble refuses it the same way
    with pytest.raises(DataError) as error:
        setup({"data": str(digits), "device": "cpu", "epochs": 1, "tag": "t"}, "c1_training", show=False)
    message = str(error.value)
    assert "1 x 28 x 28" in message and "3 x 32 x 32" in message and "\n" not in message
    assert not (private_run_store / "measurements").exists()


def test_e1_takes_digits_and_colour_images(tmp_path, private_run_store):
    from lablib.sections.setup import setup

    digits = _digit_tree(tmp_path / "digits")
    colour = _image_tree(tmp_path / "colour", classes=tuple(f"class{n}" for n in range(10)), per_class=1)
    grid = {"optimizers": "sgd", "lrs": "0.01", "schedulers": "none", "top": 1, "seeds": 0, "epochs": 1}
    for data, section, channels, model in (
        (digits, "e1_hparam_sweep", 1, "SmallCNN"),
        (colour, "e1_cifar10", 3, "ResNet"),
    ):
        params = {**grid, "data": str(data), "device": "cpu", "batch_size": 8, "section_name": section, "tag": "t"}
        ready = setup(params, section, show=False)
        (trained,) = ready.measured
        assert ready.data.channels == channels and trained.results["model_class"] == model, section
        assert ready.record.meta["uses"][0]["key"] == trained.key
        ready.finish()


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
# A real build (python -m lablib report) of a tiny plan, signalled in each of its phases: while a measuring
# job measures (a long training on fake images), and while a section presents (its notebook records its run,
# then waits for a file to go away, so the signal comes after the record is finished).

HOLDING = "q1_conv_layers"  # a section that measures nothing: its build only presents


def _notebook(path: Path, cells: list[tuple[str, str, list[str]]]) -> None:
    import nbformat

    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (lablib)", "language": "python"}
    for kind, text, tags in cells:
        cell = nbformat.v4.new_markdown_cell(text) if kind == "markdown" else nbformat.v4.new_code_cell(text)
        cell.metadata["tags"] = tags
        notebook.cells.append(cell)
    nbformat.write(notebook, path)


def _write_plan(base: Path, sections: list[dict], notebooks: Path, defaults: dict | None = None) -> Path:
    import yaml

    plan = {
        "title": "t",
        "notebooks": str(notebooks),
        "profiles": {"quick": {"defaults": dict(defaults or {}), "timeout": "10m"}},
        "parts": [{"title": "P", "sections": sections}],
    }
    path = base / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    return path


def _holding_plan(base: Path, hold: Path) -> Path:
    """A plan of one section that measures nothing, whose point records a complete run, then waits while
    `hold` exists."""
    notebooks = base / "notebooks"
    notebooks.mkdir(parents=True, exist_ok=True)
    _notebook(
        notebooks / f"{HOLDING}.ipynb",
        [
            ("markdown", "# Q1 · Holder\n\nRecords a run, then waits.", []),
            ("code", 'tag: str = ""  # the plan/profile', ["parameters"]),
            (
                "code",
                "import os\nfrom pathlib import Path\nfrom lablib.core.runs import Run\nwith Run("
                "Path(os.environ['LABLIB_RUN_DIR']).parent.name, {'tag': tag}) as run:\n"
                "    run.log_results(answer=42)",
                [],
            ),
            ("code", f"import time\nwhile Path({str(hold)!r}).exists():\n    time.sleep(0.2)", []),
        ],
    )
    return _write_plan(base, [{"notebook": HOLDING, "id": "Q1"}], notebooks)


def _measuring_plan(base: Path) -> Path:
    """C1 training ResNet-18 for 50 epochs on fake images: its measuring job runs for minutes."""
    defaults = {"data": "fake", "device": "cpu", "limit_train": 512, "limit_test": 64, "epochs": 50, "workers": 0}
    return _write_plan(base, [{"notebook": "c1_training", "id": "C1"}], REPO / "notebooks", defaults)


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


def _with_status(pattern: str, status: str):
    """The folder of the first run.json matching `pattern` under the store whose status is `status`."""

    def find(runs: Path) -> Path | None:
        for meta in runs.glob(pattern):
            try:
                if json.loads(meta.read_text()).get("status") == status:
                    return meta.parent
            except (OSError, json.JSONDecodeError):
                continue
        return None

    return find


def _signalled(tmp_path: Path, plan: Path, ready, stop: str, while_held=None):
    """Start a build, wait for `ready(runs)` (a folder), call `while_held(build)`, send `stop`; (build, output,
    folder)."""
    runs, out = tmp_path / "runs", tmp_path / "out"
    build = subprocess.Popen(
        _report_command(plan, out),
        cwd=REPO,
        env=_environment(runs),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        folder = _wait_for(lambda: ready(runs), 240, "the record to be written")
        if while_held is not None:
            while_held(build)
        build.send_signal(getattr(signal, stop))
        output, _ = build.communicate(timeout=120)
    finally:
        if build.poll() is None:
            build.kill()
    return build, output, folder


STOPS = ["SIGINT", "SIGTERM", "SIGKILL"]  # Ctrl-C; Slurm's time limit and scancel; kill -9


@pytest.mark.report
@pytest.mark.parametrize("stop", STOPS)
def test_a_signal_while_measuring_leaves_the_job_and_the_measurement_agreeing(tmp_path, stop):
    from lablib.core.runs import effective_status
    from lablib.report.points import index_points, read_point

    plan = _measuring_plan(tmp_path)
    runs = tmp_path / "runs"
    build, output, measurement = _signalled(
        tmp_path, plan, _with_status("measurements/training/*/run.json", "running"), stop
    )
    (job,) = [p.parent for p in (runs / "jobs").glob("*/point.json")]
    point = read_point(job)
    assert point["kind"] == "measure" and point["pid"] == build.pid
    if stop == "SIGKILL":
        assert build.returncode == -signal.SIGKILL
        assert point["status"] == "running"  # nobody could write its end ...
        run = json.loads((measurement / "run.json").read_text())
        assert run["status"] == "running" and effective_status(point) == "abandoned"  # ... no reader is fooled
        gone = lambda: effective_status(json.loads((measurement / "run.json").read_text())) == "abandoned"  # noqa: E731
        _wait_for(gone, 30, "the measuring job to end with the build")
    else:
        assert build.returncode == 130, output
        assert "interrupted: finished measurements and points are kept" in output
        run = json.loads((measurement / "run.json").read_text())
        assert point["status"] == run["status"] == "interrupted", (point["status"], run["status"])
        assert processes_marked(f"LABLIB_RUN_DIR={job}") == []
    assert index_points(runs) == {}  # a measuring job is no point of a section
    # the next build measures it again: an ended measurement is never reused
    dry = subprocess.run(
        _report_command(plan, tmp_path / "out", "--dry-run"),
        cwd=REPO,
        env=_environment(runs),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert dry.returncode == 0 and "1 measurement(s) would run, 0 reused" in dry.stdout, dry.stdout + dry.stderr


@pytest.mark.report
@pytest.mark.parametrize("stop", STOPS)
def test_a_signal_after_the_record_leaves_point_and_run_agreeing(tmp_path, stop):
    from lablib.core.runs import load_runs
    from lablib.report.points import index_points

    hold = tmp_path / "hold"
    hold.touch()
    plan, runs, out = _holding_plan(tmp_path, hold), tmp_path / "runs", tmp_path / "out"
    env = _environment(runs)

    def turned_away(build) -> None:  # meanwhile a second build in the same store is turned away, in one line
        if stop != "SIGTERM":
            return
        second = subprocess.run(
            _report_command(plan, tmp_path / "out2"), cwd=REPO, env=env, capture_output=True, text=True
        )
        assert second.returncode == 2, second.stdout + second.stderr
        line = second.stderr.strip()
        assert "\n" not in line and f"pid {build.pid}" in line and "in use by another build" in line
        assert "Traceback" not in second.stderr and "plan " not in second.stdout  # nothing printed, nothing run
        assert len(list((runs / HOLDING).glob("*/point.json"))) == 1 and not (tmp_path / "out2").exists()

    build, output, folder = _signalled(
        tmp_path, plan, _with_status(f"{HOLDING}/*/run.json", "complete"), stop, turned_away
    )
    point = json.loads((folder / "point.json").read_text())
    run = json.loads((folder / "run.json").read_text())
    assert point["pid"] == build.pid and point["host"] and run["pid"] != build.pid and run["host"] == point["host"]
    if stop == "SIGKILL":
        assert build.returncode == -signal.SIGKILL
        assert point["status"] == "running"  # nobody could write its end ...
        (shown,) = index_points(runs).values()
        assert [p["status"] for p in shown] == ["abandoned"]  # ... but no reader takes it for running
        _wait_for(lambda: not processes_marked(f"LABLIB_RUN_DIR={folder}"), 30, "the point's kernel to end itself")
        run = json.loads((folder / "run.json").read_text())
        assert run["status"] in ("complete", "abandoned")  # the record had finished before the kill
    else:
        assert build.returncode == 130, output
        assert point["status"] == run["status"] == "interrupted", (point["status"], run["status"])
        assert "complete" in run["error"] or "running" in run["error"]  # it says what it was before
        assert processes_marked(f"LABLIB_RUN_DIR={folder}") == []
    (row,) = load_runs(HOLDING, status=None, root=runs).to_dict("records")
    assert row["status"] == ("abandoned" if stop == "SIGKILL" else "interrupted")  # the store agrees
    assert load_runs(HOLDING, root=runs).empty  # nothing in the store reads as complete

    if stop != "SIGKILL":
        return
    hold.unlink()  # the next build takes the dead build's lock over and presents the abandoned point again
    again = subprocess.run(_report_command(plan, out), cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "1 point(s) of a build that was killed are marked abandoned" in again.stdout
    assert f"present {HOLDING}" in again.stdout and "0 measurement(s) ran, 0 reused" in again.stdout
    statuses = sorted(json.loads(p.read_text())["status"] for p in (runs / HOLDING).glob("*/point.json"))
    assert statuses == ["abandoned", "complete"]
    assert json.loads((folder / "run.json").read_text())["status"] == "abandoned"  # written down, agreeing
    assert len(load_runs(HOLDING, root=runs)) == 1  # the new complete run only


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


# --- clear errors at the door: a read-only store or cache, a full disk -------------------------------------
# As root, chmod does not stop writes, so the store is made read-only for real: a read-only bind mount (or a
# tiny tmpfs for a full disk) in a private mount namespace (unshare -m), which only the command sees.


def _namespace_works() -> bool:
    try:
        return subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _run_with_mounts(mounts: list[str], argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run argv in a private mount namespace after the `mount` commands (as root); as a regular user, the
    read-only cases fall back to chmod, which then does stop writes."""
    if os.geteuid() != 0:
        pytest.skip("mount namespaces need root here; as a regular user test_faults' chmod cases apply")
    if not _namespace_works():
        pytest.skip("unshare -m is not permitted in this container")
    script = " && ".join([*mounts, 'exec "$@"'])
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", script, "sh", *argv], cwd=REPO, env=env, capture_output=True, text=True
    )


def _read_only(folder: Path) -> list[str]:
    return [f"mount --bind '{folder}' '{folder}'", f"mount -o remount,bind,ro '{folder}'"]


def _one_line_at_the_door(done: subprocess.CompletedProcess, *words: str) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "OSError" not in done.stderr
    assert "plan " not in done.stdout and "to run" not in done.stdout  # nothing printed before it, nothing ran
    line = done.stderr.strip()
    assert "\n" not in line and all(word in line for word in words), line
    return line


def test_a_read_only_run_store_is_one_line_before_anything(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    plan = _holding_plan(tmp_path, tmp_path / "hold")
    done = _run_with_mounts(_read_only(runs), _report_command(plan, tmp_path / "out"), _environment(runs))
    _one_line_at_the_door(done, "the run store", str(runs), "not writable", "LABLIB_RUNS_DIR")
    assert not list(runs.iterdir())


def test_a_read_only_data_cache_is_one_line_before_anything(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    plan = _holding_plan(tmp_path, tmp_path / "hold")
    env = {**_environment(tmp_path / "runs"), "LABLIB_DATA_DIR": str(data)}
    done = _run_with_mounts(_read_only(data), _report_command(plan, tmp_path / "out"), env)
    _one_line_at_the_door(done, "the data cache folder", str(data / "cache"), "not writable", "LABLIB_DATA_DIR")
    assert not list((tmp_path / "runs").glob("*/*/point.json"))


def test_a_full_disk_is_one_line_before_anything(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    plan = _holding_plan(tmp_path, tmp_path / "hold")
    done = _run_with_mounts(
        [f"mount -t tmpfs -o size=1m tmpfs '{runs}'"], _report_command(plan, tmp_path / "out"), _environment(runs)
    )
    line = _one_line_at_the_door(done, "the run store", "MiB free", "LABLIB_RUNS_DIR")
    assert "100 MiB" in line


def test_a_disk_filling_up_while_recording_is_one_clear_error(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    probe = (
        "import sys\nfrom pathlib import Path\nfrom lablib.core.runs import DiskFullError, write_json\n"
        f"target = Path({str(store)!r}) / 'results.json'\n"
        "try:\n    write_json(target, {'rows': list(range(100000))})\n"
        "except DiskFullError as error:\n    print(error)\n"
        "    print('left:', sorted(p.name for p in target.parent.iterdir()))\n    sys.exit(7)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = _run_with_mounts([f"mount -t tmpfs -o size=64k tmpfs '{store}'"], [sys.executable, "-c", probe], env)
    assert done.returncode == 7, done.stdout + done.stderr
    message, left = done.stdout.strip().splitlines()
    assert "no space left" in message and str(store) in message and "free some space" in message
    assert left == "left: []"  # no half-written file, not even the temporary one


# --- options and paths --------------------------------------------------------------------------------


def _make(*assignments: str, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", "report", "LAB=all", *assignments],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.report  # eight `make report` starts: about 30 s, so outside make test-fast
@pytest.mark.parametrize(
    "assignment, words",
    [
        ("JOBS=0", ["JOBS=0", ">= 1"]),
        ("JOBS=abc", ["JOBS='abc'", "whole number"]),
        ("JOBS=", ["JOBS=''", "whole number"]),
        ("DEVICE=gpu", ["DEVICE='gpu'", "auto, cuda or cpu"]),
        ("EXECUTOR=k8s", ["EXECUTOR='k8s'", "local or slurm"]),
        ("PROFILE=", ["PROFILE is empty"]),
        ("PROFILE=bogus", ["bogus", "quick"]),
        ("ONLY=Z9", ["Z9"]),
    ],
)
def test_every_make_variable_is_checked_in_one_line(tmp_path, assignment, words):
    plan = _holding_plan(tmp_path, tmp_path / "hold")
    assignments = [f"PLAN={plan}", f"OUTPUT={tmp_path / 'out'}", assignment]
    if not assignment.startswith("PROFILE"):
        assignments.append("PROFILE=quick")
    done = _make(*assignments, env=_environment(tmp_path / "runs"), timeout=300)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and all(word in errors[0] for word in words), done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()


def test_slurm_counts_are_checked(monkeypatch):
    from lablib.core.errors import LabError
    from lablib.report.executors import SlurmSettings

    assert SlurmSettings.from_env({"SLURM_CPUS": "4", "SLURM_GPUS": "0"}).cpus_per_task == 4
    for name, value in (("SLURM_CPUS", "0"), ("SLURM_TIME_MIN", "-5"), ("SLURM_MEM_GB", "nan"), ("SLURM_GPUS", "-1")):
        with pytest.raises(LabError) as error:
            SlurmSettings.from_env({name: value})
        assert f"{name}={value!r}" in str(error.value) and ">=" in str(error.value)


def _failing_section(notebooks: Path) -> dict:
    """A section that measures nothing and whose notebook raises."""
    _notebook(
        notebooks / "q2_last_linear.ipynb",
        [
            ("markdown", "# Q2 · Broken\n\nFails on purpose.", []),
            ("code", 'tag: str = ""  # the plan/profile', ["parameters"]),
            ("code", "raise RuntimeError('broken on purpose')", []),
        ],
    )
    return {"notebook": "q2_last_linear", "id": "Q2"}


@pytest.mark.report
def test_make_report_only_c8_with_data_in_a_path_with_a_space_and_an_accent(tmp_path):
    """`make report ONLY=C8 DATA="…/my data é/cifar 10.zip"` on a fresh store: C8 (the model graph, as in the
    2026 numbering) measures its training and TorchScript model on those images and presents them, exit 0, and
    the other (broken) section is not built rather than failed; once it has failed, ONLY=C8 still exits 0."""
    import shutil

    folder = tmp_path / "my data é"
    folder.mkdir()
    classes = tuple(f"class{n}" for n in range(10))
    data = _zip_of(_image_tree(tmp_path / "tree", classes=classes, per_class=2), folder / "cifar 10.zip")
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    shutil.copy(REPO / "notebooks" / "c8_graph.ipynb", notebooks / "c8_graph.ipynb")
    sections = [{"notebook": "c8_graph", "id": "C8", "title": "Print the model graph"}, _failing_section(notebooks)]
    plan = _write_plan(tmp_path, sections, notebooks, {"device": "cpu", "epochs": 1, "workers": 0})
    runs, out = tmp_path / "runs", tmp_path / "report out é"
    env = {**_environment(runs), "LABLIB_DATA_DIR": str(tmp_path / "data dir")}
    common = [f"PLAN={plan}", f"OUTPUT={out}", "PROFILE=quick", f"DATA={data}"]

    only = _make(*common, "ONLY=C8", env=env)
    assert only.returncode == 0, only.stdout + only.stderr
    assert "failed" not in only.stdout.lower() and (out / "report.html").is_file()
    assert "2 measurement(s) ran, 0 reused" in only.stdout  # the training and its TorchScript model
    (point,) = [json.loads(p.read_text()) for p in runs.glob("c8_graph/*/point.json")]
    assert point["status"] == "complete" and point["parameters"]["data"] == str(data)
    (training,) = [json.loads(p.read_text()) for p in runs.glob("measurements/training/*/run.json")]
    assert training["settings"]["data"] == str(data) and training["status"] == "complete"  # the path, whole
    (results,) = [json.loads(p.read_text()) for p in runs.glob("measurements/training/*/results.json")]
    assert results["train_images"] == len(classes) * 2  # trained on those images
    assert not (runs / "q2_last_linear").exists()  # never selected: never run

    everything = _make(*common, env=env)
    assert everything.returncode == 2 and "Error 1" in everything.stderr, everything.stdout + everything.stderr
    assert "1 section(s) failed" in everything.stdout and "q2_last_linear" in everything.stdout
    assert "0 measurement(s) ran, 2 reused" in everything.stdout

    again = _make(*common, "ONLY=C8", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "section(s) failed" not in again.stdout and "0 measurement(s) ran, 2 reused" in again.stdout
    assert "present " not in again.stdout
