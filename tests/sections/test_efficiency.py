"""E2's planner, frames, tables, sentences and headlines (lablib.sections.efficiency and speed), from
measurements recorded without measuring (tests/factories.record_measurement)."""

import ast

import nbformat
import pandas as pd
import pytest
from conftest import NOTEBOOKS
from factories import record_measurement
from torch import nn

from lablib.core import training
from lablib.core.errors import ConfigError
from lablib.core.mobilenet import InvertedResidual
from lablib.core.store import lookup
from lablib.core.timing import NOISY_RELATIVE
from lablib.sections import efficiency
from lablib.sections.efficiency import (
    DEFAULTS,
    NEAR_CHANCE_POINTS,
    REFERENCE,
    WITHIN_POINTS,
    block_source,
    budget_choice,
    budget_sentence,
    budget_table,
    e2_answers,
    e2_headlines,
    e2_measurements,
    e2_plan,
    gather,
    linear_bottleneck_sentence,
    parse_precisions,
    parse_widths,
    question3_answer,
)
from lablib.sections.headlines import section_headlines
from lablib.sections.registry import presenter
from lablib.sections.speed import (
    DEVICE_BOUND,
    FAR_BELOW_MAC_RATIO,
    HOST_BOUND,
    SAME_SPEED,
    Skipped,
    bound,
    busy_sentence,
    busy_table,
    compile_sentence,
    compile_table,
    depthwise_sentence,
    kind_summary,
    launch_sentence,
    mac_speed_sentence,
    noise_sentence,
    precision_inference_sentence,
    precision_inference_table,
    precision_training_sentence,
    precision_training_table,
    ratio_spread,
    skipped_notes,
    speed_words,
)

QUICK = {
    "device": "cpu",
    "data": "fake",
    "epochs": 1,
    "limit_train": 256,
    "limit_test": 100,
    "workers": 0,
    "use_compile": False,
    "latency_runs": 20,
    "throughput_batch": 32,
    "throughput_runs": 3,
    "warmup": 2,
    "timing_s": 2.0,
    "layer_batch": 32,
    "busy_steps": 3,
}
WIDTHS = (0.4, 0.5, 0.75, 1.0, 1.4, 1.75)
MACS = {  # counted at 32 x 32 (FlopCounterMode)
    REFERENCE: 555_422_720,
    "MobileNetV2 ×0.4": 22_600_000,
    "MobileNetV2 ×0.5": 28_000_000,
    "MobileNetV2 ×0.75": 59_300_000,
    "MobileNetV2 ×1": 88_000_000,
    "MobileNetV2 ×1.4": 170_100_000,
    "MobileNetV2 ×1.75": 259_800_000,
}
ACCURACY = {  # ×0.75 is the smallest within 1 point of ResNet-18; ×0.5 is near 30 M MACs
    REFERENCE: 90.0,
    "MobileNetV2 ×0.4": 80.0,
    "MobileNetV2 ×0.5": 85.0,
    "MobileNetV2 ×0.75": 89.2,
    "MobileNetV2 ×1": 89.6,
    "MobileNetV2 ×1.4": 90.3,
    "MobileNetV2 ×1.75": 90.4,
}


@pytest.fixture
def bf16_only(monkeypatch):
    """This machine as a CPU with native bf16 and no fp16 (whatever the test machine's CPU is)."""
    policy = lambda device, precision: "" if precision != "fp16" else "no fp16 here"  # noqa: E731
    monkeypatch.setattr(efficiency, "precision_support", policy)
    monkeypatch.delenv("LABLIB_NO_CPU_COMPILE", raising=False)


# --- the plan ------------------------------------------------------------------------------------------


def test_the_quick_plan_on_the_cpu(bf16_only):
    plan = e2_plan(QUICK)
    assert [name for name, _ in plan.counts] == [REFERENCE] + [f"MobileNetV2 ×{w:g}" for w in WIDTHS]
    assert [r.settings["engine"] for _, r in plan.budget] == ["fast"] * 7
    assert {r.settings["precision"] for _, r in plan.budget} == {"fp32"}  # the CPU's fast default
    assert plan.compared == "MobileNetV2 ×1" and plan.pair == (REFERENCE, "MobileNetV2 ×1")
    assert sorted((n, p) for n, p, _ in plan.trainings) == sorted(
        [(REFERENCE, "fp32"), (REFERENCE, "bf16"), ("MobileNetV2 ×1", "fp32"), ("MobileNetV2 ×1", "bf16")]
    )
    budget_keys = {r.key for _, r in plan.budget}
    assert {r.key for _, p, r in plan.trainings if p == "fp32"} <= budget_keys  # fp32 is the budget's training
    settings = [r.settings for _, r in plan.timings]
    assert len(settings) == 7 * 2 + 2 * 2  # every network fp32 at two batches; the pair in bf16
    assert {s["batch"] for s in settings} == {1, 32} and {s["compile"] for s in settings} == {"none"}
    assert all(s["channels_last"] for s in settings)
    assert {s["max_runs"] for s in settings if s["batch"] == 1} == {20}
    assert {s["max_runs"] for s in settings if s["batch"] == 32} == {3}
    assert [name for name, _ in plan.layers] == list(plan.pair)
    assert {(r.settings["mode"], r.settings["batch"]) for _, r in plan.busy} == {
        (mode, batch) for mode in ("inference", "training") for batch in (1, 32)
    }
    assert len(plan.busy) == 8
    assert {skip.what for skip in plan.skipped} == {"training", "inference", "compiled inference"}
    assert len(plan.requests()) == 7 + 7 + 2 + 18 + 2 + 8  # the fp32 precision trainings are the budget's
    needs = e2_measurements(QUICK, lookup)
    assert needs.requests == plan.requests() and not needs.waiting
    assert any("use_compile is False" in note for note in needs.notes)
    assert any(note.startswith("Not measured on `cpu`: fp16 training and inference") for note in needs.notes)


def test_compile_planned_once_per_shape_and_switched_off(bf16_only, monkeypatch):
    plan = e2_plan({**QUICK, "use_compile": True})
    compiled = [r.settings for _, r in plan.timings if r.settings["compile"] != "none"]
    assert len(compiled) == 2 * 2 * 2  # the pair x fp32, bf16 x two batches, each its own compiled shape
    assert {r.settings["compile"] for _, r in plan.budget} == {"none"}  # trainings on the CPU are never compiled
    monkeypatch.setenv("LABLIB_NO_CPU_COMPILE", "1")
    switched = e2_plan({**QUICK, "use_compile": True})
    assert not [r for _, r in switched.timings if r.settings["compile"] != "none"]
    assert switched.not_measured("compiled inference") == [
        "compiled inference of every network on `cpu`: LABLIB_NO_CPU_COMPILE=1 is set"
    ]


def test_a_gpu_machine_times_the_cpu_too(bf16_only, monkeypatch):
    monkeypatch.setattr(efficiency, "resolve_device_type", lambda name: "cuda")
    monkeypatch.setattr(training, "resolve_device_type", lambda name: "cuda")
    plan = e2_plan({**QUICK, "device": "cuda", "use_compile": True})
    devices = [r.settings["device"] for _, r in plan.timings]
    assert set(devices) == {"cuda", "cpu"} and devices.count("cuda") == devices.count("cpu")
    assert {r.settings["compile"] for _, r in plan.budget} == {"none"}  # trainings run eager, on a GPU too
    assert {r.settings["device"] for _, r in plan.busy + plan.layers} == {"cuda"}
    alone = e2_plan({**QUICK, "device": "cuda", "use_compile": True, "time_cpu": False})
    assert {r.settings["device"] for _, r in alone.timings} == {"cuda"}


def test_bad_parameters_are_one_line_errors():
    with pytest.raises(ConfigError, match="widths='0.5,x'"):
        parse_widths("0.5,x")
    with pytest.raises(ConfigError, match="widths='0'"):
        parse_widths("0")
    assert parse_widths("1.0, 0.5,1") == [1.0, 0.5]
    assert parse_precisions("BF16,fp32,bf16") == ["fp32", "bf16"]
    with pytest.raises(ConfigError, match="includes fp32"):
        parse_precisions("fp16,bf16")
    with pytest.raises(ConfigError, match="fp8"):
        parse_precisions("fp32,fp8")
    with pytest.raises(ConfigError, match="compare_width=2 is not one of widths"):
        e2_plan({**QUICK, "compare_width": 2.0})


def test_the_notebook_declares_the_plans_defaults():
    notebook = nbformat.read(NOTEBOOKS / "e2_efficient_blocks.ipynb", as_version=4)
    (cell,) = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    defaults = {
        node.target.id: ast.literal_eval(node.value)
        for node in ast.parse(cell.source).body
        if isinstance(node, ast.AnnAssign)
    }
    assert {name: defaults[name] for name in DEFAULTS} == DEFAULTS
    headings = [
        c.source.splitlines()[0] for c in notebook.cells if c.cell_type == "markdown" and c.source.startswith("## ")
    ]
    assert headings == [
        "## Question 1: the inverted-residual block",
        "## Question 2: MobileNetV2 within a MAC budget",
        "## Question 3: why fewer MACs need not be faster",
    ]
    assert presenter("e2_efficient_blocks").parts == ("E2.1", "E2.2", "E2.3")


# --- recorded measurements, gathered --------------------------------------------------------------------


LATENCY = {REFERENCE: (10.0, 100.0), "MobileNetV2 ×1": (8.0, 40.0)}  # fp32 eager median ms at batch 1 and 32


def timing_results(network: str, settings) -> dict:
    batch = settings["batch"]
    slow, fast = LATENCY.get(network, (5.0, 30.0))
    median = slow if batch == 1 else fast
    if settings["precision"] == "bf16":
        median *= 0.5 if network == REFERENCE else 1.5  # bf16 helps ResNet-18, slows MobileNetV2
    if settings["compile"] != "none":
        median *= 0.8 if network == REFERENCE else 1.25
    return {
        "status": "ok",
        "note": "",
        "runs": 3,
        "median_ms": median,
        "mean_ms": median,
        "std_ms": 0.1 * median,
        "images_per_s": batch / (median / 1e3),
        "first_call_s": 5.0 if settings["compile"] != "none" else 0.01,
        "graphs_compiled": 1 if settings["compile"] != "none" else 0,
        "recompiles_while_timed": 0,
        "noisy": False,
    }


def layer_table(network: str) -> pd.DataFrame:
    if network == REFERENCE:
        rows = [("conv1", "dense", 1_000_000, 100_000, 0.1)] * 20 + [("fc", "linear", 5_000, 20_000, 0.01)]
    else:  # depthwise: few MACs, slow; pointwise: most MACs, fast
        rows = [("dw", "depthwise", 100_000, 200_000, 0.2)] * 17 + [("pw", "pointwise", 2_000_000, 100_000, 0.1)] * 34
        rows += [("stem", "dense", 500_000, 50_000, 0.05), ("fc", "linear", 10_000, 50_000, 0.01)]
    table = pd.DataFrame(rows, columns=["layer", "kind", "macs", "bytes", "median_ms"])
    table["macs_per_byte"] = table["macs"] / table["bytes"]
    table["gmacs_per_s"] = table["macs"] / (table["median_ms"] / 1e3) / 1e9
    return table


def record_plan(plan, accuracy=ACCURACY, busy_fraction=0.3):
    for name, request in plan.counts:
        record_measurement(request, {"parameters": int(MACS[name] / 50), "macs": MACS[name], "model_class": "x"})
    trained = [(name, request) for name, request in plan.budget] + [(n, r) for n, _, r in plan.trainings]
    for name, request in trained:
        precision = request.settings["precision"]
        seconds = 10.0 if precision == "fp32" else (5.0 if name == REFERENCE else 20.0)
        results = {
            "test_accuracy": accuracy[name] - (0.5 if precision != "fp32" else 0.0),
            "epoch_s_mean": seconds,
            "images_per_s_mean": 256 / seconds,
            "epochs_run": 1,
            "train_images": 256,
            "diverged": False,
        }
        if lookup(request) is None:
            record_measurement(request, results)
    for name, request in plan.timings:
        record_measurement(request, timing_results(name, request.settings))
    for name, request in plan.layers:
        table = layer_table(name)
        results = {
            "layers": len(table),
            "convolutions": int((table["kind"] != "linear").sum()),
            "depthwise_convolutions": int((table["kind"] == "depthwise").sum()),
            "macs_total": int(table["macs"].sum()),
        }
        measured = record_measurement(request, results)
        table.to_csv(measured.path / "layers.csv", index=False)
    for name, request in plan.busy:
        steps = request.settings
        fraction = busy_fraction if steps["batch"] == 1 else 0.9
        results = {
            "wall_ms_per_step": 10.0,
            "busy_ms_per_step": 10.0 * fraction,
            "busy_fraction": fraction,
            "operators_per_step": 160.0 if name != REFERENCE else 60.0,
            "kernels_per_step": None,
        }
        record_measurement(request, results)
    return gather(plan, [lookup(request) for request in plan.requests()])


def test_gather_the_budget_and_its_marks(bf16_only):
    e2 = record_plan(e2_plan(QUICK))
    assert list(e2.models["network"]) == list(MACS)
    table = budget_table(e2.models).set_index("network")
    assert table.loc["MobileNetV2 ×0.75", "mark"] == f"smallest within {WITHIN_POINTS:g} point of ResNet-18"
    assert table.loc["MobileNetV2 ×0.5", "mark"] == "near 30 M MACs"
    assert table.loc[REFERENCE, "mark"] == "reference" and table.loc["MobileNetV2 ×1", "mark"] == ""
    assert table.loc["MobileNetV2 ×0.5", "drop_points"] == pytest.approx(5.0)
    assert table.loc["MobileNetV2 ×1.75", "drop_points"] == pytest.approx(-0.4)
    assert table.loc[REFERENCE, "latency_ms"] == 10.0 and table.loc[REFERENCE, "images_per_s"] == pytest.approx(320)
    assert table.loc["MobileNetV2 ×0.5", "mmacs"] == pytest.approx(28.0)
    text = budget_sentence(e2.models, 1, 256)
    assert "ResNet-18 (555.4 M MACs, 11,108,454 parameters) reaches 90.00 % test top-1" in text
    assert "The smallest MobileNetV2 within 1 point of it is MobileNetV2 ×0.75: 59.3 M MACs (9.4× fewer)" in text
    assert "89.20 % (0.80 points below ResNet-18)" in text
    assert "Near 30 M MACs, MobileNetV2 ×0.5 (28.0 M MACs, 20× fewer than ResNet-18) reaches 85.00 %" in text
    assert "chance" not in text


def test_budget_without_a_width_within_a_point_and_near_chance(bf16_only):
    low = {name: (30.0 if name == REFERENCE else 14.0 + i) for i, name in enumerate(MACS)}
    e2 = record_plan(e2_plan(QUICK), accuracy=low)
    choice = budget_choice(e2.models)
    assert choice.within is None and choice.best["network"] == "MobileNetV2 ×1.75"
    text = budget_sentence(e2.models, 1, 256)
    assert "No width measured comes within 1 point of it: the most accurate, MobileNetV2 ×1.75" in text
    assert "10.00 points below ResNet-18" in text and "chance" not in text  # 30 % is 20 points above chance
    chance = {name: 10.0 + NEAR_CHANCE_POINTS / 2 for name in MACS}
    near_chance = budget_sentence(record_plan(e2_plan({**QUICK, "seed": 1}), accuracy=chance).models, 1, 256)
    assert "within 10 points of chance (10 %)" in near_chance and "the same as ResNet-18" in near_chance
    far = budget_choice(pd.DataFrame({"network": [REFERENCE, "MobileNetV2 ×2"], "macs": [5e8, 3.4e8]}))
    assert far.near is None  # 340 M MACs is not near 30 M


def test_question3_and_its_reasons(bf16_only):
    plan = e2_plan(QUICK)
    e2 = record_plan(plan)
    answer = question3_answer(e2)
    assert answer.startswith("**Question 3:** MobileNetV2 ×1 needs 6.3× fewer MACs per image than ResNet-18")
    assert "1.25× as fast (± 0.18) at batch 1 and 2.50× as fast (± 0.35) at batch 32" in answer
    assert f"below {FAR_BELOW_MAC_RATIO:.0%} of it" in answer  # 2.5 < 0.5 x 6.3
    kinds = kind_summary(e2.layers["MobileNetV2 ×1"]).set_index("kind")
    assert kinds.loc["depthwise", "layers"] == 17
    assert kinds["mac_share"].sum() == pytest.approx(100) and kinds["time_share"].sum() == pytest.approx(100)
    text = depthwise_sentence(kinds.reset_index(), "MobileNetV2 ×1", "cpu", 32)
    assert "the 17 depthwise 3×3 convolutions do 2.4 % of the MACs but take 49.6 % of the layer time" in text
    assert "they are memory-bound" in text
    flipped = kinds.reset_index()
    flipped.loc[flipped["kind"] == "depthwise", "gmacs_per_s"] = 1e3
    assert "these numbers do not confirm it" in depthwise_sentence(flipped, "MobileNetV2 ×1", "cpu", 32)
    launches = launch_sentence(e2.layer_counts, e2.busy, e2.timings, REFERENCE, plan.compared, "cpu", 32)
    assert "MobileNetV2 ×1 runs 52 convolutions in sequence" in launches and "160 operators per forward" in launches
    assert "ResNet-18 runs 20 convolutions" in launches
    assert "as here: MobileNetV2 ×1's advantage is 1.25× at batch 1 against 2.50× at batch 32" in launches


def test_precision_tables_and_sentences(bf16_only):
    plan = e2_plan(QUICK)
    e2 = record_plan(plan)
    trainings = precision_training_table(e2.trainings, plan.skipped)
    rows = trainings.set_index(["network", "precision"])
    assert rows.loc[(REFERENCE, "bf16"), "speedup_vs_fp32"] == pytest.approx(2.0)
    assert rows.loc[("MobileNetV2 ×1", "bf16"), "speedup_vs_fp32"] == pytest.approx(0.5)
    assert rows.loc[(REFERENCE, "fp16"), "outcome"] == "not measured"
    text = precision_training_sentence(trainings, "cpu", plan.skipped)
    assert "ResNet-18 trains in bf16 at 2.00× fp32's speed (faster; 5.00 s per epoch" in text
    assert "MobileNetV2 ×1 trains in bf16 at 0.50× fp32's speed (slower" in text
    assert text.endswith("Not trained: fp16 on `cpu` (no fp16 here).")
    diverged = e2.trainings.astype({"diverged": object})
    diverged.loc[diverged.index[0], "diverged"] = True
    assert list(precision_training_table(diverged)["outcome"]) == ["diverged"] + ["trained"] * (len(diverged) - 1)
    inference = precision_inference_table(e2.timings, plan.pair, plan.skipped)
    assert set(inference["network"]) == set(plan.pair)  # the other widths are timed in fp32 only
    bf16 = inference[(inference["precision"] == "bf16") & (inference["batch"] == 32)].set_index("network")
    assert bf16.loc[REFERENCE, "speedup_vs_fp32"] == pytest.approx(2.0)
    assert bf16.loc["MobileNetV2 ×1", "speedup_vs_fp32"] == pytest.approx(1 / 1.5)
    assert (inference[inference["precision"] == "fp16"]["status"] == "not measured").all()
    said = precision_inference_sentence(inference, 32, plan.skipped)
    assert "MobileNetV2 ×1 in bf16 on `cpu` runs 0.67× at batch 1 and 0.67× at batch 32 fp32's speed" in said
    assert "Slower than fp32 means" in said and said.endswith("Not timed: fp16 on `cpu` (no fp16 here).")
    only = precision_inference_sentence(inference[inference["precision"] != "bf16"], 32, plan.skipped)
    assert (
        only
        == "**Precision (inference, channels_last).** Only fp32 was timed. Not timed: fp16 on `cpu` (no fp16 here)."
    )
    assert "Not trained" not in precision_training_sentence(trainings, "cpu")  # nothing skipped: nothing said


def test_compile_table_and_sentence(bf16_only):
    plan = e2_plan({**QUICK, "use_compile": True})
    e2 = record_plan(plan)
    table = compile_table(e2.timings)
    assert len(table) == 8
    rows = table.set_index(["network", "precision", "batch"])
    assert rows.loc[(REFERENCE, "fp32", 1), "speedup_vs_eager"] == pytest.approx(1.25)
    assert rows.loc[("MobileNetV2 ×1", "fp32", 32), "speedup_vs_eager"] == pytest.approx(0.8)
    text = compile_sentence(table)
    assert "compiled ResNet-18 (fp32, `cpu`) is 1.25× eager at batch 1 and 1.25× eager at batch 32" in text
    assert "compiled MobileNetV2 ×1 (fp32, `cpu`) is 0.80× eager at batch 1" in text
    assert "Compiled is slower for MobileNetV2 ×1" in text
    assert "Each input shape was compiled once (dynamic=False, 1 graph per shape)" in text
    assert "no timed call recompiled" in text
    off = e2_plan(QUICK)
    none = compile_sentence(compile_table(record_plan(off).timings), off.not_measured("compiled inference"))
    assert none == (
        "**Compile.** Compiled against eager was not measured (compiled inference of every network on `cpu`: "
        "use_compile is False)."
    )


def test_busy_bounds_and_sentence(bf16_only):
    assert bound(DEVICE_BOUND) == "device" and bound(HOST_BOUND) == "host" and bound(0.6) == "both"
    assert bound(None) == "—"
    e2 = record_plan(e2_plan(QUICK), busy_fraction=0.3)
    table = busy_table(e2.busy)
    assert len(table) == 8 and set(table[table["batch"] == 1]["bound"]) == {"host"}
    text = busy_sentence(table, "cpu")
    assert "ResNet-18 inference at batch 1: 30 % busy (host-bound)" in text
    assert "at batch 1: 60 % busy (neither clearly: host and device both)" in busy_sentence(
        busy_table(e2.busy.assign(busy_fraction=0.6)), "cpu"
    )
    assert "ResNet-18 inference at batch 32: 90 % busy (device-bound)" in text
    assert "the 4 host-bound cases here are" in text
    assert "inside ATen operators" in text and "needs a GPU: not measured here" in text
    busy = busy_sentence(busy_table(record_plan(e2_plan({**QUICK, "seed": 2}), busy_fraction=0.85).busy), "cuda")
    assert "No case is host-bound" in busy and "kernel or copy runs on it" in busy


def test_mac_speed_sentence_thresholds():
    timings = pd.DataFrame(
        [
            {
                "network": n,
                "device": "cpu",
                "batch": 1,
                "precision": "fp32",
                "mode": "eager",
                "status": "ok",
                "median_ms": ms,
            }
            for n, ms in (("big", 10.0), ("small", 2.0))
        ]
    )
    close = mac_speed_sentence(6.0, "big", "small", timings, "cpu", 32)
    assert "5.00× as fast at batch 1" in close and "close to what the MAC ratio promises" in close  # 5 >= 0.5 x 6
    assert "far less" in mac_speed_sentence(11.0, "big", "small", timings, "cpu", 32)
    assert "not both recorded" in mac_speed_sentence(6.0, "big", "other", timings, "cpu", 32)
    assert speed_words(1 + SAME_SPEED / 2) == "about as fast" and speed_words(0.5) == "slower"
    assert ratio_spread(10, 1, 5, 0.5) == pytest.approx(2 * (0.01 + 0.01) ** 0.5)
    assert ratio_spread(10, None, 5, 0.5) is None


def test_noisy_timings_are_said_so(bf16_only):
    e2 = record_plan(e2_plan(QUICK))
    assert noise_sentence(e2.timings) == "" and "noisy" not in question3_answer(e2)
    timings = e2.timings.copy()
    timings.loc[timings.index[:3], "noisy"] = True
    said = noise_sentence(timings)
    assert said.startswith(f"3 of {len(timings)} timings are noisy") and f"{NOISY_RELATIVE:.0%} of their median" in said


def test_skipped_notes_group_by_reason():
    skipped = [
        Skipped("training", "A", "cpu", "fp16", "no fp16"),
        Skipped("inference", "A", "cpu", "fp16", "no fp16"),
        Skipped("inference", "B", "cpu", "fp16", "no fp16"),
        Skipped("compiled inference", "every network", "cpu", "", "use_compile is False"),
    ]
    assert skipped_notes(skipped) == [
        "Not measured on `cpu`: fp16 training and inference of A and B: no fp16.",
        "Not measured on `cpu`: compiled inference of every network: use_compile is False.",
    ]


# --- question 1 -------------------------------------------------------------------------------------------------------


def test_the_block_is_shown_from_its_module():
    source = block_source()
    assert source.startswith("```python\nclass InvertedResidual(nn.Module):") and source.endswith("\n```")
    assert "def forward(self, x: torch.Tensor)" in source and "linear bottleneck" in source


def test_the_linear_bottleneck_is_read_from_a_block():
    text = linear_bottleneck_sentence()
    assert text.startswith("**Question 1:** `InvertedResidual` (its source above")
    assert "widens a 24-channel input 6× with a 1×1 convolution (24 → 144 channels" in text
    assert "3×3 depthwise convolution" in text and "BatchNorm and no activation" in text
    assert "*linear bottleneck*" in text and "*inverted* residual" in text
    strided = linear_bottleneck_sentence(InvertedResidual(24, 32, 6, 2))
    assert "without the identity residual" in strided and "projects back to 32 channels" in strided
    activated = InvertedResidual(24, 24, 6, 1)
    activated.block.append(nn.ReLU6())
    assert "ReLU6: the projection is not linear" in linear_bottleneck_sentence(activated)


# --- the answers at a glance ----------------------------------------------------------------------------------------


def test_answers_and_headlines(bf16_only):
    e2 = record_plan(e2_plan(QUICK))
    answers = e2_answers(e2)
    assert answers["blocks"] == 17 and answers["within_network"] == "MobileNetV2 ×0.75"
    assert answers["near_network"] == "MobileNetV2 ×0.5" and answers["near_drop"] == pytest.approx(5.0)
    assert answers["mac_ratio"] == pytest.approx(555_422_720 / 88e6)
    assert answers["speedup_batch1"] == pytest.approx(1.25) and answers["speedup_large"] == pytest.approx(2.5)
    assert answers["busy_fractions"]["MobileNetV2 ×1 inference batch 1"] == pytest.approx(0.3)
    runs = pd.DataFrame([{**answers, "ended": "2026-01-01T00:00:00", "run_id": "r1", "status": "complete"}])
    lines = {line.part: line for line in e2_headlines(runs)}
    assert lines["E2.1"].value == 17 and "17 blocks in MobileNetV2 ×1" in lines["E2.1"].text
    assert lines["E2.2"].text.startswith("MobileNetV2 ×0.75: 59.3 M MACs at 89.20 % test top-1, within 1 point")
    assert "near 30 M MACs, MobileNetV2 ×0.5 is 5.00 points below" in lines["E2.2"].text
    assert lines["E2.2"].value == pytest.approx(59.3) and lines["E2.2"].unit == "M MACs"
    assert lines["E2.3"].value == pytest.approx(1.25) and lines["E2.3"].spread == pytest.approx(0.1768, abs=1e-3)
    assert (
        "MobileNetV2 ×1: 6.3× fewer MACs, 1.25× (± 0.18) ResNet-18's speed at batch 1 (fp32 eager, cpu)"
        in lines["E2.3"].text
    )
    assert "device busy 30 % at batch 1" in lines["E2.3"].text
    assert [h.part for h in section_headlines("e2_efficient_blocks", runs)] == ["E2.1", "E2.2", "E2.3"]
    no_within = pd.DataFrame([{**runs.iloc[0].to_dict(), "within_network": None, "best_network": "MobileNetV2 ×1.75"}])
    assert "no width within 1 point" in {h.part: h for h in e2_headlines(no_within)}["E2.2"].text
    assert not section_headlines("e2_efficient_blocks", None)[0].complete
