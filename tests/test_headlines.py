"""lablib.sections.headlines and context: one-line answers and the published figures, from records
written into a temporary run store."""

import json
from itertools import count

import pytest

from lablib.core.runs import load_runs
from lablib.sections.context import QUALIFIER, comparability, context_table, measure_value, reference_figures
from lablib.sections.headlines import SECTIONS, headline_frame, headlines, section_headlines

_ended = count()


def record(root, section, settings=None, results=None, tag="full", group="g", status="complete", device="cuda"):
    """One run folder as lablib.core.runs writes it (run.json + results.json)."""
    number = next(_ended)
    run_id = f"20260101-0000{number:02d}-abc{number:03d}"
    folder = root / section / run_id
    folder.mkdir(parents=True)
    meta = {
        "run_id": run_id,
        "section": section,
        "status": status,
        "tag": tag,
        "group": group,
        "settings": {"epochs": 5, "limit_train": 0, "limit_test": 0, **(settings or {})},
        "params": {"tag": tag},
        "data": {"fingerprint": "f"},
        "provenance": {"device": device, "device_name": "Test GPU"},
        "started": f"2026-01-01T00:00:{number:02d}",
        "ended": f"2026-01-01T00:01:{number:02d}",
    }
    (folder / "run.json").write_text(json.dumps(meta))
    (folder / "results.json").write_text(json.dumps(results or {}))
    return run_id


def epochs_results(epoch_s, data_s=0.5, train_s=None, accuracy=60.0, epochs=5):
    return {
        "epochs_run": epochs,
        "data_s_mean": data_s,
        "train_s_mean": train_s if train_s is not None else epoch_s - data_s - 0.1,
        "epoch_s_mean": epoch_s,
        "data_s_total": data_s * epochs,
        "final_accuracy": accuracy,
        "final_loss": 1.0,
        "accuracy_mean": accuracy - 10,
        "loss_mean": 1.5,
    }


def by_part(lines):
    return {line.part: line for line in lines}


def test_a_section_without_records_says_so_for_every_part(tmp_path):
    lines = by_part(section_headlines("c3_workers", load_runs("c3_workers", root=tmp_path)))
    assert set(lines) == {"C3.1", "C3.2", "C3.3"}
    assert all(not line.complete and line.value is None for line in lines.values())
    record(tmp_path, "c2_timing", status="failed")
    assert not section_headlines("c2_timing", load_runs("c2_timing", status=None, root=tmp_path))[0].complete
    with pytest.raises(KeyError, match="c99"):
        section_headlines("c99", load_runs(root=tmp_path))


def test_c2_and_c3_answers_carry_their_key_figures(tmp_path):
    record(tmp_path, "c2_timing", results=epochs_results(15.77, data_s=0.65, train_s=13.41))
    c2 = by_part(section_headlines("c2_timing", load_runs("c2_timing", root=tmp_path)))
    assert (c2["C2.1"].value, c2["C2.2"].value, c2["C2.3"].value) == (0.65, 13.41, 15.77)
    assert "15.77" in c2["C2.3"].text and c2["C2.3"].unit == "s per epoch"
    for workers, epoch_s, data_s in ((0, 27.086, 11.4), (4, 13.928, 0.48), (8, 14.123, 0.47)):
        last = record(
            tmp_path,
            "c3_workers",
            {"workers": workers},
            {
                **epochs_results(epoch_s, data_s=data_s),
                "sweep_best_workers": 4,
                "sweep_best_epoch_s": 13.928,
                "sweep_best_data_share": 0.0345,
                "sweep_stopped_at": 8 if workers == 8 else None,
            },
        )
    record(tmp_path, "c3_workers", {"workers": 12}, epochs_results(1.0), group="other")  # another setting
    runs = load_runs("c3_workers", root=tmp_path)
    runs = runs[runs["group"] == "g"]
    c3 = by_part(section_headlines("c3_workers", runs))
    assert c3["C3.2"].line().startswith("C3.2 — 4 workers: 13.9 s per epoch")
    assert c3["C3.2"].value == 4 and c3["C3.2"].run_id == last
    assert c3["C3.1"].value == pytest.approx(0.47 * 5) and "8 workers" in c3["C3.1"].text
    assert c3["C3.3"].value == pytest.approx(3.45) and "8 workers" in c3["C3.3"].text


def test_sweeps_choose_among_the_latest_points(tmp_path):
    record(tmp_path, "c5_optimizers", {"optimizer": "sgd"}, epochs_results(5.0, accuracy=73.8))
    record(tmp_path, "c5_optimizers", {"optimizer": "adam"}, epochs_results(5.0, accuracy=40.0))
    record(tmp_path, "c5_optimizers", {"optimizer": "sgd"}, epochs_results(5.0, accuracy=70.1))  # re-run: latest
    (line,) = section_headlines("c5_optimizers", load_runs("c5_optimizers", root=tmp_path))
    assert line.value == 70.1 and "sgd" in line.text and "2 optimiser" in line.text
    record(tmp_path, "c4_gpu_vs_cpu", {"device": "cpu"}, {"target_device": "cpu", **epochs_results(200.0)})
    (c4,) = section_headlines("c4_gpu_vs_cpu", load_runs("c4_gpu_vs_cpu", root=tmp_path))
    assert c4.value == 200.0 and c4.unit == "s per epoch"
    record(
        tmp_path,
        "c4_gpu_vs_cpu",
        {"device": "cuda"},
        {"target_device": "cuda", **epochs_results(5.0), "speedup": 40.0, "cpu_epoch_s": 200.0, "gpu_epoch_s": 5.0},
    )
    (c4,) = section_headlines("c4_gpu_vs_cpu", load_runs("c4_gpu_vs_cpu", root=tmp_path))
    assert c4.value == 40.0 and "40.0×" in c4.text


def test_every_section_answers_from_its_results(tmp_path):
    results = {
        "c1_training": epochs_results(15.0, accuracy=73.83),
        "c6_no_batchnorm": {**epochs_results(15.0, accuracy=58.87), "reference_accuracy_mean": 54.66},
        "c7_torchscript": {"max_abs_difference": 0.0, "identical_outputs": True},
        "c8_graph": {"operation_count": 11},
        "c9_eval": {"accuracy_eager": 70.94, "accuracy_scripted": 70.94, "images": 10000},
        "c10_latency": {"cpu PyTorch eager mean_ms": 12.17, "cpu TorchScript mean_ms": 11.22},
        "q1_conv_layers": {"conv_layers_total": 20, "conv_layers_shortcut": 3},
        "q2_last_linear": {"fc_in_features": 512},
        "q3_params_sgd": {"parameters": 11173962, "gradients_after": 11173962, "optimizer_state_after": 11173962},
        "q4_params_adam": {"parameters": 11173962, "gradients_after": 11173962, "optimizer_state_after": 22347924},
        "q5_trace_vs_script": {"traced_has_branch": False, "scripted_has_branch": True, "traced_wrong_inputs": ["n"]},
        "q6_scripting_changes": {"scripted_unchanged": True, "compiled_modules": 60, "max_abs_difference": 0.0},
        "xc_libtorch": {"cpp_built": True, "same_classes": True, "cpp_mean_ms": 3.5, "python_mean_ms": 4.0},
        "p25_worker_profile": {"compared_workers": [1, 4], "w1_data_s_mean": 2.5, "w1_train_s_mean": 10.0},
        "p25_profiler": {"top_operator": "aten::convolution", "top_operator_share": 41.5, "data_share": 0.2},
        "e2_efficient_blocks": {
            "findings": {"other": "mobilenetv2_1.0", "mac_ratio": 6.2, "devices": {"cpu": {"speedup_batch1": 0.8}}},
            "parameters_per_model": {"mobilenetv2_1.0": 2771136},
        },
    }
    for section, values in results.items():
        record(tmp_path, section, {"optimizer": "sgd"}, values)
    for mode, seconds in (("eager", 8.21), ("reduce-overhead", 3.37)):
        record(
            tmp_path, "p25_compile", results={"compile_mode": mode, "steady_epoch_s": seconds, "first_epoch_s": 18.0}
        )
    for mode, seconds, group in (("faithful", 10.0, "a"), ("fast", 2.0, "b")):
        record(tmp_path, "x_fast", results={"mode": mode, "epoch_s": seconds}, group=group)
    for optimizer, lr, accuracy, model in (
        ("sgd", 0.1, 98.0, "SmallCNN"),
        ("sgd", 0.1, 90.0, "ResNet"),
        ("adam", 0.001, 95.0, "ResNet"),
    ):
        record(
            tmp_path,
            "e1_hparam_sweep",
            {"optimizer": optimizer, "lr": lr, "seed": 0},
            {"scheduler": "none", "final_accuracy": accuracy, "model": model},
            group=model,  # one grid per data set
        )
    lines = headlines(root=tmp_path)
    parts = [line.part for line in lines]
    assert parts == [part for _, section_parts in SECTIONS.values() for part in section_parts]
    answered = {line.part: line for line in lines if line.complete}
    assert set(answered) == set(parts) - {"C2.1", "C2.2", "C2.3", "C3.1", "C3.2", "C3.3", "C4", "C5"}
    assert answered["Q3"].value == 11173962 and "11,173,962" in answered["Q3"].text
    assert answered["Q4"].text.count("22,347,924") == 1
    assert answered["C10"].value == pytest.approx(12.17 / 11.22) and "11.220 ms" in answered["C10"].text
    assert answered["P-2025-C8"].value == 3.37 and "reduce-overhead" in answered["P-2025-C8"].text
    assert answered["X-FAST"].value == 2.0 and "5.0×" in answered["X-FAST"].text  # across both groups
    assert answered["E1"].value == 95.0 and "ResNet: best adam" in answered["E1"].text
    assert "SmallCNN: best sgd" in answered["E1"].text and "98.00 %" in answered["E1"].text  # both grids
    assert answered["E2"].value == 6.2 and "2,771,136" in answered["E2"].text
    assert answered["C6"].value == 48.87 and "54.66" in answered["C6"].text
    frame = headline_frame(lines)
    assert list(frame.columns) == ["section", "part", "text", "value", "unit", "complete", "run_id"]
    assert len(frame) == len(parts)


def test_records_without_a_needed_figure_are_not_an_answer(tmp_path):
    record(tmp_path, "q1_conv_layers", results={"conv_layers_total": 20})  # shortcut count missing
    (line,) = section_headlines("q1_conv_layers", load_runs("q1_conv_layers", root=tmp_path))
    assert not line.complete and "conv_layers_shortcut" in line.text


# --- context: this build beside the published figures ------------------------------------------------


def test_every_measure_of_the_yaml_resolves_on_records_that_have_it(tmp_path):
    figures = reference_figures()
    assert figures["figures"] and all(f["source"] in figures["sources"] for f in figures["figures"])
    sections = {f["section"] for f in figures["figures"]}
    for figure in figures["figures"]:
        section, measure = figure["section"], str(figure["measure"])
        name, _, wanted = measure.partition(":")
        swept = {QUALIFIER[section]: int(wanted) if wanted.isdigit() else wanted} if wanted else {}
        results = {name: 1.5}
        root = tmp_path / f"{section}-{name}-{wanted}".replace(" ", "_")
        record(root, section, swept, results)
        runs = load_runs(section, root=root)
        assert measure_value(section, measure, runs) == 1.5, (section, measure)
    assert {"c2_timing", "c3_workers", "c4_gpu_vs_cpu", "c10_latency", "p25_compile"} <= sections


def test_context_table_puts_this_build_beside_the_published_and_flags_a_quick_profile(tmp_path):
    record(
        tmp_path,
        "c2_timing",
        results=epochs_results(16.5, data_s=0.7, train_s=14.0),
        tag="quick",
        settings={"limit_train": 2000, "epochs": 1},
    )
    context = context_table("c2_timing", root=tmp_path)
    table = context.table
    assert list(table.columns) == ["what", "this build", "published", "as published", "hardware", "source"]
    assert len(table) == 5 and set(table["this build"]) == {"16.50", "0.70", "14.00"}
    assert "15.77" in set(table["published"]) and any("L4" in text for text in table["hardware"])
    assert not context.like_for_like and "quick profile" in context.note and "2,000" in context.note
    assert context.values["epoch_s_mean"] == 16.5
    full = tmp_path / "full"
    record(full, "c2_timing", results=epochs_results(15.0), tag="full")
    context = context_table("c2_timing", root=full)
    assert context.like_for_like and "Test GPU" in context.note
    assert comparability("c2_timing", load_runs("c2_timing", root=tmp_path / "none"))[0] is False
    empty = context_table("c1_training", root=tmp_path / "none")
    assert set(empty.table["this build"]) == {"—"} and not empty.like_for_like
    assert context_table("q1_conv_layers", root=full).table.empty  # no published figure


def test_the_published_parameter_count_keeps_its_separators(tmp_path):
    record(tmp_path, "q3_params_sgd", results={"parameters": 11173962})
    table = context_table("q3_params_sgd", root=tmp_path).table
    assert table.loc[0, "this build"] == "11,173,962" == table.loc[0, "published"]


def test_every_answered_section_is_a_notebook_and_every_published_figure_a_section():
    from lablib.core.paths import REPO_ROOT

    assert all((REPO_ROOT / "notebooks" / f"{name}.ipynb").is_file() for name in SECTIONS)
    assert {figure["section"] for figure in reference_figures()["figures"]} <= set(SECTIONS)
