"""`make lab` as users meet it: JupyterLab starts (as root too), renders a notebook, runs the project's kernel."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request

import pytest
from conftest import REPO

pytestmark = pytest.mark.notebook  # starts JupyterLab and Chromium: not a unit test
TOKEN = "lablib-test-token"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _api(port: int, path: str, method: str = "GET", body: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        method=method,
        data=json.dumps(body).encode() if body else None,
        headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        text = answer.read()
        return json.loads(text) if text else {}


@pytest.fixture
def lab(tmp_path):
    port, runtime = _free_port(), tmp_path / "runtime"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime), "LABLIB_RUNS_DIR": str(tmp_path / "runs")}
    process = subprocess.Popen(
        [
            "make",
            "-s",
            "lab",
            f"LAB_ARGS=--no-browser --port={port} --ServerApp.port_retries=0 --IdentityProvider.token={TOKEN}",
        ],
        cwd=REPO,
        env=env,
        stdout=open(tmp_path / "lab.log", "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                _api(port, "/api/status")
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start:\n{(tmp_path / 'lab.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield {"port": port, "runtime": runtime, "log": tmp_path / "lab.log"}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def test_make_lab_starts_the_projects_kernel_and_renders_a_notebook(lab, tmp_path):
    from jupyter_client import BlockingKernelClient

    notebook = "notebooks/c1_training.ipynb"
    kernel_name = json.loads((REPO / notebook).read_text())["metadata"]["kernelspec"]["name"]
    session = _api(
        lab["port"], "/api/sessions", "POST", {"path": notebook, "type": "notebook", "kernel": {"name": kernel_name}}
    )
    kernel_id = session["kernel"]["id"]
    connection = lab["runtime"] / f"kernel-{kernel_id}.json"
    for _ in range(60):
        if connection.exists():
            break
        time.sleep(0.5)
    client = BlockingKernelClient(connection_file=str(connection))
    client.load_connection_file()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        printed = []
        reply = client.execute_interactive(
            "import lablib, sys; print(lablib.__file__, sys.prefix)",
            timeout=60,
            output_hook=lambda m: printed.append(m["content"].get("text", "")),
        )
    finally:
        client.stop_channels()
    assert reply["content"]["status"] == "ok"
    assert str(REPO / "lablib") in "".join(printed) and str(REPO / ".venv") in "".join(printed)

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium missing: `make test-deps` installs Debian's chromium")
    done = subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1400,1000",
            "--virtual-time-budget=20000",
            "--dump-dom",
            f"http://127.0.0.1:{lab['port']}/lab/tree/{notebook}?token={TOKEN}",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert "C1 · Training in PyTorch" in done.stdout, done.stderr[-2000:]  # the notebook's first cell, rendered
    assert "Python 3 (lablib)" in done.stdout  # the project's kernel, by its display name
    assert "jp-Notebook" in done.stdout and "Running as root is not recommended" not in lab["log"].read_text()
