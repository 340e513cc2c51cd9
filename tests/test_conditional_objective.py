"""``objectives.conditional`` (masked objective, labels with dropout) and ``TrainingRows``.

The minimiser checks follow tests/test_noise_conditional.py: with common random numbers,
loss(s* + δh) − loss(s*) per row equals the analytic gap (λ/2 times ‖δh‖² over the modelled cells)
plus a cross term whose mean is zero exactly when s* minimises the loss.  Here s* is the oracle's
exact conditional score of p_t(x_M | x₀,K) with the absent cells integrated out, on a known
mixture with cells missing completely at random; the same check rejects the scores that ignore the
known values or the absent cells.
"""

from __future__ import annotations

import math

import pytest
import torch
from _shared import mixture3

import scorematch as sm
from scorematch.objectives import conditional
from scorematch.objectives.conditional import conditioning_masks

F64 = torch.float64
N = 12000
W = torch.tensor([[1.3, -0.4, 0.2], [0.7, 0.9, -0.5], [0.1, 0.3, 1.1]], dtype=F64)


def gen(seed: int = 7) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def with_gaps(n: int = N, p: float = 0.3, seed: int = 0) -> torch.Tensor:
    """Mixture rows with each cell missing (NaN) with probability p, independently of the values."""
    x = mixture3().sample(n, generator=gen(seed))
    gone = torch.rand(x.shape, generator=gen(seed + 1), dtype=F64) < p
    return x.masked_fill(gone, float("nan"))


def h(x):
    return torch.sin(x @ W + 0.3)


class Perturbed:
    """s*(x, t | cond) + δ h(x)/σ_t, a mask-conditional model; records its inputs."""

    conditioning = ("mask", "label")

    def __init__(self, base, process, delta):
        self.base, self.process, self.delta = base, process, delta

    def __call__(self, x, t, **cond):
        self.x, self.t, self.cond = x, t, cond
        sigma = self.process.marginal(t)[1]
        return self.base(x, t, **cond) + self.delta * h(x) / sigma[:, None]


class Ignoring:
    """The oracle with some conditioning keywords dropped: a wrong mask-conditional model."""

    conditioning = ("mask",)

    def __init__(self, base, drop):
        self.base, self.drop = base, drop

    def __call__(self, x, t, **cond):
        return self.base(x, t, **{k: v for k, v in cond.items() if k not in self.drop})


class Recording:
    """A model that records its inputs and output."""

    conditioning = ("mask",)

    def __init__(self, base):
        self.base = base

    def __call__(self, x, t, **cond):
        self.x, self.t, self.cond = x, t, cond
        self.out = self.base(x, t, **cond)
        return self.out


def gap_residual(loss0, loss1, analytic):
    resid = loss1 - loss0 - analytic
    return float(resid.mean()), float(resid.std() / math.sqrt(resid.numel()))


def check_gap(loss0, loss1, analytic):
    mean, se = gap_residual(loss0, loss1, analytic)
    assert abs(mean) < 4 * se, (mean, se)
    assert float(analytic.mean()) > 8 * se, "gap too small to test the minimiser"


def modelled(model):
    return (~model.cond["mask"] & ~model.cond["absent"]).to(F64)


@pytest.mark.parametrize("objective", ["edm", "diffusion"])
def test_masked_objective_minimiser_is_the_conditional_score(objective):
    process = sm.EDM() if objective == "edm" else sm.VP()
    x, exact = with_gaps(), mixture3().score_model(process)
    loss0 = conditional(exact, process, x, objective=objective, generator=gen(), reduction="none")
    for delta in (1.5, -1.5):
        model = Perturbed(exact, process, delta)
        loss1 = conditional(
            model, process, x, objective=objective, generator=gen(), reduction="none"
        )
        sq = (h(model.x) * modelled(model)).square().sum(1)
        if objective == "edm":
            alpha, sigma = process.marginal(model.t)
            sh = sigma / alpha
            lam = (sh**2 + 0.5**2) / (sh * 0.5) ** 2
            check_gap(loss0, loss1, lam * sh**2 * delta**2 * sq)
        else:
            check_gap(loss0, loss1, 0.5 * delta**2 * sq)


@pytest.mark.parametrize("drop", [("known", "mask"), ("absent",)])
def test_scores_that_ignore_the_conditioning_lose_by_their_score_matching_gap(drop):
    """A score that ignores the known values (the joint score at the noisy state) or the absent
    cells (conditioning as if they were modelled) has a higher expected loss, by exactly its
    explicit score-matching gap ½ E Σ_M (σ Δs)² — the cross term vanishes because the exact score
    is the minimiser.  Both gaps are far above the noise: the objective tells them apart."""
    process = sm.VP()
    x, exact = with_gaps(), mixture3().score_model(process)
    wrong = Recording(Ignoring(exact, drop))
    loss_exact = conditional(
        exact, process, x, objective="diffusion", generator=gen(), reduction="none"
    )
    loss_wrong = conditional(
        wrong, process, x, objective="diffusion", generator=gen(), reduction="none"
    )
    sigma = process.marginal(wrong.t)[1][:, None]
    cond = {k: v for k, v in wrong.cond.items() if k != "label"}
    error = sigma * (wrong.out - exact(wrong.x, wrong.t, **cond))
    cells = (~cond["mask"] & ~cond["absent"]).to(F64)
    check_gap(loss_exact, loss_wrong, 0.5 * (error * cells).square().sum(1))


def test_label_dropout_and_the_labelled_minimiser():
    """Rows labelled by their component; a fifth of the labels dropped: the exact minimiser is
    the component's score for a labelled row and the mixture's for a dropped one."""
    mix, process = mixture3(), sm.EDM()
    counts = [6000, 3600, 2400]
    x = torch.cat([
        sm.Gaussian(mix.means[k], mix.covs[k]).sample(n, generator=gen(k)) for k, n in enumerate(counts)
    ])  # fmt: skip
    label = torch.cat([torch.full((n,), k) for k, n in enumerate(counts)])
    exact = mix.score_model(process)
    options = dict(label=label, label_dropout=0.2, objective="edm", reduction="none")
    loss0 = conditional(exact, process, x, generator=gen(), **options)
    model = Perturbed(exact, process, 1.5)
    loss1 = conditional(model, process, x, generator=gen(), **options)
    dropped = model.cond["label"] == -1
    assert abs(float(dropped.double().mean()) - 0.2) < 4 * math.sqrt(0.2 * 0.8 / x.shape[0])
    assert torch.equal(model.cond["label"][~dropped], label[~dropped])
    alpha, sigma = process.marginal(model.t)
    sh = sigma / alpha
    lam = (sh**2 + 0.5**2) / (sh * 0.5) ** 2
    sq = (h(model.x) * modelled(model)).square().sum(1)
    check_gap(loss0, loss1, lam * sh**2 * 1.5**2 * sq)


def test_conditioning_masks_split_the_observed_cells():
    observed = torch.rand(20000, 5, generator=gen(1)) < 0.8
    known, model_cells = conditioning_masks(observed, gen(2))
    assert not bool((known & model_cells).any())
    assert torch.equal(known | model_cells, observed)
    # r ~ U(0, 1): each observed cell known with probability 1/2, and a row with nothing known
    # among its m observed cells has probability 1/(m + 1)
    assert abs(float(known.sum() / observed.sum()) - 0.5) < 0.01
    full = observed.all(1)
    nothing = (~known[full]).all(1).double().mean()
    assert abs(float(nothing) - 1 / 6) < 0.03


def test_conditional_validation():
    process = sm.EDM()
    plain = sm.wrap(sm.MLPScore(3, width=8, depth=1), process, "edm")
    masked = sm.wrap(sm.MLPScore(3, width=8, depth=1, mask_conditional=True), process, "edm")
    x = with_gaps(10).float()
    with pytest.raises(ValueError, match="missing cells: training on rows with gaps"):
        conditional(plain, process, x)
    with pytest.raises(ValueError, match="takes no labels"):
        conditional(masked, process, x, label=torch.zeros(10, dtype=torch.long))
    with pytest.raises(ValueError, match="label_dropout needs labels"):
        conditional(masked, process, x, label_dropout=0.1)
    with pytest.raises(ValueError, match="unknown objective"):
        conditional(masked, process, x, objective="ism")
    full = mixture3().sample(10, generator=gen()).float()
    assert conditional(plain, process, full, generator=gen()).ndim == 0  # complete rows: fine
    loss = conditional(masked, process, x, generator=gen())
    loss.backward()
    assert torch.isfinite(loss)


def test_training_rows_gather_rows_and_labels():
    x = with_gaps(50)
    label = torch.arange(50) % 3
    rows = sm.conditional.TrainingRows(x, label)
    assert rows.index.shape == (50, 1) and rows.index.dtype == F64
    got, lab = rows.rows(torch.tensor([[4.0], [17.0], [4.0]], dtype=F64))
    assert torch.equal(got.nan_to_num(99), x[[4, 17, 4]].nan_to_num(99))
    assert torch.equal(lab, label[[4, 17, 4]])
    bad = x.clone()
    bad[3, 0] = float("inf")
    with pytest.raises(ValueError, match="infinite"):
        sm.conditional.TrainingRows(bad)
    with pytest.raises(ValueError, match="50 integers"):
        sm.conditional.TrainingRows(x, label[:10])


@pytest.mark.slow
def test_a_mask_conditional_network_trained_on_rows_with_gaps_imputes_the_conditional():
    """End to end: a Gaussian table with a fifth of its cells missing at random, the masked
    objective through ``Trainer`` and ``TrainingRows``, then ``impute``: the draws' mean and
    spread approach the exact conditional, and beat replacement on the same network."""
    cov = [[1.0, 0.8, 0.3], [0.8, 1.0, 0.5], [0.3, 0.5, 1.0]]
    g = sm.Gaussian([0.0, 0.0, 0.0], cov)
    x = g.sample(4000, generator=gen(0))
    x = x.masked_fill(torch.rand(x.shape, generator=gen(1)) < 0.2, float("nan"))
    process = sm.EDM(sigma_data=0.5)
    net = sm.build_model(
        "mlp", (3,), seed=0, width=64, depth=2, fourier_scale=4.0, mask_conditional=True
    )
    rows = sm.conditional.TrainingRows(x)
    trainer = sm.Trainer(
        sm.wrap(net, process, "edm", sigma_data=0.5), rows.loss(process), rows.index,
        batch_size=256, ema_half_life=100, progress=False, checkpoint_every=None,
        checkpoint_seconds=None,
    )  # fmt: skip
    trainer.fit(1500)
    query = torch.tensor([[1.0, float("nan"), float("nan")]])
    exact = g.condition([0], [1.0])
    means = {}
    for method in ("conditional", "replacement"):
        out = sm.impute(
            trainer.ema_model, process, query, torch.isfinite(query), method=method, steps=30,
            draws=4000, generator=gen(2),
        )[:, 0, 1:]  # fmt: skip
        means[method] = (out.mean(0).double() - exact.means[0]).abs().max()
        if method == "conditional":
            spread = out.double().std(0) / exact.covs[0].diagonal().sqrt()
    assert means["conditional"] < 0.15, means
    assert means["replacement"] > 2 * means["conditional"], means
    assert bool(((spread > 0.85) & (spread < 1.2)).all()), spread
