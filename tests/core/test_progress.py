"""Progress in a log file is whole lines: one per stage, at most one per interval inside a stage."""

from __future__ import annotations

import io

from lablib.core.progress import LineProgress, progress_bar


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_log_gets_one_line_per_epoch_and_no_carriage_returns():
    stream, clock = io.StringIO(), Clock()
    with LineProgress(total=300, desc="epoch 1/3", unit="batch", stream=stream, interval_s=30, clock=clock) as bar:
        for epoch in range(1, 4):
            if epoch > 1:
                bar.set_description(f"epoch {epoch}/3")
            for _ in range(100):
                clock.now += 0.01
                bar.update(1)
            bar.set_postfix(loss="1.234")
    text = stream.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and len(lines) == 3
    assert lines[0].startswith("epoch 1/3: 100/300 batch") and lines[2].startswith("epoch 3/3: 300/300 batch")
    assert "loss=1.234" in lines[2]


def test_a_long_stage_prints_at_most_one_line_per_interval():
    stream, clock = io.StringIO(), Clock()
    bar = LineProgress(total=1000, desc="decoding", stream=stream, interval_s=30, clock=clock)
    for _ in range(1000):
        clock.now += 0.1  # 100 s in all
        bar.update(1)
    bar.close()
    assert len(stream.getvalue().splitlines()) == 4  # at 30, 60 and 90 s, then the end


def test_progress_bar_picks_by_where_the_output_goes():
    assert isinstance(progress_bar(10, stream=io.StringIO()), LineProgress)  # not a terminal
    silent = progress_bar(10, enabled=False)
    silent.update(5)
    silent.close()
