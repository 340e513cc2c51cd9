"""The memorisation figures on constructed cases: copies of training rows (ratio 0, all
near-copies), fresh draws from the same law (ratio ≈ 1, near-copies as rare as among held-out
rows), blurred copies in between, and the chunked distances against a direct computation."""

from __future__ import annotations

import sys

import pytest
import torch

import scorematch as sm
from scorematch.metrics.memorisation import nearest_distances


def _data(n: int = 3000, d: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    scale = torch.tensor([1.0, 10.0, 0.1, 3.0])[:d]  # standardisation makes the units irrelevant
    x = torch.randn(n, d, generator=g, dtype=torch.float64) * scale
    return x[: n * 4 // 5], x[n * 4 // 5 :], g, scale


def test_copies_of_training_rows_give_ratio_zero_and_all_near_copies():
    train, test, g, _ = _data()
    copies = train[torch.randint(0, train.shape[0], (1000,), generator=g)]
    m = sm.metrics.memorisation(copies, train, test, generator=g)
    assert m.sample_to_train == 0.0 and m.ratio == 0.0
    assert m.copy_fraction == 1.0 and m.heldout_copy_fraction < 0.05
    assert m.looks_like_copying and "copies of training rows" in m.warning()


def test_fresh_draws_give_ratio_near_one_and_no_warning():
    train, test, g, scale = _data()
    fresh = torch.randn(2000, 4, generator=g, dtype=torch.float64) * scale
    m = sm.metrics.memorisation(fresh, train, test, generator=g)
    # The ratio's bootstrap standard error is ~0.02 here; 1 lies within 4 of them.
    assert abs(m.ratio - 1) < 4 * m.ratio_stderr + 0.02 and 0 < m.ratio_stderr < 0.05
    assert abs(m.copy_fraction - m.heldout_copy_fraction) < 0.03
    assert not m.looks_like_copying and m.warning() is None
    assert (m.n_samples, m.n_train, m.n_heldout) == (2000, 2400, 600)


def test_blurred_copies_lie_between_and_the_threshold_follows_the_data_spacing():
    train, test, g, scale = _data()
    src = train[torch.randint(0, train.shape[0], (1000,), generator=g)]
    near = src + 0.05 * scale * torch.randn(1000, 4, generator=g, dtype=torch.float64)
    m = sm.metrics.memorisation(near, train, test, generator=g)
    assert 0.05 < m.ratio < 0.5 and 0.2 < m.copy_fraction < 1 and m.looks_like_copying
    # τ is a quarter of the median nearest-neighbour distance among (standardised) training rows.
    z = (train - train.mean(0)) / train.std(0, correction=0)
    d = torch.cdist(z, z) + torch.diag(torch.full((z.shape[0],), float("inf"), dtype=z.dtype))
    assert m.copy_threshold == pytest.approx(0.25 * float(d.min(1).values.median()), rel=1e-9)


def test_nearest_distances_in_blocks_match_the_direct_computation(monkeypatch):
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(37, 3, generator=g), torch.randn(53, 3, generator=g)
    module = sys.modules["scorematch.metrics.memorisation"]  # the package exports the function
    monkeypatch.setattr(module, "BLOCK", 100)  # 1 row of a per block
    torch.testing.assert_close(nearest_distances(a, b), torch.cdist(a, b).min(1).values)
    own = nearest_distances(b, b, exclude=torch.arange(53))
    direct = torch.cdist(b, b) + torch.diag(torch.full((53,), float("inf")))
    torch.testing.assert_close(own, direct.min(1).values)


def test_memorisation_refuses_mismatched_inputs():
    train, test, _, _ = _data(100)
    with pytest.raises(ValueError, match="same number of features"):
        sm.metrics.memorisation(train[:, :3], train, test)
    with pytest.raises(ValueError, match="at least 2 training rows"):
        sm.metrics.memorisation(train, train[:1], test)
