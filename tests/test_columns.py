"""A table's columns: the detection rule of each kind, the codec's encoding and its inverse (labels,
grids), dequantisation within each value's bin, rounding of samples, and the CSV cells it writes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from scorematch.data import ColumnCodec, Table, load_table, read_table
from scorematch.data.column_kinds import detect_column


def _kind(values, **kw):
    return detect_column("c", np.asarray(values, dtype=np.float64), **kw)


# -- the rule ------------------------------------------------------------------------------------
def test_detection_rule_for_each_kind():
    rng = np.random.default_rng(0)
    # Integers: discrete, step the gcd of the differences, whatever the number of values.
    c = _kind(rng.integers(0, 500, 300) * 3 + 7)
    assert (c.kind, c.step, c.origin) == ("discrete", 3.0, c.lo) and c.reason == "integers"
    assert c.levels == round((c.hi - c.lo) / 3) + 1 and len(c.values) == c.distinct > 20
    big = _kind(np.arange(0.0, 10000.0, 2.0))  # (np.arange(5000.0) is a row number: excluded)
    assert big.kind == "discrete" and big.values is None  # > MAX_STORED_VALUES: the grid
    # Two values: binary with step b − a; one value: a constant, step 1.
    c = _kind([-0.04, 0.05, 0.05, -0.04])
    assert c.kind == "binary" and c.step == pytest.approx(0.09) and c.values == (-0.04, 0.05)
    c = _kind([2.5] * 10)
    assert (c.kind, c.step, c.levels, c.values) == ("discrete", 1.0, 1, (2.5,))
    # Few non-integers on a grid (ratings in halves): discrete, values kept for snapping.
    c = _kind(rng.choice([1.0, 1.5, 2.5, 4.0], 50))
    assert c.kind == "discrete" and c.step == pytest.approx(0.5) and len(c.values) == 4
    # The smallest gap divided by m: {0, 0.4, 1.0} lies on a grid of step 0.2 (repeated 4
    # times: without repeats three numbers are no evidence of a grid).
    assert _kind([0.0, 0.4, 1.0, 0.4] * 4).step == pytest.approx(0.2)
    assert _kind([0.0, 0.4, 1.0, 0.4]).kind == "continuous"
    # Few numbers on no regular grid: numbers, not categories (issue #20: a categorical refused
    # every held-out value it had not seen); only text (or the user's word) makes categories.
    c = _kind([0.1, 0.25, 0.9, np.pi, 0.25])
    assert c.kind == "continuous" and c.labels is None
    # Rounded measurements (a 0.01 grid) with few repeats: continuous; with ≥ 4 rows per value:
    # discrete.
    few = np.round(rng.normal(3, 1, 200), 2)
    assert _kind(few).kind == "continuous" and "grid step" in _kind(few).reason
    many = np.round(rng.normal(3, 0.1, 2000), 2)
    assert len(np.unique(many)) * 4 <= many.size and _kind(many).kind == "discrete"
    # Real-valued data: continuous, however few the values.
    assert _kind(rng.normal(size=100)).kind == "continuous"
    assert _kind(rng.normal(size=5)).kind == "continuous"
    # Text: categorical; labels sorted (numbers by value, then text).
    c = detect_column("c", np.full(4, np.nan), ["b", "10", "a", "9"])
    assert c.labels == ("9", "10", "a", "b") and c.reason == "holds text"
    # The user's word wins.
    assert _kind([1.0, 2.0, 3.0], continuous=True).kind == "continuous"
    assert _kind(rng.normal(size=5), categorical=True).kind == "categorical"


def test_codec_names_columns_by_name_or_index_and_refuses_unknown_ones():
    t = Table(np.array([[1.0, 0.5, 2.0], [2.0, 0.7, 3.0]]), ["a", "b", "c"], has_header=True)
    codec = ColumnCodec.detect(t, categorical="b", continuous=[3])
    assert [c.kind for c in codec.columns] == ["binary", "categorical", "continuous"]
    with pytest.raises(ValueError, match=r"--categorical: no column 'zz'.*a, b, c"):
        ColumnCodec.detect(t, categorical="zz")
    with pytest.raises(ValueError, match="named both categorical and continuous"):
        ColumnCodec.detect(t, categorical="a", continuous="1")
    # Stored and rebuilt as plain data (a run's config.yaml).
    again = ColumnCodec.from_config(codec.to_config())
    assert again.to_config() == codec.to_config() and again.names == ["a", "b", "c"]


# -- reading a table with labels ----------------------------------------------------------------
def test_read_table_keeps_names_and_text_columns_and_load_table_still_refuses_text(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("colour,size,n\nred,1.5,3\nblue,2.5,4\nred,1.5,3\n")
    t = read_table(p)
    assert t.names == ["colour", "size", "n"] and t.has_header and set(t.text) == {0}
    assert t.text[0] == ["red", "blue", "red"] and np.isnan(t.values[:, 0]).all()
    np.testing.assert_array_equal(t.values[:, 1:], [[1.5, 3], [2.5, 4], [1.5, 3]])
    with pytest.raises(ValueError, match=r"t\.csv: row 2, column 1 \('colour'\).*'red'"):
        load_table(p)
    (tmp_path / "n.csv").write_text("1,2\n3,4\n")
    assert read_table(tmp_path / "n.csv").names == ["x1", "x2"]
    # A header with numeric names: its text cells are the only text of their columns.
    (tmp_path / "y.csv").write_text("id,2019,2020\n1,2.5,3\n2,3.5,4\n")
    years = read_table(tmp_path / "y.csv")
    assert years.names == ["id", "2019", "2020"] and years.has_header and not years.text
    np.save(tmp_path / "a.npy", np.ones((3, 2, 2)))
    with pytest.raises(ValueError, match="not a table of rows"):
        read_table(tmp_path / "a.npy")


def test_categorical_round_trip_through_codes_and_labels(tmp_path):
    p = tmp_path / "t.csv"
    w = [3, 1, 4, 1, 5, 9, 2, 6]  # (range(8) would be a row number, left out)
    p.write_text("colour,w\n" + "".join(f"{c},{w}\n" for c, w in zip("rgbrgbbb", w)))
    table = read_table(p)
    codec = ColumnCodec.detect(table)
    x = codec.encode(table)
    assert codec.columns[0].labels == ("b", "g", "r")
    torch.testing.assert_close(x[:, 0], torch.tensor([2.0, 1, 0, 2, 1, 0, 0, 0]))
    cells = codec.format_rows(x)
    assert [row[0] for row in cells] == list("rgbrgbbb") and cells[3][1] == "1"
    # Codes off the grid (a model's raw samples) round to the nearest label, clamped.
    raw = torch.tensor([[2.4, 0.2], [-0.7, 6.6], [9.0, 7.4]])
    assert [r[0] for r in codec.format_rows(codec.round(raw))] == ["r", "b", "r"]
    # Another file with the same columns is encoded by the same codes; a new label is an error.
    (tmp_path / "u.csv").write_text("colour,w\ng,1\n")
    assert codec.encode(read_table(tmp_path / "u.csv"))[0, 0] == 1
    (tmp_path / "v.csv").write_text("colour,w\npurple,1\n")
    with pytest.raises(ValueError, match="'purple' not among its 3 categories"):
        codec.encode(read_table(tmp_path / "v.csv"))
    (tmp_path / "w.csv").write_text("hue,w\ng,1\n")
    with pytest.raises(ValueError, match="do not match the run's colour, w"):
        codec.encode(read_table(tmp_path / "w.csv"))


# -- dequantisation and rounding ----------------------------------------------------------------
def _mixed_codec() -> ColumnCodec:
    values = np.stack(
        [
            np.arange(40) % 7 * 0.5 + 1.0,  # discrete, step 0.5, 7 values
            np.linspace(-1, 1, 40) ** 3,  # continuous
            np.arange(40) % 2 * 3.0,  # binary {0, 3}
        ],
        1,
    )
    return ColumnCodec.detect(Table(values, ["d", "c", "b"]))


def test_dequantise_spreads_each_value_over_its_bin_with_the_generator():
    codec = _mixed_codec()
    assert [c.kind for c in codec.columns] == ["discrete", "continuous", "binary"]
    x = torch.tensor([[1.0, 0.3, 0.0], [4.0, -0.2, 3.0]]).repeat(500, 1)
    a, log_vol = codec.dequantise(x, torch.Generator().manual_seed(0))
    b, _ = codec.dequantise(x, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and log_vol.shape == (1000,)
    torch.testing.assert_close(
        log_vol, torch.full((1000,), math.log(0.5) + math.log(3.0), dtype=torch.float64)
    )
    torch.testing.assert_close(a[:, 1], x[:, 1], rtol=0, atol=0)  # continuous untouched
    spread = a - x
    assert spread[:, 0].abs().max() <= 0.25 and spread[:, 2].abs().max() <= 1.5
    # Uniform over the bin: mean 0, variance w²/12.
    assert spread[:, 0].var().item() == pytest.approx(0.25 / 12, rel=0.15)
    assert spread[:, 2].mean().abs() < 0.15
    # Dequantised values round back to where they came from.
    torch.testing.assert_close(codec.round(a), x)
    # A value between the grid's points is scored as the bin that holds it, never refused.
    off, _ = codec.dequantise(torch.tensor([[1.2, 0.0, 0.0]]), torch.Generator().manual_seed(0))
    assert abs(float(off[0, 0]) - 1.0) <= 0.25
    # A continuous table draws nothing: the generator's state does not move.
    cont = ColumnCodec.detect(Table(np.random.default_rng(0).normal(size=(30, 2)), ["p", "q"]))
    g = torch.Generator().manual_seed(5)
    y, vol = cont.dequantise(x[:3, :2], g)
    assert y is x[:3, :2] or torch.equal(y, x[:3, :2])
    assert torch.equal(vol, torch.zeros(3, dtype=torch.float64))
    assert torch.equal(g.get_state(), torch.Generator().manual_seed(5).get_state())


def test_round_puts_samples_on_the_columns_own_values():
    codec = _mixed_codec()
    raw = torch.randn(1000, 3, generator=torch.Generator().manual_seed(1)) * 4
    r = codec.round(raw)
    assert set(r[:, 0].tolist()) <= {1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0}
    assert set(r[:, 2].tolist()) <= {0.0, 3.0}
    assert torch.equal(r[:, 1], raw[:, 1])
    # Samples snap to the observed values, not to holes of the grid; without stored values
    # (very many distinct ones), to the grid within the observed range.
    holes = ColumnCodec.detect(Table(np.array([[1.0], [2.0], [5.0], [1.0]]), ["h"]))
    assert holes.columns[0].step == 1.0
    assert set(holes.round(torch.linspace(0, 6, 61)[:, None]).flatten().tolist()) == {1, 2, 5}
    assert torch.isnan(holes.round(torch.tensor([[float("nan")]]))).all()
    wide = ColumnCodec.detect(Table(np.r_[np.arange(0.0, 3000.0, 2.0), 7001.0][:, None], ["w"]))
    assert wide.columns[0].values is None and wide.columns[0].step == 1.0
    r = wide.round(torch.tensor([[-5.0], [3.4], [8000.0]])).flatten().tolist()
    assert r == [0.0, 3.0, 7001.0]


def test_csv_cells_have_seven_significant_digits_and_integers_for_integer_grids():
    t = Table(np.array([[1.0, 0.123456789, 0.5], [3.0, 12345.678, 1.5]]), ["i", "f", "h"])
    codec = ColumnCodec.detect(t, continuous="f")
    rows = codec.format_rows(torch.tensor([[3.0, 0.123456789, 1.5], [1.0, 12345.678, 0.5]]))
    assert rows == [["3", "0.1234568", "1.5"], ["1", "12345.68", "0.5"]]
    # Discrete values are written as the table has them (here 11 digits), even from float32.
    sex = ColumnCodec.detect(Table(np.array([[-0.04464163651], [0.05068011874]]), ["sex"]))
    cells = sex.format_rows(torch.tensor([[0.0506801], [-0.04464]], dtype=torch.float32))
    assert cells == [["0.05068011874"], ["-0.04464163651"]]
    grid = ColumnCodec.detect(Table(np.tile(np.arange(13, 67) / 100, 4)[:, None], ["g"]))
    assert len(grid.columns[0].values) == 54 and grid.columns[0].step == pytest.approx(0.01)
    assert grid.format_rows(torch.tensor([[0.35], [0.1301], [0.9]])) == [
        ["0.35"],
        ["0.13"],
        ["0.66"],
    ]


def test_a_codec_stored_by_an_earlier_run_keeps_its_encoding():
    """Runs made before one-hot columns stored categoricals as codes: their config has no
    one_hot, missing or transform keys, and the codec they rebuild sees one coordinate."""
    legacy = {"name": "colour", "kind": "categorical", "lo": 0.0, "hi": 2.0, "distinct": 3,
              "origin": 0.0, "step": 1.0, "levels": 3, "values": None,
              "labels": ["b", "g", "r"], "reason": "holds text"}  # fmt: skip
    codec = ColumnCodec.from_config([legacy])
    assert codec.dim == 1 and not codec.columns[0].one_hot and codec.passthrough
    fresh = ColumnCodec.detect(Table(np.zeros((3, 1)), ["c"], {0: ["b", "g", "r"]}))
    assert fresh.columns[0].one_hot and fresh.dim == 3
    assert ColumnCodec.from_config(fresh.to_config()).dim == 3
