"""The "latency" measurement (lablib.core.latency): runtimes, their statuses, the timing, the kind."""

from __future__ import annotations

import pytest
import torch
from model_factories import recorded_training, tiny_cnn

from lablib.core import latency
from lablib.core.errors import ConfigError
from lablib.core.latency import (
    MEASURED,
    RUNTIMES,
    SINGLE_IMAGE,
    aoti_unavailable,
    latency_request,
    latency_rows,
    prepare_runtimes,
)
from lablib.core.store import Request, obtain, work
from lablib.core.torchscript import max_abs_difference


def test_latency_request_settings_and_checks():
    training, _ = recorded_training()
    cpu = latency_request(training, "cpu", 5, 20, aoti=False, cpu_threads=1)
    assert cpu.settings == {
        "source": training.key,
        "device": "cpu",
        "warmup_runs": 5,
        "timed_runs": 20,
        "aoti": False,
        "cpu_threads": 1,
    }
    assert cpu.timing  # a latency is reused only from a run that had the machine to itself
    assert latency_request(training, "cpu", 5, 20, aoti=False, cpu_threads=2).key != cpu.key
    gpu = latency_request(training, "cuda", 5, 20, aoti=True)
    assert "cpu_threads" not in gpu.settings and "toolchain" in gpu.settings
    for kwargs, name in (
        ({"device": "tpu"}, "device='tpu'"),
        ({"device": "cpu", "warmup_runs": -1}, "warmup_runs=-1"),
        ({"device": "cpu", "timed_runs": 0}, "timed_runs=0"),
        ({"device": "cpu", "cpu_threads": -2}, "cpu_threads=-2"),
        ({"device": "cpu", "timed_runs": 2.5}, "timed_runs=2.5"),
    ):
        with pytest.raises(ConfigError, match=name):
            latency_request(training, **kwargs)
    with pytest.raises(ConfigError, match="training request"):
        latency_request(Request("counts", {}), "cpu")


def test_the_toolchain_is_part_of_an_aoti_request(monkeypatch):
    training, _ = recorded_training()
    latency.aoti_toolchain.cache_clear()
    monkeypatch.setattr(latency.shutil, "which", lambda name: None)
    without = latency_request(training, "cpu", aoti=True)
    assert without.settings["toolchain"] == ""
    latency.aoti_toolchain.cache_clear()
    monkeypatch.setattr(latency.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert latency_request(training, "cpu", aoti=True).key != without.key  # installing g++ measures again
    latency.aoti_toolchain.cache_clear()


def test_aoti_preconditions_are_checked_before_compiling(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(latency.shutil, "which", lambda name: None)
    reason = aoti_unavailable(cpu, object())
    assert "no C++ compiler" in reason and "apt-get install g++" in reason
    monkeypatch.setattr(latency.shutil, "which", lambda name: None if name == "nvcc" else f"/usr/bin/{name}")
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    assert "no CUDA toolkit" in aoti_unavailable(cuda, object())
    assert aoti_unavailable(cpu, object()) is None
    assert aoti_unavailable(cpu, None).startswith("not available: torch.export failed")


def test_prepare_runtimes_without_aoti(tmp_path):
    runtimes, seconds = prepare_runtimes(tiny_cnn(), torch.device("cpu"), tmp_path, aoti=False)
    assert runtimes["AOTInductor"] == "skipped: the aoti parameter is False"
    example = torch.randn(SINGLE_IMAGE)
    assert max_abs_difference(runtimes["PyTorch eager"], runtimes["TorchScript"], example) < 1e-6
    assert max_abs_difference(runtimes["PyTorch eager"], runtimes["torch.export"], example) < 1e-6
    assert seconds["TorchScript"] > 0 and seconds["torch.export"] > 0 and "AOTInductor" not in seconds


def test_runtime_failures_become_not_available_rows(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("export refused\nsecond line")

    monkeypatch.setattr(torch.export, "export", refuse)
    rows = latency_rows(tiny_cnn(), torch.device("cpu"), 1, 3, aoti=True, folder=tmp_path)
    by_runtime = {row["runtime"]: row for row in rows}
    assert [row["runtime"] for row in rows] == list(RUNTIMES)
    assert by_runtime["torch.export"]["status"] == "not available: RuntimeError: export refused"
    assert by_runtime["AOTInductor"]["status"].startswith("not available: ")  # nothing to compile
    assert "mean_ms" not in by_runtime["torch.export"]
    eager = by_runtime["PyTorch eager"]
    assert eager["status"] == MEASURED and eager["runs"] == 3 and eager["max_abs_diff"] == 0.0
    assert 0 < eager["min_ms"] <= eager["median_ms"] <= eager["max_ms"] and isinstance(eager["noisy"], bool)


def test_measure_latency_times_every_runtime_with_the_trained_model():
    training, trained = recorded_training()
    threads = torch.get_num_threads()
    measured = obtain(latency_request(training, "cpu", 1, 3, aoti=False, cpu_threads=1))
    table = measured.table("latency")
    assert table.runtime.tolist() == list(RUNTIMES) and (table.device == "cpu").all()
    ran = table[table.status == MEASURED]
    assert ran.runtime.tolist() == ["PyTorch eager", "TorchScript", "torch.export"]
    assert (ran.runs == 3).all() and (ran.timed_runs == 3).all() and (ran.warmup_runs == 1).all()
    assert (ran.max_abs_diff < 1e-4).all() and (ran.mean_ms > 0).all()
    assert (table.threads == 1).all() and measured.results["threads_used"] == 1
    assert torch.get_num_threads() == threads  # restored after the measurement
    assert measured.results["statuses"]["AOTInductor"].startswith("skipped")
    assert measured.results["training_run"] == trained.run_id


def test_work_of_a_latency_request():
    training, _ = recorded_training()
    (plain,) = work(latency_request(training, "cpu", 10, 50, aoti=False))
    assert plain.calls == 3 * 61 and plain.fixed_s == latency.PREPARE_S
    compiled = work(latency_request(training, "cpu", 10, 50, aoti=True))[0]
    if latency.aoti_toolchain("cpu"):
        assert compiled.calls == 4 * 61 and compiled.fixed_s > plain.fixed_s


@pytest.mark.slow
def test_aoti_compiles_and_matches_eager_or_says_why_not(tmp_path):
    """AOTInductor end to end on a tiny model (a C++ compile: about a minute on two busy cores)."""
    runtimes, seconds = prepare_runtimes(tiny_cnn(), torch.device("cpu"), tmp_path, aoti=True)
    compiled = runtimes["AOTInductor"]
    if isinstance(compiled, str):
        assert compiled.startswith("not available: ")
        pytest.skip(f"AOTInductor not available here: {compiled}")
    assert list(tmp_path.glob("*.pt2")) and seconds["AOTInductor"] > 0
    example = torch.randn(SINGLE_IMAGE)
    assert max_abs_difference(runtimes["PyTorch eager"], compiled, example) < 1e-5


@pytest.mark.cuda
def test_cuda_latency_rows(tmp_path):
    rows = latency_rows(tiny_cnn(), torch.device("cuda"), 3, 10, aoti=False, folder=tmp_path)
    measured = [row for row in rows if row["status"] == MEASURED]
    assert [row["runtime"] for row in measured] == ["PyTorch eager", "TorchScript", "torch.export"]
    assert all(row["device"] == "cuda" and row["max_abs_diff"] < 1e-4 for row in measured)
