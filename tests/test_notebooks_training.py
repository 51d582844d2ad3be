"""The training sections executed by papermill with tiny parameters on real images.

Each test checks the records the notebook wrote, the tables it shows, and that its text is what
the sections' builders say about those records (so the figures quoted are the recorded ones),
without fixing the wording here.
"""

import re

import pytest
import torch
from conftest import TINY, notebook_images, notebook_text, reads_well

from lablib.core.config import config_from_params
from lablib.core.model import count_parameters, resnet18
from lablib.core.runs import load_epochs, load_runs
from lablib.sections.analysis import (
    LAB_WORKERS,
    SpeedUp,
    analyse_workers,
    batchnorm_comparison,
    batchnorm_parameters_sentence,
    mark_diverged,
    optimizer_discussion,
    profile_text,
    timing_text,
    training_text,
    worker_profile,
)
from lablib.sections.context import context_table
from lablib.sections.headlines import section_headlines
from lablib.sections.tables import FIGURE_PREFIX

SHOWN_BY_TINY = {"device", "workers", "epochs", "limit_train", "limit_test", "data"}  # TINY + data differ from the lab


def _table_rows(notebook, header: str) -> list[list[str]]:
    """The body rows (cell texts; index first where a table shows one) of the first displayed table whose
    HTML holds `header`."""
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            html = output.get("data", {}).get("text/html", "")
            if header in html:
                body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
                rows = re.findall(r"<tr>(.*?)</tr>", body, flags=re.S)
                return [[text.strip() for text in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)] for row in rows]
    raise AssertionError(f"no table with {header!r} in the notebook")


def _shown_settings(notebook) -> set[str]:
    """The settings the preamble's table says differ from the lab's common setup."""
    return {row[1] if row[0].isdigit() else row[0] for row in _table_rows(notebook, "common setup")}


def test_c1_training(run_notebook, cifar_zip):
    executed = run_notebook("c1_training", data=str(cifar_zip), tag="test", **TINY)
    runs = load_runs("c1_training")
    assert len(runs) == 1 and runs.loc[0, "tag"] == "test" and runs.loc[0, "limit_train"] == 256
    epochs = load_epochs("c1_training")
    assert len(epochs) == 1 and epochs.loc[0, "images"] == 256
    assert _shown_settings(executed) == SHOWN_BY_TINY
    text = notebook_text(executed)
    config = config_from_params(runs.loc[0].to_dict())
    assert training_text(epochs, 256, "cpu", config) in text
    assert f"{epochs.loc[0, 'loss']:.3f}" in text and f"{epochs.loc[0, 'accuracy']:.2f} %" in text
    assert f"lr {config.lr:g}" in text  # the training's settings, stated from the config it ran
    assert notebook_images(executed) == 1 and reads_well(executed) == 1
    caption = next(line for line in text.splitlines() if line.startswith(FIGURE_PREFIX))
    assert "cpu" in caption and "256 training" in caption and "profile: test" in caption


# --- C2-C6 and P-2025-C4 (the training-sweep notebooks) -------------------------------------


def test_c2_timing(run_notebook, cifar_zip):
    executed = run_notebook("c2_timing", data=str(cifar_zip), tag="test", **TINY)
    runs, epochs = load_runs("c2_timing"), load_epochs("c2_timing")
    assert len(runs) == 1 and len(epochs) == 1
    epoch = epochs.loc[0]
    assert 0 < epoch["data_s"] + epoch["train_s"] <= epoch["total_s"]
    text = notebook_text(executed)
    assert timing_text(epochs, "cpu", 0) in text
    for seconds in (epoch["data_s"], epoch["train_s"], epoch["total_s"]):
        assert f"{seconds:.2f} s" in text  # C2.1-C2.3 quote the recorded seconds
    rows = _table_rows(executed, "C2.1 data-loading (s)")
    assert [row[0] for row in rows] == ["1", "average"]  # the epoch, then the average row (no index column)
    assert reads_well(executed) == 1
    assert rows[0][1] == f"{epoch['data_s']:.3f}"  # C2.1 with the seconds' 3 decimals
    assert runs.loc[0, "data_share"] == pytest.approx(epoch["data_s"] / epoch["total_s"])
    assert runs.loc[0, "other_s_mean"] == pytest.approx(epoch["total_s"] - epoch["data_s"] - epoch["train_s"])
    answers = {line.part: line for line in section_headlines("c2_timing", runs)}
    assert answers["C2.3"].complete and answers["C2.3"].value == pytest.approx(epoch["total_s"])
    context = context_table("c2_timing", runs)  # the records' names resolve; a 256-image run is no comparison
    assert context.values["epoch_s_mean"] == pytest.approx(epoch["total_s"]) and not context.like_for_like
    assert notebook_images(executed) == 1


def test_c3_workers_one_point_per_execution(run_notebook, cifar_zip):
    params = {**TINY, "data": str(cifar_zip), "tag": "test"}
    run_notebook("c3_workers", **{**params, "workers": -1})  # no records yet: the rule starts at 0
    first = load_runs("c3_workers").iloc[0]
    assert (first["workers"], first["workers_requested"], first["workers_source"]) == (0, -1, "next")
    executed = run_notebook("c3_workers", **{**params, "workers": 2})
    runs = load_runs("c3_workers").sort_values("workers").reset_index(drop=True)
    assert runs["workers"].tolist() == [0, 2] and runs["group"].nunique() == 1
    assert runs["workers_source"].tolist() == ["next", "parameter"]
    rows = _table_rows(executed, "data loading, total (s)")
    assert [int(row[0]) for row in rows] == [0, 2]  # the table holds both points
    assert [row[1] for row in rows] == [f"{seconds:.3f}" for seconds in runs["data_s_total"]]  # 3 decimals
    latest = runs.sort_values("ended").iloc[-1]
    best = runs.loc[runs["epoch_s_mean"].idxmin()]
    assert latest["sweep_best_workers"] == best["workers"] and latest["sweep_measured"] == [0, 2]
    answers = {line.part: line for line in section_headlines("c3_workers", runs)}
    assert answers["C3.2"].value == best["workers"] and f"{best['epoch_s_mean']:.1f} s" in answers["C3.2"].text
    assert answers["C3.1"].value == pytest.approx(runs["data_s_total"].min())
    facts = analyse_workers(runs, latest["cpu_cores"], latest["main_threads"])
    text = notebook_text(executed)
    for answer in (facts.data_loading_text(), facts.best_text(), facts.why_text()):
        assert answer in text  # C3.1-C3.3 from the records
    for seconds in runs["data_s_total"]:
        assert f"{seconds:.2f} s" in text
    assert notebook_images(executed) == 1 and reads_well(executed) == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the section on a machine without a GPU")
def test_c4_without_a_gpu_records_it_and_shows_the_cpu(run_notebook, cifar_zip):
    params = {**TINY, "data": str(cifar_zip), "tag": "test"}
    run_notebook("c4_gpu_vs_cpu", **{**params, "device": "cpu"})
    executed = run_notebook("c4_gpu_vs_cpu", **{**params, "device": "cuda", "workers": -1})
    runs = load_runs("c4_gpu_vs_cpu").set_index("target_device")
    assert set(runs.index) == {"cpu", "cuda"} and (runs["status"] == "complete").all()
    gpu = runs.loc["cuda"]
    assert not gpu["device_available"] and not gpu["gpu_available"] and "no CUDA GPU" in gpu["unavailable_reason"]
    assert (gpu["workers"], gpu["workers_source"]) == (LAB_WORKERS, "lab default")  # no C3 records
    assert len(load_epochs("c4_gpu_vs_cpu")) == 1  # only the CPU point trained
    text = notebook_text(executed)
    assert gpu["unavailable_reason"] in text
    cpu_seconds = runs.loc["cpu", "epoch_s_mean"]
    assert SpeedUp(cpu_seconds, None, True).text() in text and f"{cpu_seconds:.2f} s" in text
    assert len(_table_rows(executed, "epoch time, mean (s)")) == 2 and notebook_images(executed) == 1
    assert reads_well(executed) == 1


@pytest.mark.cuda
def test_c4_on_a_gpu_gives_the_speedup(run_notebook, cifar_zip):
    params = {**TINY, "data": str(cifar_zip), "tag": "test"}
    run_notebook("c4_gpu_vs_cpu", **{**params, "device": "cpu"})
    executed = run_notebook("c4_gpu_vs_cpu", **{**params, "device": "cuda"})
    runs = load_runs("c4_gpu_vs_cpu").set_index("target_device")
    assert runs.loc["cuda", "device_available"] and runs.loc["cuda", "resolved_device"] == "cuda"
    speed = SpeedUp(runs.loc["cpu", "epoch_s_mean"], runs.loc["cuda", "epoch_s_mean"], False)
    assert runs.loc["cuda", "speedup"] == pytest.approx(speed.speedup)
    assert speed.text() in notebook_text(executed)


def test_c5_two_optimizers_then_c6_against_sgd(run_notebook, cifar_zip):
    params = {**TINY, "data": str(cifar_zip), "tag": "test"}
    run_notebook("c5_optimizers", **{**params, "optimizer": "sgd"})
    executed = run_notebook("c5_optimizers", **{**params, "optimizer": "adam"})
    runs = mark_diverged(load_runs("c5_optimizers")).sort_values("optimizer").reset_index(drop=True)
    assert runs["optimizer"].tolist() == ["adam", "sgd"] and runs["group"].nunique() == 1
    assert [row[0] for row in _table_rows(executed, "training per epoch (s)")] == ["adam", "sgd"]
    assert reads_well(executed) == 2
    text = notebook_text(executed)
    assert " ".join(optimizer_discussion(runs)) in text  # the discussion, from the records
    (answer,) = section_headlines("c5_optimizers", load_runs("c5_optimizers"))
    assert answer.value == pytest.approx(runs.loc[~runs["diverged"], "final_accuracy"].max())
    assert context_table("c5_optimizers").values["accuracy_mean:sgd"] == pytest.approx(
        runs.set_index("optimizer").loc["sgd", "accuracy_mean"]
    )
    for loss in runs.loc[~runs["diverged"], "final_loss"]:
        assert f"{loss:.3f}" in text

    c6 = run_notebook("c6_no_batchnorm", **params)
    record = load_runs("c6_no_batchnorm").iloc[0]
    sgd = runs[runs["optimizer"] == "sgd"].iloc[0]
    assert not record["batch_norm"] and record["optimizer"] == "sgd" and record["reference_run"] == sgd["run_id"]
    assert record["reference_loss_mean"] == pytest.approx(sgd["loss_mean"])
    assert _shown_settings(c6) == SHOWN_BY_TINY | {"batch_norm"}
    c6_text = notebook_text(c6)
    assert batchnorm_parameters_sentence() in c6_text
    assert f"{count_parameters(resnet18(batch_norm=False)):,}" in c6_text  # counted from the model
    _, sentences = batchnorm_comparison(record.to_dict(), sgd, record["lr"])
    assert " ".join(sentences) in c6_text
    assert f"{record['loss_mean']:.3f}" in c6_text and f"{sgd['loss_mean']:.3f}" in c6_text
    assert reads_well(c6) == 2
    assert [row[0] for row in _table_rows(c6, "top-1, mean over epochs (%)")] == [
        "C6: SGD without BatchNorm",
        "C5: SGD with BatchNorm",
    ]


def test_p25_worker_profile_one_record_two_trainings(run_notebook, cifar_zip):
    executed = run_notebook("p25_worker_profile", **{**TINY, "data": str(cifar_zip), "tag": "test", "workers": -1})
    record = load_runs("p25_worker_profile").iloc[0]
    assert record["compared_workers"] == [1, 2] and record["workers"] == LAB_WORKERS  # no C3 records
    assert record["workers_source"] == "lab default"
    epochs = load_epochs("p25_worker_profile")
    assert sorted(epochs["loader_workers"]) == [1, 2]
    profile = worker_profile(epochs.assign(workers=epochs["loader_workers"]))
    text = notebook_text(executed)
    assert profile_text(profile) in text
    for count in (1, 2):
        row = epochs[epochs["loader_workers"] == count].iloc[0]
        assert record[f"w{count}_data_s_mean"] == pytest.approx(row["data_s"])
        assert f"{row['total_s']:.2f} s" in text and f"{row['data_s']:.2f} s" in text
    assert [row[0] for row in _table_rows(executed, "data loading per batch (ms)")] == ["1", "2"]
    (answer,) = section_headlines("p25_worker_profile", load_runs("p25_worker_profile"))
    assert answer.value == pytest.approx(record["w1_data_s_mean"])
    assert context_table("p25_worker_profile").values["w1_epoch_s_mean"] == pytest.approx(record["w1_epoch_s_mean"])
    assert notebook_images(executed) == 1 and reads_well(executed) == 2
