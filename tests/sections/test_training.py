"""lablib.sections.training: C1 and C2's facts and sentences, from epochs made here."""

import pytest

from lablib.core.config import make_config
from lablib.sections.training import (
    BOTTLENECK_SHARE,
    FIRST_EPOCH_SLOWER,
    c2_headlines,
    timing_results,
    timing_table,
    timing_text,
    training_setup_sentence,
    training_text,
)


def _epoch(epoch, loss, accuracy, data_s=1.0, train_s=3.0, total_s=4.2, images=256, diverged=False):
    batches = 2
    return {
        "epoch": epoch,
        "loss": loss,
        "accuracy": accuracy,
        "data_s": data_s,
        "train_s": train_s,
        "total_s": total_s,
        "images": images,
        "batches": batches,
        "images_per_s": images / total_s,
        "diverged": diverged,
    }


def test_training_text_follows_the_loss_from_the_first_to_the_last_epoch():
    config = make_config(workers=0, lr=0.05)
    falling = training_text([_epoch(1, 2.1, 20.0), _epoch(2, 1.5, 41.5)], 1024, "cpu", config)
    assert falling.startswith("**C1:** after 2 epochs on 1,024 training images on `cpu` with 0 workers and `sgd`")
    assert "lr 0.05" in falling and "fell from 2.100 in epoch 1 to 1.500" in falling and "41.50 %" in falling
    rising = training_text([_epoch(1, 2.1, 20.0), _epoch(2, 2.3, 18.0)], 1024, "cpu", config)
    assert "did not fall (2.100 in epoch 1, 2.300 in epoch 2" in rising and "fell" not in rising
    single = training_text([_epoch(1, 2.25, 15.0)], 256, "cuda", config)
    assert "after 1 epoch on 256" in single and "loss is 2.250" in single and "no trend" in single
    diverged = training_text(
        [_epoch(1, 2.3, 10.0), _epoch(2, float("nan"), 10.0, diverged=True)], 256, "cpu", make_config(lr=0.7)
    )
    assert "NaN/inf in epoch 2" in diverged and "at lr 0.7" in diverged and "fell" not in diverged
    assert training_text([], 256, "cpu", config) == "**C1:** no epoch was recorded."


def test_training_setup_sentence_states_the_config_it_ran():
    sgd = training_setup_sentence(make_config(epochs=3, batch_size=64, workers=4), "cuda")
    assert "3 epochs of batches of 64 images" in sgd and "`sgd` with lr 0.1, momentum 0.9" in sgd
    assert "weight decay 0.0005" in sgd and "with BatchNorm, 4 loader workers, on `cuda`" in sgd
    adam = training_setup_sentence(make_config(optimizer="adam", batch_norm=False), "cpu")
    assert "momentum" not in adam and "without BatchNorm" in adam


# --- C2 ------------------------------------------------------------------------------


def test_timing_table_and_results_from_the_epochs():
    epochs = [_epoch(1, 2.0, 10.0, 1.0, 3.0, 4.5), _epoch(2, 1.8, 12.0, 0.5, 3.0, 3.6)]
    table = timing_table(epochs)
    assert table["epoch"].tolist() == [1, 2, "average"]
    assert table.loc[2, "training per batch (ms)"] == pytest.approx(1500.0)  # 3.0 s over 2 batches
    assert table.loc[2, "C2.1 data-loading (s)"] == pytest.approx(0.75)
    assert table.loc[0, "other (s)"] == pytest.approx(0.5) and table.loc[1, "other (s)"] == pytest.approx(0.1)
    results = timing_results(epochs)
    assert results["other_s_mean"] == pytest.approx(0.3)
    assert results["data_share"] == pytest.approx(0.75 / 4.05) and results["train_share"] == pytest.approx(3 / 4.05)


def test_timing_text_judges_the_data_share_and_the_first_epoch():
    slow_first = [_epoch(1, 2.0, 10.0, 1.0, 3.0, 6.0), _epoch(2, 1.8, 12.0, 1.0, 3.0, 4.1)]
    text = timing_text(slow_first, "cpu", 2)
    assert "**C2.1:** waiting for data took 1.00 s per epoch on average (20% of the epoch; epoch 1: 1.00 s)" in text
    assert 1.0 / 5.05 >= BOTTLENECK_SHARE and "bottleneck" in text
    assert "**C2.2:**" in text and "3.00 s per epoch" in text
    assert (
        "**C2.3:** a whole epoch took 5.05 s on average (epoch 1: 6.00 s), 53 images/s" in text
        and "with 2 workers" in text
    )
    assert 6.0 > FIRST_EPOCH_SLOWER * 4.1 and "Epoch 1 is 46% slower than the later epochs' mean (4.10 s)" in text
    even = timing_text([_epoch(1, 2.0, 10.0, 0.1, 3.0, 3.2), _epoch(2, 1.8, 12.0, 0.1, 3.0, 3.2)], "cuda", 8)
    assert "rarely waits for data" in even and "bottleneck" not in even and "slower than the later" not in even
    single = timing_text([_epoch(1, 2.0, 10.0, 0.1, 3.0, 3.2)], "cpu", 0)
    assert "epoch 1:" not in single and "0.100 s per epoch fall outside" in single


def test_timing_results_carry_each_mean_with_its_spread_over_the_later_epochs():
    epochs = [
        _epoch(1, 2.0, 10.0, 1.0, 5.0, 6.5),
        _epoch(2, 1.8, 12.0, 0.5, 3.0, 3.6),
        _epoch(3, 1.7, 13.0, 0.7, 3.4, 4.2),
    ]
    results = timing_results(epochs)
    assert results["epoch1_total_s"] == 6.5 and results["epoch_s_mean"] == pytest.approx((6.5 + 3.6 + 4.2) / 3)
    assert results["train_s_spread"] == pytest.approx(0.2828, abs=1e-4)  # std of 3.0 and 3.4 (epoch 1 left out)
    assert timing_results(epochs[:2])["train_s_spread"] is None  # one later epoch: no spread
    assert results["train_ms_per_batch"] == pytest.approx(1000 * (5.0 + 3.0 + 3.4) / 3 / 2)
    text = timing_text(epochs, "cpu", 2)
    assert "± 0.28 s over epochs 2–3" in text and "ms per batch of 128 images" in text


def test_c2_headlines_carry_their_spread():
    import pandas as pd

    epochs = [
        _epoch(1, 2.0, 10.0, 1.0, 5.0, 6.5),
        _epoch(2, 1.8, 12.0, 0.5, 3.0, 3.6),
        _epoch(3, 1.7, 13.0, 0.7, 3.4, 4.2),
    ]
    runs = pd.DataFrame([{"run_id": "r", "ended": "1", **timing_results(epochs)}])
    lines = {line.part: line for line in c2_headlines(runs)}
    assert lines["C2.2"].spread == pytest.approx(0.2828, abs=1e-4) and "± 0.28 s per epoch" in lines["C2.2"].text
    assert "ms per batch" in lines["C2.2"].text and lines["C2.3"].value == pytest.approx(4.7667, abs=1e-4)
