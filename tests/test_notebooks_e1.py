"""E1 (hyper-parameter sweep) executed by papermill on real digits."""

from conftest import notebook_images, notebook_text, reads_well

from lablib.core.runs import load_runs
from lablib.sections.hparams import SECTION, best_setting, points, seed_summary, seeded

E1_TINY = {
    "epochs": 1,
    "limit_train": 512,
    "limit_test": 200,
    "workers": 0,
    "device": "cpu",
    "batch_size": 64,
    "tag": "test",
}


def test_e1_sweep_points_heatmap_best_and_divergence(run_notebook, mnist_zip):
    points_run = [
        ("sgd", 0.05, "none", 0),
        ("adam", 0.001, "none", 0),
        ("adam", 0.001, "onecycle", 0),
        ("sgd", 1e6, "none", 0),
    ]  # the last one is forced to diverge
    for optimizer, lr, scheduler, seed in points_run:
        executed = run_notebook(
            "e1_hparam_sweep",
            data=str(mnist_zip),
            optimizer=optimizer,
            lr=lr,
            scheduler=scheduler,
            seed=seed,
            **E1_TINY,
        )
    runs = load_runs(SECTION)
    assert len(runs) == 4 and runs["group"].nunique() == 1 and set(runs["tag"]) == {"test"}
    assert runs["model"].eq("SmallCNN").all()  # 1-channel data trains the small CNN
    table = points(runs)
    diverged = table[table["diverged"]]
    assert diverged[["optimizer", "lr"]].values.tolist() == [["sgd", 1e6]]
    text = notebook_text(executed)
    assert "**E1.1:**" in text and "lr 1e+06" in text and "**diverged**" in text
    assert "**E1.2:** 4 point(s)" in text and "1 diverged" in text
    best = best_setting(table)  # computed here from the records, compared with the prose
    assert f"`{best['optimizer']}` with lr {best['lr']:g}" in text and f"{best['mean']:.2f} %" in text
    assert best["mean"] == runs[runs["final_accuracy"].notna()]["final_accuracy"].max()
    assert "±" not in text.split("**E1.4:**")[1]  # no setting has several seeds yet
    assert notebook_images(executed) == 1  # the heatmaps; no seed plot before any re-run
    assert reads_well(executed) == 2  # the epochs and the sweep; no seed table before a re-run
    heatmap_cell = next(c for c in executed.cells if "draw_heatmap(axis" in c.source)
    kinds = [next(iter(o.get("data", {"stream": ""}))) for o in heatmap_cell.outputs]
    assert kinds == ["image/png", "text/markdown"]  # the heatmaps, then their caption

    # re-run the best setting with another seed: the seed statistics appear
    executed = run_notebook(
        "e1_hparam_sweep",
        data=str(mnist_zip),
        optimizer=best["optimizer"],
        lr=best["lr"],
        scheduler=best["scheduler"],
        seed=1,
        **E1_TINY,
    )
    rows = seeded(seed_summary(points(load_runs(SECTION))))
    assert len(rows) == 1 and rows.iloc[0]["seeds"] == 2
    text = notebook_text(executed).split("**E1.4:**")[1]
    assert f"{rows.iloc[0]['mean']:.2f} ± {rows.iloc[0]['std']:.2f} %" in text and "2 seeds" in text
    assert notebook_images(executed) == 2 and reads_well(executed) == 3
