"""Unit tests (CPU) of lablib.sections.libtorch: the XC-2026 LibTorch program and its comparison with Python."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from lablib.core.errors import LabError
from lablib.core.runs import start_run
from lablib.sections import libtorch


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(x, 1))


def shared_build_dir(tmp_path_factory):
    """One CMake build folder per test session (test_notebooks_extras.py uses the same one)."""
    return tmp_path_factory.getbasetemp() / "libtorch-build"


# --- lablib.sections.libtorch ------------------------------------------------------------------


def test_missing_toolchain_gives_a_clear_message(tmp_path):
    toolchain = libtorch.find_toolchain(path=str(tmp_path))  # an empty folder: nothing on this PATH
    assert toolchain.cmake is None and toolchain.compiler is None
    with pytest.raises(libtorch.ToolchainError, match="cmake and a C\\+\\+ compiler not found.*apt-get install"):
        libtorch.require_toolchain(toolchain)
    build, message = libtorch.try_build(tmp_path / "build", toolchain=toolchain)
    assert build is None and "not found on PATH" in message


def test_build_mode_is_checked():
    with pytest.raises(libtorch.ToolchainError, match="mode='gpu'"):
        libtorch.build_program(mode="gpu")


def test_parse_output_reads_the_last_json_line():
    text = (
        "some warning\n"
        + json.dumps(
            {
                "torch_version": "2.13.0",
                "device": "cpu",
                "threads": 2,
                "warmup": 3,
                "logits": [[0.5, -1.0], [2.0, 1.0]],
                "predicted": [0, 0],
                "times_ms": [1.5, 2.5],
            }
        )
        + "\n"
    )
    output = libtorch.parse_output(text)
    assert output.logits == [[0.5, -1.0], [2.0, 1.0]] and output.predicted == [0, 0]
    assert output.times_ms == [1.5, 2.5] and output.threads == 2
    with pytest.raises(libtorch.ToolchainError, match="printed no result"):
        libtorch.parse_output("lablib_infer: cannot open model.pt\n")
    with pytest.raises(libtorch.ToolchainError, match="malformed"):
        libtorch.parse_output('{"logits": [[1]]}')


def test_compare_outputs():
    python = torch.tensor([[0.1, 0.9], [0.8, 0.2]], dtype=torch.float64)
    same = libtorch.compare_outputs(python, (python + 1e-7).tolist())
    assert same.allclose and same.same_classes and 0 < same.max_abs_diff < 2e-7
    flipped = libtorch.compare_outputs(python, [[0.9, 0.1], [0.8, 0.2]])
    assert not flipped.allclose and not flipped.same_classes and flipped.max_abs_diff == pytest.approx(0.8)
    with pytest.raises(LabError, match="shape"):
        libtorch.compare_outputs(python, [[0.1, 0.9]])


def test_latency_summary():
    summary = libtorch.latency_summary([1.0, 2.0, 3.0, 10.0])
    assert summary["mean_ms"] == 4.0 and summary["median_ms"] == 2.5 and summary["runs"] == 4
    assert summary["min_ms"] == 1.0 and summary["max_ms"] == 10.0 and summary["std_ms"] > 0
    with pytest.raises(LabError):
        libtorch.latency_summary([])


def test_sample_inputs_spread_over_a_sorted_dataset(tmp_path):
    dataset = [(torch.full((3, 2, 2), float(i)), i // 10) for i in range(50)]  # sorted by class, 5 classes
    inputs, labels = libtorch.sample_inputs(dataset, 5)
    assert inputs.shape == (5, 3, 2, 2) and labels == [0, 1, 2, 3, 4]
    path = libtorch.save_input(inputs, tmp_path / "input.pt")
    assert torch.equal(torch.load(path), inputs)
    with pytest.raises(LabError):
        libtorch.sample_inputs(dataset, 0)


def test_script_model_records_the_deprecation_and_keeps_outputs():
    model = Tiny().eval()
    scripted, caught = libtorch.script_model(model)
    x = torch.randn(2, 3, 2, 2)
    assert torch.equal(scripted(x), model(x))
    assert isinstance(caught, list)
    if torch.__version__ >= "2.13":
        assert any("deprecated" in text for text in caught)


def test_python_forward_and_latency():
    model = Tiny()
    x = torch.randn(4, 3, 2, 2)
    logits = libtorch.python_forward(model, x, torch.device("cpu"))
    assert logits.dtype == torch.float64 and logits.shape == (4, 3) and not model.training
    times = libtorch.python_latency_ms(model, x[:1], torch.device("cpu"), warmup=1, runs=4)
    assert len(times) == 4 and all(t > 0 for t in times)


def test_find_saved_model_takes_the_latest_scripted_model_of_the_tag(tmp_path):
    assert libtorch.find_saved_model("t") is None
    scripted, _ = libtorch.script_model(Tiny())
    with start_run("c7_torchscript", tag="t") as run:
        torch.save(Tiny().state_dict(), run.artifact("model_state_dict.pt"))  # not TorchScript: skipped
        scripted.save(str(run.artifact("model_scripted.pt")))
    with start_run("c7_torchscript", tag="other") as other:
        scripted.save(str(other.artifact("model_scripted.pt")))
    found = libtorch.find_saved_model("t")
    assert found == (run.artifact("model_scripted.pt"), run.run_id)
    unfinished = start_run("c7_torchscript", tag="t")  # running, not complete: ignored
    scripted.save(str(unfinished.artifact("model_scripted.pt")))
    assert libtorch.find_saved_model("t")[1] == run.run_id


def test_cuda_hints_are_cmake_cache_entries():
    hints = libtorch.cuda_hints(libtorch.find_toolchain().nvcc)
    assert set(hints) <= {"CUDAToolkit_ROOT", "CUDA_TOOLKIT_ROOT_DIR", "CUDA_nvrtc_LIBRARY"}
    assert all(isinstance(v, str) and v for v in hints.values())


def test_version_of():
    assert libtorch.version_of("cmake version 3.25.1") == "3.25.1"


def test_cpp_program_predicts_like_python(tmp_path, tmp_path_factory):
    """Builds cpp/ for real (about 10-60 s the first time in a session) and compares with Python."""
    toolchain = libtorch.find_toolchain()
    if toolchain.missing:
        pytest.skip(f"{' and '.join(toolchain.missing)} not found; the clear-message path is tested above")
    build = libtorch.build_program(shared_build_dir(tmp_path_factory), toolchain=toolchain)
    assert build.mode in ("cuda", "cpu-only") and build.executable.exists()
    torch.manual_seed(0)
    scripted, _ = libtorch.script_model(Tiny().eval())
    scripted.save(str(tmp_path / "model.pt"))
    inputs = torch.randn(5, 3, 2, 2)
    libtorch.save_input(inputs, tmp_path / "input.pt")
    output = libtorch.run_program(
        build.executable, tmp_path / "model.pt", tmp_path / "input.pt", warmup=2, runs=7, device="cpu", threads=1
    )
    comparison = libtorch.compare_outputs(libtorch.python_forward(scripted, inputs, torch.device("cpu")), output.logits)
    assert comparison.allclose and comparison.same_classes
    assert output.predicted == scripted(inputs).argmax(1).tolist()
    assert len(output.times_ms) == 7 and output.threads == 1 and output.torch_version == torch.__version__.split("+")[0]
    with pytest.raises(libtorch.ToolchainError, match="failed"):
        libtorch.run_program(build.executable, tmp_path / "missing.pt", tmp_path / "input.pt", 1, 1)


# --- lablib.sections.compiled -----------------------------------------------------------------
