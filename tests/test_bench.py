"""lablib.bench: each figure in a tiny configuration. The real targets are checked by `make bench`,
not here: timings on a shared CI machine are too noisy to assert a 3 % bound."""

import json
import math

import torch

from lablib import bench
from lablib.core.data import load_data
from lablib.core.runs import load_runs


def test_summarize_and_alternating_order():
    spread = bench.summarize([3.0, 1.0, 2.0])
    assert (spread.median, spread.low, spread.high, spread.runs) == (2.0, 1.0, 3.0, 3)
    assert math.isclose(spread.relative, 1.0)
    calls = []
    first, second = bench._alternating(3, lambda: calls.append("a") or 1, lambda: calls.append("b") or 2)
    assert calls == ["a", "b", "b", "a", "a", "b"]  # the order alternates so drift cancels
    assert first == [1, 1, 1] and second == [2, 2, 2]


def test_instrumentation_cost_tiny_is_a_sane_ratio():
    figure = bench.instrumentation_cost(torch.device("cpu"), steps=2, repeats=3, batch_size=16, warmup=1)
    assert figure.name == "instrumentation_ratio" and figure.met in (True, False)
    bare, lab, ratio = figure.rows
    assert bare["median"] > 0 and lab["median"] > 0 and ratio["runs"] == 3
    # Timing bounds belong to `make bench` on a quiet machine: on a shared 2-core CI box two steps of
    # 16 images vary by 4x. Here: a finite positive ratio of two loops over the same batches.
    assert math.isfinite(figure.value) and figure.value > 0
    assert bare["runs"] == lab["runs"] == 3
    assert figure.headline().startswith("instrumentation_ratio=")


def test_data_loading_tiny_compares_the_same_images(cifar_zip):
    bundle = load_data(str(cifar_zip))
    twin = bench.torchvision_twin(bundle.train)
    torch.manual_seed(0)
    ours = bundle.train[7][0]
    torch.manual_seed(0)
    theirs = twin[7][0]
    assert torch.equal(ours, theirs)  # same array, same transforms, same random draws
    assert type(twin).__name__ == "CIFAR10" and len(twin) == len(bundle.train)
    figure = bench.data_loading(str(cifar_zip), workers=(0, 2), images=256, repeats=2, batch_size=64, bundle=bundle)
    assert [r["workers"] for r in figure.rows] == [0, 0, 2, 2]
    assert all(r["median"] > 0 for r in figure.rows)
    assert 0.3 < figure.value < 3.0


def test_data_loading_without_data_is_not_available(tmp_path):
    figure = bench.data_loading(str(tmp_path / "missing.zip"))
    assert figure.value is None and figure.met is None
    assert figure.headline().startswith("data_loading_ratio=not available: no CIFAR-10 image folder")


def test_notebook_overhead_tiny():
    figure = bench.notebook_overhead(repeats=1)
    python_row, papermill_row, overhead_row = figure.rows
    assert python_row["median"] > 0 and papermill_row["median"] > 0
    assert math.isclose(overhead_row["median"], papermill_row["median"] - python_row["median"])
    assert figure.value == overhead_row["median"]


def test_report_rebuild_without_target_says_so(tmp_path):
    (tmp_path / "Makefile").write_text("test:\n\t@echo test\nreport-deps:\n\t@true\n")
    figure = bench.report_rebuild(tmp_path, "data.zip", repeats=1)
    assert figure.value is None and figure.met is None
    assert figure.headline() == "report_rebuild_s=not available: make report missing"


def test_report_rebuild_times_an_existing_target(tmp_path):
    (tmp_path / "Makefile").write_text(
        ".PHONY: report\nsetup:\n\t@true\nreport: setup\n\t@echo $(PROFILE) $(DATA) >> calls.txt\n"
    )
    figure = bench.report_rebuild(tmp_path, "some.zip", repeats=2)
    assert figure.value is not None and figure.value >= 0 and figure.met is True
    assert (tmp_path / "calls.txt").read_text().splitlines() == ["quick some.zip"] * 3  # 1 warm + 2 timed


def test_report_rebuild_failure_is_reported(tmp_path):
    (tmp_path / "Makefile").write_text("report:\n\t@echo broken; exit 3\n")
    figure = bench.report_rebuild(tmp_path, "x.zip", repeats=1)
    assert figure.value is None and "failed (exit 2)" in figure.note and "broken" in figure.note


def test_has_make_target_reads_rules_not_variables(tmp_path):
    (tmp_path / "Makefile").write_text("report_dir := x\nreports: a\nall report: b\n")
    assert bench.has_make_target(tmp_path, "report")
    (tmp_path / "Makefile").write_text("report := x\nreport_dir: a\n")
    assert not bench.has_make_target(tmp_path, "report")


def test_main_tiny_writes_record_copy_and_headlines_last(tmp_path, capsys):
    code = bench.main(
        [
            "--device",
            "cpu",
            "--only",
            "instrumentation,loading",
            "--steps",
            "1",
            "--repeats",
            "1",
            "--data",
            str(tmp_path / "absent.zip"),
            "--out",
            str(tmp_path / "bench"),
        ]
    )
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-2].startswith("instrumentation_ratio=")
    assert lines[-1].startswith("data_loading_ratio=not available")
    copies = list((tmp_path / "bench").glob("cpu-*.json"))
    assert len(copies) == 1 and copies[0].with_suffix(".md").exists()
    saved = json.loads(copies[0].read_text())
    assert saved["hardware"]["device"] == "cpu" and saved["hardware"]["cpu"]
    assert set(saved["headline"]) == {"instrumentation_ratio", "data_loading_ratio"}
    runs = load_runs("bench")
    assert len(runs) == 1 and runs.loc[0, "instrumentation_ratio"] == saved["headline"]["instrumentation_ratio"]


def test_main_rejects_unknown_figure(capsys):
    assert bench.main(["--only", "nonsense"]) == 2
    assert "nonsense" in capsys.readouterr().err
