"""C7 (convert to TorchScript), C8 (the model graph) and C9 (evaluate the TorchScript model): one measurement.

The three sections present the same two measurements: the lab's base training (the very request C1
and C2 make, its weights kept: trained once) and its "torchscript" measurement (lablib.core.torchscript:
scripted, saved, reloaded, compared, both models evaluated). C7 shows the training, the two files
and how the reloaded model's outputs compare with the eager model's; C8 loads the saved file and shows
its graph and the sequence of top-level operations (reading a file is presentation, not measuring);
C9 shows the test loss and top-1 of both models, overall and per class, and whether they agree.
`base_training(params)` is the request C10 and XC-2026 take their model from too.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch

from lablib.core.config import config_from_params
from lablib.core.errors import ConfigError
from lablib.core.progress import counted
from lablib.core.store import Request
from lablib.core.torchscript import COMPARE_IMAGES, torchscript_request
from lablib.core.training import WEIGHTS, training_request
from lablib.sections.headlines import Headline, answer, latest, number, shown
from lablib.sections.registry import Needs, Presenter, Recorded
from lablib.sections.tables import format_value

FLOAT_TOLERANCE = 1e-4  # a largest logit difference below this is float rounding, not a different model
BASE_NOTE = (
    "The model is the lab's base training with these settings, the very measurement C1 and C2 present: "
    "trained once, then scripted once for C7, C8 and C9."
)


# --- what C7, C8 and C9 present -------------------------------------------------------------------


def base_training(params: Mapping[str, Any]) -> Request:
    """The lab's training with the notebook's settings, its weights kept (C1's request: trained once)."""
    return dataclasses.replace(training_request(config_from_params(params)), keep=(WEIGHTS,))


def compare_count(params: Mapping[str, Any]) -> int:
    value = params.get("compare_images", COMPARE_IMAGES)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"compare_images={value!r} is not allowed; expected an integer >= 1 (e.g. 128).")
    return value


def scripted_request(params: Mapping[str, Any]) -> Request:
    """The torchscript measurement of the base training (C7, C8, C9 and XC-2026 ask for the same one)."""
    return torchscript_request(base_training(params), compare_count(params))


def scripted_measurements(params: Mapping[str, Any], recorded: Recorded) -> Needs:
    """The base training, then its TorchScript measurement."""
    request = scripted_request(params)
    return Needs((base_training(params), request), (BASE_NOTE,))


# --- C7: script, save, reload, compare -------------------------------------------------------------


def output_verdict(max_abs_difference: float) -> str:
    """How two models' outputs compare, from their largest absolute difference."""
    if max_abs_difference == 0.0:
        return "identical (bitwise)"
    if max_abs_difference < FLOAT_TOLERANCE:
        return f"equal within float rounding (below {FLOAT_TOLERANCE:g})"
    return f"**different** (above the float tolerance {FLOAT_TOLERANCE:g})"


def files_table(results: Mapping[str, Any]) -> pd.DataFrame:
    """The two files C7 saved: the TorchScript module and the eager state_dict, with their sizes."""
    return pd.DataFrame(
        [
            {
                "file": results["scripted_file"],
                "what": "TorchScript module (code + weights), torch.jit.save",
                "size (MB)": results["scripted_bytes"] / 1e6,
            },
            {
                "file": results["state_dict_file"],
                "what": "eager state_dict (weights only), torch.save",
                "size (MB)": results["state_dict_bytes"] / 1e6,
            },
        ]
    )


def c7_sentence(results: Mapping[str, Any], epochs: Sequence[Mapping[str, Any]], device: str) -> str:
    """C7's conclusion: what was trained, scripted, saved and reloaded, and how the outputs compare."""
    difference = float(results["max_abs_difference"])
    trained = (
        f"{counted(len(epochs), 'epoch')} on {int(results.get('trained_images') or 0):,} training images on `{device}`"
    )
    if epochs:
        last = epochs[-1]
        trained += f" (final training loss {last['loss']:.3f}, accuracy {last['accuracy']:.2f} %)"
    classes = len(set(results.get("compared_labels") or []))
    return (
        f"**C7:** after {trained}, the model was scripted with `torch.jit.script`, saved to "
        f"`{results['scripted_file']}` and reloaded with `torch.jit.load`. On {int(results['compared_images'])} "
        f"test images ({classes} classes, balanced) the maximum absolute difference between the eager and the "
        f"reloaded TorchScript logits is **{difference:.3g}**: the outputs are {output_verdict(difference)}."
    )


def warning_paragraphs(warnings_by_step: Mapping[str, Sequence[str]], torch_version: str) -> list[str]:
    """Each captured warning in full, then what a DeprecationWarning on TorchScript means."""
    bullets = [f"- `{step}`: *{text}*" for step, texts in warnings_by_step.items() for text in texts]
    if not bullets:
        return [f"torch {torch_version} raised no warning while scripting, saving and loading."]
    distinct = {text for texts in warnings_by_step.values() for text in texts}
    paragraphs = [
        "\n".join(bullets),
        f"torch {torch_version} raised {counted(len(distinct), 'distinct warning')} while scripting, saving and "
        "loading (shown above, captured as they were raised).",
    ]
    if any(text.startswith("DeprecationWarning") for text in distinct):
        paragraphs[-1] += (
            " A `DeprecationWarning` means the API still works in this version but is no longer developed and may "
            "be removed in a future release: TorchScript is in maintenance mode. The successors it names are "
            "`torch.compile` (speed-ups inside Python) and `torch.export` (a whole-graph export, which AOTInductor "
            "compiles into a package that C++ can load without Python). The lab asks for TorchScript, so C7–C10 "
            "use it, and C10 adds `torch.export` and AOTInductor as extra rows so the replacement is measured too."
        )
    return paragraphs


def c7_results(results: Mapping[str, Any]) -> dict[str, Any]:
    """C7's answers for its record (the headline and the context table read them)."""
    return {
        "max_abs_difference": results["max_abs_difference"],
        "identical_outputs": bool(results["identical_outputs"]),
        "compared_images": results["compared_images"],
        "scripted_bytes": results["scripted_bytes"],
        "deprecation_warnings": list(results.get("deprecation_warnings") or []),
    }


def c7_headlines(runs: pd.DataFrame) -> list[Headline]:
    row = latest(runs)
    difference = number(row.get("max_abs_difference"))
    same = "identical outputs" if bool(row.get("identical_outputs")) else "outputs differ"
    text = f"reloaded TorchScript: {same}, max abs difference {difference:.1e}" if difference is not None else same
    return [answer("c7_torchscript", "C7", text, difference, "", row)]


# --- C8: the graph -------------------------------------------------------------------------------

PLUMBING = (  # graph nodes that move values around without computing: left out of the operations table
    "prim::Constant",
    "prim::GetAttr",
    "prim::ListConstruct",
    "prim::TupleConstruct",
    "prim::TupleUnpack",
    "prim::ListUnpack",
    "prim::NumToTensor",
)


def graph_text(scripted: torch.jit.ScriptModule, method: str = "forward") -> str:
    """The TorchScript IR of one method (`scripted.graph` for forward)."""
    return str(getattr(scripted, method).graph)


def _class_name(type_text: str) -> str:
    # "__torch__.torch.nn.modules.container.___torch_mangle_1.Sequential" -> "Sequential"
    return type_text.rsplit(".", 1)[-1]


def top_level_operations(scripted: torch.jit.ScriptModule, method: str = "forward") -> pd.DataFrame:
    """The operations `method`'s graph performs, in order, one row each.

    Calls of another method of the same module (ResNet.forward -> self.features) are expanded in place,
    so the table reads as the model's data path; calls into submodules (conv1, layer1, ...) stay one row
    each, as the graph shows them. Graph plumbing (constants, attribute reads, list building) is left out.
    """
    rows: list[dict[str, Any]] = []

    def walk(graph, method_name: str) -> None:
        self_value = next(iter(graph.inputs()))
        for node in graph.nodes():
            kind = node.kind()
            if kind in PLUMBING:
                continue
            if kind == "prim::CallMethod":
                target = node.inputsAt(0)
                name = node.s("name")
                if target.debugName() == self_value.debugName() or target.node().kind() == "prim::Param":
                    walk(getattr(scripted, name).graph, name)  # a method of the model itself
                    continue
                owner = target.node()
                attribute = owner.s("name") if owner.kind() == "prim::GetAttr" else target.debugName()
                rows.append(
                    {
                        "operation": f"{attribute}.{name}",
                        "kind": "submodule call",
                        "type": _class_name(str(target.type())),
                        "in method": method_name,
                    }
                )
            elif kind == "prim::CallFunction":
                constant = node.inputsAt(0).node()
                function = constant.s("name") if constant.hasAttribute("name") else str(node.inputsAt(0).type())
                rows.append(
                    {
                        "operation": f"F.{function}",
                        "kind": "function call",
                        "type": "torch.nn.functional",
                        "in method": method_name,
                    }
                )
            else:
                rows.append(
                    {"operation": kind, "kind": "operator", "type": kind.split("::")[0], "in method": method_name}
                )

    walk(getattr(scripted, method).graph, method)
    table = pd.DataFrame(rows, columns=["operation", "kind", "type", "in method"])
    table.insert(0, "step", range(1, len(table) + 1))
    return table


def operation_sequence(operations: pd.DataFrame) -> list[str]:
    """The operations column without the ".forward" of submodule calls: ["conv1", "bn1", "F.relu", ...]."""
    return [name.removesuffix(".forward") for name in operations.operation]


def _what_it_is(scripted: torch.jit.ScriptModule, row: Mapping[str, Any]) -> str:
    if row["kind"] != "submodule call":
        return {"function call": "a `prim::CallFunction`", "operator": "an operator run directly"}[row["kind"]]
    if row["type"] != "Sequential":
        return f"a {row['type']}"
    children = Counter(child.original_name for child in getattr(scripted, row["operation"].split(".")[0]).children())
    return "a Sequential of " + ", ".join(f"{count} × {name}" for name, count in children.items())


def c8_sentence(scripted: torch.jit.ScriptModule, operations: pd.DataFrame) -> str:
    """C8's conclusion: the sequence of top-level operations, and what each step is, read from the module."""
    sequence = operation_sequence(operations)
    groups: list[tuple[list[str], str]] = []  # consecutive steps of the same kind, e.g. layer1-layer4
    for name, row in zip(sequence, operations.to_dict("records")):
        what = _what_it_is(scripted, row)
        if groups and groups[-1][1] == what and row["kind"] == "submodule call":
            groups[-1][0].append(name)
        else:
            groups.append(([name], what))
    parts = [
        f"`{names[0]}` ({what})" if len(names) == 1 else f"`{names[0]}`–`{names[-1]}` (each {what})"
        for names, what in groups
    ]
    return (
        f"**C8:** the scripted graph performs {len(sequence)} top-level operations: "
        + " → ".join(f"`{name}`" for name in sequence)
        + ". Step by step: "
        + ", ".join(parts)
        + ". Each submodule call is one `prim::CallMethod` node of the graph; what it runs is compiled inside that "
        "submodule."
    )


def c8_results(operations: pd.DataFrame, graphs: Mapping[str, str]) -> dict[str, Any]:
    """C8's answers: the operations in order, their count, and each printed graph's length in lines."""
    sequence = operation_sequence(operations)
    return {
        "operations": sequence,
        "operation_count": len(sequence),
        **{f"{method}_graph_lines": len(text.splitlines()) for method, text in graphs.items()},
    }


def c8_headlines(runs: pd.DataFrame) -> list[Headline]:
    row = latest(runs)
    count = number(row.get("operation_count"))
    text = f"{int(count)} top-level operations in the scripted forward graph" if count is not None else "no graph"
    return [answer("c8_graph", "C8", text, None if count is None else int(count), "operations", row)]


# --- C9: PyTorch vs TorchScript on the test set ------------------------------------------------------


def accuracy_table(results: Mapping[str, Any]) -> pd.DataFrame:
    """Both models' test loss and top-1 over the same test images."""
    return pd.DataFrame(
        [
            {
                "model": name,
                "test_accuracy": results[key]["accuracy"],
                "test_loss": results[key]["loss"],
                "images": results[key]["images"],
            }
            for name, key in (("PyTorch (eager)", "eager"), ("TorchScript (reloaded)", "scripted"))
        ]
    )


def per_class_table(results: Mapping[str, Any]) -> pd.DataFrame:
    """Top-1 test accuracy per class for both models, their difference, and whether they are equal."""
    eager, scripted = results["eager"]["per_class"], results["scripted"]["per_class"]
    table = pd.DataFrame(
        {
            "class": list(results["classes"]),
            "images": list(results["per_class_images"]),
            "accuracy_eager": [number(value) for value in eager],
            "accuracy_scripted": [number(value) for value in scripted],
        }
    )
    table["accuracy_difference"] = table["accuracy_scripted"] - table["accuracy_eager"]
    table["same_accuracy"] = [a == b for a, b in zip(eager, scripted)]
    return table


def c9_sentence(results: Mapping[str, Any], device: str) -> str:
    """C9's conclusion: both accuracies checked equal or not, per class too, and how the outputs differ."""
    eager, scripted = results["eager"], results["scripted"]
    if eager["accuracy"] == scripted["accuracy"]:
        check = "**identical**, as checked"
    else:
        check = f"**different** (by {abs(eager['accuracy'] - scripted['accuracy']):.4f} points)"
    table = per_class_table(results)
    tested = table[table["images"] > 0]
    agree = int(tested["same_accuracy"].sum())
    if agree == len(tested):
        per_class = f"Per class they agree on all {len(tested)} classes"
    else:
        differing = ", ".join(f"`{name}`" for name in tested.loc[~tested["same_accuracy"], "class"])
        per_class = f"Per class they agree on {agree} of {len(tested)} classes (not on {differing})"
    spread = ""
    if len(tested) > 1:
        worst = tested.loc[tested["accuracy_eager"].idxmin()]
        best = tested.loc[tested["accuracy_eager"].idxmax()]
        spread = (
            f"; the model's weakest class is `{worst['class']}` ({worst['accuracy_eager']:.2f} %) and its strongest "
            f"`{best['class']}` ({best['accuracy_eager']:.2f} %)"
        )
    difference = float(results["test_max_abs_difference"])
    return (
        f"**C9:** on {int(results['test_images']):,} test images on `{device}`, the PyTorch model reaches "
        f"{eager['accuracy']:.2f} % top-1 accuracy and the reloaded TorchScript model {scripted['accuracy']:.2f} %: "
        f"{check}. {per_class}{spread}. The two predict a different class on "
        f"{counted(int(results['test_disagreements']), 'image')}, and the largest absolute difference between their "
        f"logits over the whole set is "
        f"{difference:.3g}: the outputs are {output_verdict(difference)}. Scripting compiles the same operators "
        "with the same weights, so equal predictions are what is expected; the check makes sure."
    )


def c9_results(results: Mapping[str, Any]) -> dict[str, Any]:
    """C9's answers for its record (the headline and the context table read them)."""
    table = per_class_table(results)
    tested = table[table["images"] > 0]
    return {
        "accuracy_eager": results["eager"]["accuracy"],
        "accuracy_scripted": results["scripted"]["accuracy"],
        "loss_eager": results["eager"]["loss"],
        "loss_scripted": results["scripted"]["loss"],
        "images": results["test_images"],
        "same_accuracy": results["eager"]["accuracy"] == results["scripted"]["accuracy"],
        "classes_agreeing": int(tested["same_accuracy"].sum()),
        "classes_tested": int(len(tested)),
        "disagreements": results["test_disagreements"],
        "test_max_abs_difference": results["test_max_abs_difference"],
        "per_class_eager": list(results["eager"]["per_class"]),
        "per_class_scripted": list(results["scripted"]["per_class"]),
    }


def c9_headlines(runs: pd.DataFrame) -> list[Headline]:
    row = latest(runs)
    text = (
        f"test top-1 {shown(row.get('accuracy_eager'))} % PyTorch, {shown(row.get('accuracy_scripted'))} % "
        f"TorchScript on {format_value(row.get('images'))} images"
    )
    agreeing, tested = number(row.get("classes_agreeing")), number(row.get("classes_tested"))
    if agreeing is not None and tested is not None:
        text += f"; per class equal on {int(agreeing)} of {int(tested)}"
    return [answer("c9_eval", "C9", text, number(row.get("accuracy_scripted")), "%", row)]


PRESENTS = (
    Presenter("c7_torchscript", ("C7",), scripted_measurements, c7_headlines),
    Presenter("c8_graph", ("C8",), scripted_measurements, c8_headlines),
    Presenter("c9_eval", ("C9",), scripted_measurements, c9_headlines),
)
