"""A user's table through the run pipeline: the dequantised likelihood of discrete columns against
an exact oracle, dequantised training batches, samples on the columns' own values with their
names and labels in CSV, what `evaluate` prints for a table, the demo's verdict, labelled plots."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from scorematch import plots
from scorematch.cli import cli
from scorematch.data import ColumnCodec, Standardizer, Table
from scorematch.distributions import Gaussian
from scorematch.processes import VP
from scorematch.runs import Run, configure, load_run, paired_verdict
from scorematch.runs.build import build_loss, dequantised, dequantiser

F64 = torch.float64
TINY = ["--steps", "30", "--width", "16", "--depth", "1", "--batch-size", "32"]
TINY += ["--sample-every", "0", "--no-progress"]


def invoke(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def _oracle(mean_x, cov_x, std_mean, std_std, codec):
    """A Run whose model is the exact noised score of a Gaussian in standardised space."""
    m, s = torch.tensor(std_mean, dtype=F64), torch.tensor(std_std, dtype=F64)
    mean_x, cov_x = torch.tensor(mean_x, dtype=F64), torch.tensor(cov_x, dtype=F64)
    law_z = Gaussian((mean_x - m) / s, cov_x / (s[:, None] * s[None, :]), dtype=F64)
    process = VP()
    d = len(std_mean)
    config = {
        "objective": {"name": "diffusion", "weighting": "sigma2"},
        "data": {"kind": "vector", "shape": [d], "levels": None, "columns": codec.to_config()},
        "sampling": {"sampler": "heun", "steps": 30},
    }
    std = Standardizer("vector", (d,), m, s)
    return Run(config, law_z.score_model(process), process, std)


def test_dequantised_likelihood_is_exact_for_the_noise_it_draws():
    """Column 1 discrete (step 0.5), column 2 continuous: log P = log p_X(x̃) + log 0.5 with
    x̃₁ = x₁ + 0.5(u − ½), u the first draw of the run's generator (seeded with `seed`)."""
    grid = np.tile(np.arange(-10, 10.5, 0.5), 4)  # each value 4 times: discrete
    values = np.stack([grid, np.linspace(-3, 3, grid.size) ** 3], 1)
    codec = ColumnCodec.detect(Table(values, ["d", "c"]))
    assert [c.kind for c in codec.columns] == ["discrete", "continuous"]
    # Standardised to mean 0 and unit variances: VP's prior N(0, I) then matches p_{t_max}.
    run = _oracle([2.0, -1.0], [[4.0, 1.0], [1.0, 2.0]], [2.0, -1.0], [2.0, 2**0.5], codec)
    x = torch.tensor([[0.5, -1.0], [2.0, 0.3], [3.5, -2.0], [6.0, 1.0]], dtype=F64)
    lp, _ = run.log_likelihood(x, seed=3)
    u = torch.rand(x.shape, generator=torch.Generator().manual_seed(3), dtype=F64)
    xt = x.clone()
    xt[:, 0] += 0.5 * (u[:, 0] - 0.5)
    z = run.standardizer.transform(xt)
    exact = run.model.log_prob(z, run.process.t_min) + run.standardizer.log_abs_det()
    torch.testing.assert_close(lp, exact + math.log(0.5), rtol=0, atol=5e-4)  # ODE tol 1e-5
    # A number the column never held is scored, as the bin that holds it (0.7 is in 0.5's).
    off, _ = run.log_likelihood(torch.tensor([[0.7, 0.0]], dtype=F64), seed=3)
    on, _ = run.log_likelihood(torch.tensor([[0.5, 0.0]], dtype=F64), seed=3)
    torch.testing.assert_close(off, on, rtol=0, atol=0)


def test_dequantised_likelihood_gives_the_exact_probability_of_integer_data():
    """Integers k under a density p (N(0.3, 6²) in data units): the bin probability is
    P(k) = ∫_{k−½}^{k+½} p, the run reports E_u log p(k + u − ½) (bin width 1), and the two differ
    by the Jensen gap, here < 2e-3 nats (computed below).  Averaged over 300 draws of u, the
    reported value equals log P(k) within that gap, the ODE tolerance and 4 standard errors."""
    ks = torch.arange(-3.0, 4.0, dtype=F64)
    codec = ColumnCodec.detect(Table(np.arange(-20.0, 21.0)[:, None], ["k"]))
    run = _oracle([0.3], [[36.0]], [0.3], [6.0], codec)
    reps = 300
    lp, _ = run.log_likelihood(ks.repeat(reps)[:, None], seed=0)
    lp = lp.reshape(reps, -1)
    mean, se = lp.mean(0), lp.std(0) / math.sqrt(reps)
    # The exact bin probability and the bound's expectation by 48-point Gauss–Legendre.
    nodes, weights = (torch.from_numpy(a) for a in np.polynomial.legendre.leggauss(48))
    v = ks[:, None] + nodes[None, :] / 2  # (k, node) points in [k − ½, k + ½]
    z = (v.reshape(-1, 1) - 0.3) / 6.0
    log_p = run.model.log_prob(z, run.process.t_min).reshape(v.shape)
    log_p = log_p - math.log(6.0)  # density in data units
    log_bin = torch.logsumexp(log_p + (weights / 2).log(), 1)
    bound = (log_p * weights / 2).sum(1)
    gap = log_bin - bound
    assert (gap >= 0).all() and gap.max() < 2e-3
    assert ((mean - bound).abs() < 4 * se + 5e-4).all(), (mean - bound, se)
    assert ((mean - log_bin).abs() < gap + 4 * se + 5e-4).all()
    # A proper distribution: the bins tile the line (Σ over ±20 std is 1 up to the tails).
    every = torch.arange(-120.0, 121.0, dtype=F64)
    lp_all, _ = run.log_likelihood(every[:, None], seed=1)
    assert lp_all.exp().sum().item() == pytest.approx(1.0, abs=5e-3)


def test_training_batches_are_dequantised_afresh_with_the_trainers_generator(tmp_path):
    rng = np.random.default_rng(0)
    table = np.stack([rng.integers(0, 5, 60), rng.normal(size=60)], 1)
    np.savetxt(tmp_path / "t.csv", table, delimiter=",", header="k,x", comments="")
    config, bundle = configure({"data": str(tmp_path / "t.csv"), "width": 8, "depth": 1})
    s = bundle.standardizer.std
    widths = ColumnCodec.from_config(config["data"]["columns"]).steps() / s  # in z: w / s
    torch.testing.assert_close(widths, torch.tensor([1.0 / float(s[0]), 0.0], dtype=F64))
    seen = []
    loss = dequantised(lambda m, b, g: seen.append(b) or b.sum(), dequantiser(config))
    z = bundle.standardizer.transform(bundle.train[:16])
    loss(None, z, torch.Generator().manual_seed(4))
    loss(None, z, torch.Generator().manual_seed(4))
    loss(None, z, torch.Generator().manual_seed(5))
    u = torch.rand(z.shape, generator=torch.Generator().manual_seed(4), dtype=z.dtype)
    torch.testing.assert_close(seen[0], z + widths.to(z) * (u - 0.5))
    assert torch.equal(seen[0], seen[1]) and not torch.equal(seen[0], seen[2])
    assert torch.equal(seen[0][:, 1], z[:, 1])  # the continuous column is untouched
    # A continuous table's loss is the objective itself: nothing extra is drawn.
    np.savetxt(tmp_path / "c.csv", rng.normal(size=(60, 2)), delimiter=",")
    cont, _ = configure({"data": str(tmp_path / "c.csv"), "width": 8, "depth": 1})
    assert dequantiser(cont) is None
    assert build_loss(cont, VP()).__name__ == "<lambda>"  # the objective's own closure
    toy, _ = configure({"data": "moons", "n": 100, "width": 8, "depth": 1})
    assert "columns" not in toy["data"]  # toy sets: no column section, exactly as before


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    """A tiny run on a table with a text column, counts, a flag, ratings and a measurement."""
    folder = tmp_path_factory.mktemp("table")
    rng = np.random.default_rng(1)
    n = 120
    colour = rng.choice(["red", "green", "blue"], n)
    count = rng.poisson(3, n)
    flag = rng.integers(0, 2, n)
    rating = rng.choice([1.0, 1.5, 2.0, 3.0], n)
    x = rng.normal(10, 2, n)
    with open(folder / "t.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["colour", "count", "flag", "rating", "x"])
        w.writerows(zip(colour, count, flag, rating, x))
    out = folder / "run"
    text = invoke("train", "--data", folder / "t.csv", "--out", out, *TINY)
    return folder, out, text


def test_train_prints_the_columns_and_the_run_records_them(table_run):
    folder, out, text = table_run
    for name, kind in [("colour", "categorical"), ("count", "discrete"), ("flag", "binary")]:
        assert any(name in line and kind in line for line in text.splitlines()), text
    assert "rating" in text and "x " in text and "continuous" in text
    config = yaml.safe_load((out / "config.yaml").read_text())
    kinds = [c["kind"] for c in config["data"]["columns"]]
    assert kinds == ["categorical", "discrete", "binary", "discrete", "continuous"]
    assert load_run(out).columns.to_config() == config["data"]["columns"]
    listed = invoke("datasets", folder / "t.csv", "--continuous", "rating")
    assert "rating" in listed and "named continuous" in listed


def test_samples_take_only_the_columns_values_and_csv_has_names_and_labels(table_run, tmp_path):
    folder, out, _ = table_run
    invoke("sample", out, "-n", "300", "--out", tmp_path / "s.csv", "--no-progress")
    rows = list(csv.reader(open(tmp_path / "s.csv")))
    assert rows[0] == ["colour", "count", "flag", "rating", "x"] and len(rows) == 301
    data = list(csv.reader(open(folder / "t.csv")))[1:]
    cols = list(zip(*rows[1:]))
    assert set(cols[0]) <= {"red", "green", "blue"}
    assert {int(c) for c in cols[1]} <= {int(r[1]) for r in data}  # observed counts only
    assert set(cols[2]) <= {"0", "1"} and set(cols[3]) <= {"1", "1.5", "2", "3"}
    digits = [len(c.lstrip("-").replace(".", "").lstrip("0").split("e")[0]) for c in cols[4]]
    assert max(digits) <= 7 and len(set(cols[4])) > 250  # 7 significant digits, continuous
    # The samples' CSV reads back into the run (labels → codes) for `likelihood`.
    invoke("likelihood", out, tmp_path / "s.csv", "--out", tmp_path / "lp.npy", "--no-progress")
    lp = np.load(tmp_path / "lp.npy")
    assert lp.shape == (300,) and np.isfinite(lp).all()
    s = load_run(out).sample(500, seed=2).x
    assert set(s[:, 0].tolist()) <= {0.0, 1.0, 2.0}  # codes of the categorical column


def test_evaluate_on_a_table_reports_memorisation_and_no_bits_per_dim(table_run):
    _, out, _ = table_run
    text = invoke("evaluate", out, "-n", "200", "--no-progress")
    assert "bits/dim" not in text and "memorisation ratio" in text and "near-copies" in text
    assert "MMD² (unbiased)" in text and "discrete columns" in text
    saved = json.loads((out / "evaluation.json").read_text())
    assert 0 < saved["memorisation_ratio"] and 0 <= saved["copy_fraction"] <= 1
    assert saved["nll_log_bin_volume"] == pytest.approx(math.log(0.5))  # count, flag: step 1
    assert "probability of the 4 discrete columns" in saved["nll_convention"]


def test_demo_calls_a_model_better_only_at_two_standard_errors():
    assert paired_verdict(-0.1, 0.05) == "better"
    assert paired_verdict(0.1, 0.05) == "worse"
    assert paired_verdict(-0.055, 0.05) == "not significantly different"  # 1.1 s.e.
    assert paired_verdict(0.0999, 0.05) == "not significantly different"
    assert paired_verdict(-1.0, math.nan) == "not significantly different"


def test_scatter_of_a_wide_table_has_axis_labels_and_visible_held_out_points(tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(plots, "_savefig", lambda fig, path, **kw: figures.append(fig) or path)
    g = torch.Generator().manual_seed(0)
    plots.samples_vs_data(
        torch.randn(3000, 5, generator=g), torch.randn(30, 5, generator=g), tmp_path / "p.png",
        labels=["alcohol", "malic acid"], data_name="held-out data",
    )  # fmt: skip
    (fig,) = figures
    data_ax, sample_ax = fig.axes
    assert data_ax.get_xlabel() == "alcohol" and sample_ax.get_ylabel() == "malic acid"
    assert "first 2 of 5 columns" in fig._suptitle.get_text()
    held_out, many = data_ax.collections[0], sample_ax.collections[0]
    assert held_out.get_sizes()[0] >= 4 * many.get_sizes()[0] and held_out.get_alpha() >= 0.8
    path = plots.samples_vs_data(torch.randn(50, 5), None, tmp_path / "q.png", labels=["a", "b"])
    assert path == tmp_path / "q.png"


def test_one_hot_box_bound_is_a_proper_probability_of_each_label():
    """A 3-label column is one-hot: label k owns the box B_k = {y_k ∈ [½, 1), y_j ∈ [0, ½)}
    (inside its argmax region, so the boxes are disjoint).  Under a Gaussian with diagonal
    covariance in those coordinates P(B_k) is a product of normal CDF differences; the run reports
    E_u log p(ỹ) + 3 log ½ ≤ log P(B_k) (Jensen), and Σ_k P(B_k) ≤ 1."""
    from scipy.stats import norm

    codec = ColumnCodec.detect(Table(np.repeat([[0.0], [1.0], [2.0]], 5, 0), ["c"]),
                               categorical="c")  # fmt: skip
    assert codec.columns[0].one_hot and codec.dim == 3
    mean, sd = np.array([0.6, 0.3, 0.2]), np.array([0.3, 0.25, 0.2])
    run = _oracle(mean.tolist(), np.diag(sd**2).tolist(), [0.0] * 3, [1.0] * 3, codec)
    reps = 400
    ks = torch.arange(3.0, dtype=F64)
    lp, _ = run.log_likelihood(ks.repeat(reps)[:, None], seed=0)
    lp = lp.reshape(reps, 3)
    mean_lp, se = lp.mean(0), lp.std(0) / math.sqrt(reps)
    # The exact box probabilities (the VP prior at t_min blurs by ≪ the box: the oracle's law is
    # the data law at t_min up to e^{-t} scaling, well inside the tolerance below).
    inside = lambda lo, hi: norm.cdf(hi, mean, sd) - norm.cdf(lo, mean, sd)  # noqa: E731
    p_box = np.array([np.prod(np.where(np.arange(3) == k, inside(0.5, 1.0), inside(0.0, 0.5)))
                      for k in range(3)])  # fmt: skip
    assert p_box.sum() < 1
    # The bound's expectation, separable over the coordinates: Σ_j E log N(y_j) by 48-point
    # Gauss–Legendre over each side of the box, + 3 log ½.
    nodes, weights = np.polynomial.legendre.leggauss(48)

    def mean_log_pdf(lo, hi):
        y = (lo + hi) / 2 + (hi - lo) / 2 * nodes[:, None]
        return (norm.logpdf(y, mean, sd) * weights[:, None] / 2).sum(0)

    bound = np.array([np.where(np.arange(3) == k, mean_log_pdf(0.5, 1.0), mean_log_pdf(0.0, 0.5))
                      .sum() for k in range(3)]) + 3 * math.log(0.5)  # fmt: skip
    assert (bound <= np.log(p_box)).all()
    np.testing.assert_array_less(np.abs(mean_lp.numpy() - bound), 4 * se.numpy() + 1e-2)
    # The draws are uniform on B_k (coordinate k in [½, 1), the others in [0, ½); means ¾ and ¼)
    # and decode to k; the correction is 3 log ½.
    y, corr = codec.dequantise(ks.repeat(4000)[:, None], torch.Generator().manual_seed(1))
    assert torch.equal(codec.from_model(y)[:, 0], ks.repeat(4000))
    own = torch.nn.functional.one_hot(ks.repeat(4000).long(), 3).bool()
    assert (y[own] >= 0.5).all() and (y[own] < 1).all() and (y[~own] >= 0).all()
    assert (y[~own] < 0.5).all() and abs(float(y[own].mean()) - 0.75) < 0.01
    torch.testing.assert_close(corr, torch.full((12000,), 3 * math.log(0.5), dtype=F64))
