"""evaluate's verdict (issue #20 item 6): each figure in standardised units for the model, a BIC
Gaussian mixture fitted on the same training rows and the training rows themselves, judged by
paired standard errors; the figures pinned to the public metrics they are made of, the wording of
a clearly better and a clearly worse model, train-on-synthetic-test-on-real, and the CLI."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from scorematch.cli import cli
from scorematch.data import Standardizer
from scorematch.metrics import coverage, energy_distance, wasserstein1
from scorematch.runs import judge

F64 = torch.float64


def _unit(train: torch.Tensor):
    """The verdict's comparison units for numeric columns: centred, divided by the training sd."""
    return lambda x: (x - train.mean(0)) / train.std(0, correction=0)


def _gower(train: torch.Tensor):
    lo, hi = train.min(0).values, train.max(0).values
    return lambda x: (x - lo) / (hi - lo)


@pytest.fixture(scope="module")
def uniform_square():
    """Uniform rows on the unit square, and a model that draws exactly from that law (its log
    density is 0): a Gaussian mixture can only approximate the square's edges."""
    g = torch.Generator().manual_seed(0)
    train = torch.rand(1500, 2, generator=g, dtype=F64)
    test = torch.rand(1000, 2, generator=g, dtype=F64)
    samples = torch.rand(1500, 2, generator=g, dtype=F64)
    lp = torch.zeros(1000, dtype=F64)
    verdict = judge(samples, train, test, standardizer=Standardizer.fit(train), log_prob=lp)
    return train, test, samples, verdict


def test_the_figures_are_the_public_metrics_in_standardised_units(uniform_square):
    train, test, samples, v = uniform_square
    unit, gower = _unit(train), _gower(train)
    assert (v.rows, v.samples, v.mixture_rows) == (1000, 1500, 1500)
    assert v.figure("nll").model == 0.0 and v.figure("nll").floor is None
    # 1000 held-out rows against 1500 samples: one copy each, the first 1000 samples.
    want = wasserstein1(unit(test), unit(samples[:1000]))
    assert v.figure("wasserstein1").model == pytest.approx(float(want), rel=1e-12)
    want = energy_distance(unit(samples), unit(test))  # the unbiased U-statistic
    # Terms of size ~1 summed two ways (cdist's matrix-product distances): 1e-10 absolute.
    assert v.figure("energy_distance").model == pytest.approx(float(want), abs=1e-10)
    want = coverage(gower(test), gower(samples))
    assert v.figure("coverage").model == pytest.approx(float(want), rel=1e-12)
    for f in v.figures:  # the paired difference is the difference of the figures
        assert f.difference == pytest.approx(f.model - f.mixture, rel=1e-9, abs=1e-12)
        assert f.stderr > 0


def test_a_clearly_better_model_is_called_better(uniform_square):
    *_, v = uniform_square
    for key in ("nll", "wasserstein1"):
        f = v.figure(key)
        assert f.verdict == "better" and f.difference < -2 * f.stderr
        assert f.sentence.startswith(f"{f.label}: better than the mixture (model − mixture -")
    assert v.figure("nll").mixture > 0.05  # the true NLL is 0; the mixture's KL shows
    assert v.summary.startswith(
        "the model is better than a Gaussian mixture fitted on the same training rows (better "
        "on held-out NLL (nats/row), Wasserstein-1"
    )
    record = v.to_dict()
    assert record["summary"] == v.summary
    assert record["figures"]["nll"]["verdict"] == "better"


def test_a_clearly_worse_model_is_called_worse():
    """Gaussian rows; the model's samples and density are shifted by one standard deviation."""
    g = torch.Generator().manual_seed(1)
    train = torch.randn(1500, 2, generator=g, dtype=F64)
    test = torch.randn(1000, 2, generator=g, dtype=F64)
    shift = torch.tensor([1.0, 0.0], dtype=F64)
    samples = torch.randn(1500, 2, generator=g, dtype=F64) + shift
    lp = -0.5 * ((test - shift) ** 2).sum(1) - math.log(2 * math.pi)
    v = judge(samples, train, test, standardizer=Standardizer.fit(train), log_prob=lp)
    assert v.mixture_components == 1
    # A one-component mixture is the fitted Gaussian: its NLL is the exact one's, ~ 1 + log 2π,
    # and the shift costs ‖c‖²/2 = 0.5 nats/row on average.
    nll = v.figure("nll")
    assert nll.difference == pytest.approx(0.5, abs=3 * nll.stderr)
    for f in v.figures:
        assert f.verdict == "worse", f.sentence
        assert f"{f.label}: worse than the mixture" in f.sentence
    assert v.figure("coverage").sentence.endswith("higher is better); real training rows reach "
                                                   f"{v.figure('coverage').floor:.4g}")  # fmt: skip
    assert v.summary == (
        "the model is worse than a Gaussian mixture fitted on the same training rows (worse on "
        "held-out NLL (nats/row), Wasserstein-1, energy distance, coverage; 2 paired standard "
        "errors decide)"
    )


def test_train_on_synthetic_test_on_real():
    """y = 2x exactly: rows that keep the relation predict y (R² near 1, as the training rows
    and the mixture do); rows with y shuffled against x predict nothing (R² near 0 or below)."""
    g = torch.Generator().manual_seed(2)

    def rows(n: int) -> torch.Tensor:
        x = torch.randn(n, generator=g, dtype=F64)
        return torch.stack([x, 2 * x], 1)

    train, test, faithful = rows(1500), rows(500), rows(1500)
    broken = faithful.clone()
    broken[:, 1] = broken[torch.randperm(1500, generator=g), 1]
    std = Standardizer.fit(train)
    good = judge(faithful, train, test, standardizer=std, target="x2").figure("tstr")
    bad = judge(broken, train, test, standardizer=std, target="2").figure("tstr")
    assert good.label == "train on synthetic, test on real: R² of 'x2'"
    assert min(good.model, good.floor, good.mixture) > 0.98 and good.verdict == "level"
    assert bad.model < 0.05 and bad.floor == good.floor and bad.verdict == "worse"
    with pytest.raises(ValueError, match="--target"):
        judge(faithful, train, test, standardizer=std, target="nosuch")


# -- the command --------------------------------------------------------------------------------
TINY = ["--steps", "30", "--width", "16", "--depth", "1", "--batch-size", "32"]
TINY += ["--sample-every", "0", "--no-progress"]


def _invoke(*args, code: int = 0) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result.output


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("judged")
    rng = np.random.default_rng(3)
    n = 150
    colour = rng.choice(["red", "green", "blue"], n)
    x = rng.normal(10, 2, n)
    y = x + (colour == "red") * 4 + rng.normal(0, 0.5, n)
    with open(folder / "t.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["colour", "x", "y"])
        w.writerows(zip(colour, x, y))
    out = folder / "run"
    _invoke("train", "--data", folder / "t.csv", "--out", out, *TINY)
    return out


def test_evaluate_prints_the_verdict_and_writes_it(table_run):
    out = table_run
    text = _invoke("evaluate", table_run, "-n", "200", "--target", "colour", "--no-progress")
    saved = json.loads((out / "evaluation.json").read_text())["verdict"]
    assert saved["target"] == "colour" and saved["tstr_metric"] == "macro F1"
    assert set(saved["figures"]) == {"nll", "wasserstein1", "energy_distance", "coverage", "tstr"}
    assert 0 <= saved["figures"]["tstr"]["model"] <= 1
    assert saved["summary"].startswith("the model is ")
    assert f"verdict: {saved['summary']}" in text.splitlines()
    assert "train synthetic, test real: macro F1" in text
    assert "memorisation ratio" in saved["memorisation"]
    text = _invoke("evaluate", out, "-n", "100", "--no-nll", "--no-verdict", "--no-progress")
    assert "verdict:" not in text and "compared in standardised units" not in text
    assert json.loads((out / "evaluation.json").read_text())["verdict"] is None


def test_evaluate_target_mistakes_are_one_line_errors(table_run):
    text = _invoke("evaluate", table_run, "--target", "nosuch", "--no-progress", code=1)
    assert text.startswith("Error: ") and "nosuch" in text and len(text.splitlines()) == 1
    text = _invoke("evaluate", table_run, "--target", "y", "--no-verdict", "--no-progress", code=1)
    assert text.startswith("Error: ") and "--target" in text
