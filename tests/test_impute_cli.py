"""``scorematch impute`` on a real R export with gaps (issue #21): a run trained on the table as it
is fills in its missing cells; every written byte but the filled cells comes back as it was; point
imputations are the mean (numbers) or the most frequent (categories) of the same draws ``--draws``
writes; the same seed gives the same file; mistakes end with one clear line and write nothing."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter

import pytest
from _rcsv import DATA
from click.testing import CliRunner

from scorematch.cli import cli

TINY = ["--steps", "30", "--width", "16", "--depth", "1", "--batch-size", "32"]
TINY += ["--sample-every", "0", "--no-progress"]
PENGUINS = DATA / "penguins.csv"
LINES = PENGUINS.read_text().splitlines()
# The 11 rows with gaps (0-based data rows): 2 rows miss five cells, 9 miss sex only: 19 cells.
GAPPY = [i for i, line in enumerate(LINES[1:]) if ",NA" in line]


def invoke(*args, ok: bool = True):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def cells(line: str) -> list[str]:
    return next(csv.reader(io.StringIO(line)))


def fields(line: str) -> list[str]:
    """The raw fields of one line as written (no comma inside quotes in penguins.csv)."""
    return line.split(",")


@pytest.fixture(scope="module")
def gappy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("impute") / "run"
    invoke("train", "--data", PENGUINS, "--out", out, *TINY)
    return out


@pytest.fixture(scope="module")
def complete_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("impute") / "complete"
    invoke("train", "--data", PENGUINS, "--out", out, "--drop-missing", *TINY)
    return out


@pytest.fixture(scope="module")
def filled(gappy_run, tmp_path_factory):
    folder = tmp_path_factory.mktemp("filled")
    out, summary = folder / "filled.csv", folder / "cells.csv"
    text = invoke("impute", gappy_run, PENGUINS, "--out", out, "--summary", summary,
                  "--no-progress").output  # fmt: skip
    return out, summary, text


def test_gaps_filled_every_other_byte_as_written(filled):
    out, _, text = filled
    assert len(GAPPY) == 11
    assert text.splitlines()[0] == (
        f"filled 19 missing cells in 11 of 344 rows of {PENGUINS} (mean of 50 draws per number, "
        "most frequent draw per category) with the run's mask-conditional network (its "
        f"conditional score of the unknown entries); wrote {out}"
    )
    got = out.read_text().splitlines()
    assert len(got) == len(LINES) and got[0] == LINES[0]
    for i, (before, after) in enumerate(zip(LINES[1:], got[1:])):
        if i not in GAPPY:
            assert after == before  # a complete row's line, byte for byte
            continue
        old, new = fields(before), fields(after)
        assert len(new) == len(old) and "NA" not in new
        for a, b in zip(old, new):
            if a != "NA":
                assert b == a  # a known cell as written (quotes included)
        row, filled_cells = cells(after), {j for j, a in enumerate(old) if a == "NA"}
        assert row[7] in ("male", "female") and new[7].startswith('"')  # sex: a label, quoted
        if 3 in filled_cells:  # bill_length_mm: continuous, written with 1 decimal as the file
            whole, _, decimals = row[3].partition(".")
            assert whole.isdigit() and len(decimals) == 1
            assert float(row[4]) == round(float(row[4]), 1)  # bill_depth_mm: its 0.1 grid
            assert row[5].isdigit() and row[6].isdigit() and int(row[6]) % 25 == 0  # integers


def test_point_imputation_is_the_mean_and_mode_of_the_draws_and_the_seed_fixes_it(
    gappy_run, filled, tmp_path
):
    out, summary, text = filled
    assert f"wrote each filled cell's estimate and 90 % interval to {summary}" in text
    draws_csv = tmp_path / "draws.csv"
    invoke("impute", gappy_run, PENGUINS, "--out", draws_csv, "--draws", "50", "--no-progress")
    draws = draws_csv.read_text().splitlines()
    assert draws[0] == '"draw",' + LINES[0]  # quoted as the header is
    assert len(draws) == 1 + 50 * 344
    by_row = [draws[1 + 50 * i : 1 + 50 * (i + 1)] for i in range(344)]
    for i, lines in enumerate(by_row):
        assert [line.split(",", 1)[0] for line in lines] == [str(d) for d in range(50)]
        if i not in GAPPY:
            assert {line.split(",", 1)[1] for line in lines} == {LINES[1 + i]}
    # The summary holds every filled cell once: its estimate is the mean of the same 50 draws
    # (rounded to 0.1 each as the file writes them) and lies within its 90 % interval.
    rows = list(csv.DictReader(summary.open()))
    assert len(rows) == 19 and {r["column"] for r in rows} == {
        "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex"
    }  # fmt: skip
    filled_rows = [cells(line) for line in out.read_text().splitlines()[1:]]
    names = cells(LINES[0])
    for r in rows:
        i, j = int(r["row"]) - 1, names.index(r["column"])
        values = [cells(line.split(",", 1)[1])[j] for line in by_row[i]]
        if r["column"] == "sex":
            counts = Counter(values)
            assert filled_rows[i][j] == r["estimate"] and counts[r["estimate"]] == max(
                counts.values()
            )
            assert float(r["share"]) == pytest.approx(counts[r["estimate"]] / 50)
            assert r["lower_5"] == r["upper_95"] == ""
        else:
            mean = sum(map(float, values)) / 50
            assert float(r["lower_5"]) <= float(r["estimate"]) <= float(r["upper_95"])
            if r["column"] == "bill_length_mm":  # continuous: the mean, to the file's decimals
                assert abs(mean - float(r["estimate"])) <= 0.05 + 1e-9
                assert filled_rows[i][j] == f"{float(r['estimate']):.1f}"
    # The same seed: the same file; another seed: other draws.
    again, other = tmp_path / "again.csv", tmp_path / "other.csv"
    invoke("impute", gappy_run, PENGUINS, "--out", again, "--no-progress")
    invoke("impute", gappy_run, PENGUINS, "--out", other, "--seed", "1", "--no-progress")
    assert again.read_bytes() == out.read_bytes()
    assert other.read_bytes() != out.read_bytes()


def test_a_row_without_any_known_cell_is_a_sample_and_empty_cells_are_gaps(gappy_run, tmp_path):
    # Empty cells (pandas' NaN) instead of NA, a row with every modelled cell empty.
    lines = [LINES[0], *[line.replace("NA", "") for line in LINES[1:6]], '"999",,,,,,,,']
    table = tmp_path / "t.csv"
    table.write_text("\n".join(lines) + "\n")
    out = tmp_path / "f.csv"
    text = invoke("impute", gappy_run, table, "--out", out, "--no-progress").output
    assert "filled 13 missing cells in 2 of 6 rows" in text
    assert "1 row(s) had no known cell: each got a plain sample" in text
    got = out.read_text().splitlines()
    assert got[:4] == lines[:4] and got[5] == lines[5]
    last = cells(got[6])
    assert last[0] == "999" and last[1] in ("Adelie", "Chinstrap", "Gentoo") and "" not in last


def test_mistakes_end_with_one_line_and_write_nothing(gappy_run, complete_run, tmp_path):
    out = tmp_path / "f.csv"
    result = invoke("impute", complete_run, PENGUINS, "--out", out, ok=False)
    assert result.exit_code != 0 and not out.exists()
    assert "this run's network is not mask-conditional: train it again with --conditional" in (
        result.output
    )
    short = tmp_path / "short.csv"
    short.write_text("\n".join(line.rsplit(",", 1)[0] for line in LINES[:5]) + "\n")  # no year
    result = invoke("impute", gappy_run, short, "--out", out, ok=False)
    assert result.exit_code != 0 and not out.exists()
    assert result.output.strip().splitlines()[-1].startswith("Error: ") and "year" in result.output
    result = invoke("impute", gappy_run, PENGUINS, "--out", tmp_path / "no" / "f.csv", ok=False)
    assert result.exit_code != 0 and "does not exist" in result.output
    # Replacement imputes with any time-conditional run, asked for.
    text = invoke("impute", complete_run, PENGUINS, "--out", out, "--method", "replacement",
                  "--no-progress").output  # fmt: skip
    assert "with replacement (the known entries held at their noised values; biased)" in text
    assert len(out.read_text().splitlines()) == 345


def test_evaluate_judges_a_run_trained_on_gaps(gappy_run, tmp_path):
    """The verdict's mixture and floor are fitted on the complete training rows (a regression:
    they were fitted on rows with NaN and evaluate failed with scikit-learn's error)."""
    out = tmp_path / "e.json"
    invoke("evaluate", gappy_run, "-n", 200, "--nll-rows", 20, "--json", out, "--no-progress")
    record = json.loads(out.read_text())
    assert "verdict" in record and "Gaussian mixture" in record["verdict"]["summary"]


def test_filled_integers_are_written_as_the_column_writes_them(tmp_path):
    """pandas writes an integer column with gaps as floats (41.0): the fill follows (14.0)."""
    rows = ["a,b,c"] + [f"{i % 7 + 30}.0,{i % 5}.0,{(i * 37) % 11 / 10:.2f}" for i in range(60)]
    rows[3] = "NA,2.0,0.31"
    data = tmp_path / "floats.csv"
    data.write_text("\n".join(rows) + "\n")
    run = tmp_path / "run"
    invoke("train", "--data", data, "--out", run, *TINY)
    out = tmp_path / "filled.csv"
    invoke("impute", run, data, "--out", out, "--no-progress")
    written = out.read_text().splitlines()
    assert written[:3] + written[4:] == rows[:3] + rows[4:]
    a = cells(written[3])[0]
    assert a.endswith(".0") and 29 <= float(a) <= 37, a
