"""effdepth.tables: every table of the book in one format (no NaN, no snake_case header, no scientific
notation, no false precision)."""

import numpy as np
import pandas as pd

from effdepth import tables

T = tables.THIN


def test_numbers_read_as_a_reader_expects():
    assert (
        tables.number(8192) == f"8{T}192"
        and tables.number(7.06e10) == f"70.6{T}B"
        and tables.number(134_515_008) == f"135{T}M"
    )
    assert (
        tables.number(17.1102) == "17.1" and tables.number(17.1102, 4) == "17.11"
    )  # never more than 4 significant digits
    assert (
        tables.number(3e-13, 3) == "< 0.001"
        and tables.number(-3e-13, 3) == "> −0.001"
        and tables.number(0.0, 3) == "0.000"
    )
    assert tables.number(float("nan")) == tables.MISSING and tables.number(None) == tables.MISSING
    assert (
        tables.percent(3.47) == f"347{T}%" and tables.percent(0.042) == f"4.2{T}%" and tables.percent(0.3) == f"30{T}%"
    )
    assert (
        tables.decimals([0.628, 0.631, 0.7]) == 3
        and tables.decimals([17.1, 12.0, 40.2]) == 1
        and tables.decimals([8192.0]) == 0
    )


def test_a_frame_is_shown_with_words_for_headers_and_no_nan_or_exponent():
    frame = pd.DataFrame(
        {
            "rel_attn": [17.1102, 0.21, np.nan],
            "src_layer": [1, 2, 3],
            "d_model": [576, 8192, 4096],
            "n_params": [1.35e8, 7.06e10, 8.0e9],
            "accuracy": [0.3, 0.05, 1.0],
        },
        index=pd.Index([0, 1, 2], name="layer_index"),
    )
    html = tables.show_table(frame, percent=["accuracy"], missing="not measured").to_html()
    assert "NaN" not in html and "nan" not in html.lower().replace("nan-", "")
    shown, missing = tables.format_frame(frame, percent_columns=["accuracy"])
    assert (
        missing
        and list(shown.columns) == ["attention ‖a‖/‖h‖", "source layer", "width", "parameters", "accuracy"]
        and shown.index.name == "layer index"
    )
    assert list(shown["attention ‖a‖/‖h‖"]) == ["17.11", "0.21", tables.MISSING]
    assert list(shown["parameters"]) == [f"135{T}M", f"70.6{T}B", f"8{T}B"] and shown["width"][1] == f"8{T}192"
    assert list(shown["accuracy"]) == [f"30{T}%", f"5.0{T}%", f"100{T}%"]
    assert "— : not measured" in html.replace("—:", "— :")  # the caption says why a cell is empty
    assert not any("e+" in c or "e-" in c for c in shown.to_numpy().ravel())
    counts, _ = tables.format_frame(pd.DataFrame({"n": [4.0, 20.0, np.nan]}))
    assert list(counts["n"]) == ["4", "20", tables.MISSING]  # counts stored as floats read as counts
