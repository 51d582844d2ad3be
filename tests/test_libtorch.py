"""Unit tests (CPU) of lablib.sections.libtorch: the XC-2026 LibTorch program and its comparison with Python."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import Tiny

from lablib.core.config import make_config
from lablib.core.errors import LabError
from lablib.core.runs import start_run
from lablib.sections import libtorch
from lablib.sections.inference import SCRIPTED_FILE, STATE_DICT_FILE, latency_summary, script_model


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
    assert output.seconds == [0.0015, 0.0025] and output.threads == 2  # printed in ms, kept in s
    with pytest.raises(libtorch.ToolchainError, match="printed no result"):
        libtorch.parse_output("lablib_infer: cannot open model.pt\n")
    with pytest.raises(libtorch.ToolchainError, match="malformed"):
        libtorch.parse_output('{"logits": [[1]]}')


def test_compare_outputs():
    python = torch.tensor([[0.1, 0.9], [0.8, 0.2]], dtype=torch.float64)
    same = libtorch.compare_outputs(python, (python + 1e-7).tolist())
    assert same.allclose and same.same_classes and 0 < same.max_abs_diff < 2e-7
    assert same.matching_classes == same.rows == 2
    flipped = libtorch.compare_outputs(python, [[0.9, 0.1], [0.8, 0.2]])
    assert not flipped.allclose and not flipped.same_classes and flipped.max_abs_diff == pytest.approx(0.8)
    assert flipped.matching_classes == 1
    with pytest.raises(LabError, match="shape"):
        libtorch.compare_outputs(python, [[0.1, 0.9]])


def test_sample_inputs_spread_over_a_sorted_dataset(tmp_path):
    dataset = [(torch.full((3, 2, 2), float(i)), i // 10) for i in range(50)]  # sorted by class, 5 classes
    inputs, labels = libtorch.sample_inputs(dataset, 5)
    assert inputs.shape == (5, 3, 2, 2) and labels == [0, 1, 2, 3, 4]
    path = libtorch.save_input(inputs, tmp_path / "input.pt")
    assert torch.equal(torch.load(path), inputs)
    with pytest.raises(LabError):
        libtorch.sample_inputs(dataset, 0)


def test_python_forward():
    model = Tiny()
    x = torch.randn(4, 3, 2, 2)
    logits = libtorch.python_forward(model, x, torch.device("cpu"))
    assert logits.dtype == torch.float64 and logits.shape == (4, 3) and not model.training
    assert torch.equal(logits, model(x).double())


def _c7(tag: str, fingerprint: str, complete: bool = True):
    """A C7 record with both model files, as C7 leaves it."""
    run = start_run("c7_torchscript", make_config(device="cpu"), tag=tag, data={"fingerprint": fingerprint})
    script_model(Tiny().eval()).module.save(str(run.path / SCRIPTED_FILE))
    torch.save(Tiny().state_dict(), run.path / STATE_DICT_FILE)
    if complete:
        run.finish()
    return run


def test_obtain_scripted_uses_the_c7_model_of_the_same_tag_and_data(tmp_path):
    fresh = libtorch.obtain_scripted("t", "fp", tmp_path, Tiny().eval())
    assert not fresh.from_c7 and fresh.path == tmp_path / SCRIPTED_FILE and fresh.path.exists()
    assert torch.jit.load(str(fresh.path)).code == fresh.module.code
    _c7("t", "other-data")  # another data source: C8-C10 would reject it, so XC-2026 does too
    _c7("other-tag", "fp")
    _c7("t", "fp", complete=False)
    assert not libtorch.obtain_scripted("t", "fp", tmp_path, Tiny().eval()).from_c7
    matching = _c7("t", "fp")
    found = libtorch.obtain_scripted("t", "fp", tmp_path / "unused", Tiny().eval())
    assert found.c7_run == f"c7_torchscript/{matching.run_id}" and found.path == matching.path / SCRIPTED_FILE
    assert not (tmp_path / "unused").exists()


def _build(mode: str, fallback: str | None = None):
    return libtorch.BuildResult(libtorch.DEFAULT_BUILD_DIR / mode / libtorch.EXECUTABLE, mode, 1.0, 2.0, fallback, "")


def test_build_and_model_sentences(tmp_path):
    failed = libtorch.build_sentence(None, "cmake not found")
    assert "could not be built" in failed and "cmake not found" in failed
    assert "**cuda** configuration" in libtorch.build_sentence(_build("cuda"), None)
    fallback = libtorch.build_sentence(_build("cpu-only", "cuda configure failed (exit 1)"), None)
    assert "CPU only" in fallback and "cuda configure failed (exit 1)" in fallback
    inputs = torch.zeros(6, 3, 32, 32)
    fresh = libtorch.ScriptedSource(script_model(Tiny()).module, tmp_path / "m.pt", None, [])
    text = libtorch.model_sentence(fresh, "xc", inputs, "input.pt", "cpu", 3)
    assert "freshly initialised" in text and "6 test images" in text and "6×3×32×32" in text and "3 CPU" in text
    assert "warned" not in text
    from_c7 = libtorch.ScriptedSource(fresh.module, fresh.path, "c7_torchscript/r1", ["DeprecationWarning: old"])
    text = libtorch.model_sentence(from_c7, "xc", inputs, "input.pt", "cpu", 3)
    assert "C7 in run `c7_torchscript/r1`" in text and "*DeprecationWarning: old*" in text and "torch.export" in text


def test_prediction_sentence():
    assert "not measured" in libtorch.prediction_sentence(None, None)
    cpp = libtorch.parse_output(
        json.dumps(
            {"torch_version": "2.13.0", "device": "cpu", "threads": 1, "warmup": 1}
            | {"logits": [[0.1, 0.9], [0.8, 0.2]], "predicted": [1, 0], "times_ms": [1.0]}
        )
    )
    python = [[0.1, 0.9], [0.8, 0.2]]
    same = libtorch.prediction_sentence(libtorch.compare_outputs(python, cpp.logits), cpp)
    assert "LibTorch 2.13.0" in same and "the **same** class for all 2 images" in same and ": True)" in same
    flipped = libtorch.compare_outputs([[0.9, 0.1], [0.8, 0.2]], cpp.logits)
    assert "the same one for only 1 of 2 images" in libtorch.prediction_sentence(flipped, cpp)


@pytest.mark.parametrize(
    "python_ms,verdict",
    [(2.0, "The C++ call is faster"), (1.05, "within 10% of each other"), (0.5, "Python is faster here")],
)
def test_latency_sentence_judges_the_median_ratio(python_ms, verdict):
    cpp = latency_summary([0.001] * 5)  # 1 ms per call, no spread
    python = latency_summary([python_ms / 1000] * 5)
    text = libtorch.latency_sentence(python, cpp, "cpu", 2, 10, 0.56)
    assert verdict in text and f"median ratio Python/C++ {python_ms:.2f}" in text and "1×3×32×32" in text
    assert "1.000 ms on average in C++" in text and "over 5 runs" in text and "spread is large" not in text
    assert ("0.56-GMAC" in text) == verdict.startswith("within")


def test_latency_sentence_noisy_and_python_only():
    cpp = latency_summary([0.001, 0.001, 0.001, 0.010])  # std far above half the median
    python = latency_summary([0.001] * 4)
    assert cpp.relative_std > libtorch.NOISY_RELATIVE_STD
    assert "spread is large" in libtorch.latency_sentence(python, cpp, "cpu", 2, 10, 0.56)
    only = libtorch.latency_sentence(python, None, "cpu", 2, 10, 0.56)
    assert "only the Python side was measured: 1.000 ms" in only and "over 4 runs" in only


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
    scripted = script_model(Tiny().eval()).module
    scripted.save(str(tmp_path / "model.pt"))
    inputs = torch.randn(5, 3, 2, 2)
    libtorch.save_input(inputs, tmp_path / "input.pt")
    output = libtorch.run_program(
        build.executable, tmp_path / "model.pt", tmp_path / "input.pt", warmup=2, runs=7, device="cpu", threads=1
    )
    comparison = libtorch.compare_outputs(libtorch.python_forward(scripted, inputs, torch.device("cpu")), output.logits)
    assert comparison.allclose and comparison.same_classes
    assert output.predicted == scripted(inputs).argmax(1).tolist()
    assert len(output.seconds) == 7 and output.threads == 1 and output.torch_version == torch.__version__.split("+")[0]
    with pytest.raises(libtorch.ToolchainError, match="failed"):
        libtorch.run_program(build.executable, tmp_path / "missing.pt", tmp_path / "input.pt", 1, 1)


# --- lablib.sections.compiled -----------------------------------------------------------------
