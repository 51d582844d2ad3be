"""The training sections executed by papermill with tiny parameters on real images."""

import os
import re

import pytest
import torch
from conftest import TINY, notebook_images, notebook_text

from lablib.core.runs import load_epochs, load_runs
from lablib.sections.analysis import analyse_workers, mark_diverged


def test_c1_training(run_notebook, cifar_zip):
    executed = run_notebook("c1_training", data=str(cifar_zip), tag="test", **TINY)
    runs = load_runs("c1_training")
    assert len(runs) == 1 and runs.loc[0, "tag"] == "test" and runs.loc[0, "limit_train"] == 256
    epochs = load_epochs("c1_training")
    assert len(epochs) == 1 and epochs.loc[0, "images"] == 256
    text = notebook_text(executed)
    assert "**C1:** after 1 epoch(s) on 256 training images" in text
    assert f"{epochs.loc[0, 'loss']:.3f}" in text  # the prose quotes the record
    assert notebook_images(executed) == 1


# --- C2-C6 and P-2025-C4 (the training-sweep notebooks) -------------------------------------


def _table_rows(notebook, header: str) -> list[str]:
    """The body rows (as HTML) of the first displayed DataFrame whose HTML holds `header`."""
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            html = output.get("data", {}).get("text/html", "")
            if header in html:
                body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
                return re.findall(r"<tr>.*?</tr>", body, flags=re.S)
    raise AssertionError(f"no table with {header!r} in the notebook")


def test_c2_timing(run_notebook, cifar_zip):
    executed = run_notebook("c2_timing", data=str(cifar_zip), tag="test", **TINY)
    runs, epochs = load_runs("c2_timing"), load_epochs("c2_timing")
    assert len(runs) == 1 and len(epochs) == 1
    epoch = epochs.loc[0]
    assert 0 < epoch["data_s"] + epoch["train_s"] <= epoch["total_s"]
    text = notebook_text(executed)
    assert f"**C2.1:** waiting for data took {epoch['data_s']:.2f} s per epoch" in text
    assert f"took {epoch['train_s']:.2f} s per epoch on average" in text
    assert f"**C2.3:** a whole epoch took {epoch['total_s']:.2f} s on average" in text
    assert len(_table_rows(executed, "C2.1 data-loading (s)")) == 2  # the epoch and the average row
    assert runs.loc[0, "data_share"] == pytest.approx(epoch["data_s"] / epoch["total_s"])
    assert notebook_images(executed) == 1


def test_c3_workers_one_point_per_execution(run_notebook, cifar_zip):
    params = {**TINY, "data": str(cifar_zip), "tag": "test"}
    first = run_notebook("c3_workers", **{**params, "workers": -1})  # no records yet: the rule starts at 0
    assert "This execution measures **0 workers, the next count of the lab's rule" in notebook_text(first)
    executed = run_notebook("c3_workers", **{**params, "workers": 2})
    runs = load_runs("c3_workers")
    assert sorted(runs["workers"]) == [0, 2] and runs["group"].nunique() == 1
    assert len(_table_rows(executed, "data loading total (s)")) == 2  # the table holds both points
    text = notebook_text(executed)
    for workers, seconds in zip(runs["workers"], runs["data_s_total"]):
        assert f"{workers} workers {seconds:.2f} s" in text  # C3.1 from the records
    best = runs.loc[runs["epoch_s_mean"].idxmin()]
    assert (
        f"**C3.2:** the best runtime is with {best['workers']} workers ({best['epoch_s_mean']:.2f} s per epoch" in text
    )
    latest = runs.sort_values("ended").iloc[-1]
    assert latest["sweep_best_workers"] == best["workers"] and latest["sweep_measured"] == [0, 2]
    facts = analyse_workers(runs, latest["cpu_cores"], latest["main_threads"])
    assert facts.rule_sentence() in text  # the rule, and whether it is satisfied, from the records
    assert "**C3.3:** " in text and f"The machine has {os.cpu_count()} logical cores" in text
    assert notebook_images(executed) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the section on a machine without a GPU")
def test_c4_without_a_gpu_records_it_and_shows_the_cpu(run_notebook, cifar_zip):
    params = {**TINY, "data": str(cifar_zip), "tag": "test"}
    run_notebook("c4_gpu_vs_cpu", **{**params, "device": "cpu"})
    executed = run_notebook("c4_gpu_vs_cpu", **{**params, "device": "cuda", "workers": -1})
    runs = load_runs("c4_gpu_vs_cpu").set_index("target_device")
    assert set(runs.index) == {"cpu", "cuda"} and (runs["status"] == "complete").all()
    gpu = runs.loc["cuda"]
    assert not gpu["device_available"] and not gpu["gpu_available"] and "no CUDA GPU" in gpu["unavailable_reason"]
    assert gpu["workers"] == 2  # no C3 records: the lab's default
    assert len(load_epochs("c4_gpu_vs_cpu")) == 1  # only the CPU point trained
    text = notebook_text(executed)
    assert "**No GPU is available on this machine:**" in text and "the lab's default of 2 workers" in text
    cpu_seconds = runs.loc["cpu", "epoch_s_mean"]
    assert f"**C4:** {cpu_seconds:.2f} s per epoch on the CPU; no speed-up can be computed: no GPU" in text
    assert len(_table_rows(executed, "epoch (s, mean)")) == 2 and notebook_images(executed) == 1


@pytest.mark.cuda
def test_c4_on_a_gpu_gives_the_speedup(run_notebook, cifar_zip):
    params = {**TINY, "data": str(cifar_zip), "tag": "test"}
    run_notebook("c4_gpu_vs_cpu", **{**params, "device": "cpu"})
    executed = run_notebook("c4_gpu_vs_cpu", **{**params, "device": "cuda"})
    runs = load_runs("c4_gpu_vs_cpu").set_index("target_device")
    assert runs.loc["cuda", "device_available"] and runs.loc["cuda", "resolved_device"] == "cuda"
    speedup = runs.loc["cpu", "epoch_s_mean"] / runs.loc["cuda", "epoch_s_mean"]
    assert f"the GPU is {speedup:.1f}× faster" in notebook_text(executed)


def test_c5_two_optimizers_then_c6_against_sgd(run_notebook, cifar_zip):
    params = {**TINY, "data": str(cifar_zip), "tag": "test"}
    run_notebook("c5_optimizers", **{**params, "optimizer": "sgd"})
    executed = run_notebook("c5_optimizers", **{**params, "optimizer": "adam"})
    runs = mark_diverged(load_runs("c5_optimizers"))
    assert sorted(runs["optimizer"]) == ["adam", "sgd"] and runs["group"].nunique() == 1
    assert len(_table_rows(executed, "training per epoch (s)")) == 2
    text = notebook_text(executed)
    healthy = runs[~runs["diverged"]]
    if not healthy.empty:  # which converged fastest, from the records
        lowest = healthy.loc[healthy["final_loss"].idxmin()]
        assert (
            f"`{lowest['optimizer']}` converged fastest: after 1 epoch(s) its training loss is the lowest, "
            f"{lowest['final_loss']:.3f}" in text
        )
    for name in runs.loc[runs["diverged"], "optimizer"]:
        assert f"`{name}`" in text.split("Diverged (loss became NaN/inf", 1)[1]
    assert "Not recorded yet: `adadelta`, `adagrad`, `sgd_nesterov`" in text

    c6 = run_notebook("c6_no_batchnorm", **params)
    record = load_runs("c6_no_batchnorm").iloc[0]
    sgd = runs[runs["optimizer"] == "sgd"].iloc[0]
    assert not record["batch_norm"] and record["optimizer"] == "sgd" and record["reference_run"] == sgd["run_id"]
    c6_text = notebook_text(c6)
    assert "11,164,362 trainable parameters" in c6_text
    assert f"average training loss over 1 epoch(s) is {record['loss_mean']:.3f}" in c6_text
    assert (
        f"C5's SGD run {sgd['run_id']}) the averages are {sgd['loss_mean']:.3f} and {sgd['accuracy_mean']:.2f} %"
        in c6_text
    )
    assert len(_table_rows(c6, "accuracy_mean")) == 2


def test_p25_worker_profile_one_record_two_trainings(run_notebook, cifar_zip):
    executed = run_notebook("p25_worker_profile", **{**TINY, "data": str(cifar_zip), "tag": "test", "workers": -1})
    record = load_runs("p25_worker_profile").iloc[0]
    assert record["compared_workers"] == [1, 2] and record["workers"] == 2  # no C3 records: the lab's 2
    epochs = load_epochs("p25_worker_profile")
    assert sorted(epochs["loader_workers"]) == [1, 2]
    text = notebook_text(executed)
    assert "the lab's default of 2 workers" in text
    for count in (1, 2):
        row = epochs[epochs["loader_workers"] == count].iloc[0]
        assert record[f"w{count}_data_s_mean"] == pytest.approx(row["data_s"])
        assert f"With {count} worker(s), an epoch takes {row['total_s']:.2f} s: {row['data_s']:.2f} s waiting" in text
    assert "The wait goes from" in text and notebook_images(executed) == 1
