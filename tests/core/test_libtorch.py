"""The "libtorch" measurement (lablib.core.libtorch): the toolchain, the build, the program's output, the kind.

The real build of cpp/ uses the product's own build folder (cpp/build, git-ignored): the first build in a
checkout takes a minute on two cores, later ones only CMake's up-to-date check.
"""

from __future__ import annotations

import json

import pytest
import torch
from factories import Tiny
from model_factories import recorded_training

from lablib.core import libtorch
from lablib.core.errors import ConfigError, LabError
from lablib.core.store import Request, obtain, work
from lablib.core.torchscript import script_model, torchscript_request


def program_json(**changes) -> str:
    data = {
        "torch_version": "2.13.0",
        "device": "cpu",
        "threads": 2,
        "warmup": 3,
        "logits": [[0.5, -1.0], [2.0, 1.0]],
        "predicted": [0, 0],
        "times_ms": [1.5, 2.5],
    }
    return json.dumps({**data, **changes})


def test_missing_toolchain_gives_a_clear_message(tmp_path):
    toolchain = libtorch.find_toolchain(path=str(tmp_path))  # an empty folder: nothing on this PATH
    assert toolchain.cmake is None and toolchain.compiler is None and toolchain.missing
    assert toolchain.describe() == "no cmake; no C++ compiler; no nvcc"
    with pytest.raises(libtorch.ToolchainError, match="cmake and a C\\+\\+ compiler not found.*apt-get install"):
        libtorch.require_toolchain(toolchain)
    build, message = libtorch.try_build(tmp_path / "build", toolchain=toolchain)
    assert build is None and "not found on PATH" in message


def test_build_mode_is_checked():
    with pytest.raises(libtorch.ToolchainError, match="build_mode='gpu'"):
        libtorch.build_program(mode="gpu")


def test_parse_output_reads_the_last_json_line():
    output = libtorch.parse_output("some warning\n" + program_json() + "\n")
    assert output.logits == [[0.5, -1.0], [2.0, 1.0]] and output.predicted == [0, 0]
    assert output.seconds == [0.0015, 0.0025] and output.threads == 2  # printed in ms, kept in s
    with pytest.raises(libtorch.ToolchainError, match="printed no result"):
        libtorch.parse_output("lablib_infer: cannot open model.pt\n")
    with pytest.raises(libtorch.ToolchainError, match="malformed"):
        libtorch.parse_output('{"logits": [[1]]}')


def test_compare_predictions():
    python = torch.tensor([[0.1, 0.9], [0.8, 0.2]], dtype=torch.float64)
    same = libtorch.compare_predictions(python, (python + 1e-7).tolist())
    assert same.allclose and same.same_classes and 0 < same.max_abs_diff < 2e-7
    assert same.matching_classes == same.rows == 2
    flipped = libtorch.compare_predictions(python, [[0.9, 0.1], [0.8, 0.2]])
    assert not flipped.allclose and not flipped.same_classes and flipped.max_abs_diff == pytest.approx(0.8)
    assert flipped.matching_classes == 1
    with pytest.raises(LabError, match="shape"):
        libtorch.compare_predictions(python, [[0.1, 0.9]])


def test_save_input_and_python_forward(tmp_path):
    inputs = torch.randn(4, 3, 2, 2)
    path = libtorch.save_input(inputs, tmp_path / "input.pt")
    assert torch.equal(torch.load(path), inputs)
    model = Tiny().train()
    logits = libtorch.python_forward(model, inputs, torch.device("cpu"))
    assert logits.dtype == torch.float64 and logits.shape == (4, 3) and not model.training
    assert torch.equal(logits, model(inputs).double())


def test_cuda_hints_are_cmake_cache_entries():
    hints = libtorch.cuda_hints(libtorch.find_toolchain().nvcc)
    assert set(hints) <= {"CUDAToolkit_ROOT", "CUDA_TOOLKIT_ROOT_DIR", "CUDA_nvrtc_LIBRARY"}
    assert all(isinstance(v, str) and v for v in hints.values())


def test_version_of():
    assert libtorch.version_of("cmake version 3.25.1") == "3.25.1"
    assert libtorch.version_of("no digits") == "no digits"


def test_libtorch_request_settings_and_checks(monkeypatch):
    training, _ = recorded_training()
    scripted = torchscript_request(training)
    request = libtorch.libtorch_request(scripted, "cpu", 4, 2, 5)
    assert request.settings["source"] == scripted.key and request.settings["images"] == 4
    assert request.settings["build_dir"] == "" and request.settings["build_mode"] == "auto"
    assert request.settings["toolchain"] == libtorch.toolchain_here().describe() and request.timing
    for kwargs, name in (
        ({"device": "tpu"}, "device='tpu'"),
        ({"build_mode": "gpu"}, "build_mode='gpu'"),
        ({"images": 0}, "images=0"),
        ({"warmup_runs": -1}, "warmup_runs=-1"),
        ({"timed_runs": 0}, "timed_runs=0"),
    ):
        with pytest.raises(ConfigError, match=name):
            libtorch.libtorch_request(scripted, **kwargs)
    with pytest.raises(ConfigError, match="torchscript request"):
        libtorch.libtorch_request(Request("counts", {}))
    libtorch.toolchain_here.cache_clear()  # a machine without the tools: another request, measured again
    monkeypatch.setenv("PATH", "/nonexistent")
    assert libtorch.libtorch_request(scripted, "cpu", 4, 2, 5).key != request.key
    libtorch.toolchain_here.cache_clear()


def test_work_of_a_libtorch_request():
    training, _ = recorded_training()
    (cost,) = work(libtorch.libtorch_request(torchscript_request(training), "cpu", 4, 10, 50))
    assert cost.calls == 2 * 60 and cost.fixed_s == libtorch.BUILD_S


def test_without_a_toolchain_the_measurement_records_why(monkeypatch, tmp_path):
    training, _ = recorded_training()
    scripted = obtain(torchscript_request(training, 8))
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing found: no cmake, no compiler
    libtorch.toolchain_here.cache_clear()
    try:
        measured = obtain(libtorch.libtorch_request(scripted.request, "cpu", 3, 1, 2, build_dir=str(tmp_path / "b")))
    finally:
        libtorch.toolchain_here.cache_clear()
    results = measured.results
    assert results["cpp_built"] is False and "not found on PATH" in results["build_problem"]
    assert results["cpp_predicted"] is None and results["cpp_latency"] is None and results["comparison"] is None
    assert results["python_latency"]["runs"] == 2 and len(results["labels"]) == 3
    assert results["torchscript_run"] == scripted.run_id
    assert measured.table("latency").program.tolist() == [libtorch.PYTHON_PROGRAM]


def test_cpp_program_predicts_like_python(tmp_path):
    """Builds cpp/ for real (in cpp/build) and runs it on a scripted model, then as a measurement."""
    toolchain = libtorch.find_toolchain()
    if toolchain.missing:
        pytest.skip(f"{' and '.join(toolchain.missing)} not found; the clear-message path is tested above")
    build = libtorch.build_program(toolchain=toolchain)
    assert build.mode in ("cuda", "cpu-only") and build.executable.exists()
    torch.manual_seed(0)
    scripted = script_model(Tiny().eval()).module
    scripted.save(str(tmp_path / "model.pt"))
    inputs = torch.randn(5, 3, 2, 2)
    libtorch.save_input(inputs, tmp_path / "input.pt")
    output = libtorch.run_program(
        build.executable, tmp_path / "model.pt", tmp_path / "input.pt", warmup=2, runs=7, device="cpu", threads=1
    )
    python = libtorch.python_forward(scripted, inputs, torch.device("cpu"))
    comparison = libtorch.compare_predictions(python, output.logits)
    assert comparison.allclose and comparison.same_classes
    assert output.predicted == python.argmax(1).tolist()
    assert len(output.seconds) == 7 and output.threads == 1 and output.torch_version == torch.__version__.split("+")[0]
    with pytest.raises(libtorch.ToolchainError, match="failed"):
        libtorch.run_program(build.executable, tmp_path / "missing.pt", tmp_path / "input.pt", 1, 1)

    training, _ = recorded_training()
    source = obtain(torchscript_request(training, 8))
    measured = obtain(libtorch.libtorch_request(source.request, "cpu", 4, 1, 3))
    results = measured.results
    assert results["cpp_built"] and results["comparison"]["same_classes"] and results["comparison"]["allclose"]
    assert results["cpp_predicted"] == results["python_predicted"] and len(results["labels"]) == 4
    assert results["cpp_latency"]["runs"] == results["python_latency"]["runs"] == 3
    assert results["model_file"] == str(source.artifact("model_scripted.pt"))
    assert torch.load(measured.artifact(libtorch.INPUT_FILE)).shape == (4, 3, 32, 32)
    assert measured.table("latency").program.tolist() == [libtorch.PYTHON_PROGRAM, libtorch.CPP_PROGRAM]
