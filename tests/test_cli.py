import json
import os
import subprocess
import sys

import pytest
import torch

from lablib.core.runs import load_runs


def lablib(*args, env_runs):
    return subprocess.run(
        [sys.executable, "-m", "lablib", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "LABLIB_RUNS_DIR": str(env_runs)},
        timeout=600,
    )


def test_train_prints_a_row_per_epoch_and_records_the_run(cifar_zip, private_run_store):
    done = lablib(
        "train",
        "--device",
        "cpu",
        "--data",
        str(cifar_zip),
        "--limit-train",
        "256",
        "--epochs",
        "2",
        "--workers",
        "0",
        env_runs=private_run_store,
    )
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [row.split()[0] for row in rows] == ["1", "2"]
    assert "record:" in done.stdout
    runs = load_runs("cli", root=private_run_store)
    assert len(runs) == 1 and runs.loc[0, "limit_train"] == 256


def test_json_lines(private_run_store):
    done = lablib(
        "train",
        "--device",
        "cpu",
        "--data",
        "fake",
        "--limit-train",
        "64",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--workers",
        "0",
        "--json",
        env_runs=private_run_store,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[0]["type"] == "epoch" and lines[0]["batches"] == 2
    assert lines[-1]["type"] == "summary"


@pytest.mark.parametrize(
    "args, words",
    [
        (["--optimizer", "lion"], ["optimizer='lion'", "sgd_nesterov"]),
        (["--workers", "-2"], ["workers=-2", ">= 0"]),
        (["--data", "/nonexistent/cifar.zip"], ["/nonexistent/cifar.zip", "does not exist"]),
        (["--device", "cuda"], ["device='cuda'", "no CUDA GPU"]),
    ],
)
def test_bad_input_is_one_clear_line(args, words, private_run_store):
    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    done = lablib("train", "--data", "fake", *args, env_runs=private_run_store)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in done.stderr
    assert not private_run_store.exists() or load_runs(root=private_run_store).empty


def test_corrupt_zip_is_a_clear_error(tmp_path, cifar_zip, private_run_store):
    truncated = tmp_path / "cifar.zip"
    truncated.write_bytes(cifar_zip.read_bytes()[: 1 << 20])
    done = lablib("train", "--data", str(truncated), "--device", "cpu", env_runs=private_run_store)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert str(truncated) in done.stderr and ".zip" in done.stderr


def test_info(private_run_store):
    done = lablib("info", env_runs=private_run_store)
    assert done.returncode == 0, done.stderr
    for word in ("torch", "torchvision", "devices:", "data sources:", "report tools:"):
        assert word in done.stdout


def test_train_refuses_mnist_for_the_labs_resnet(mnist_zip, private_run_store):
    done = lablib(
        "train", "--device", "cpu", "--data", str(mnist_zip), "--limit-train", "100", env_runs=private_run_store
    )
    assert done.returncode == 2
    assert "1 x 28 x 28" in done.stderr and "Traceback" not in done.stderr
    assert load_runs(root=private_run_store).empty  # nothing recorded as if it had trained


@pytest.mark.parametrize(
    "args, message",
    [
        (["--executor", "foo"], "EXECUTOR='foo' is unknown; use local or slurm."),
        (["--data", "/nonexistent/cifar.zip"], "DATA='/nonexistent/cifar.zip' does not exist"),
        (["--profile", "bogus"], "profile 'bogus' is not in"),
        (["--only", "c99"], "ONLY='c99': the 2026 variant has no section c99"),
        (["--lab", "2025", "--only", "C10"], "ONLY='C10': the 2025 variant has no section C10"),
        (["--jobs", "0"], "JOBS=0 is not allowed"),
        (["--budget", "soon"], "BUDGET"),
    ],
)
def test_bad_report_options_are_one_clear_line(args, message, tmp_path, capsys, private_run_store):
    from lablib.cli import main

    assert main(["report", "--profile", "quick", *args, "--output", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    (line,) = error.strip().splitlines()
    assert line.startswith("error: ") and message in line and "Traceback" not in error
    assert not (tmp_path / "out").exists() and not private_run_store.exists()
