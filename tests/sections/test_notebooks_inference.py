"""C7-C10, XC-2026 and Q1-Q6 executed by papermill (C7-C10 and XC-2026 on a few real CIFAR-10 images).

C7, C8, C9, C10 and XC-2026 run one after the other in one run store: the base training is trained once (by
C7) and presented by all five, and C7's TorchScript measurement by C7-C9 and XC-2026. Latency counts are small
here (2 warm-up, 5 timed runs) and AOTInductor is left out (its C++ compile takes a minute;
tests/core/test_latency.py compiles a tiny model instead); the notebooks' defaults are the lab's (50 warm-up,
200 timed runs, AOTInductor on). XC-2026 builds cpp/ in its own build folder (cpp/build, git-ignored): a minute
the first time in a checkout, CMake's up-to-date check after that.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import notebook_images, notebook_text, reads_well

from lablib.core.runs import load_runs
from lablib.core.store import Measured, Request, lookup, store_root
from lablib.sections.context import context_table, reference_figures
from lablib.sections.headlines import section_headlines
from lablib.sections.latency import c10_paragraphs, latency_table
from lablib.sections.libtorch import latency_sentence, prediction_sentence
from lablib.sections.torchscript import c7_sentence, c9_sentence

# Fewer, smaller batches than conftest's TINY: ResNet-18 trains at a few images per second on two busy cores.
INFERENCE_TINY = {"limit_train": 40, "limit_test": 50, "epochs": 1, "workers": 0, "device": "cpu", "batch_size": 20}
Q_NOTEBOOKS = (
    "q1_conv_layers",
    "q2_last_linear",
    "q3_params_sgd",
    "q4_params_adam",
    "q5_trace_vs_script",
    "q6_scripting_changes",
)


def recorded(kind: str) -> list[dict]:
    """The run.json of every measurement of `kind` in the test's store."""
    return [json.loads(path.read_text()) for path in sorted((store_root() / kind).glob("*/run.json"))]


def presenting(section: str) -> pd.Series:
    """The one complete presenting record of `section`."""
    runs = load_runs(section, status=None)
    assert len(runs) == 1 and runs.iloc[0]["status"] == "complete", runs
    return runs.iloc[0]


def measurement_of(meta: dict) -> Measured:
    """A recorded measurement (its run.json) as the sections read it."""
    return lookup(Request.from_dict(meta["request"]))


def measurement(kind: str) -> Measured:
    """The one recorded measurement of `kind`."""
    (meta,) = recorded(kind)
    return measurement_of(meta)


def test_c7_to_c10_and_xc_present_one_training_measured_once(run_notebook, cifar_zip):
    common = {"data": str(cifar_zip), "tag": "test", **INFERENCE_TINY}

    # C7: the base training, then its TorchScript measurement (script, save, reload, compare, evaluate).
    c7_notebook = run_notebook("c7_torchscript", **common)
    c7_text = notebook_text(c7_notebook)
    assert reads_well(c7_notebook) == 2  # the epochs and the two files
    training, scripted = measurement("training"), measurement("torchscript")
    results = scripted.results
    assert len(training.epochs) == 1 and training.epochs[0]["images"] == 40
    assert scripted.artifact("model_scripted.pt").exists() and scripted.artifact("model_state_dict.pt").exists()
    assert results["compared_images"] == 50 and results["max_abs_difference"] < 1e-4
    assert c7_sentence(results, training.epochs, "cpu") in c7_text
    for warning in results["deprecation_warnings"]:  # the captured text is shown in full
        assert f"*{warning}*" in c7_text
    c7 = presenting("c7_torchscript")
    assert c7["max_abs_difference"] == results["max_abs_difference"] and c7["compared_images"] == 50

    # C8: the graph of the saved file; nothing measured again.
    c8_notebook = run_notebook("c8_graph", **common)
    c8_text = notebook_text(c8_notebook)
    assert reads_well(c8_notebook) == 1
    assert "Reused, not measured again: training" in c8_text and "Reused, not measured again: TorchScript" in c8_text
    assert "graph(%self" in c8_text and 'prim::CallMethod[name="features"]' in c8_text
    c8 = presenting("c8_graph")
    operations = c8["operations"]
    assert operations[0] == "conv1" and operations[-1] == "fc" and "layer4" in operations
    assert f"performs {c8['operation_count']} top-level operations" in c8_text
    assert " → ".join(f"`{name}`" for name in operations) in c8_text

    # C9: both models on the test set, overall and per class.
    c9_notebook = run_notebook("c9_eval", **common)
    c9_text = notebook_text(c9_notebook)
    assert reads_well(c9_notebook) == 2 and notebook_images(c9_notebook) == 1  # overall, per class; the figure
    assert "TorchScript top-1 (%)" in c9_text and "same top-1" in c9_text  # the per-class table's headers
    assert c9_sentence(results, "cpu") in c9_text
    c9 = presenting("c9_eval")
    assert c9["accuracy_eager"] == c9["accuracy_scripted"] == results["eager"]["accuracy"] and c9["images"] == 50
    assert c9["classes_agreeing"] == c9["classes_tested"] == 10 and c9["disagreements"] == 0

    # C10: device auto asks for the CPU and the GPU; this machine measures what it has.
    c10_notebook = run_notebook(
        "c10_latency", **{**common, "device": "auto", "warmup_runs": 2, "timed_runs": 5, "aoti": False}
    )
    c10_text = notebook_text(c10_notebook)
    assert notebook_images(c10_notebook) == 1 and reads_well(c10_notebook) == 1
    latencies = recorded("latency")
    assert sorted(meta["settings"]["device"] for meta in latencies) == (
        ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    )
    cpu_latency = next(m for m in map(measurement_of, latencies) if m.request.settings["device"] == "cpu")
    table = latency_table([cpu_latency], ["cpu", "cuda"])
    cpu = table[table.device == "cpu"].set_index("runtime")
    assert (cpu.loc[["PyTorch eager", "TorchScript", "torch.export"], "status"] == "measured").all()
    assert (cpu.loc[["PyTorch eager", "TorchScript"], "runs"] == 5).all()
    assert cpu.loc["AOTInductor", "status"].startswith("skipped")
    c10 = presenting("c10_latency")
    assert c10["cpu TorchScript mean_ms"] == pytest.approx(cpu.loc["TorchScript", "mean_ms"])
    assert f"TorchScript {cpu.loc['TorchScript', 'mean_ms']:.3f} ms" in c10_text
    assert "over 5 timed runs after 2 warm-up runs" in c10_text
    counts = measurement("counts")
    assert f"{counts.results['macs'] / 1e9:.2f} GMACs" in c10_text
    if not torch.cuda.is_available():
        assert c10["cuda TorchScript status"].startswith("not measured") and "**cuda**: not measured" in c10_text
        assert c10_paragraphs(table, counts.results["macs"] / 1e9)[0] in c10_text

    # XC-2026: C7's scripted file, run from C++ beside Python.
    xc_notebook = run_notebook("xc_libtorch", **{**common, "images": 6, "warmup_runs": 2, "timed_runs": 5})
    check_xc(xc_notebook, scripted)

    # Measured once: one training and one TorchScript measurement in the store, presented five and four times.
    assert len(recorded("training")) == 1 and len(recorded("torchscript")) == 1
    for section in ("c7_torchscript", "c8_graph", "c9_eval", "c10_latency", "xc_libtorch"):
        meta = json.loads((Path(presenting(section)["path"]) / "run.json").read_text())
        assert training.key in [use["key"] for use in meta["uses"]], section  # each presents the same training
    answers = {}
    for section in ("c7_torchscript", "c8_graph", "c9_eval", "c10_latency"):
        (line,) = section_headlines(section, load_runs(section))
        answers[section] = line
    assert all(line.complete for line in answers.values()), answers
    assert answers["c8_graph"].value == c8["operation_count"]
    assert answers["c10_latency"].spread == pytest.approx(c10["cpu TorchScript std_ms"])
    assert beside_published("c10_latency", "cpu TorchScript mean_ms") == pytest.approx(c10["cpu TorchScript mean_ms"])
    assert beside_published("c9_eval", "accuracy_scripted") == c9["accuracy_scripted"]
    assert beside_published("c7_torchscript", "max_abs_difference") == c7["max_abs_difference"]


def beside_published(section: str, result: str):
    """This build's figure in the section's context table, beside the published row of the answer `result`."""
    (figure,) = [f for f in reference_figures()["figures"] if f["section"] == section and f.get("result") == result]
    return context_table(section, load_runs(section)).values[figure["what"]]


def check_xc(executed, scripted: Measured) -> None:
    """XC-2026's record and text: the program ran on C7's file, predicted like Python, was timed beside it."""
    text = notebook_text(executed)
    assert reads_well(executed) == 3  # the toolchain, the predictions, the latency
    program = measurement("libtorch")
    results = program.results
    assert results["model_file"] == str(scripted.artifact("model_scripted.pt"))  # the file C7's measurement saved
    assert len(results["labels"]) == 6 and len(set(results["labels"])) == 6  # class-balanced, not one class
    assert prediction_sentence(results) in text
    gmacs = measurement("counts").results["macs"] / 1e9
    assert latency_sentence(results, 2, gmacs) in text
    record = presenting("xc_libtorch")
    (answer,) = section_headlines("xc_libtorch", load_runs("xc_libtorch"))
    assert answer.complete and answer.run_id == record["run_id"]
    if not results["cpp_built"]:
        assert "could not be built" in text and results["build_problem"] in text
        return
    assert record["same_classes"] and record["outputs_allclose"] and record["max_abs_diff"] <= 1e-4
    assert results["cpp_predicted"] == results["python_predicted"]
    latency = program.table("latency")
    assert latency["runs"].tolist() == [5, 5] and f"{latency.iloc[1]['mean_ms']:.3f} ms" in text
    assert answer.value == pytest.approx(record["cpp_mean_ms"]) and answer.spread == pytest.approx(record["cpp_std_ms"])


@pytest.mark.parametrize("name", Q_NOTEBOOKS)
def test_q_notebook_with_defaults(run_notebook, name):
    executed = run_notebook(name, tag="test")
    text = notebook_text(executed)
    record = presenting(name)
    tables = {"q1_conv_layers": 2, "q2_last_linear": 1, "q3_params_sgd": 3, "q4_params_adam": 3}
    assert reads_well(executed) == {**tables, "q5_trace_vs_script": 1, "q6_scripting_changes": 3}[name]
    assert not store_root().exists()  # a question is presentation of the model: nothing measured
    checks = [cell for cell in executed.cells if "remove-cell" in cell.metadata.get("tags", [])]
    assert checks and all(cell.execution_count for cell in checks)  # the hidden asserts ran (and held)
    (answer,) = section_headlines(name, load_runs(name))
    assert answer.complete and answer.run_id == record["run_id"]
    if name == "q1_conv_layers":
        assert (
            record["conv_layers_total"],
            record["conv_layers_shortcut"],
            record["conv_layers_without_shortcut"],
        ) == (20, 3, 17)
        assert f"**{record['conv_layers_total']} convolutional layers**" in text
        assert all(f"`{layer}`" in text for layer in record["shortcut_names"])
    elif name == "q2_last_linear":
        assert record["fc_in_features"] == 512 and record["feature_map_shape"] == [512, 4, 4]
        assert f"**{record['fc_in_features']}** inputs" in text and "B × 512 × 4 × 4" in text
        assert ">4 × 512</td>" in text  # the fc input shape in the table (batch_images 4)
    elif name in ("q3_params_sgd", "q4_params_adam"):
        assert record["parameters"] == record["gradients_after"] == 11_173_962 and record["gradients_before"] == 0
        assert f"**{record['parameters']:,} trainable parameters**" in text
        assert f">{record['parameters']:,}</td>" in text  # the table's count, with its separators
        if name == "q4_params_adam":
            assert record["optimizer_state_after"] == 2 * record["parameters"] == 22_347_924
            assert (
                f"{record['optimizer_state_megabytes']:.1f} MB" in text and record["sgd_state"] == record["parameters"]
            )
        else:
            assert record["optimizer_state_after"] == record["parameters"]  # the momentum buffer
    elif name == "q5_trace_vs_script":
        assert record["traced_wrong_inputs"] == ["negative"] and record["scripted_all_match"]
        assert "wrong answer for negative inputs" in text
        assert all(f"- *{line}*" in text for line in record["trace_warnings"])
    else:
        assert record["max_abs_difference"] == 0.0 and record["contrast_rejected"]
        assert f"{record['compiled_modules']} modules of {len(record['compiled_classes'])} classes" in text
        assert "variable number of arguments" in text  # the compiler's own error, shown
