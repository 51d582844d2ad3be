"""E2 (efficient blocks) executed by papermill with the quick profile's parameters on real images."""

import pandas as pd
import pytest
from conftest import TINY, notebook_images, notebook_text, reads_well

from lablib.core.inference import precision_support
from lablib.core.runs import load_runs
from lablib.core.store import lookup
from lablib.sections.efficiency import REFERENCE, budget_table, e2_plan, gather
from lablib.sections.headlines import section_headlines

# The quick profile's parameters (report/plan.yaml) on TINY's subset.
QUICK = {
    "use_compile": False,
    "batch_size": 64,
    "latency_runs": 10,
    "throughput_batch": 16,
    "throughput_runs": 2,
    "warmup": 1,
    "timing_s": 1.0,
    "layer_batch": 16,
    "busy_steps": 2,
}


def test_e2_efficient_blocks(run_notebook, cifar_zip):
    parameters = {**TINY, **QUICK, "data": str(cifar_zip), "tag": "test"}
    executed = run_notebook("e2_efficient_blocks", **parameters)
    runs = load_runs("e2_efficient_blocks")
    assert len(runs) == 1 and runs.loc[0, "status"] == "complete" and runs.loc[0, "tag"] == "test"
    plan = e2_plan(parameters)
    measured = [lookup(request) for request in plan.requests()]
    assert all(item is not None for item in measured)  # every planned measurement is recorded
    e2 = gather(plan, measured)
    text = notebook_text(executed)

    # question 2: at least five MobileNetV2 widths from about 20 M to about 300 M MACs, and ResNet-18
    models = e2.models.set_index("network")
    widths = models.drop(index=REFERENCE)
    assert len(widths) >= 5 and widths["mmacs"].min() < 25 and widths["mmacs"].max() > 250
    assert models.loc[REFERENCE, "mmacs"] == pytest.approx(555.4, abs=0.5)  # LAB_SPEC: about 0.56 GMACs
    assert models["test_accuracy"].between(0, 100).all() and models["latency_ms"].gt(0).all()
    table = budget_table(e2.models)
    assert (table["mark"] == "near 30 M MACs").sum() == 1  # ×0.5, 28 M MACs
    assert f">{int(models.loc[REFERENCE, 'parameters']):,}</td>" in text
    assert f"ResNet-18 ({models.loc[REFERENCE, 'mmacs']:.1f} M MACs" in text

    # question 1: the block's source, from the module
    assert "class InvertedResidual(nn.Module):" in text and "*linear bottleneck*" in text

    # question 3: precision rows for training (fp16 measured on a GPU, else the reason), compile, busy
    trainings = e2.trainings
    assert set(trainings["network"]) == {REFERENCE, plan.compared}
    fp16 = precision_support("cpu", "fp16")
    if fp16:
        assert f"Not trained: fp16 on `cpu` ({fp16})." in text and f"Not timed: fp16 on `cpu` ({fp16})." in text
    else:
        assert "fp16" in set(trainings["precision"])
    assert "**Precision (training, fast engine).**" in text and "**Precision (inference, channels_last).**" in text
    assert (
        "**Compile.** Compiled against eager was not measured (compiled inference of every network on `cpu`: "
        "use_compile is False)."
    ) in text
    busy = e2.busy
    assert len(busy) == 8 and busy["busy_fraction"].between(0, 1).all()
    for row in busy.to_dict("records"):
        said = f"{row['network']} {row['mode']} at batch {row['batch']}: {100 * row['busy_fraction']:.0f} % busy"
        assert said in text
    assert "inside ATen operators" in text and "needs a GPU: not measured here" in text
    assert "**Question 3:** MobileNetV2 ×1 needs" in text and "**Memory-bound depthwise convolutions.**" in text
    assert "**Launch count and graph depth.**" in text

    # the presenting record, its headlines, the figures and tables
    (row,) = runs.to_dict("records")
    assert row["blocks"] == 17 and row["compared"] == plan.compared
    lines = {line.part: line for line in section_headlines("e2_efficient_blocks", runs)}
    assert set(lines) == {"E2.1", "E2.2", "E2.3"} and all(line.complete for line in lines.values())
    assert lines["E2.3"].value == pytest.approx(row["speedup_batch1"])
    assert notebook_images(executed) == 3  # accuracy against MACs, time against MACs, the layer profile
    assert reads_well(executed) == 6  # budget, layer kinds, layer counts, two precision tables, busy (no compile table)
    assert pd.DataFrame(row["budget_points"])["network"].tolist() == e2.models["network"].tolist()
