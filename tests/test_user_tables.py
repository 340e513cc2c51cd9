"""Tables as users bring them (issue #20): R's write.csv exports with NA and a rownames column,
pandas' to_csv with NaN and its index, missing-value markers, gaps refused with a count or
dropped, identifier columns left out, numeric columns that score numbers they have not seen,
columns matched by header, Parquet and gzip-compressed CSV, and messages that name row, column
and the path as given.  The R tables are the real ones (tests/data, written by tests/_rcsv.py)."""

from __future__ import annotations

import gzip
import logging
import math
import shutil

import numpy as np
import pytest
import torch
from _rcsv import DATA, read_r_table, write_pandas_csv, write_r_csv

from scorematch.data import ColumnCodec, Table, load_dataset, load_table, read_table
from scorematch.data.column_kinds import detect_column
from scorematch.data.missing import NA_VALUES, complete_rows


def read_table_from(rows) -> Table:
    return Table(np.asarray(rows, dtype=np.float64), ["v"], has_header=True)


def _kinds(codec: ColumnCodec) -> dict[str, str]:
    return {c.name: c.kind for c in codec.all_columns}


# -- 1. missing-value markers ------------------------------------------------------------------
def test_r_export_reads_na_as_missing_and_keeps_numeric_columns_numeric(caplog):
    table = read_table(DATA / "penguins.csv")
    codec = ColumnCodec.detect(table)
    kinds = _kinds(codec)
    # On main, every numeric column with an NA became categorical (bill length: 156 "labels").
    assert kinds["bill_length_mm"] in ("continuous", "discrete")
    assert {kinds[c] for c in ("bill_depth_mm", "flipper_length_mm", "body_mass_g")} <= {
        "continuous",
        "discrete",
    }
    sex = codec.columns[codec.names.index("sex")]
    assert sex.labels == ("female", "male") and sex.missing == 11  # no third label "NA"
    bill = codec.columns[codec.names.index("bill_length_mm")]
    assert bill.missing == 2 and bill.lo == 32.1 and bill.hi == 59.6
    # Row 4 of the file (line 5) is all NA but its year.
    i = table.lines.index(5)
    assert table.missing[i].tolist() == [False, False, False, True, True, True, True, True, False]
    assert np.isnan(table.values[i, 3:8]).all() and table.values[i, 8] == 2007


def test_every_marker_is_missing_and_na_values_changes_the_list(tmp_path):
    p = tmp_path / "m.csv"
    cells = [*NA_VALUES[1:], "3.5"]  # "" is a marker too: an empty cell
    p.write_text("a,b\n" + "".join(f"{c},{i}\n" for i, c in enumerate(cells)) + ",9\n")
    t = read_table(p)
    assert 0 not in t.text and t.missing[:, 0].sum() == len(NA_VALUES)
    assert t.values[len(cells) - 1, 0] == 3.5
    # --na-values replaces the list (the empty cell stays missing): -999 is missing, NA is text.
    q = tmp_path / "q.csv"
    q.write_text("a,b\n1,-999\n2,5\nNA,6\n,7\n")
    t = read_table(q, na_values="-999")
    assert t.missing[:, 1].tolist() == [True, False, False, False]
    assert t.missing[:, 0].tolist() == [False, False, False, True] and 0 in t.text


def test_a_column_of_numbers_with_a_few_text_cells_warns_naming_them(tmp_path, caplog):
    p = tmp_path / "odd.csv"
    values = [f"{v:.2f}" for v in np.linspace(1, 9, 60)]
    values[6], values[40] = "n.a.", "unknown"
    p.write_text("x,y\n" + "".join(f"{v},{i % 7}\n" for i, v in enumerate(values)))
    with caplog.at_level(logging.WARNING, logger="scorematch"):
        codec = ColumnCodec.from_file(p)
    assert codec.columns[0].kind == "continuous" and codec.columns[0].missing == 2
    (message,) = [r.getMessage() for r in caplog.records if "not numbers" in r.getMessage()]
    assert "column 'x': 2 of 60 cells" in message
    assert "row 8 'n.a.'" in message and "row 42 'unknown'" in message
    assert "--na-values" in message and "--categorical" in message
    # Named categorical, the text stays labels; many text cells make a text column.
    assert ColumnCodec.from_file(p, categorical="x").columns[0].kind == "categorical"
    many = detect_column("z", np.full(20, np.nan), [f"t{i % 4}" for i in range(20)])
    assert many.kind == "categorical"


# -- 2. gaps -----------------------------------------------------------------------------------
def test_gaps_are_refused_with_a_count_or_dropped(tmp_path, caplog):
    codec = ColumnCodec.from_file(DATA / "penguins.csv")
    with pytest.raises(ValueError) as err:
        load_dataset(DATA / "penguins.csv", columns=codec)
    assert str(err.value).endswith(
        "penguins.csv: 11 of 344 rows have empty cells (first: row 5, bill_length_mm); pass "
        "--drop-missing to train on the 333 complete rows"
    )
    with caplog.at_level(logging.WARNING, logger="scorematch"):
        x = load_dataset(DATA / "penguins.csv", columns=codec, drop_missing=True)
    assert x.shape == (333, 8) and torch.isfinite(x).all()
    assert any("11 of 344 rows have empty cells and are dropped" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    # The gaps themselves are there for callers: NaN in the codec's rows.
    t = read_table(DATA / "penguins.csv")
    rows = codec.encode(t)
    assert int(rows.isnan().any(1).sum()) == 11 and int(rows.isnan().sum()) == 19
    with pytest.raises(ValueError, match="fewer than 2 rows are complete"):
        complete_rows(torch.tensor([[1.0, math.nan], [math.nan, 2.0]]), ["a", "b"])


def test_pandas_export_with_nan_and_its_index(tmp_path):
    names, rows, _ = read_r_table("airquality")
    p = write_pandas_csv(tmp_path / "aq.csv", names, [[math.nan if v is None else v for v in r]
                                                      for r in rows])  # fmt: skip
    codec = ColumnCodec.from_file(p)
    assert codec.file_names[0] == "x1" and _kinds(codec)["x1"] == "excluded"  # index 0 … 152
    assert codec.names == names and codec.columns[0].missing == 37  # Ozone
    with pytest.raises(
        ValueError, match=r"42 of 153 rows have empty cells \(first: row 6, Ozone\)"
    ):
        load_dataset(p, columns=codec)
    assert load_dataset(p, columns=codec, drop_missing=True).shape == (111, 6)


# -- 3. identifier columns ---------------------------------------------------------------------
def test_identifier_columns_are_left_out_in_one_line_and_keep_keeps_them(caplog):
    with caplog.at_level(logging.WARNING, logger="scorematch"):
        codec = ColumnCodec.from_file(DATA / "mtcars.csv")
    assert _kinds(codec)["rownames"] == "excluded" and "rownames" not in codec.names
    lines = [r.getMessage() for r in caplog.records if "not modelled" in r.getMessage()]
    assert len(lines) == 1 and lines[0].endswith(
        "mtcars.csv: column 'rownames' is not modelled: an identifier: 32 distinct labels in 32 "
        "rows (--keep models it)"
    )
    kept = ColumnCodec.from_file(DATA / "mtcars.csv", keep="rownames")
    assert kept.columns[0].kind == "categorical" and len(kept.columns[0].labels) == 32
    r = ColumnCodec.from_file(DATA / "penguins.csv")
    assert r.excluded[0].name == "rownames" and "integers 1 … 344" in r.excluded[0].reason
    described = {row[1]: row for row in r.describe()}
    assert described["rownames"][2] == "excluded" and "11 missing" in described["sex"][3]
    # Distinct integers that are no row number, and a one-column table, are modelled.
    assert detect_column("n", np.arange(0.0, 300.0, 3.0)).kind == "discrete"
    assert detect_column("n", np.arange(-5.0, 20.0)).kind == "discrete"
    one = ColumnCodec.detect(read_table_from([[i] for i in range(1, 21)]))
    assert one.names == ["v"] and one.columns[0].kind == "discrete"


# -- 0. typing that generalises -----------------------------------------------------------------
def test_numeric_columns_score_numbers_they_have_not_seen(tmp_path):
    rng = np.random.default_rng(0)
    # 11 distinct floats in 11 rows, and a column that is 0 in most rows (issue #20, finding 0).
    a = rng.normal(10, 2, 11).round(4)
    b = np.where(rng.random(11) < 0.7, 0.0, rng.random(11).round(5))
    train = tmp_path / "train.csv"
    train.write_text("a,b\n" + "".join(f"{x},{y}\n" for x, y in zip(a, b)))
    codec = ColumnCodec.from_file(train)
    assert [c.kind for c in codec.columns] == ["continuous", "continuous"]
    held = tmp_path / "held.csv"
    held.write_text("a,b\n11.1479,0.12982\n3.5,0\n")
    x = load_dataset(held, columns=codec)
    torch.testing.assert_close(x, torch.tensor([[11.1479, 0.12982], [3.5, 0.0]]))
    # A discrete column scores a value between its grid points as the bin that holds it.
    d = ColumnCodec.detect(read_table_from([[k % 5] for k in range(40)]))
    y, corr = d.dequantise(torch.tensor([[2.3], [7.0]]), torch.Generator().manual_seed(0))
    assert abs(float(y[0, 0]) - 2.0) <= 0.5 and abs(float(y[1, 0]) - 7.0) <= 0.5
    torch.testing.assert_close(corr, torch.zeros(2, dtype=torch.float64))


# -- 10. columns by header, paths as given, infinite numbers -----------------------------------
def test_a_file_with_the_columns_in_another_order_is_matched_by_header(tmp_path):
    codec = ColumnCodec.from_file(DATA / "penguins.csv")
    names, rows, _ = read_r_table("penguins")
    order = [7, 0, 5, 2, 1, 6, 4, 3]  # year, species, body mass, …; no rownames column
    complete = [r for r in rows if None not in r][:20]
    p = write_r_csv(tmp_path / "shuffled.csv", [names[j] for j in order],
                    [[r[j] for j in order] for r in complete])  # fmt: skip
    p.write_text("\n".join(line.split(",", 1)[1] for line in p.read_text().splitlines()) + "\n")
    x = codec.encode(read_table(p))
    full = codec.encode(read_table(DATA / "penguins.csv"))
    keep = ~full.isnan().any(1)
    torch.testing.assert_close(x, full[keep][:20])
    q = tmp_path / "wrong.csv"
    q.write_text("species,island,bill\nAdelie,Dream,3\n")
    with pytest.raises(ValueError, match=r"do not match the run's .*missing 'bill_length_mm'"):
        codec.encode(read_table(q))


def test_errors_name_the_path_as_given_and_the_infinite_cell(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "t.csv").write_text("a,b\n1,2\n3,inf\n4,5\n")
    with pytest.raises(ValueError) as err:
        read_table((tmp_path / "sub" / "t.csv").resolve())  # a run records absolute paths
    assert str(err.value).startswith("sub/t.csv: row 3, column 2 ('b') holds 'inf', an infinite")
    with pytest.raises(FileNotFoundError, match=r"^data file not found: sub/none\.csv$"):
        read_table(tmp_path / "sub" / "none.csv")
    np.save(tmp_path / "sub" / "a.npy", np.array([[1.0, 2.0], [np.inf, 1.0]]))
    with pytest.raises(ValueError, match=r"^sub/a\.npy: row 2, column 1 holds 'inf'"):
        read_table("sub/a.npy")


# -- 12. Parquet and gzip-compressed CSV -------------------------------------------------------
def test_gzip_csv_and_parquet_read_like_the_csv(tmp_path):
    csv_path = DATA / "penguins.csv"
    gz = tmp_path / "penguins.csv.gz"
    with open(csv_path, "rb") as f, gzip.open(gz, "wb") as g:
        shutil.copyfileobj(f, g)
    plain, packed = ColumnCodec.from_file(csv_path), ColumnCodec.from_file(gz)
    assert packed.to_config() == plain.to_config()
    torch.testing.assert_close(
        load_dataset(gz, columns=packed, drop_missing=True),
        load_dataset(csv_path, columns=plain, drop_missing=True),
    )
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    frame = pd.read_csv(csv_path)  # NA → NaN/None, strings as objects
    frame.to_parquet(tmp_path / "penguins.parquet")
    parquet = ColumnCodec.from_file(tmp_path / "penguins.parquet")
    assert parquet.to_config() == plain.to_config()
    torch.testing.assert_close(
        load_dataset(tmp_path / "penguins.parquet", columns=parquet, drop_missing=True),
        load_dataset(csv_path, columns=plain, drop_missing=True),
    )
    numeric = tmp_path / "n.parquet"
    pd.DataFrame({"a": [1.0, 2.0, 3.5], "b": [1, 2, 3]}).to_parquet(numeric)
    torch.testing.assert_close(load_table(numeric), torch.tensor([[1, 1], [2, 2], [3.5, 3]]))


def test_row_names_that_no_span_rule_recognises_are_left_out_when_the_header_marks_them(tmp_path):
    """R's row names are often labels such as 231655, 86582 (ISLR's Wage): distinct integers
    spanning far more than the rows.  A first column headed "" (write.csv, to_csv) or rownames
    holding a distinct value per row is the rows' names; the same column under a real name, or
    with a repeated value, is modelled."""
    ids = [231655 + 9173 * i for i in range(12)]
    body = "".join(f'"{i}",{30 + v % 5},{2 * v % 7}\n' for i, v in zip(ids, range(12)))
    for head in ('"",', '"rownames",', "Unnamed: 0,"):
        path = tmp_path / "wage.csv"
        path.write_text(head + '"age","grade"\n' + body)
        codec = ColumnCodec.from_file(path)
        assert _kinds(codec)["age"] == "discrete" and len(codec.names) == 2, head
        (excluded,) = [c for c in codec.all_columns if c.kind == "excluded"]
        assert "the rows' names" in excluded.reason
    path.write_text('"customer","age","grade"\n' + body)
    assert _kinds(ColumnCodec.from_file(path))["customer"] != "excluded"
    repeated = body.replace(f'"{ids[1]}"', f'"{ids[0]}"')
    path.write_text('"",' + '"age","grade"\n' + repeated)
    assert _kinds(ColumnCodec.from_file(path))["x1"] != "excluded"
    path.write_text('"",' + '"age","grade"\n' + body)
    assert _kinds(ColumnCodec.from_file(path))["x1"] == "excluded"
    assert _kinds(ColumnCodec.from_file(path, keep="x1"))["x1"] == "discrete"
