"""Shared fixtures: the real CIFAR-10 images, and a private run store per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
CIFAR_ZIP = Path(os.environ.get("LABLIB_TEST_CIFAR", REPO.parent / "shared" / "data" / "cifar10-jpg.zip"))
MNIST_ZIP = Path(os.environ.get("LABLIB_TEST_MNIST", REPO.parent / "shared" / "data" / "mnist-png.zip"))


def require_data(path: Path, what: str, variable: str) -> Path:
    """The real images, or a skip with the reason; in CI (CI=true) a missing archive fails the run,
    so the real-data tests can never pass by being skipped."""
    if not path.exists():
        message = f"real {what} images not found at {path} (set {variable})"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must have them", pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture
def cifar_zip() -> Path:
    return require_data(CIFAR_ZIP, "CIFAR-10", "LABLIB_TEST_CIFAR")


@pytest.fixture
def mnist_zip() -> Path:
    return require_data(MNIST_ZIP, "MNIST", "LABLIB_TEST_MNIST")


@pytest.fixture(autouse=True)
def private_run_store(tmp_path, monkeypatch) -> Path:
    """Each test records into its own run store, never the user's runs/."""
    root = tmp_path / "runs"
    monkeypatch.setenv("LABLIB_RUNS_DIR", str(root))
    monkeypatch.delenv("LABLIB_RUN_DIR", raising=False)
    return root


def pytest_collection_modifyitems(config, items):
    for item in items:  # the notebook executions are the slow level of the suite: `make test-fast` leaves them out
        if item.path.name.startswith("test_notebooks_"):
            item.add_marker(pytest.mark.notebook)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none is visible on this machine")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


NOTEBOOKS = REPO / "notebooks"
TINY = {"limit_train": 256, "limit_test": 100, "epochs": 1, "workers": 0, "device": "cpu"}


@pytest.fixture
def run_notebook(tmp_path, private_run_store):
    """Execute notebooks/<name>.ipynb with papermill into tmp_path; return the executed notebook.

    The kernel inherits LABLIB_RUNS_DIR, so its records land in the test's own run store.
    """
    import nbformat
    import papermill

    def execute(name: str, **parameters):
        output = tmp_path / f"{name}-{len(list(tmp_path.glob(name + '*')))}.ipynb"
        papermill.execute_notebook(
            str(NOTEBOOKS / f"{name}.ipynb"),
            str(output),
            parameters=parameters,
            cwd=str(REPO),
            kernel_name="python3",
            progress_bar=False,
        )
        return nbformat.read(output, as_version=4)

    return execute


def notebook_text(notebook) -> str:
    """Every text/plain, text/markdown and stream output of an executed notebook, joined."""
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                parts.append(output.get("text", ""))
            for kind in ("text/markdown", "text/plain", "text/html"):
                if kind in output.get("data", {}):
                    parts.append(str(output["data"][kind]))
    return "\n".join(parts)


def notebook_images(notebook) -> int:
    return sum("image/png" in output.get("data", {}) for cell in notebook.cells for output in cell.get("outputs", []))


def reads_well(notebook) -> int:
    """Every table the section shows is a presented one (no index column; the preamble's settings table
    aside) and every figure has its caption; returns the number of tables."""
    from lablib.sections.tables import CAPTION_METADATA, FIGURE_PREFIX, PRESENTED_MARK

    tables = [
        html
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if "<table" in (html := "".join(output.get("data", {}).get("text/html", "")))
    ]
    assert all(PRESENTED_MARK in html for html in tables), "a table shows its index"
    presented = [html for html in tables if "common setup" not in html]  # the preamble's settings table aside
    captions = [
        output
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if str(output.get("data", {}).get("text/markdown", "")).startswith(FIGURE_PREFIX)
    ]
    assert len(captions) == notebook_images(notebook)  # one caption under each figure
    assert all(output["metadata"]["text/markdown"] == CAPTION_METADATA for output in captions)
    return len(presented)
