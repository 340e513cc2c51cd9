"""The pieces of the real-table and generation benchmarks that their numbers rest on
(benchmarks/real_tables.py, benchmarks/generation.py): the R-style CSV, the stopping rule the
harness replays, the ForestDiffusion coverage and the label spelling."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import generation
import real_tables


def test_rule_choice_is_the_lowest_loss_before_patience_runs_out():
    curve = [(10, 5.0), (20, 4.0), (30, 4.5), (40, 4.2), (50, 3.0)]
    assert real_tables.rule_choice(curve, patience=2) == 20  # stops at 40, never sees 50
    assert real_tables.rule_choice(curve, patience=3) == 50
    assert real_tables.rule_choice([(10, 1.0), (20, 1.0)], patience=8) == 10  # ties keep the first


def test_r_csv_is_what_write_csv_writes(tmp_path):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({
        "rownames": [1, 2],
        "name": ['a "b"', None],
        "x": [0.1, float("nan")],
        "n": [3, 4],
        "small": [1e-05, 2.0],
        "flag": [True, False],
    })  # fmt: skip
    path = real_tables.write_r_csv(frame, tmp_path / "t.csv")
    assert path.read_text().splitlines() == [
        '"rownames","name","x","n","small","flag"',
        '"1","a ""b""",0.1,3,1e-05,TRUE',
        '"2",NA,NA,4,2,FALSE',
    ]


def test_coverage_follows_forest_diffusions_definition():
    real = np.array([[0.0], [1.0], [2.0], [3.0]])
    # The real rows cover themselves at k = 1, so k = 2: radii 2, 1, 1, 2 (L1, 2nd neighbour).
    assert generation.coverage(real, np.array([[0.1], [2.9]])) == 1.0
    assert generation.coverage(real, np.array([[0.1]])) == 0.5  # 0.1 < 2, 0.9 < 1; 1.9, 2.9 not
    # Duplicated rows have radius 0 at k = 1 and push k up until 95 % of the rows cover themselves.
    dup = np.array([[0.0], [0.0], [5.0], [5.0]])
    assert generation.coverage(dup, np.array([[0.0]])) == 0.5


def test_labels_are_spelled_alike_whatever_their_type():
    assert generation.label(3.0) == generation.label("3") == generation.label(3) == "3"
    assert generation.label("setosa") == "setosa"
    assert generation.label(0.5) == "0.5"


def _bundle(tmp_path, header: str, rows: list[str], **options):
    from types import SimpleNamespace

    from scorematch.runs.data import load_data

    path = tmp_path / "t.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    bundle = load_data({"data": str(path), **options})
    run = SimpleNamespace(columns=bundle.columns, standardizer=bundle.standardizer)
    return run, bundle.train.double().numpy(), bundle.test.double().numpy()


def test_baseline_nll_is_in_data_units_whatever_the_standardisation(tmp_path):
    # A Gaussian fitted on standardised rows is the data's own MLE Gaussian: the data-unit NLL
    # must equal scipy's, so the log-Jacobian enters with the right sign.
    import baselines
    import tables
    from scipy.stats import multivariate_normal

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2)) @ np.array([[30.0, 0.0], [12.0, 0.5]]) + [100.0, -7.0]
    run, train, test = _bundle(
        tmp_path, "a,b", [f"{u!r},{v!r}" for u, v in x.tolist()], transform="none"
    )
    nll, _ = tables.baseline_nll(baselines.fit_gaussian, run, train, test)
    oracle = -multivariate_normal(train.mean(0), np.cov(train.T, bias=True)).logpdf(test)
    np.testing.assert_allclose(nll, oracle, rtol=1e-4)


def test_baseline_nll_of_a_one_hot_column_is_a_probability_bound(tmp_path):
    # Three labels are one-hot coordinates (3 of them for 1 column): the baseline is fitted and
    # scored there, exp(−NLL) over the labels sums to at most 1 (a bound on P(label): the
    # Gaussian also puts mass between the boxes) and follows the labels' frequencies.
    import baselines
    import tables

    labels = ["red"] * 50 + ["green"] * 30 + ["blue"] * 20
    run, train, _ = _bundle(tmp_path, "colour", labels)
    assert run.columns.dim == 3
    codes = np.array([[0.0], [1.0], [2.0]])
    nll, _ = tables.baseline_nll(baselines.fit_gaussian, run, train, codes)
    total = np.exp(-nll).sum()
    assert nll.shape == (3,) and np.isfinite(nll).all()
    assert 0.0 < total <= 1.0
    order = [run.columns.labels[0].index(k) for k in ("red", "green", "blue")]
    assert nll[order[0]] < nll[order[1]] < nll[order[2]]
