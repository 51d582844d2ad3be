"""lablib.sections.tables: tables that read well (headers in words, decimals, separators, no index) and captions."""

import re

import numpy as np
import pandas as pd
import pytest
import torch
from IPython.core.formatters import DisplayFormatter

from lablib.core.config import RunConfig
from lablib.core.errors import LabError
from lablib.report.stitch import dataframe_latex
from lablib.sections.tables import (
    CAPTION_METADATA,
    FIGURE_PREFIX,
    MISSING,
    NUMBER_CLASS,
    PRESENTED_MARK,
    QUANTITIES,
    figure_caption,
    format_value,
    present,
    presented_text,
    transposed,
)


def _cells(html: str) -> list[list[str]]:
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", body, flags=re.S)
    return [[text.strip() for text in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)] for row in rows]


def test_values_have_separators_fixed_decimals_and_no_nan():
    assert format_value(11173962) == "11,173,962"
    assert format_value(np.int64(2771136)) == "2,771,136"
    assert format_value(2771136.0, 0) == "2,771,136"
    assert format_value(13.92849, 3) == "13.928" and format_value(0.5, 3) == "0.500"
    assert format_value(float("nan"), 3) == MISSING and format_value(None) == MISSING
    assert format_value(np.float64("nan")) == MISSING and format_value(pd.NA) == MISSING
    assert format_value(True) == "yes" and format_value(np.bool_(False)) == "no"
    assert format_value(0.1234, 1, 100.0) == "12.3"
    assert format_value([1, 2, 3]) == "1, 2, 3" and format_value("sgd") == "sgd"
    assert format_value((4, 512)) == "4 × 512"


def test_present_renames_formats_and_hides_the_index():
    frame = pd.DataFrame(
        {
            "epoch": [1, 2],
            "data_s": [0.12345, float("nan")],
            "parameters": [11173962, 2771136],
            "optimizer": ["sgd", "adam"],
            "accuracy": [54.6612, 61.0],
        },
        index=[7, 8],
    )
    styler = present(frame)
    text = styler.data
    assert list(text.columns) == ["epoch", "data loading (s)", "parameters", "optimiser", "top-1 training accuracy (%)"]
    html = styler.to_html()
    assert 'class="dataframe"' in html and PRESENTED_MARK in html and ">nan<" not in html.lower()
    assert _cells(html) == [
        ["1", "0.123", "11,173,962", "sgd", "54.66"],
        ["2", MISSING, "2,771,136", "adam", "61.00"],
    ]  # no index cell (7, 8) in any row
    assert "7" not in [row[0] for row in _cells(html)]
    number_cells = re.findall(rf'class="data row0 col(\d) {NUMBER_CLASS}"', html)
    assert number_cells == ["0", "1", "2", "4"]  # the text column (optimiser) is not a number column


def test_present_chooses_columns_and_headers_and_rejects_raw_names():
    frame = pd.DataFrame({"workers": [0, 4], "epoch_s_mean": [27.0861, 13.9284], "odd_name": [1, 2]})
    text, numeric = presented_text(frame, ["workers", "epoch_s_mean"])
    assert list(text.columns) == ["workers", "epoch time, mean (s)"] and numeric == [True, True]
    assert text.iloc[1].tolist() == ["4", "13.928"]
    with pytest.raises(LabError, match="odd_name"):
        present(frame)  # a record name with no header in words never reaches a reader
    assert list(presented_text(frame, headers={"odd_name": "odd (units)"})[0].columns)[-1] == "odd (units)"
    with pytest.raises(LabError, match="missing_column"):
        present(frame, ["workers", "missing_column"])


def test_a_named_index_becomes_a_column_and_a_pivot_takes_the_values_quantity():
    timings = pd.DataFrame(
        {
            "model": ["resnet18", "resnet18", "mobilenet"],
            "device": ["cpu", "cpu", "cpu"],
            "mode": ["eager", "compiled", "eager"],
            "median_ms": [1.23456, 0.98765, float("nan")],
        }
    )
    pivot = timings.pivot_table(index="model", columns=["device", "mode"], values="median_ms")
    text, numeric = presented_text(pivot, values="median_ms")
    assert list(text.columns) == ["model", "cpu · compiled", "cpu · eager"]
    assert text.set_index("model").loc["resnet18"].tolist() == ["0.988", "1.235"]
    assert numeric == [False, True, True]


def test_headers_in_words_take_their_units_decimals():
    frame = pd.DataFrame({"epoch": [1, "average"], "C2.1 data-loading (s)": [0.12345, 0.2], "images/s": [812.4, 900.6]})
    text, numeric = presented_text(frame)
    assert text.iloc[0].tolist() == ["1", "0.123", "812"] and text.iloc[1].tolist() == ["average", "0.200", "901"]
    assert numeric == [False, True, True]  # "average" makes the epoch column text
    mixed = presented_text(pd.DataFrame({"ratio": [1.0, 0.25]}))[0]
    assert mixed["ratio"].tolist() == ["1.000", "0.250"]  # one number of decimals per column


def test_every_quantity_reads_as_words():
    for column, spec in QUANTITIES.items():
        assert "_" not in spec.header, column
        assert spec.decimals is None or 0 <= spec.decimals <= 6


def test_the_stitchers_latex_sees_a_table_with_no_index_column():
    frame = pd.DataFrame({"workers": [0, 4], "data_s_total": [11.4164, 0.4831], "model": ["a", "b"]})
    latex = dataframe_latex(present(frame).to_html())
    assert latex is not None and "11.416" in latex and "0.483" in latex
    rows = [line for line in latex.splitlines() if line.endswith(r"\\") or r"\\ \hline" in line]
    assert all(line.count("&") == 2 for line in rows)  # three columns: no index column
    assert latex.count(r"\textbf") == 3


def test_transposed_turns_one_row_into_label_and_value_columns():
    frame = pd.DataFrame([{"parameters": 11173962, "epochs_run": 5}])
    table = transposed(frame, "what", "value")
    assert table["what"].tolist() == ["parameters", "epochs run"]
    assert presented_text(table, headers={"what": "what", "value": "value"})[0]["value"].tolist() == [
        "11,173,962",
        "5",
    ]
    with pytest.raises(LabError, match="2 rows"):
        transposed(pd.concat([frame, frame]), "what", "value")


def test_figure_caption_says_what_device_data_and_profile():
    config = RunConfig(limit_train=256, limit_test=128, data="/somewhere/cifar10-jpg.zip", epochs=1)
    caption = figure_caption("time per epoch", config, torch.device("cpu"), "quick")
    text = str(caption)
    assert text.startswith(FIGURE_PREFIX) and "Time per epoch" in text
    assert "cpu" in text and "cifar10-jpg.zip" in text and "256 training" in text and "128 test" in text
    assert "profile: quick" in text and "Device: cpu" in text and "1 epoch," in text
    data, metadata = DisplayFormatter().format(caption)
    assert data["text/markdown"] == text and metadata["text/markdown"] == CAPTION_METADATA
    full = str(figure_caption("latency", RunConfig(), "cuda", "", training=False))
    assert "all 50,000 training and 10,000 test images" in full and "epoch" not in full and "no profile" in full
    with pytest.raises(LabError, match="empty"):
        figure_caption("  ", config, "cpu", "quick")


def test_caption_counts_the_loaded_data_when_given():
    class Bundle:
        train, test, source, channels = range(300), range(100), "/data/mnist-png.zip", 1

    text = str(figure_caption("accuracy", RunConfig(), "cpu", "full", data=Bundle()))
    assert "MNIST (mnist-png.zip), 300 training and 100 test images" in text
