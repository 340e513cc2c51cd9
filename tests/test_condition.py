"""``GaussianMixture.condition`` against brute-force numerics, and the oracle's conditional scores.

The conditional density p(u | v) = p(u, v) / ∫ p(u', v) du' is computed by quadrature of the joint
density on a fine grid (no Schur complement, no Bayes rule per component), and its moments by the
same quadrature; the conditional score must equal the partial gradient ∇_u log p(u, v) of the joint
(autograd).  The oracle score model's ``label`` / ``mask`` / ``absent`` keywords are checked
against ``perturbed`` laws of the conditioned or marginalised mixtures.
"""

from __future__ import annotations

import pytest
import torch

from scorematch import VP, Gaussian, GaussianMixture

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def mixture3(seed: int = 0) -> GaussianMixture:
    """A 3-D, three-component float64 mixture with correlated components."""
    means = 1.5 * torch.randn(3, 3, generator=gen(seed), dtype=F64)
    a = torch.randn(3, 3, 3, generator=gen(seed + 1), dtype=F64)
    covs = a @ a.transpose(-1, -2) / 3 + 0.3 * torch.eye(3, dtype=F64)
    return GaussianMixture(means, covs, [0.5, 0.3, 0.2])


def joint_at(mix: GaussianMixture, known: list[int], v: torch.Tensor, u: torch.Tensor):
    """Points x with x_K = v and the other coordinates (in increasing order) = u."""
    x = torch.empty(u.shape[0], mix.dim, dtype=F64)
    unknown = [i for i in range(mix.dim) if i not in known]
    x[:, known] = v
    x[:, unknown] = u
    return x


def grid(n: int, lo: float, hi: float, dims: int):
    axis = torch.linspace(lo, hi, n, dtype=F64)
    pts = torch.cartesian_prod(*([axis] * dims)).reshape(-1, dims)
    return pts, float(axis[1] - axis[0]) ** dims


@pytest.mark.parametrize(("known", "values"), [([1], [0.7]), ([0, 2], [-0.5, 1.2]), ([2], [3.0])])
def test_condition_matches_quadrature_of_the_joint(known, values):
    mix = mixture3()
    v = torch.tensor(values, dtype=F64)
    cond = mix.condition(known, v)
    dims = 3 - len(known)
    assert cond.dim == dims and cond.n_components == 3
    pts, cell = grid(601 if dims == 1 else 301, -12.0, 12.0, dims)
    log_joint = mix.log_prob(joint_at(mix, known, v, pts))
    log_norm = torch.logsumexp(log_joint, 0) + torch.log(torch.tensor(cell, dtype=F64))
    dens = (log_joint - log_norm).exp() * cell
    near = log_joint > log_joint.max() - 20  # where the density is not negligible
    torch.testing.assert_close(
        cond.log_prob(pts)[near], (log_joint - log_norm)[near], rtol=0, atol=1e-8
    )
    mean = dens @ pts
    cov = (pts - mean).T @ ((pts - mean) * dens[:, None])
    torch.testing.assert_close(cond.mean(), mean, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(cond.covariance(), cov, rtol=1e-6, atol=1e-8)
    # each component's posterior weight: its share of the quadrature mass
    comp = mix.component_log_prob(joint_at(mix, known, v, pts))
    share = torch.softmax(torch.logsumexp(comp, 0), 0)
    torch.testing.assert_close(cond.weights, share, rtol=0, atol=1e-10)


def test_conditional_score_is_the_partial_gradient_of_the_joint():
    mix = mixture3(seed=4)
    v = torch.tensor([0.3], dtype=F64)
    cond = mix.condition([1], v)
    u = torch.randn(50, 2, generator=gen(5), dtype=F64).requires_grad_()
    (grad,) = torch.autograd.grad(mix.log_prob(joint_at(mix, [1], v, u)).sum(), u)
    torch.testing.assert_close(cond.score(u.detach()), grad, rtol=1e-10, atol=1e-10)


def test_condition_on_a_gaussian_is_the_schur_complement_and_is_order_free():
    cov = torch.tensor([[2.0, 0.6, 0.3], [0.6, 1.0, -0.2], [0.3, -0.2, 1.5]], dtype=F64)
    g = Gaussian(torch.tensor([1.0, -1.0, 0.5], dtype=F64), cov)
    a = g.condition(torch.tensor([True, False, True]), [0.0, 2.0])
    b = g.condition([2, 0], [2.0, 0.0])  # the same condition, listed in another order
    s_kk = cov[[0, 2]][:, [0, 2]]
    s_uk = cov[1, [0, 2]]
    expected_mean = -1.0 + s_uk @ torch.linalg.solve(s_kk, torch.tensor([-1.0, 1.5], dtype=F64))
    expected_var = cov[1, 1] - s_uk @ torch.linalg.solve(s_kk, s_uk)
    for c in (a, b):
        torch.testing.assert_close(c.means[0, 0], expected_mean, rtol=1e-14, atol=1e-14)
        torch.testing.assert_close(c.covs[0, 0, 0], expected_var, rtol=1e-14, atol=1e-14)


def test_condition_far_from_every_mode_keeps_the_nearest_component():
    mix = mixture3()
    cond = mix.condition([0], [200.0])
    assert torch.isfinite(cond.weights).all() and float(cond.weights.max()) == pytest.approx(1.0)
    first = GaussianMixture(mix.means[:, :1], mix.covs[:, :1, :1], mix.weights)
    nearest = first.component_log_prob(torch.tensor([[200.0]], dtype=F64)).argmax()
    assert int(cond.weights.argmax()) == int(nearest)


@pytest.mark.parametrize(
    ("index", "values", "match"),
    [
        ([0, 1, 2], [0.0, 0.0, 0.0], "every coordinate is known"),
        ([0, 0], [1.0, 1.0], "repeat"),
        ([3], [1.0], r"lie in \[0, 3\)"),
        ([0], [1.0, 2.0], "one per known index"),
        ([0], [float("nan")], "finite"),
        (torch.tensor([True, False]), [1.0], "boolean"),
        ([0.5], [1.0], "integer indices"),
    ],
)
def test_condition_validation(index, values, match):
    with pytest.raises(ValueError, match=match):
        mixture3().condition(index, values)


def test_condition_on_nothing_is_the_mixture():
    mix = mixture3()
    cond = mix.condition([], [])
    torch.testing.assert_close(cond.means, mix.means)
    torch.testing.assert_close(cond.covs, mix.covs)
    torch.testing.assert_close(cond.weights, mix.weights)


# -- the oracle's conditioning keywords ------------------------------------------------------------
def test_oracle_label_is_the_component_score():
    mix, process = mixture3(), VP()
    model = mix.score_model(process)
    x = torch.randn(6, 3, generator=gen(1), dtype=F64)
    t = torch.tensor([0.01, 0.1, 0.3, 0.5, 0.9, 1.0], dtype=F64)
    label = torch.tensor([0, 1, 2, -1, 1, 0])
    out = model(x, t, label=label)
    alpha, sigma = process.marginal(t)
    for b in range(6):
        law = mix if label[b] < 0 else Gaussian(mix.means[label[b]], mix.covs[label[b]])
        ref = law.perturbed(float(alpha[b]), float(sigma[b])).score(x[b : b + 1])
        torch.testing.assert_close(out[b : b + 1], ref, rtol=1e-12, atol=1e-12)


def test_oracle_mask_conditional_score_is_the_noised_conditional_law():
    mix, process = mixture3(seed=2), VP()
    model = mix.score_model(process)
    x = torch.randn(5, 3, generator=gen(3), dtype=F64)
    known = torch.randn(5, 3, generator=gen(4), dtype=F64)
    t = torch.tensor([0.05, 0.2, 0.4, 0.7, 1.0], dtype=F64)
    mask = torch.tensor([[1, 0, 0], [0, 1, 1], [0, 0, 0], [1, 0, 1], [1, 0, 0]], dtype=torch.bool)
    absent = torch.tensor([[0, 0, 1], [0, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 0]], dtype=torch.bool)
    out = model(x, t, known=known, mask=mask, absent=absent)
    alpha, sigma = process.marginal(t)
    for b in range(5):
        kept = [i for i in range(3) if not absent[b, i]]  # marginalise the absent coordinates
        sub = GaussianMixture(mix.means[:, kept], mix.covs[:, kept][:, :, kept], mix.weights)
        k_local = [j for j, i in enumerate(kept) if mask[b, i]]
        m_global = [i for i in kept if not mask[b, i]]
        law = sub.condition(k_local, known[b, [kept[j] for j in k_local]])
        ref = law.perturbed(float(alpha[b]), float(sigma[b])).score(x[b : b + 1, m_global])
        torch.testing.assert_close(out[b : b + 1, m_global], ref, rtol=1e-11, atol=1e-11)
        others = [i for i in range(3) if i not in m_global]
        assert bool((out[b, others] == 0).all())
