"""A real R export through the command line (issues #20, #21): `train` trains on every row of a
table with gaps (saying how many cells are missing per column), refuses --no-conditional there
with the way on, and trains on the complete rows with --drop-missing, leaves the row numbers out,
one-hot encodes species and island, samples take only real labels (no "NA"), `likelihood` reads a
file with its columns in another order, and `datasets` shows the decisions for a table and
previews an image folder."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import yaml
from _rcsv import DATA, read_r_table, write_r_csv
from click.testing import CliRunner
from PIL import Image

from scorematch.cli import cli
from scorematch.runs import load_run

TINY = ["--steps", "30", "--width", "16", "--depth", "1", "--batch-size", "32"]
TINY += ["--sample-every", "0", "--no-progress"]


def invoke(*args, ok: bool = True):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def penguins_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("penguins") / "run"
    text = invoke("train", "--data", DATA / "penguins.csv", "--out", out, "--drop-missing", *TINY)
    return out, text.output


def test_train_keeps_gaps_says_them_per_column_and_refuses_no_conditional(tmp_path):
    # Issue #21: rows with gaps train (the masked objective), counted per column; none is dropped.
    text = invoke("train", "--data", DATA / "penguins.csv", "--out", tmp_path / "r", *TINY).output
    line = next(x for x in text.splitlines() if x.startswith("missing cells:"))
    assert line.startswith("missing cells: 11 of 279 training rows have gaps (sex 11, ")
    assert "bill_length_mm 2" in line and "--drop-missing" in line
    assert "network: mask-conditional" in text
    data = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())["data"]
    assert data["n_train"] + data["n_test"] == 344 and data["gaps"]["rows"] == 11
    assert data["gaps"]["cells"] == {
        "bill_length_mm": 2,
        "bill_depth_mm": 2,
        "flipper_length_mm": 2,
        "body_mass_g": 2,
        "sex": 11,
    }
    # The held-out rows are complete (the likelihood scores them): rows with gaps train.
    run = load_run(tmp_path / "r")
    assert run.data.test.isfinite().all() and int(run.data.train.isnan().any(1).sum()) == 11
    result = invoke("train", "--data", DATA / "penguins.csv", "--out", tmp_path / "s",
                    "--no-conditional", *TINY, ok=False)  # fmt: skip
    assert result.exit_code == 1 and not (tmp_path / "s").exists()
    assert result.output.strip().endswith(
        "11 training rows have missing cells: training on them needs a mask-conditional network "
        "(leave out --no-conditional), or pass --drop-missing to train on the complete rows only"
    )


def test_an_r_export_trains_without_its_row_numbers_and_samples_real_labels(penguins_run, tmp_path):
    out, text = penguins_run
    assert "column 'rownames' is not modelled: an identifier" in text
    assert "11 of 344 rows have empty cells and are dropped" in text
    config = yaml.safe_load((out / "config.yaml").read_text())
    data = config["data"]
    assert data["n_train"] + data["n_test"] == 333 and data["drop_missing"] is True
    kinds = {c["name"]: c["kind"] for c in data["columns"]}
    assert kinds["rownames"] == "excluded" and kinds["species"] == "categorical"
    assert data["shape"] == [3 + 3 + 4 + 1 + 1]  # species, island one-hot; 4 numbers, sex, year
    invoke("sample", out, "-n", "400", "--out", tmp_path / "s.csv", "--no-progress")
    rows = list(csv.DictReader(open(tmp_path / "s.csv")))
    assert "rownames" not in rows[0] and len(rows) == 400
    assert {r["species"] for r in rows} <= {"Adelie", "Chinstrap", "Gentoo"}
    assert {r["sex"] for r in rows} <= {"female", "male"}  # on main 4.8 % were "NA"
    assert all(r["bill_length_mm"] != "NA" for r in rows)
    assert {int(r["year"]) for r in rows} <= {2007, 2008, 2009}
    run = load_run(out)
    assert run.shape == (12,) and run.data_shape == (8,)
    x = run.sample(50, seed=1).x
    assert x.shape == (50, 8) and set(x[:, 0].tolist()) <= {0.0, 1.0, 2.0}


def test_likelihood_matches_a_files_columns_by_header(penguins_run, tmp_path):
    out, _ = penguins_run
    names, rows, _ = read_r_table("penguins")
    complete = [r for r in rows if None not in r][:30]
    order = [7, 6, 5, 4, 3, 2, 1, 0]  # reversed, and no rownames column
    p = write_r_csv(tmp_path / "rev.csv", [names[j] for j in order],
                    [[r[j] for j in order] for r in complete])  # fmt: skip
    q = write_r_csv(tmp_path / "same.csv", names, complete)
    invoke("likelihood", out, p, "--out", tmp_path / "a.npy", "--no-progress")
    invoke("likelihood", out, q, "--out", tmp_path / "b.npy", "--no-progress")
    a, b = np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")
    assert a.shape == (30,) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)


def test_datasets_shows_the_decisions_for_a_table_and_previews_a_folder(tmp_path):
    text = invoke("datasets", DATA / "penguins.csv").output
    assert "(344 rows, 11 with empty cells)" in text
    line = next(line for line in text.splitlines() if "rownames" in line and "excluded" in line)
    assert "an identifier: integers 1 … 344" in line
    assert "11 missing" in next(line for line in text.splitlines() if " sex " in line)
    assert "one-hot, 3 coordinates" in next(line for line in text.splitlines() if "species" in line)
    kept = invoke("datasets", DATA / "mtcars.csv", "--keep", "rownames").output
    assert "32 labels" in kept and "excluded" not in kept
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.new("L", (8, 8), 10 * i).save(folder / f"{i}.png")
    Image.new("RGB", (12, 12), (1, 2, 3)).save(folder / "c.png")
    (folder / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    shown = invoke("datasets", folder).output
    assert "4 readable image(s)" in shown and "sizes: 3 8×8, 1 12×12" in shown
    assert "--image-size" in shown and "skipped 1 of 5 image files" in shown


def test_likelihood_of_a_file_with_gaps_is_refused_with_a_count_or_drops_them(penguins_run):
    out, _ = penguins_run
    result = invoke("likelihood", out, DATA / "penguins.csv", "--no-progress", ok=False)
    assert result.exit_code == 1 and result.output.strip().endswith(
        "11 of 344 rows have empty cells (first: row 5, bill_length_mm); pass --drop-missing to "
        "score the 333 complete rows"
    )
    text = invoke("likelihood", out, DATA / "penguins.csv", "--drop-missing", "--no-progress")
    assert "penguins.csv: 333 samples" in text.output
