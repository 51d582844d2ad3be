"""Fault injection: damaged files, bad inputs and races, each with a clear outcome.

Every case does the fault for real (overwrites bytes, truncates a file, races two
processes) and asserts the outcome: a one-line error naming the value and what to
do, or a clean recovery that says so; never a result computed from damaged data.
"""

from __future__ import annotations

import json
import multiprocessing
import zipfile
from pathlib import Path

import numpy as np
import pytest
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
