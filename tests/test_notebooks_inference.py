"""C7-C10 and Q1-Q6 executed by papermill (C7-C10 on a few real CIFAR-10 images), and Q1-Q6 under nbval.

Latency counts are small here (5 warm-up, 20 timed runs) and AOTInductor is left out of the C10 run (its C++
compile takes a minute; tests/test_inference.py compiles a tiny model instead); the notebooks' defaults are
the lab's (>= 50 warm-up, >= 200 timed runs, AOTInductor on).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import torch
from conftest import NOTEBOOKS, REPO, notebook_images, notebook_text, reads_well

from lablib.core.model import count_macs, resnet18
from lablib.core.runs import load_run, load_runs
from lablib.sections.context import context_table
from lablib.sections.headlines import headlines

# Fewer, smaller batches than TINY: ResNet-18 trains at a few images per second on two busy cores.
INFERENCE_TINY = {"limit_train": 40, "limit_test": 50, "epochs": 1, "workers": 0, "device": "cpu", "batch_size": 20}
Q_NOTEBOOKS = [
    "q1_conv_layers",
    "q2_last_linear",
    "q3_params_sgd",
    "q4_params_adam",
    "q5_trace_vs_script",
    "q6_scripting_changes",
]


def only_run(section: str) -> dict:
    runs = load_runs(section, status=None)
    assert len(runs) == 1 and runs.loc[0, "status"] == "complete", runs
    return load_run(runs.loc[0, "path"])


def test_c7_to_c10_on_real_images(run_notebook, cifar_zip):
    common = {"data": str(cifar_zip), "tag": "test", **INFERENCE_TINY}

    # C8 before any C7 run: it trains its own model and records it.
    c8_alone = notebook_text(run_notebook("c8_graph", **common))
    fallback = only_run("c8_graph")
    assert f"`{fallback['data']['fingerprint']}`" in c8_alone  # it says which data no C7 record matched
    assert len(fallback["epochs"]) == 1 and fallback["results"]["model_origin"] == "trained here"
    assert (Path(load_runs("c8_graph").loc[0, "path"]) / "model_scripted.pt").exists()

    # C7: train, script, save both files, reload, compare.
    c7_notebook = run_notebook("c7_torchscript", **common)
    c7_text = notebook_text(c7_notebook)
    assert reads_well(c7_notebook) == 2  # the epochs and the two files
    c7 = only_run("c7_torchscript")
    c7_path = Path(load_runs("c7_torchscript").loc[0, "path"])
    assert (c7_path / "model_scripted.pt").exists() and (c7_path / "model_state_dict.pt").exists()
    assert len(c7["epochs"]) == 1 and c7["epochs"][0]["images"] == 40
    results = c7["results"]
    assert results["compared_images"] == 50 and results["identical_outputs"] == (results["max_abs_difference"] == 0)
    assert results["max_abs_difference"] < 1e-4
    assert f"**{results['max_abs_difference']:.3g}**" in c7_text
    assert f"after {len(c7['epochs'])} epoch(s) on 40 training images" in c7_text
    assert f"loss {c7['epochs'][-1]['loss']:.3f}" in c7_text
    for warning in results["deprecation_warnings"]:  # the captured text is shown in full
        assert f"*{warning}*" in c7_text
    assert (
        f"{len(results['deprecation_warnings'])} distinct warning(s)" in c7_text or not results["deprecation_warnings"]
    )

    # C8 again: now from C7's model; the graph is printed and the operations come from the record.
    c8_notebook = run_notebook("c8_graph", **common)
    c8_text = notebook_text(c8_notebook)
    assert reads_well(c8_notebook) == 1
    c8 = max((load_run(p) for p in load_runs("c8_graph").path), key=lambda run: run["ended"])
    assert c8["results"]["model_origin"] == f"c7_torchscript/{c7['run_id']}" and not c8["epochs"]
    assert "graph(%self" in c8_text and 'prim::CallMethod[name="features"]' in c8_text
    operations = c8["results"]["operations"]
    assert operations[0] == "conv1" and operations[-1] == "fc" and "layer4" in operations
    assert f"performs {c8['results']['operation_count']} top-level operations" in c8_text
    assert " → ".join(f"`{name}`" for name in operations) in c8_text

    # C9: both accuracies, checked equal.
    c9_notebook = run_notebook("c9_eval", **common)
    c9_text = notebook_text(c9_notebook)
    assert reads_well(c9_notebook) == 1 and "test top-1 accuracy (%)" in c9_text
    c9 = only_run("c9_eval")["results"]
    assert c9["model_origin"] == f"c7_torchscript/{c7['run_id']}" and c9["images"] == 50
    assert c9["accuracy_eager"] == c9["accuracy_scripted"] and c9["same_accuracy"] is True
    assert c9["disagreements"] == 0
    assert f"on {c9['images']:,} test images" in c9_text and f"{c9['accuracy_eager']:.2f} % top-1" in c9_text
    assert f"a different class on {c9['disagreements']} image(s)" in c9_text

    # C10 with the C7 run named explicitly; device "auto" lists the GPU rows too.
    c10_notebook = run_notebook(
        "c10_latency",
        **{**common, "device": "auto", "source_run": str(c7_path), "warmup_runs": 5, "timed_runs": 20, "aoti": False},
    )
    c10_text = notebook_text(c10_notebook)
    c10 = only_run("c10_latency")
    table = pd.read_csv(Path(load_runs("c10_latency").loc[0, "path"]) / "latency.csv")
    assert list(zip(table.device, table.runtime)) == [
        (device, runtime)
        for device in ("cpu", "cuda")
        for runtime in ("PyTorch eager", "TorchScript", "torch.export", "AOTInductor")
    ]
    cpu = table[table.device == "cpu"].set_index("runtime")
    assert (cpu.loc[["PyTorch eager", "TorchScript", "torch.export"], "status"] == "measured").all()
    assert (cpu.timed_runs == 20).all() and (cpu.warmup_runs == 5).all()
    assert cpu.loc["AOTInductor", "status"].startswith("skipped")
    assert c10["results"]["cpu TorchScript mean_ms"] == pytest.approx(cpu.loc["TorchScript", "mean_ms"])
    assert f"TorchScript {cpu.loc['TorchScript', 'mean_ms']:.3f} ms" in c10_text
    assert f"{cpu.loc['PyTorch eager', 'mean_ms']:.3f} ms" in c10_text
    assert f"over 20 timed runs after 5 warm-up runs, CPU rows with {int(cpu.cpu_threads.iloc[0])}" in c10_text
    assert f"{count_macs(resnet18()) / 1e9:.2f} GMACs" in c10_text
    if not torch.cuda.is_available():
        assert table[table.device == "cuda"].status.str.startswith("not measured").all()
        assert "**cuda**: not measured" in c10_text
    assert notebook_images(c10_notebook) == 1 and reads_well(c10_notebook) == 1
    answers = {line.part: line for line in headlines(["c7_torchscript", "c8_graph", "c9_eval", "c10_latency"])}
    assert all(line.complete for line in answers.values()), answers
    assert answers["C8"].value == c8["results"]["operation_count"]  # the latest C8 run
    assert answers["C10"].value == pytest.approx(
        cpu.loc["PyTorch eager", "mean_ms"] / cpu.loc["TorchScript", "mean_ms"]
    )
    latency = context_table("c10_latency").values
    assert latency["cpu TorchScript mean_ms"] == pytest.approx(cpu.loc["TorchScript", "mean_ms"])
    assert context_table("c9_eval").values["accuracy_scripted"] == c9["accuracy_scripted"]
    assert "speed-up vs eager (×)" in c10_text and "median of 20 timed runs" in c10_text  # table header, caption


@pytest.mark.parametrize("name", Q_NOTEBOOKS)
def test_q_notebook_with_defaults(run_notebook, name):
    executed = run_notebook(name, tag="test")
    text = notebook_text(executed)
    results = only_run(name)["results"]
    tables = {"q1_conv_layers": 2, "q2_last_linear": 1, "q3_params_sgd": 3, "q4_params_adam": 3}
    assert reads_well(executed) == {**tables, "q5_trace_vs_script": 1, "q6_scripting_changes": 3}[name]
    (answer,) = headlines([name])
    assert answer.complete and answer.run_id == only_run(name)["run_id"]
    if name == "q1_conv_layers":
        assert (
            results["conv_layers_total"],
            results["conv_layers_shortcut"],
            results["conv_layers_without_shortcut"],
        ) == (20, 3, 17)
        assert f"**{results['conv_layers_total']} convolutional layers**" in text
        assert f"**{results['conv_layers_without_shortcut']}** without them" in text
        assert all(f"`{name}`" in text for name in results["shortcut_names"])
    elif name == "q2_last_linear":
        assert results["fc_in_features"] == 512 and results["feature_map_shape"] == [512, 4, 4]
        assert f"**{results['fc_in_features']}** inputs" in text
        assert "B × " + " × ".join(map(str, results["feature_map_shape"])) in text
        assert ">4 × 512</td>" in text  # the fc input shape in the table (batch_images 4)
    elif name in ("q3_params_sgd", "q4_params_adam"):
        assert results["parameters"] == results["gradients_after"] == 11_173_962
        assert results["gradients_before"] == 0
        assert f"**{results['parameters']:,} trainable parameters**" in text
        assert f"**{results['gradients_after']:,} gradients**" in text
        assert f">{results['parameters']:,}</td>" in text  # the table's count, with its separators
        if name == "q4_params_adam":
            assert results["optimizer_state_after"] == 2 * results["parameters"] == 22_347_924
            assert f"holds **{results['optimizer_state_after']:,} elements**" in text
            assert f"{results['optimizer_state_megabytes']:.1f} MB" in text
            assert results["sgd_state"] == results["parameters"]
        else:
            assert results["optimizer_state_after"] == results["parameters"]  # the momentum buffer
    elif name == "q5_trace_vs_script":
        assert results["traced_wrong_inputs"] == ["negative"] and results["scripted_all_match"] is True
        assert results["scripted_has_branch"] is True and results["traced_has_branch"] is False
        assert "wrong answer for negative input(s)" in text
        assert all(f"- *{line}*" in text for line in results["trace_warnings"])
    elif name == "q6_scripting_changes":
        assert results["max_abs_difference"] == 0.0 and results["contrast_rejected"] is True
        assert f"{results['compiled_modules']} modules of {len(results['compiled_classes'])} classes" in text
        assert "variable number of arguments" in text  # the compiler's own error, shown


def test_q_notebooks_are_tagged_for_the_report_and_nbval():
    for name in Q_NOTEBOOKS:
        notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        tags = [cell.metadata.get("tags", []) for cell in notebook.cells]
        assert sum("parameters" in t for t in tags) == 1
        checks = [cell for cell in notebook.cells if "remove-cell" in cell.metadata.get("tags", [])]
        assert checks and all("assert " in cell.source for cell in checks), name
        assert not any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
    for name in ("q3_params_sgd", "q4_params_adam", "q5_trace_vs_script", "q6_scripting_changes"):
        notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        shown = [cell.source for cell in notebook.cells if "show-code" in cell.metadata.get("tags", [])]
        assert shown, name
    assert any(
        "loss.backward()" in source
        for source in [
            c.source
            for c in nbformat.read(NOTEBOOKS / "q3_params_sgd.ipynb", as_version=4).cells
            if "show-code" in c.metadata.get("tags", [])
        ]
    )


def _nbval(paths: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "-q", "-p", "no:cacheprovider", *paths],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_q_notebooks_pass_nbval_lax():
    """`pytest --nbval-lax notebooks/q*.ipynb`: every Q notebook runs with its defaults and its asserts hold."""
    paths = sorted(str(path.relative_to(REPO)) for path in NOTEBOOKS.glob("q*.ipynb"))
    assert len(paths) == len(Q_NOTEBOOKS)
    done = _nbval(paths, REPO)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "failed" not in done.stdout.splitlines()[-1]
    for name in Q_NOTEBOOKS:  # the kernel inherited this test's run store
        assert len(load_runs(name)) == 1, name


def test_nbval_lax_fails_on_a_false_assert(tmp_path):
    """The check above can fail: nbval-lax runs remove-cell asserts and reports them."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (lablib)", "language": "python"}
    cell = nbformat.v4.new_code_cell("assert 1 + 1 == 3, 'this check must fail'")
    cell.metadata["tags"] = ["remove-cell"]
    notebook.cells = [nbformat.v4.new_code_cell("x = 1"), cell]
    nbformat.write(notebook, tmp_path / "broken.ipynb")
    done = _nbval(["broken.ipynb"], tmp_path)
    assert done.returncode != 0 and "this check must fail" in done.stdout
