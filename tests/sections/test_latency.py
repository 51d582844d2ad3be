"""C10 (lablib.sections.latency): what it asks for, its table, sentences and headline, on recorded fakes."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from factories import record_measurement

from lablib.core.errors import ConfigError
from lablib.core.latency import MEASURED, RUNTIMES, latency_request
from lablib.core.store import lookup
from lablib.sections.headlines import section_headlines
from lablib.sections.latency import (
    NO_GPU,
    c10_measurements,
    c10_paragraphs,
    describe_latency,
    latency_results,
    latency_table,
    measurable,
    shape_text,
    wanted_devices,
)
from lablib.sections.torchscript import base_training

PARAMS = {"data": "fake", "limit_train": 64, "limit_test": 40, "epochs": 1, "workers": 0, "device": "cpu"}
MEANS = {"PyTorch eager": 10.0, "TorchScript": 8.0, "torch.export": 12.5}


def latency_rows(device: str = "cpu", noisy: str = "") -> list[dict]:
    """A latency table as lablib.core.latency records it: three runtimes timed, AOTInductor skipped."""
    rows = []
    for runtime in RUNTIMES:
        if runtime not in MEANS:
            rows.append({"device": device, "runtime": runtime, "status": "skipped: the aoti parameter is False"})
            continue
        mean = MEANS[runtime]
        wide = runtime == noisy
        rows.append(
            {
                "device": device,
                "runtime": runtime,
                "status": MEASURED,
                "warmup_runs": 7,
                "timed_runs": 11,
                "runs": 11,
                "mean_ms": mean,
                "median_ms": mean,
                "std_ms": mean / 10,
                "p5_ms": mean * 0.9,
                "p95_ms": mean * (3.0 if wide else 1.1),
                "noisy": wide,
                "max_abs_diff": 0.0,
                "threads": 3,
            }
        )
    return rows


def recorded_latency(device: str = "cpu", noisy: str = ""):
    request = latency_request(base_training(PARAMS), device, 7, 11, aoti=False)
    measured = record_measurement(request, results={"threads_used": 3})
    pd.DataFrame(latency_rows(device, noisy)).to_csv(measured.path / "latency.csv", index=False)
    return measured


def test_devices_asked_for_and_measurable_here():
    assert wanted_devices("auto") == ["cpu", "cuda"] and wanted_devices("cuda") == ["cuda"]
    with pytest.raises(ConfigError, match="device='tpu'"):
        wanted_devices("tpu")
    assert measurable(["cpu", "cuda"]) == (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    assert shape_text((1, 3, 32, 32)) == "1×3×32×32"


def test_c10_asks_for_the_base_training_one_latency_per_device_and_the_counts():
    params = {**PARAMS, "warmup_runs": 3, "timed_runs": 9, "aoti": False, "cpu_threads": 1}
    needs = c10_measurements(params, lookup)
    training, *latencies, counts = needs.requests
    assert training.key == base_training(params).key and counts.kind == "counts"
    assert [r.settings["device"] for r in latencies] == ["cpu"]  # device cpu: the CPU only
    assert latencies[0].settings["source"] == training.key and latencies[0].settings["timed_runs"] == 9
    auto = c10_measurements({**params, "device": "auto"}, lookup)
    devices = [r.settings["device"] for r in auto.requests if r.kind == "latency"]
    assert devices == measurable(["cpu", "cuda"])
    if not torch.cuda.is_available():
        assert any("No CUDA GPU is visible" in note for note in auto.notes)
    with pytest.raises(ConfigError, match="timed_runs=0"):
        c10_measurements({**params, "timed_runs": 0}, lookup)


def test_latency_table_speedups_and_rows_not_measured_here():
    table = latency_table([recorded_latency("cpu")], ["cpu", "cuda"])
    assert list(zip(table.device, table.runtime)) == [(d, r) for d in ("cpu", "cuda") for r in RUNTIMES]
    cpu = table[table.device == "cpu"].set_index("runtime")
    assert cpu.loc["PyTorch eager", "speedup_vs_eager"] == 1.0
    assert cpu.loc["TorchScript", "speedup_vs_eager"] == pytest.approx(10.0 / 8.0)
    assert pd.isna(cpu.loc["AOTInductor", "speedup_vs_eager"])
    assert (table[table.device == "cuda"].status == NO_GPU).all()
    assert cpu["device_name"].notna().all()  # the machine that measured it, from its record
    results = latency_results(table)
    assert results["cpu TorchScript mean_ms"] == 8.0 and results["cpu TorchScript std_ms"] == pytest.approx(0.8)
    assert results["cpu AOTInductor status"].startswith("skipped") and "cpu AOTInductor mean_ms" not in results
    assert results["cuda TorchScript status"] == NO_GPU and results["cpu TorchScript noisy"] is False


def test_describe_latency_and_the_noise_rule():
    quiet = describe_latency(latency_table([recorded_latency("cpu")], ["cpu", "cuda"]))
    assert quiet[0].startswith("- **cpu**: TorchScript 8.000 ms (± 0.800) against eager 10.000 ms (± 1.000)")
    assert "a speed-up of 1.25×" in quiet[0] and "fastest is TorchScript (8.000 ms mean" in quiet[0]
    assert "AOTInductor skipped: the aoti parameter is False" in quiet[0]
    assert quiet[1] == f"- **cuda**: {NO_GPU}." and len(quiet) == 2
    noisy = describe_latency(latency_table([recorded_latency("cpu", noisy="TorchScript")], ["cpu"]))
    assert len(noisy) == 2 and "1 of the timings are noisy" in noisy[1]
    assert "range of TorchScript is 2.1× its median (above 0.5)" in noisy[1]


def test_c10_paragraphs_say_how_it_was_timed_and_what_is_missing():
    table = latency_table([recorded_latency("cpu")], ["cpu", "cuda"])
    head, bullets = c10_paragraphs(table, 0.56)
    assert "over 11 timed runs after 7 warm-up runs" in head and "3 intra-op threads on" in head
    assert "0.56 GMACs" in head and "1×3×32×32" in head and "the GPU rows are not measured" in head
    assert bullets.splitlines()[0].startswith("- **cpu**: TorchScript 8.000 ms")
    only_cpu = c10_paragraphs(latency_table([recorded_latency("cpu")], ["cpu"]), 0.56)[0]
    assert "not measured" not in only_cpu
    nothing = c10_paragraphs(latency_table([], ["cuda"]), 0.56)
    assert nothing[0] == "**C10:** no runtime was measured." and NO_GPU in nothing[1]


def test_c10_headline_carries_the_spread_of_the_timed_runs():
    table = latency_table([recorded_latency("cpu")], ["cpu", "cuda"])
    runs = pd.DataFrame([{"run_id": "r", "ended": "2026", "status": "complete", **latency_results(table)}])
    (line,) = section_headlines("c10_latency", runs)
    assert line.complete and line.value == 8.0 and line.spread == pytest.approx(0.8)
    assert line.text == "cpu TorchScript 8.000 ± 0.800 ms vs eager 10.000 ms (1.25×)"
    both = {**latency_results(table), "cuda TorchScript mean_ms": 1.0, "cuda TorchScript std_ms": 0.1}
    both["cuda PyTorch eager mean_ms"] = 2.0
    (line,) = section_headlines("c10_latency", pd.DataFrame([{"run_id": "r", "ended": "2026", **both}]))
    assert line.value == 1.0 and line.spread == pytest.approx(0.1)  # the GPU's figure is the key one
    assert line.text.endswith("; cuda TorchScript 1.000 ± 0.100 ms vs eager 2.000 ms (2.00×)")
    (none,) = section_headlines("c10_latency", pd.DataFrame([{"run_id": "r", "ended": "2026"}]))
    assert not none.complete and none.text == "no latency measured"
