"""The measurement store: measured once under a key of what decides it, reused after, never half-written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO
from factories import dummy_request, record_measurement

from lablib.core import store
from lablib.core.store import MeasureFailed, NotMeasured, key_parts, lookup, obtain


@pytest.fixture(autouse=True)
def dummy_kind(monkeypatch):
    monkeypatch.setitem(store.KINDS, "dummy", "factories")


def runs(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


def test_a_measurement_is_measured_once_then_reused(tmp_path):
    counter = tmp_path / "counter"
    first = obtain(dummy_request(3, counter=str(counter)), asked_by="c1_training")
    again = obtain(dummy_request(3, counter=str(counter)), asked_by="c2_timing")
    assert (first.reused, again.reused) == (False, True)
    assert first.path == again.path and again.results["doubled"] == 6
    assert again.first_asked_by == "c1_training"  # who asked first is what the record keeps
    assert runs(counter) == 1


def test_forced_a_recorded_measurement_is_measured_again_and_the_newer_attempt_is_reused(tmp_path):
    counter = tmp_path / "counter"
    first = obtain(dummy_request(3, counter=str(counter)))
    forced = obtain(dummy_request(3, counter=str(counter)), force=True)  # FORCE=1
    assert not forced.reused and forced.key == first.key and forced.path != first.path and runs(counter) == 2
    assert lookup(dummy_request(3, counter=str(counter))).path == forced.path


def test_the_key_follows_what_decides_the_result(tmp_path, monkeypatch):
    base = dummy_request(1)
    assert dummy_request(1).key == base.key
    assert dummy_request(2).key != base.key  # a setting
    assert dummy_request(1, data_dir="/elsewhere").key == base.key  # where the data lives does not decide it
    assert dummy_request(1, device="cuda").key != base.key  # the device kind
    parts = key_parts(base)
    assert set(parts) == {"kind", "settings", "core", "environment", "device"}
    before = base.key
    monkeypatch.setattr(store, "core_digest", lambda: "another core")
    assert dummy_request(1).key != before  # the measuring code


def test_the_measuring_code_is_every_module_of_the_core_even_in_a_new_sub_folder(tmp_path):
    import shutil

    core = tmp_path / "core"
    shutil.copytree(REPO / "lablib" / "core", core, ignore=shutil.ignore_patterns("__pycache__"))
    before = store.core_digest(core)
    (core / "kernels").mkdir()
    (core / "kernels" / "fused.py").write_text("A = 1\n")
    added = store.core_digest.__wrapped__(core)  # the digest is cached per folder: read the files again
    assert added != before
    (core / "kernels" / "fused.py").rename(core / "kernels" / "other.py")
    renamed = store.core_digest.__wrapped__(core)
    assert renamed != added  # a module's path is part of it
    (core / "__pycache__").mkdir()
    (core / "__pycache__" / "x.py").write_text("B = 2\n")
    assert store.core_digest.__wrapped__(core) == renamed  # caches are not code


def test_comments_docstrings_and_layout_in_the_core_do_not_change_the_measuring_code(tmp_path):
    import shutil

    core = tmp_path / "core"
    shutil.copytree(REPO / "lablib" / "core", core, ignore=shutil.ignore_patterns("__pycache__"))
    before = store.core_digest.__wrapped__(core)
    timing = core / "timing.py"
    source = timing.read_text()
    documented = '"""Another module docstring."""\n# a comment\n' + source.split('"""', 2)[2].replace(
        "\ndef ", "\n\n# said again\ndef ", 1
    )
    timing.write_text(documented)
    assert store.core_digest.__wrapped__(core) == before
    timing.write_text(documented.replace("perf_counter", "monotonic", 1))  # code: a measurement means another thing
    assert store.core_digest.__wrapped__(core) != before
    assert store.code_of(b"def f(:\n") == b"def f(:\n"  # what does not parse counts as it is


def test_the_environment_part_of_the_key_holds_when_a_package_puts_its_vendored_copies_on_sys_path(monkeypatch):
    import importlib.util
    import sys

    from lablib.core.provenance import environment_lock

    lock = environment_lock.__wrapped__  # computed once per process; here, as a process would compute it first
    vendor = Path(importlib.util.find_spec("setuptools").origin).parent / "_vendor"  # torch.compile imports it
    assert list(vendor.glob("*.dist-info"))  # the copies carry distribution metadata
    clean = [entry for entry in sys.path if "_vendor" not in Path(entry).parts]
    monkeypatch.setattr(sys, "path", clean)
    before = lock()
    monkeypatch.setattr(sys, "path", [*clean, str(vendor)])  # what importing setuptools does
    assert lock() == before == environment_lock()


def test_the_data_source_enters_the_key_by_its_content(tmp_path):
    one, two = tmp_path / "a.zip", tmp_path / "b.zip"
    one.write_bytes(b"the same bytes")
    two.write_bytes(b"the same bytes")
    assert dummy_request(1, data=str(one)).key == dummy_request(1, data=str(two)).key
    two.write_bytes(b"other bytes")
    assert dummy_request(1, data=str(one)).key != dummy_request(1, data=str(two)).key


def test_a_timing_is_never_taken_from_a_measurement_that_shared_the_machine(tmp_path, monkeypatch):
    counter = tmp_path / "counter"
    monkeypatch.setenv(store.SHARED_ENV, "1")
    shared = obtain(dummy_request(5, counter=str(counter)))
    assert shared.meta["alone"] is False
    assert lookup(dummy_request(5, counter=str(counter))) is not None  # an accuracy may reuse it
    assert lookup(dummy_request(5, timing=True, counter=str(counter))) is None  # a timing may not
    monkeypatch.delenv(store.SHARED_ENV)
    alone = obtain(dummy_request(5, timing=True, counter=str(counter)))
    assert alone.reused is False and alone.meta["alone"] is True and runs(counter) == 2


def test_a_record_without_the_artifact_the_asker_keeps_is_measured_again(tmp_path):
    counter = tmp_path / "counter"
    obtain(dummy_request(7, counter=str(counter)))
    kept = obtain(dummy_request(7, counter=str(counter), artifact="weights.pt", keep=("weights.pt",)))
    assert kept.artifact("weights.pt").read_text() == "made" and runs(counter) == 2


def test_a_failure_is_recorded_failed_and_raised_as_one_line(tmp_path):
    request = dummy_request(9, fail=True)
    with pytest.raises(MeasureFailed) as raised:
        obtain(request)
    message = str(raised.value)
    assert "dummy 9 failed: ValueError" in message and "record:" in message and "\n" not in message
    failure = store.last_failure(request)
    assert failure["status"] == "failed" and "on purpose" in failure["error"]
    assert lookup(request) is None  # never reused


def test_the_presenting_step_measures_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv(store.MODE_ENV, "reuse")
    with pytest.raises(NotMeasured, match="dummy 4 is not recorded .the build did not measure it."):
        obtain(dummy_request(4))
    with pytest.raises(MeasureFailed):
        monkeypatch.delenv(store.MODE_ENV)
        obtain(dummy_request(8, fail=True))
    monkeypatch.setenv(store.MODE_ENV, "reuse")
    with pytest.raises(NotMeasured, match="last attempt ended failed"):
        obtain(dummy_request(8, fail=True))


def test_a_fake_record_is_found_like_a_measured_one(tmp_path):
    request = dummy_request(11)
    found = record_measurement(request, results={"doubled": 22})
    assert found is not None and obtain(request).results["doubled"] == 22


CHILD = """
import sys
sys.path.insert(0, {tests!r})
from lablib.core import store
store.KINDS["dummy"] = "factories"
from factories import dummy_request
measured = store.obtain(dummy_request(1, sleep={sleep}, counter={counter!r}))
print("reused" if measured.reused else "measured")
"""


def child(tmp_path: Path, sleep: float) -> subprocess.Popen:
    code = CHILD.format(tests=str(REPO / "tests"), sleep=sleep, counter=str(tmp_path / "counter"))
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=dict(os.environ))


def test_two_processes_asking_at_once_measure_once(tmp_path):
    first, second = child(tmp_path, 2.0), child(tmp_path, 2.0)
    outputs = sorted(p.communicate(timeout=120)[0].strip() for p in (first, second))
    assert outputs == ["measured", "reused"] and runs(tmp_path / "counter") == 1


def test_a_killed_measurement_reads_abandoned_and_is_measured_again(tmp_path):
    process = child(tmp_path, 60.0)
    deadline = time.time() + 60
    while runs(tmp_path / "counter") == 0 and time.time() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    folders = list((store.store_root() / "dummy").glob("*/run.json"))
    assert len(folders) == 1 and json.loads(folders[0].read_text())["status"] == "running"
    assert store.last_failure(dummy_request(1, sleep=60.0, counter=str(tmp_path / "counter")))["status"] == "abandoned"
    assert obtain(dummy_request(1, sleep=0.0, counter=str(tmp_path / "counter"))).reused is False
