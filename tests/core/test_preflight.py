"""The preflight (compilers, Python.h, CUDA toolkit, writable folders, disk) and the switches it leads to."""

from __future__ import annotations

import json
import shutil

import pytest

from lablib.cli import main
from lablib.core import preflight
from lablib.core.errors import ConfigError
from lablib.core.switches import COMPILE_MODES, Switches, switches

WHICH = shutil.which


def no_compilers(name: str) -> str | None:
    """shutil.which on a machine without gcc, clang or g++."""
    return None if name in ("gcc", "clang", "g++", "cc", "c++") else WHICH(name)


def test_no_c_compiler_turns_torch_compile_off_and_says_how_to_fix_it():
    check = preflight.c_compiler(env={}, which=no_compilers)
    assert not check.ok and check.turns_off == ("compile",)
    line = check.line()
    assert line.startswith("missing  C compiler: no gcc or clang") and "turns off torch.compile" in line
    assert "fix: install gcc" in line
    assert preflight.turned_off([check]) == {"compile": f"C compiler: {check.found}"}
    assert preflight.c_compiler(env={"CC": "no-such-cc"}, which=no_compilers).found == "CC='no-such-cc' is not on PATH"
    assert (
        preflight.c_compiler(env={}, which=lambda name: f"/usr/bin/{name}").line()
        == "ok       C compiler: /usr/bin/gcc"
    )


def test_no_cxx_compiler_turns_compile_and_aoti_off():
    check = preflight.cxx_compiler(env={}, which=no_compilers)
    assert not check.ok and set(check.turns_off) == {"compile", "aoti"}
    assert (
        preflight.cxx_compiler(env={"CXX": "clang++"}, which=lambda name: f"/opt/{name}").found == "$CXX /opt/clang++"
    )


def test_missing_python_headers_turn_compile_off(tmp_path):
    check = preflight.python_headers(str(tmp_path))
    assert not check.ok and check.turns_off == ("compile",) and "-dev" in check.fix
    (tmp_path / "Python.h").write_text("/* headers */")
    assert preflight.python_headers(str(tmp_path)).ok


def test_the_cuda_toolkit_matters_only_with_a_gpu(tmp_path):
    assert preflight.cuda_toolkit(False, env={}, which=lambda name: None).ok
    nowhere = str(tmp_path / "no-cuda")
    missing = preflight.cuda_toolkit(True, env={"CUDA_HOME": str(tmp_path)}, which=lambda name: None, usual=nowhere)
    assert not missing.ok and missing.turns_off == ("aoti",) and "CUDA_HOME" in missing.fix
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "nvcc").write_text("")
    assert preflight.cuda_toolkit(True, env={"CUDA_HOME": str(tmp_path)}, which=lambda name: None, usual=nowhere).ok
    on_path = preflight.cuda_toolkit(True, env={}, which=lambda name: str(tmp_path / "bin" / name), usual=nowhere)
    assert on_path.ok and on_path.found.startswith(str(tmp_path.resolve()))


def test_home_and_the_jupyter_runtime_folder_must_be_writable(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    home = preflight.writable_home(env={"HOME": str(a_file)})
    assert not home.ok and set(home.turns_off) == {"compile", "notebooks"}
    moved = preflight.writable_home(env={"HOME": str(a_file), "TRITON_CACHE_DIR": "/x", "IPYTHONDIR": "/y"})
    assert moved.ok and "moved elsewhere" in moved.found  # nothing of the check lives in HOME then
    assert preflight.writable_home(env={"HOME": str(tmp_path)}).ok
    runtime = preflight.jupyter_runtime(env={"JUPYTER_RUNTIME_DIR": str(a_file / "runtime")})
    assert not runtime.ok and runtime.turns_off == ("notebooks",) and "JUPYTER_RUNTIME_DIR" in runtime.fix
    fine = preflight.jupyter_runtime(env={"JUPYTER_RUNTIME_DIR": str(tmp_path / "not" / "yet" / "made")})
    assert fine.ok and not (tmp_path / "not").exists()  # checked where mkdir -p would write, nothing created


def test_too_little_disk_turns_recording_off(tmp_path):
    low = preflight.free_disk({"run store": tmp_path / "runs"}, need=1 << 60)
    assert [c.ok for c in low] == [False] and low[0].turns_off == ("records",) and "LABLIB_RUNS_DIR" in low[0].fix
    assert all(c.ok for c in preflight.free_disk({"run store": tmp_path / "runs"}, need=1))


def test_info_preflight_reports_the_compiled_parts_off_when_gcc_is_hidden(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(shutil, "which", no_compilers)
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.delenv("CXX", raising=False)
    written = tmp_path / "preflight.json"
    assert main(["info", "--preflight", "--json", str(written)]) == 0
    out = capsys.readouterr().out
    assert "missing  C compiler" in out and "missing  C++ compiler" in out
    off = json.loads(written.read_text())["off"]
    assert off["compile"].startswith("C compiler: no gcc or clang") and off["aoti"].startswith("C++ compiler")


def test_info_preflight_reports_compile_off_when_the_python_headers_are_hidden(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(preflight.sysconfig, "get_paths", lambda: {"include": str(tmp_path / "no-headers")})
    written = tmp_path / "preflight.json"
    assert main(["info", "--preflight", "--json", str(written)]) == 0
    assert "missing  Python headers: no Python.h" in capsys.readouterr().out
    assert json.loads(written.read_text())["off"]["compile"].startswith("Python headers: no Python.h")


def test_switches_come_from_the_environment_and_name_a_bad_value():
    assert switches({}) == Switches()
    both = switches({"LABLIB_NO_AOTI": "1", "LABLIB_COMPILE_MODES": "eager, default", "LABLIB_NO_CPU_COMPILE": "0"})
    assert both == Switches(no_aoti=True, compile_modes=("eager", "default"))
    with pytest.raises(ConfigError, match="LABLIB_NO_AOTI='maybe' is not a switch"):
        switches({"LABLIB_NO_AOTI": "maybe"})
    with pytest.raises(ConfigError, match="LABLIB_COMPILE_MODES='eager,fast' names fast"):
        switches({"LABLIB_COMPILE_MODES": "eager,fast"})


def test_switches_filter_the_compile_modes():
    assert Switches(no_compile=True).modes(COMPILE_MODES) == ["eager"]
    assert Switches(compile_modes=("eager", "default", "reduce-overhead")).modes(COMPILE_MODES) == [
        "eager",
        "default",
        "reduce-overhead",
    ]
    assert Switches().modes(COMPILE_MODES) == list(COMPILE_MODES)


def test_the_switches_know_the_compile_section_s_modes():
    from lablib.sections.compiled import COMPILE_MODES as SECTION_MODES

    assert COMPILE_MODES == SECTION_MODES
