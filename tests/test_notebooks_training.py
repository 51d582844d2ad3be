"""The training sections executed by papermill with tiny parameters on real images."""

from conftest import TINY, notebook_images, notebook_text
from lablib.runs import load_epochs, load_runs


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
