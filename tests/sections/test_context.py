"""lablib.sections.context: this build's figures beside published ones, like for like.

Every row of report/reference_figures.yaml names a quantity and a scope. Here each section with
published figures plans its measurements as the build does (its registered planner, on the full
profile's parameters, as on an 8-core GPU node), they are recorded with epochs of known values
(factories.record_measurement; nothing is trained), the section is presented with `uses` naming them
(factories.present_point), and the context table the report shows (context_table on the record's
one-row frame, lablib.report.build.record_frame) must give, for every row, the figure of exactly
that quantity and scope, computed here from the known epochs.
"""

from __future__ import annotations

import os
import re
import statistics

import pytest
from conftest import REPO
from factories import present_point, record_measurement

from lablib.core.errors import LabError
from lablib.core.store import lookup
from lablib.core.training import assume_cuda
from lablib.report.build import record_frame
from lablib.report.plan import load_plan
from lablib.report.resolve import Context, Resolver
from lablib.sections.context import check_figure, context_table, reference_figures, scope_epochs
from lablib.sections.registry import presenters

FULL = load_plan(REPO / "report" / "plan.yaml", "full")
QUICK = load_plan(REPO / "report" / "plan.yaml", "quick")
FIGURES = reference_figures()
# Each per-epoch quantity as a reader computes it from an epoch of a training (epochs.json's columns).
PER_EPOCH = {
    "data": lambda epoch: epoch["data_s"],
    "training": lambda epoch: epoch["train_s"],
    "total": lambda epoch: epoch["total_s"],
    "training per batch": lambda epoch: 1000 * epoch["train_s"] / epoch["batches"],
    "training accuracy": lambda epoch: epoch["accuracy"],
    "loss": lambda epoch: epoch["loss"],
}
# What the presenting records answer (their notebooks' section.finish(...)), for the rows of answers.
ANSWERS = {
    "c3_workers": {"sweep_best_workers": 4},
    "c7_torchscript": {"max_abs_difference": 0.0},
    "c9_eval": {"accuracy_scripted": 70.5},
    "c10_latency": {
        "cpu PyTorch eager mean_ms": 12.0,
        "cpu TorchScript mean_ms": 11.0,
        "cuda PyTorch eager mean_ms": 2.0,
        "cuda TorchScript mean_ms": 1.5,
    },
    "q3_params_sgd": {"parameters": 11173962},
}
WITH_FIGURES = sorted({figure["section"] for figure in FIGURES["figures"]})


def known_epochs(settings, count: int, order: int) -> list[dict]:
    """Epochs whose every value differs between epochs and measurements (`order`: the measurement's number);
    data loading falls with workers, so C3's rule walks on to the machine's cores."""
    rows = []
    for epoch in range(1, count + 1):
        data_s = 10.0 / (1 + int(settings.get("workers") or 0)) + epoch / 100 + order / 1000
        train_s = 5.0 + 1.5 * epoch + order / 10
        rows.append(
            {
                "epoch": epoch,
                "loss": 3.0 / epoch + order / 100,
                "accuracy": 10.0 * epoch + order,
                "data_s": data_s,
                "train_s": train_s,
                "total_s": data_s + train_s + 0.3,
                "images": 50_000,
                "batches": 391,
                "diverged": False,
            }
        )
    return rows


def measure(plan, name: str, images: int) -> list:
    """The section's measurements, planned by its registered planner round after round as a build does
    (a rule lists its next point once the last is recorded), each recorded with known epochs."""
    context = Context(
        defaults={**plan.defaults, "tag": plan.profile}, environment="e", device="cuda:test", cuda=True, core="c"
    )
    parameters = Resolver(plan, context, {}).parameters(plan.section(name))
    planner = presenters()[name]
    order = 0
    while True:
        needs = planner.needs(parameters, lookup)
        missing = [request for request in needs.requests if lookup(request) is None]
        if not missing:
            return [lookup(request) for request in needs.requests]
        for request in missing:
            if lookup(request) is not None:
                continue  # listed twice
            epochs = known_epochs(request.settings, int(request.settings.get("epochs", 0)), order)
            if request.kind not in ("training", "compiled_training"):
                epochs = []
            results = {
                "train_images": images,
                "epochs_run": len(epochs),
                "data_s_total": sum(e["data_s"] for e in epochs),
                "epoch_s_mean": statistics.mean(e["total_s"] for e in epochs) if epochs else None,
            }
            record_measurement(request, results, epochs)
            order += 1


def presented(plan, name: str, images: int = 50_000, tag: str | None = None):
    """The section measured (when it shows trainings) and presented; its context table and what it shows."""
    with assume_cuda():  # a GPU node: the full profile's `auto` device is cuda, C4 measures both devices
        shown = measure(plan, name, images) if name not in ANSWERS or name == "c3_workers" else []
    state = present_point(plan.section(name), shown, ANSWERS.get(name), settings={}, tag=tag or plan.profile)
    return context_table(name, record_frame(state)), shown


def _matches(measured, select) -> bool:
    return all(str(measured.request.settings.get(k)).lower() == str(v).lower() for k, v in (select or {}).items())


def expected(figure, shown):
    """This build's figure for a row, from the known epochs of the measurement its `select` names."""
    if figure["scope"] == "answer":
        return ANSWERS[figure["section"]][figure["result"]]
    chosen = [m for m in shown if _matches(m, figure.get("select")) and m.epochs]
    assert chosen, f"no measurement of {figure['section']} has the settings {figure.get('select')}"

    def over_scope(measured, quantity):
        values = [PER_EPOCH[quantity](epoch) for epoch in measured.epochs]
        if figure["scope"] == "one epoch (which not said)":
            return statistics.median(values)
        first, last = scope_epochs(figure["scope"])
        assert len(values) >= last, "the full profile's epochs reach every published scope"
        return statistics.mean(values[first - 1 : last])

    if figure["quantity"] == "speed-up":
        (over,) = [m for m in shown if _matches(m, figure["over"]) and m.epochs]
        return over_scope(chosen[0], "total") / over_scope(over, "total")
    return over_scope(chosen[0], figure["quantity"])


# --- the rows themselves ---------------------------------------------------------------------------------


def test_every_row_names_its_quantity_and_scope_in_its_words_and_a_section_that_presents():
    for figure in FIGURES["figures"]:
        check_figure(figure)
        assert figure["source"] in FIGURES["sources"] and figure["section"] in presenters(), figure["what"]


def test_a_published_mean_is_the_mean_of_the_epochs_it_lists():
    """Where a row's `text` lists the published per-epoch figures of its scope, its value is their mean."""
    checked = 0
    for figure in FIGURES["figures"]:
        span = scope_epochs(str(figure["scope"]))
        listed = [float(n) for n in re.findall(r"\d+\.\d+", str(figure.get("text", "")))]
        if span and span[0] != span[1] and len(listed) == span[1] - span[0] + 1:
            assert statistics.mean(listed) == pytest.approx(figure["value"], abs=0.011), figure["what"]
            checked += 1
    assert checked >= 6


@pytest.mark.parametrize(
    "figure, words",
    [
        ({"quantity": "total", "scope": "epoch 1", "what": "total time per epoch (s), mean of epochs 1–5"}, "scope"),
        ({"quantity": "training", "scope": "epoch 1", "what": "total time per epoch (s), epoch 1"}, "quantity"),
        ({"quantity": "speed", "scope": "epoch 1", "what": "speed, epoch 1"}, "is not one of"),
        ({"quantity": "total", "scope": "epochs 1 to 5", "what": "total time, epochs 1 to 5"}, "is not 'epoch N'"),
        ({"quantity": "total", "scope": "answer", "what": "total time per epoch (s)"}, "needs an epoch scope"),
        ({"quantity": "workers", "scope": "epoch 1", "result": "w", "what": "workers, epoch 1"}, "scope 'answer'"),
        ({"quantity": "workers", "scope": "answer", "what": "workers for the best runtime"}, "`result` name"),
        (
            {"quantity": "speed-up", "scope": "epoch 1", "select": {"device": "cpu"}, "what": "speed-up, epoch 1"},
            "needs `select` and `over`",
        ),
    ],
)
def test_a_row_that_pairs_different_quantities_or_scopes_is_refused(figure, words):
    with pytest.raises(LabError, match=re.escape(words)):
        check_figure(figure)


def test_a_figures_file_with_an_unknown_source_or_a_missing_field_is_refused(tmp_path):
    path = tmp_path / "figures.yaml"
    row = "{section: c2_timing, quantity: total, scope: epoch 1, what: 'total time per epoch (s), epoch 1', value: 1"
    path.write_text(f"sources: {{a: {{cite: c, hardware: h}}}}\nfigures:\n  - {row}, source: b}}\n")
    with pytest.raises(LabError, match="names source 'b'"):
        reference_figures(path)
    path.write_text(f"sources: {{a: {{cite: c, hardware: h}}}}\nfigures:\n  - {row}}}\n")
    with pytest.raises(LabError, match=r"lacks \['source'\]"):
        reference_figures(path)


# --- this build's figure: the same quantity and scope ------------------------------------------------------


@pytest.mark.parametrize("name", WITH_FIGURES)
def test_this_builds_figure_is_the_rows_quantity_over_the_rows_scope(name, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 8)  # C3's rule walks 0, 4, 8 workers, as on a GPU node
    context, shown = presented(FULL, name)
    rows = [figure for figure in FIGURES["figures"] if figure["section"] == name]
    assert len(context.table) == len(rows) and list(context.table["what"]) == [r["what"] for r in rows]
    for figure in rows:
        assert context.values[figure["what"]] == pytest.approx(expected(figure, shown)), figure["what"]
    assert "†" not in "".join(context.table["this build"])  # the full profile reaches every scope
    others = [figure for figure in rows if figure.get("model")]
    assert context.like_for_like == (not others), context.note


def test_c2s_mean_of_epochs_1_to_5_is_the_mean_of_the_five_totals_not_epoch_1():
    context, (training,) = presented(FULL, "c2_timing")
    totals = [epoch["total_s"] for epoch in training.epochs]
    assert len(totals) == 5 and len(set(totals)) == 5
    mean_row = "total time per epoch (s), mean of epochs 1–5"
    assert context.values[mean_row] == pytest.approx(statistics.mean(totals)) != pytest.approx(totals[0])
    assert context.values["total time per epoch (s), epoch 1"] == pytest.approx(totals[0])
    per_batch = 1000 * training.epochs[0]["train_s"] / training.epochs[0]["batches"]
    assert context.values["training time per batch (ms), epoch 1"] == pytest.approx(per_batch)
    assert context.like_for_like and "this build ran the lab's full setting" in context.note


def test_the_2025_compile_rows_compare_training_times_of_each_mode_in_epoch_1_and_epochs_6_to_10():
    rows = [figure for figure in FIGURES["figures"] if figure["section"] == "p25_compile"]
    assert {figure["quantity"] for figure in rows} == {"training"}  # the lab's C2.2 interval, not the epoch's
    assert {figure["scope"] for figure in rows} == {"epoch 1", "mean of epochs 6–10"}
    context, shown = presented(FULL, "p25_compile")
    for mode in ("eager", "default", "reduce-overhead", "max-autotune"):
        (measured,) = [m for m in shown if m.request.settings["compile_mode"] == mode]
        train = [epoch["train_s"] for epoch in measured.epochs]
        assert len(train) == 10
        assert context.values[f"{mode}: training time per epoch (s), epoch 1"] == pytest.approx(train[0])
        steady = context.values[f"{mode}: training time per epoch (s), mean of epochs 6–10"]
        assert steady == pytest.approx(statistics.mean(train[5:]))
        total = statistics.mean(epoch["total_s"] for epoch in measured.epochs[5:])
        assert steady != pytest.approx(total)


def test_the_quick_profile_and_a_subset_are_not_like_for_like():
    context, _ = presented(QUICK, "c2_timing", images=256)
    assert not context.like_for_like
    assert "not like for like" in context.note and "the quick profile" in context.note
    assert "256 of the 50,000 training images" in context.note
    subset, _ = presented(FULL, "c2_timing", images=10_000)  # the full profile's tag, but a subset
    assert not subset.like_for_like and "10,000 of the 50,000 training images" in subset.note
    assert "the quick profile" not in subset.note


def test_a_scope_the_builds_epochs_do_not_reach_is_marked():
    context, (training,) = presented(QUICK, "c2_timing", images=256)  # the quick profile: 1 epoch
    assert len(training.epochs) == 1
    shown = dict(zip(context.table["what"], context.table["this build"]))
    assert shown["total time per epoch (s), mean of epochs 1–5"].endswith("†")
    assert not shown["total time per epoch (s), epoch 1"].endswith("†")
    assert "† this build's epochs do not reach the scope of “total time per epoch (s), mean of epochs 1–5”" in (
        context.note
    )
    assert context.note.count("“total time per epoch (s), mean of epochs 1–5”") == 1  # 2025 and 2026 share the row
    compiled, _ = presented(QUICK, "p25_compile", images=256)  # 2 epochs: epochs 6-10 are not there
    steady = dict(zip(compiled.table["what"], compiled.table["this build"]))
    assert steady["eager: training time per epoch (s), mean of epochs 6–10"].endswith("†")


def test_anchors_of_other_models_are_context_not_a_comparison(monkeypatch):
    context, _ = presented(FULL, "x_fast")
    assert not context.like_for_like
    for figure in (f for f in FIGURES["figures"] if f["section"] == "x_fast"):
        assert f"“{figure['what']}” is another model ({figure['model']}): context, not a comparison" in context.note


def test_a_count_keeps_its_separators_and_a_section_without_published_figures_has_no_table():
    context, _ = presented(FULL, "q3_params_sgd")
    assert context.table.loc[0, "this build"] == "11,173,962" == context.table.loc[0, "published"]
    assert context_table("q1_conv_layers", None).table.empty
    missing = context_table("c1_training", None)
    assert set(missing.table["this build"]) == {"—"} and not missing.like_for_like
    assert "no complete record" in missing.note
