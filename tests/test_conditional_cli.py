"""Conditional samples from the command line (issue #21): ``sample --given`` holds the given
columns at their values and draws the others from a mask-conditional run; ``train --labels`` (a
table's column, an image folder's class sub-folders, the digits' digit) and ``sample --label
--guidance`` draw one class; mistakes end with one clear line."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import yaml
from _rcsv import DATA
from click.testing import CliRunner
from PIL import Image

from scorematch.cli import cli

TINY = ["--steps", "30", "--width", "16", "--depth", "1", "--batch-size", "32"]
TINY += ["--sample-every", "0", "--no-progress"]
PENGUINS = DATA / "penguins.csv"


def invoke(*args, ok: bool = True):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def one_line_error(result, text: str) -> None:
    assert result.exit_code != 0
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: ") and text in last, result.output


def read(path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.open()))


@pytest.fixture(scope="module")
def gappy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("given") / "run"
    invoke("train", "--data", PENGUINS, "--out", out, *TINY)
    return out


@pytest.fixture(scope="module")
def labelled_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("labels") / "run"
    text = invoke("train", "--data", PENGUINS, "--out", out, "--drop-missing", "--labels",
                  "species", "--steps", "300", "--width", "32", "--depth", "2", "--batch-size",
                  "64", "--sample-every", "0", "--no-progress").output  # fmt: skip
    return out, text


def test_sample_given_holds_the_given_cells_and_draws_the_others(gappy_run, tmp_path):
    out = tmp_path / "g.csv"
    given = "species=Gentoo,bill_length_mm=45.5,sex=female"
    text = invoke("sample", gappy_run, "-n", "40", "--out", out, "--given", given, "--no-progress")
    assert text.output.startswith(f"wrote 40 samples given {given} to {out} (")
    rows = read(out)
    assert len(rows) == 40 and list(rows[0]) == [
        "species", "island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm",
        "body_mass_g", "sex", "year",
    ]  # fmt: skip
    assert {(r["species"], r["bill_length_mm"], r["sex"]) for r in rows} == {
        ("Gentoo", "45.5", "female")
    }
    assert len({r["body_mass_g"] for r in rows}) > 5  # the others are drawn, not fixed
    assert {r["island"] for r in rows} <= {"Biscoe", "Dream", "Torgersen"}
    again = tmp_path / "again.csv"
    invoke("sample", gappy_run, "-n", "40", "--out", again, "--given", given, "--no-progress")
    assert again.read_bytes() == out.read_bytes()  # the same seed, the same samples
    png = tmp_path / "g.png"
    invoke("sample", gappy_run, "-n", "40", "--out", png, "--given", given, "--no-progress")
    assert png.stat().st_size > 0


def test_sample_given_mistakes(gappy_run, labelled_run, tmp_path):
    out = tmp_path / "g.csv"
    cases = [
        ("specie=Gentoo", "--given: no column 'specie'; the run's columns are species, island,"),
        ("species=Dodo", "--given: 'Dodo' is not a label of column 'species' (Adelie, Chinstrap"),
        ("bill_length_mm=long", "--given: column 'bill_length_mm' holds numbers, not 'long'"),
        ("year", "--given: expected col=value, got 'year'"),
    ]
    for given, message in cases:
        one_line_error(invoke("sample", gappy_run, "-n", "4", "--out", out, "--given", given,
                              ok=False), message)  # fmt: skip
    assert not out.exists()
    # A run whose network is not mask-conditional names the way on.
    one_line_error(
        invoke("sample", labelled_run[0], "-n", "4", "--out", out, "--given", "year=2008",
               ok=False),
        "this run's network is not mask-conditional: train it again with --conditional",
    )  # fmt: skip


def test_table_labels_train_a_class_conditional_network_and_sample_each_class(
    labelled_run, tmp_path
):
    out, text = labelled_run
    assert (
        "labels from column 'species': 3 classes (Adelie, Chinstrap, Gentoo); label dropout 0.1 "
        "(`sample --label NAME --guidance W`)"
    ) in text
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["data"]["labels"] == {"source": "column", "column": "species",
                                        "classes": ["Adelie", "Chinstrap", "Gentoo"]}  # fmt: skip
    assert config["model"]["num_classes"] == 3 and config["objective"]["label_dropout"] == 0.1
    # The class means of the data, against each class's samples (guided with w = 1).
    data = [r for r in read(PENGUINS) if "NA" not in r.values()]
    for name in ("Adelie", "Gentoo"):
        true = np.mean([float(r["flipper_length_mm"]) for r in data if r["species"] == name])
        path = tmp_path / f"{name}.csv"
        said = invoke("sample", out, "-n", "400", "--out", path, "--label", name, "--guidance",
                      "1", "--no-progress").output  # fmt: skip
        assert said.startswith(f"wrote 400 samples of class {name}, guidance 1 to {path}")
        rows = read(path)
        assert "species" not in rows[0]  # the label is conditioned on, not modelled
        drawn = np.mean([float(r["flipper_length_mm"]) for r in rows])
        assert abs(drawn - true) < 4, (name, drawn, true)  # the classes' means are 27 mm apart
    bad = tmp_path / "x.csv"
    one_line_error(invoke("sample", out, "-n", "4", "--out", bad, "--label", "Dodo", ok=False),
                   "unknown label 'Dodo': the run's 3 classes are Adelie, Chinstrap, Gentoo")  # fmt: skip
    one_line_error(invoke("sample", out, "-n", "4", "--out", bad, "--guidance", "2", ok=False),
                   "--guidance weighs a class: give it with --label NAME")  # fmt: skip
    assert not bad.exists()


def test_label_mistakes_at_train_and_sample(gappy_run, tmp_path):
    one_line_error(invoke("sample", gappy_run, "-n", "4", "--out", tmp_path / "x.csv", "--label",
                          "Gentoo", ok=False),
                   "--label: this run was trained without labels (train --labels)")  # fmt: skip
    one_line_error(invoke("train", "--data", PENGUINS, "--out", tmp_path / "r", "--labels",
                          "species", "--objective", "ssm", "--drop-missing", *TINY, ok=False),
                   "--labels trains a class-conditional network with a time-conditional")  # fmt: skip
    one_line_error(invoke("train", "--data", "moons", "--out", tmp_path / "r", "--labels",
                          "class", *TINY, ok=False),
                   "--labels applies to tables, image folders and digits, not to 'moons'")  # fmt: skip
    assert not (tmp_path / "r").exists()


def _images(root, classes: dict[str, int], per_class: int = 12):
    for name, value in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("L", (8, 8), value + i).save(root / name / f"{i}.png")
    return root


def test_image_folder_classes_are_labels_and_guidance_draws_each(tmp_path):
    folder = _images(tmp_path / "imgs", {"dark": 40, "light": 210})
    out = tmp_path / "run"
    text = invoke("train", "--data", folder, "--labels", "class", "--out", out, "--model", "mlp",
                  "--width", "64", "--depth", "2", "--steps", "1000", "--batch-size", "16",
                  "--ema-half-life", "20", "--lr", "3e-3", "--sample-every", "0",
                  "--no-progress").output  # fmt: skip
    assert "labels from the class sub-folders: 2 classes (dark, light); label dropout 0.1" in text
    # Pixels of the two classes: 0.16-0.20 and 0.82-0.87; each drawn image is one or the other.
    for name, dark_share in (("dark", 1.0), ("light", 0.0)):
        path = tmp_path / f"{name}.npy"
        invoke("sample", out, "-n", "32", "--out", path, "--label", name, "--guidance", "2",
               "--no-progress")  # fmt: skip
        means = np.load(path).mean((1, 2, 3))
        assert abs(float((means < 0.5).mean()) - dark_share) <= 0.1, (name, means)
    # Images lying outside any class folder: one line.
    Image.new("L", (8, 8), 0).save(folder / "loose.png")
    one_line_error(invoke("train", "--data", folder, "--labels", "class", "--out",
                          tmp_path / "r2", *TINY, ok=False),
                   "--labels class: 1 image(s) lie directly in")  # fmt: skip
    one_line_error(invoke("train", "--data", folder, "--labels", "species", "--out",
                          tmp_path / "r2", *TINY, ok=False),
                   "--labels 'species': image data take --labels class")  # fmt: skip


def test_digits_carry_their_labels(tmp_path):
    out = tmp_path / "d"
    invoke("train", "--data", "digits", "--n", "40", "--labels", "class", "--out", out, "--steps",
           "2", "--channels", "8", "--batch-size", "8", "--sample-every", "0", "--no-progress")  # fmt: skip
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["data"]["labels"]["source"] == "digits"
    assert config["data"]["labels"]["classes"] == [str(d) for d in range(10)]
    assert config["model"]["num_classes"] == 10
    path = tmp_path / "s.npy"
    invoke("sample", out, "-n", "3", "--steps", "2", "--label", "7", "--guidance", "2", "--out",
           path, "--no-progress")  # fmt: skip
    assert np.load(path).shape == (3, 1, 8, 8)


def test_inpaint_fills_the_region_from_the_known_pixels(tmp_path):
    folder = _images(tmp_path / "imgs", {"dark": 40, "light": 210})
    out, plain = tmp_path / "run", tmp_path / "plain"
    text = invoke("train", "--data", folder, "--conditional", "--out", out, "--model", "mlp",
                  "--width", "64", "--depth", "2", "--steps", "1000", "--batch-size", "16",
                  "--ema-half-life", "20", "--lr", "3e-3", "--sample-every", "0",
                  "--no-progress").output  # fmt: skip
    assert "network: mask-conditional — it fills in a region of images" in text
    filled = tmp_path / "filled"
    said = invoke("inpaint", out, folder, "--mask", "left", "--out", filled, "--no-progress")
    assert said.output.startswith(
        f"filled 32 pixels of each of 24 images of {folder} with the run's mask-conditional "
        f"network (its conditional score of the unknown entries); wrote them to {filled}, and "
        f"{filled / 'comparison.png'}"
    )
    assert (filled / "comparison.png").is_file()
    for name, value, other in (("dark", 40, 210), ("light", 210, 40)):
        means = []
        for i in range(12):
            before = np.asarray(Image.open(folder / name / f"{i}.png"))
            after = np.asarray(Image.open(filled / name / f"{i}.png"))
            assert after.shape == (8, 8)
            assert (after[:, 4:] == before[:, 4:]).all()  # the known half, pixel for pixel
            means.append(after[:, :4].mean())
        # The left half follows the right one: each image's fill is of its own class (the two
        # classes' pixels are 40-51 and 210-221), on average within 15 levels of it.
        assert all(abs(m - value) < abs(m - other) for m in means), (name, means)
        assert abs(np.mean(means) - (value + 5.5)) < 15, (name, means)
    again = tmp_path / "again"
    invoke("inpaint", out, folder, "--mask", "left", "--out", again, "--no-progress")
    assert (again / "dark" / "3.png").read_bytes() == (filled / "dark" / "3.png").read_bytes()
    # Mistakes: one line each.
    hole = tmp_path / "hole.png"
    Image.new("L", (16, 16), 255).save(hole)
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    for mask, message in (
        (
            "middle",
            "--mask middle: neither one of left, right, top, bottom, centre nor an existing",
        ),
        (hole, "16×16 pixels; the run's images are 8×8"),
        (broken, "cannot read it as an image"),
    ):
        one_line_error(invoke("inpaint", out, folder, "--mask", mask, "--out", tmp_path / "x",
                              ok=False), f"{message}")  # fmt: skip
    # A run whose network is not mask-conditional: the way on, or replacement when asked.
    invoke("train", "--data", folder, "--out", plain, "--model", "mlp", "--width", "16",
           "--depth", "1", "--steps", "20", "--sample-every", "0", "--no-progress")  # fmt: skip
    one_line_error(invoke("inpaint", plain, folder, "--mask", "top", "--out", tmp_path / "y",
                          ok=False), "this run's network is not mask-conditional")  # fmt: skip
    said = invoke("inpaint", plain, folder, "--mask", "centre", "--method", "replacement",
                  "--out", tmp_path / "y", "--no-progress").output  # fmt: skip
    assert "filled 16 pixels of each of 24 images" in said and "replacement" in said
    one_line_error(invoke("impute", out, PENGUINS, "--out", tmp_path / "z.csv", ok=False),
                   "this run models images: fill in a region with `scorematch inpaint")  # fmt: skip
