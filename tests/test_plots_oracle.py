"""The learned-against-true pictures: their numbers against exact oracles, and valid PNGs.

normalised_density: for E = −log p + c the quadrature gives log Z = −c and the density p (to the
quadrature error of a box holding the mass); for E = ‖x‖²/(2v), log Z = log(2πv) exactly up to the
midpoint rule's error.  score_error_map: the exact score scores F = 0; s = a·∇log p scores
(1 − a)²E‖∇log p‖², compared with the same quadrature of the exact score.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _shared import mixture
from PIL import Image

import scorematch as sm
from scorematch import plots

F64 = torch.float64
BOX = ((-6.0, 6.0), (-6.0, 6.0))


def test_normalised_density_recovers_log_z_and_the_density():
    mix = mixture()
    for c in (0.0, 3.0, -7.5):
        gx, gy, e, density, log_z = plots.normalised_density(
            lambda y, c=c: -mix.log_prob(y) + c, *BOX, grid=240
        )
        assert log_z == pytest.approx(-c, abs=1e-6)
        pts = torch.tensor(np.stack([gx.ravel(), gy.ravel()], 1), dtype=F64)
        true = mix.log_prob(pts).exp().numpy().reshape(gx.shape)
        assert np.abs(density - true).max() < 1e-5 * true.max()
        assert e.shape == density.shape == (240, 240)
    v = 0.7
    *_, log_z = plots.normalised_density(lambda y: y.square().sum(1) / (2 * v), *BOX, grid=240)
    assert log_z == pytest.approx(math.log(2 * math.pi * v), abs=1e-6)


def test_normalised_density_errors():
    with pytest.raises(ValueError, match="grid"):
        plots.normalised_density(lambda y: y.sum(1), *BOX, grid=1)
    with pytest.raises(ValueError, match="lo < hi"):
        plots.normalised_density(lambda y: y.sum(1), (1.0, 0.0), (0.0, 1.0))
    with pytest.raises(ValueError, match="one finite value"):
        plots.normalised_density(lambda y: y.sum(1) / 0.0 * 0.0, *BOX, grid=10)


def test_score_error_map_against_the_exact_score():
    mix = mixture()
    # A plain function gets float32 points (the default dtype), like a network would.
    _, _, learned, true, log_p, fisher = plots.score_error_map(mix.score, mix, *BOX)
    assert fisher < 1e-10 and np.abs(learned - true).max() < 1e-5 * np.abs(true).max()
    weight = np.exp(log_p - log_p.max()).ravel()
    scale = float((weight * np.square(true).sum(1)).sum() / weight.sum())
    # the box holds the mass: the grid's scale is E‖∇log p‖² to Monte Carlo error
    mc = sm.metrics.fisher_divergence(torch.zeros_like, mix, n=100_000,
                                      generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert abs(scale - mc["scale"]) < 5 * mc["stderr"]
    for a in (0.5, 1.5):
        *_, f = plots.score_error_map(lambda y, a=a: a * mix.score(y), mix, *BOX)
        assert f == pytest.approx((1 - a) ** 2 * scale, rel=1e-5)


def test_score_error_map_calls_a_time_model_at_t_on_its_law():
    mix, vp = mixture(), sm.VP()
    alpha, sigma = (float(v) for v in vp.marginal(torch.tensor(0.3, dtype=F64)))
    law = mix.perturbed(alpha, sigma)
    *_, f = plots.score_error_map(mix.score_model(vp), law, *BOX, t=0.3)
    assert f < 1e-20
    *_, f_wrong = plots.score_error_map(mix.score_model(vp), law, *BOX, t=0.05)
    assert f_wrong > 0.1


def test_pictures_are_pngs_and_refuse_bad_input(tmp_path):
    mix, vp = mixture(), sm.VP()
    net = sm.MLPScore(2, width=8, depth=1, time_embed_dim=8)
    energy = sm.EnergyScore(sm.MLPEnergy(2, width=8, depth=1, time_embed_dim=0))
    paths = [
        plots.score_comparison(mix.score, mix, tmp_path / "clean.png"),
        plots.score_comparison(net, mix, tmp_path / "t.png", process=vp, times=[0.01, 0.5]),
        plots.score_comparison(energy, mix, tmp_path / "e.png"),
        plots.energy_density(energy, tmp_path / "d.png", mixture=mix),
        plots.energy_density(energy, tmp_path / "d2.png", data=mix.sample(50)),
    ]
    for p in paths:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size[0] > 300
    with Image.open(paths[1]) as one, Image.open(paths[0]) as clean:
        assert one.size[1] > 1.8 * clean.size[1]  # one row per noise level
    with pytest.raises(ValueError, match="2-D"):
        plots.score_comparison(mix.score, sm.Gaussian(torch.zeros(3), torch.ones(3)), tmp_path / "x.png")  # fmt: skip
    with pytest.raises(ValueError, match="times need a process"):
        plots.score_comparison(mix.score, mix, tmp_path / "x.png", times=[0.1])
    with pytest.raises(ValueError, match="needs limits"):
        plots.energy_density(energy, tmp_path / "x.png")
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
