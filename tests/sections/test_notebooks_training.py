"""The training sections executed by papermill on real images, in ONE run store: measured once, shown many times.

C3's sweep on this machine, then C1, C2, C4, C5, C6 and P-2025-C4: the trainings they share (C1 = C2 = C3's
0-worker point at the tiny settings; C3's best point = C4's CPU point = C5's SGD = C6's reference =
P-2025-C4's best arm) are trained once. Each notebook's text is what the sections' builders say about the
recorded measurements, so the figures quoted are the measured ones.
"""

import re

import pytest
from conftest import TINY, notebook_images, notebook_text, reads_well

from lablib.core.runs import load_runs
from lablib.core.store import store_root
from lablib.sections.headlines import section_headlines
from lablib.sections.optimizers import batchnorm_parameters_sentence, optimizer_discussion, ranking_sentence
from lablib.sections.training import timing_text, training_text
from lablib.sections.workers import profile_text, worker_profile

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _table_rows(notebook, header: str) -> list[list[str]]:
    """The body rows (cell texts) of the first displayed table whose HTML holds `header`."""
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            html = output.get("data", {}).get("text/html", "")
            if header in html:
                body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
                rows = re.findall(r"<tr>(.*?)</tr>", body, flags=re.S)
                return [[text.strip() for text in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)] for row in rows]
    raise AssertionError(f"no table with {header!r} in the notebook")


def trainings() -> int:
    return len(list((store_root() / "training").glob("*/run.json")))


def record(section: str):
    runs = load_runs(section)
    assert len(runs) == 1, f"{section}: one presenting record"
    return runs.iloc[0]


def test_the_training_sections_measure_once_and_present_many(run_notebook, cifar_zip):
    params = {**TINY, "data": str(cifar_zip), "tag": "test"}
    c3 = run_notebook("c3_workers", **{**params, "workers": -1, "max_workers": 2})  # 0 and 2 workers, or 0 and 1
    assert trainings() == 2  # 0 workers and the largest count this machine allows (max 2)
    facts = record("c3_workers")
    assert [p["workers"] for p in facts["sweep_points"]][0] == 0
    assert "**C3.2:**" in notebook_text(c3) and notebook_images(c3) == 1 and reads_well(c3) == 1

    c1 = run_notebook("c1_training", **params)
    c2 = run_notebook("c2_timing", **params)
    assert trainings() == 2  # C1 and C2 show C3's 0-worker training: nothing trained again
    (c1_use,) = record("c1_training")["uses"]
    assert c1_use["reused"] and c1_use["asked_by"] == "c3_workers"
    assert record("c2_timing")["uses"][0]["key"] == c1_use["key"]
    epochs = __import__("json").loads((__import__("pathlib").Path(c1_use["path"]) / "epochs.json").read_text())
    assert training_text(
        epochs, 256, "cpu", __import__("lablib.core.config", fromlist=["x"]).make_config(workers=0)
    ) in notebook_text(c1)
    assert timing_text(epochs, "cpu", 0) in notebook_text(c2)
    assert "Reused, not measured again" in notebook_text(c2)
    assert [row[0] for row in _table_rows(c2, "C2.1 data-loading (s)")] == ["1", "average"]
    c2_lines = section_headlines("c2_timing", load_runs("c2_timing"))
    assert [line.part for line in c2_lines] == ["C2.1", "C2.2", "C2.3"] and all(line.complete for line in c2_lines)

    best = int(facts["sweep_best_workers"])
    c4 = run_notebook("c4_gpu_vs_cpu", **{**params, "workers": -1, "devices": "cpu"})
    c5 = run_notebook("c5_optimizers", **{**params, "workers": -1, "optimizers": "sgd,adam"})
    assert trainings() == 3  # only Adam is new: C4's CPU point and C5's SGD are C3's best point
    assert record("c4_gpu_vs_cpu")["cpu_epoch_s"] is not None and "**C4:**" in notebook_text(c4)
    points = record("c5_optimizers")["optimizer_points"]
    assert sorted(p["optimizer"] for p in points) == ["adam", "sgd"] and {p["workers"] for p in points} == {best}
    import pandas as pd

    shown = pd.DataFrame(points)
    text = notebook_text(c5)
    assert ranking_sentence(shown) in text and optimizer_discussion(shown)[0] in text
    assert reads_well(c5) == 2  # the comparison and the ranking

    c6 = run_notebook("c6_no_batchnorm", **{**params, "workers": -1})
    p25 = run_notebook("p25_worker_profile", **{**params, "workers": -1})
    assert trainings() == 5 - (best == 1)  # + no-BatchNorm + 1 worker (unless 1 was the best count)
    c6_record = record("c6_no_batchnorm")
    sgd_run = next(u["run_id"] for u in record("c5_optimizers")["uses"] if u["label"].startswith("training sgd lr"))
    assert c6_record["reference_run"] == sgd_run  # C6's reference is C5's SGD run itself
    c6_text = notebook_text(c6)
    assert batchnorm_parameters_sentence(10, 3) in c6_text and "Training takes" in c6_text
    assert [row[0] for row in _table_rows(c6, "top-1, mean over epochs (%)")] == [
        "C6: SGD without BatchNorm",
        "C5: SGD with BatchNorm",
    ]
    p25_record = record("p25_worker_profile")
    assert p25_record["compared_workers"] == sorted({1, best})
    epochs = pd.concat(
        [
            pd.DataFrame(
                __import__("json").loads((__import__("pathlib").Path(u["path"]) / "epochs.json").read_text())
            ).assign(workers=int(u["label"].split(", ")[1].split()[0]))
            for u in p25_record["uses"]
        ]
    )
    assert profile_text(worker_profile(epochs)) in notebook_text(p25)
    for section in ("c1_training", "c4_gpu_vs_cpu", "c5_optimizers", "c6_no_batchnorm", "p25_worker_profile"):
        assert all(line.complete for line in section_headlines(section, load_runs(section))), section
