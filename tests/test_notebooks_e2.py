"""E2 (efficient blocks) executed by papermill on real images."""

import pandas as pd
import pytest
from conftest import notebook_images, notebook_text, reads_well

from lablib.core.runs import load_runs
from lablib.sections.headlines import section_headlines


def test_e2_efficient_blocks(run_notebook, cifar_zip):
    executed = run_notebook(
        "e2_efficient_blocks",
        data=str(cifar_zip),
        widths="0.25",
        epochs=1,
        limit_train=128,
        limit_test=100,
        workers=0,
        device="cpu",
        batch_size=64,
        use_compile=False,
        latency_runs=3,
        throughput_batch=4,
        throughput_runs=2,
        warmup=1,
        budget_s=0.5,
        layer_batch=4,
        tag="test",
    )
    runs = load_runs("e2_efficient_blocks")
    assert len(runs) == 1 and runs.loc[0, "tag"] == "test"
    folder = runs.loc[0, "path"]
    models = pd.read_csv(f"{folder}/models.csv").set_index("model")
    assert list(models.index) == ["resnet18", "mobilenetv2-0.25"]
    assert abs(models.loc["resnet18", "macs"] / 1e9 - 0.56) < 0.01  # LAB_SPEC: about 0.56 GMACs
    timings = pd.read_csv(f"{folder}/timings.csv")
    assert len(timings) == 2 * 3 * 2  # models x precisions x batches, CPU eager only
    assert set(timings["status"]) <= {"ok", "unsupported", "failed"} and (timings["device"] == "cpu").all()
    layers = pd.read_csv(f"{folder}/layers.csv")
    assert (layers["kind"] == "depthwise").sum() == 17
    text = notebook_text(executed)
    ratio = models.loc["resnet18", "macs"] / models.loc["mobilenetv2-0.25", "macs"]
    assert f"`mobilenetv2-0.25` needs {ratio:.1f}× fewer MACs" in text
    accuracy = pd.read_csv(f"{folder}/accuracy.csv").set_index("model")
    assert f"`resnet18` {accuracy.loc['resnet18', 'test_accuracy']:.2f} % test accuracy" in text
    ok = (timings["status"] == "ok").sum()
    assert f"{ok} of {len(timings)} measurements ran" in text
    kinds = layers.groupby("kind")["macs"].sum()
    assert f"{100 * kinds['depthwise'] / kinds.sum():.1f} % of the MACs" in text
    convs = models.loc["mobilenetv2-0.25", "convs"]
    assert f"`mobilenetv2-0.25` has {convs} convolutions" in text
    assert notebook_images(executed) == 2  # MACs against time, and the layer profile
    (answer,) = section_headlines("e2_efficient_blocks", runs)
    assert answer.complete and answer.value == pytest.approx(ratio)
    assert reads_well(executed) == 7  # models, accuracy, latency, throughput, failures, layer kinds, precisions
    assert f">{models.loc['resnet18', 'parameters']:,}</td>" in text  # counts with their separators
