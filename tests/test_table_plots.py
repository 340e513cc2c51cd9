"""Pictures of a table (issue #20, item 7): the pair plot of real against sampled rows — marginals
on the diagonal, bars for categorical columns, 2-D densities below, no equal aspect on unlike
units — the default choice of its columns by mutual information, --columns, and one-column
tables (on main `plot` and `sample --out x.png` crashed with IndexError)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from matplotlib.figure import Figure
from PIL import Image

from scorematch import plots
from scorematch.cli import cli
from scorematch.tableplots import informative_columns, pair_plot

TINY = ["--steps", "20", "--width", "16", "--depth", "1", "--batch-size", "32"]
TINY += ["--sample-every", "0", "--no-progress"]


def invoke(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def test_informative_columns_prefer_columns_that_depend_on_others():
    g = np.random.default_rng(0)
    n = 3000
    a, b, c = g.normal(size=n), g.normal(size=n), g.integers(0, 3, n)
    cols = [
        g.normal(size=n),  # 0: noise
        a,  # 1
        a + 0.1 * g.normal(size=n),  # 2: follows 1
        g.normal(size=n),  # 3: noise
        b,  # 4
        np.exp(b) + 0.05 * g.normal(size=n),  # 5: follows 4
        c.astype(float),  # 6: categorical codes
        c * 2.0 + g.normal(size=n) * 0.1,  # 7: follows 6
    ]
    x = np.stack(cols, 1)
    chosen = informative_columns(x, [False] * 6 + [True, False], k=6)
    assert chosen == [1, 2, 4, 5, 6, 7]
    assert informative_columns(x[:, :4]) == [0, 1, 2, 3]  # fewer than k: all, in order
    const = np.c_[x[:, :7], np.ones(n)]
    assert 7 not in informative_columns(const, k=6)


def test_pair_plot_has_marginals_bars_and_joints_without_equal_aspect(tmp_path, monkeypatch):
    g = torch.Generator().manual_seed(0)
    species = torch.randint(0, 3, (400,), generator=g).double()
    mass = 3000 + 1500 * species + 200 * torch.randn(400, generator=g, dtype=torch.float64)
    year = 2007 + torch.randint(0, 3, (400,), generator=g).double()
    data = torch.stack([species, mass, year], 1)
    path = pair_plot(data.flip(0), data, tmp_path / "p.png", names=["species", "mass", "year"],
                     labels=[("A", "C", "G"), None, None], title="t")  # fmt: skip
    image = Image.open(path)
    assert image.size[0] > 400 and image.format == "PNG"
    # The figure itself: 3×3 panels, the upper triangle hidden, bars on categorical diagonals.
    saved, savefig = [], Figure.savefig
    monkeypatch.setattr(
        Figure, "savefig", lambda fig, *a, **k: saved.append(fig) or savefig(fig, *a, **k)
    )
    pair_plot(data.flip(0), data, tmp_path / "q.png", names=["species", "mass", "year"],
              labels=[("A", "C", "G"), None, None])  # fmt: skip
    (fig,) = saved
    axes = fig.axes
    assert len(axes) == 9 and [a.get_visible() for a in axes] == [
        True, False, False, True, True, False, True, True, True,
    ]  # fmt: skip
    assert all(a.get_aspect() == "auto" for a in axes)
    assert len(axes[0].patches) == 6  # 3 labels × (data, samples) bars
    assert [t.get_text() for t in axes[6].get_xticklabels()] == ["A", "C", "G"]
    assert axes[8].get_xlabel() == "year" and len(axes[8].patches) == 6  # 3 years as bars
    assert axes[4].get_xlabel() == "" and axes[7].get_xlabel() == "mass"


def test_one_column_and_chosen_columns_through_the_cli(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "one.csv").write_text("v\n" + "".join(f"{v:.4f}\n" for v in rng.gamma(2, 1, 150)))
    invoke("train", "--data", tmp_path / "one.csv", "--out", tmp_path / "r1", *TINY)
    invoke("sample", tmp_path / "r1", "-n", "200", "--out", tmp_path / "s.png", "--no-progress")
    assert Image.open(tmp_path / "s.png").size[0] > 200
    text = invoke("plot", tmp_path / "r1", "-n", "200")
    assert "samples.png" in text
    cols = rng.normal(size=(120, 4))
    (tmp_path / "four.csv").write_text("a,b,c,d\n" + "".join(",".join(f"{v:.4f}" for v in r) + "\n"
                                                             for r in cols))  # fmt: skip
    invoke("train", "--data", tmp_path / "four.csv", "--out", tmp_path / "r4", *TINY)
    invoke("plot", tmp_path / "r4", "-n", "200", "--columns", "d,b")
    result = CliRunner().invoke(cli, ["plot", str(tmp_path / "r4"), "--columns", "zz"])
    assert result.exit_code == 1 and "--columns: no column 'zz'" in result.output


def test_samples_vs_data_of_one_column_is_a_histogram(tmp_path):
    path = plots.samples_vs_data(torch.randn(300, 1), torch.randn(50, 1), tmp_path / "h.png")
    assert Image.open(path).size[0] > 200
    with pytest.raises(ValueError, match="--columns applies to tables"):
        plots.samples_picture(torch.randn(5, 2), None, tmp_path / "x.png", show="a")
