"""papermill's injected parameters are checked against the notebook's declared ones."""

from __future__ import annotations

import nbformat
import pytest

from lablib.core.errors import ConfigError
from lablib.sections.parameters import (
    check_namespace,
    check_parameters,
    declared_parameters,
    injected_cells,
    injected_values,
)

PARAMETERS = 'workers: int = 2  # loader workers\nlr: float = 0.1\ndata: str = "cifar10"\nplain = 3\n'


def test_declared_parameters_read_names_and_types():
    assert declared_parameters(PARAMETERS) == {"workers": "int", "lr": "float", "data": "str", "plain": None}


def test_a_misspelt_name_fails_with_the_valid_names():
    with pytest.raises(ConfigError) as error:
        check_parameters(declared_parameters(PARAMETERS), {"wrokers": 8})
    assert "wrokers" in str(error.value) and "workers, lr, data, plain" in str(error.value)


@pytest.mark.parametrize("name, value", [("workers", "abc"), ("workers", 1.5), ("lr", "fast"), ("workers", True)])
def test_a_wrong_type_names_the_parameter(name, value):
    with pytest.raises(ConfigError) as error:
        check_parameters(declared_parameters(PARAMETERS), {name: value})
    assert f"parameter {name}=" in str(error.value) and "expects" in str(error.value)


def test_right_values_pass():
    check_parameters(declared_parameters(PARAMETERS), {"workers": 8, "lr": 1, "data": "x.zip", "plain": [1]})


def test_injected_cells_are_found_in_the_history():
    history = ["", PARAMETERS, "# Parameters\nworkers = 8\n", "x = 1"]
    assert injected_cells(history) == (PARAMETERS, "# Parameters\nworkers = 8\n")
    assert injected_cells(["", PARAMETERS, "x = 1"]) is None
    assert injected_values('# Parameters\nworkers = 8\ndata = "a b.zip"\n') == {"workers": 8, "data": "a b.zip"}
    check_namespace({"In": ["", PARAMETERS]})  # JupyterLab, nbval: nothing injected, nothing to check
    with pytest.raises(ConfigError):
        check_namespace({"In": history[:2] + ["# Parameters\nwrokers = 8\n"]})


def _notebook(path):
    notebook = nbformat.v4.new_notebook()
    parameters = nbformat.v4.new_code_cell(PARAMETERS)
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [
        parameters,
        nbformat.v4.new_code_cell("from lablib.sections.parameters import check_namespace\ncheck_namespace(globals())"),
        nbformat.v4.new_code_cell("print('measured with', workers)"),
    ]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)
    return path


def test_papermill_with_a_misspelt_parameter_fails_the_execution(tmp_path):
    import papermill

    source = _notebook(tmp_path / "n.ipynb")
    papermill.execute_notebook(str(source), str(tmp_path / "ok.ipynb"), parameters={"workers": 8}, progress_bar=False)
    with pytest.raises(papermill.PapermillExecutionError) as error:
        papermill.execute_notebook(
            str(source), str(tmp_path / "bad.ipynb"), parameters={"wrokers": 8}, progress_bar=False
        )
    assert "wrokers" in str(error.value) and "ConfigError" in str(error.value)


@pytest.mark.notebook
@pytest.mark.parametrize(
    "notebook, parameters, words",
    [
        ("c2_timing", {"wrokers": 8}, ["wrokers", "workers"]),
        ("c4_gpu_vs_cpu", {"workers": "abc"}, ["workers='abc'", "int"]),
        ("q3_params_sgd", {"optimiser": "adam"}, ["optimiser"]),
    ],
)
def test_a_lab_notebook_refuses_a_misspelt_or_mistyped_parameter(run_notebook, notebook, parameters, words):
    import papermill

    with pytest.raises(papermill.PapermillExecutionError) as error:
        run_notebook(notebook, **parameters)
    assert "ConfigError" in str(error.value)
    for word in words:
        assert word in str(error.value)
