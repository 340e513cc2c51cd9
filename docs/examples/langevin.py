"""§8a Langevin dynamics, annealing, and predictor–corrector sampling.

The Langevin diffusion dx = ∇log p(x) dt + √2 dW has p as its stationary law; its Euler step
x ← x + ε s(x) + √(2ε) z (unadjusted Langevin) samples p only as ε → 0 and only once the chain has
mixed.  Checks:
(a) on N(0, v) with the exact score the step is x ← (1 − ε/v) x + √(2ε) z, whose stationary variance
    is v / (1 − ε/(2v)) exactly: a bias of order ε, measured on long chains for two step sizes;
(b) mixing: between separated modes the chain practically never crosses, so Langevin with the exact
    score of a (0.9, 0.1) mixture, started from a (0.5, 0.5) one, keeps the wrong weights (§11 (e));
(c) annealing (samplers.annealed_langevin, Song & Ermon 2019) runs Langevin at decreasing noise levels
    σ, where the blurred modes overlap at first: it recovers the weights;
(d) predictor–corrector (samplers.predictor_corrector, Song et al. 2021): a reverse-SDE step followed
    by a Langevin step at the new time corrects the predictor's discretisation error — at 50 steps
    it is closer to the mixture than the predictor alone, on VE and on VP.
"""

import math

import torch

import scorematch as sm

torch.set_num_threads(1)
F64 = torch.float64
g = torch.Generator().manual_seed(0)

# (a) ---------------------------------------------------------------------------------------------
v = 0.5
for eps in (0.05, 0.25):
    x = torch.zeros(20_000, dtype=F64)
    kept = []
    for i in range(400):
        x = x + eps * (-x / v) + math.sqrt(2 * eps) * torch.randn(x.shape, generator=g, dtype=F64)
        if i >= 200:  # after burn-in (the chain contracts by 1 − ε/v per step)
            kept.append(x.var())
    got, exact = float(torch.stack(kept).mean()), v / (1 - eps / (2 * v))
    assert abs(got / exact - 1) < 0.01 and abs(got / v - 1) > 0.02
    assert f"{got:.3f}" == {0.05: "0.526", 0.25: "0.667"}[eps]  # quoted in docs/theory.md §8a
    print(
        f"check: (a) ε = {eps}: stationary variance {got:.4f}, exact v/(1 − ε/2v) = {exact:.4f} "
        f"(target v = {v}) -> ok"
    )

# (b) ---------------------------------------------------------------------------------------------
modes, covs = [[-6.0, 0.0], [6.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]
even = sm.GaussianMixture(modes, covs, [0.5, 0.5], dtype=F64)
skew = sm.GaussianMixture(modes, covs, [0.9, 0.1], dtype=F64)
x = even.sample(2000, generator=g)
for _ in range(500):
    x = x + 0.1 * skew.score(x) + math.sqrt(0.2) * torch.randn(x.shape, generator=g, dtype=F64)
left = float((x[:, 0] < 0).double().mean())
assert abs(left - 0.5) < 0.05 and f"{left:.3f}" == "0.490"  # quoted in §8a
print(
    f"check: (b) Langevin (500 steps of ε = 0.1) with the exact score of weights (0.9, 0.1), "
    f"started from (0.5, 0.5): fraction in the left mode {left:.3f} -> ok"
)

# (c) ---------------------------------------------------------------------------------------------
levels = sm.NoiseLevels.geometric(0.05, 20.0, n=20)
out = sm.samplers.annealed_langevin(
    skew.score_model(levels), levels, (2000, 2), langevin_steps=40, step_size=0.5 * 0.05**2,
    generator=g,
)  # fmt: skip
left = float((out.x[:, 0] < 0).double().mean())
assert abs(left - 0.9) < 0.03 and f"{left:.3f}" == "0.885"  # quoted in §8a
print(
    f"check: (c) annealed Langevin over 20 levels σ = 20 … 0.05 (40 steps each): fraction in "
    f"the left mode {left:.3f}, target 0.9 -> ok"
)

# (d) ---------------------------------------------------------------------------------------------
mix = sm.GaussianMixture([[-2.0, 0.0], [2.0, 1.0]], [[0.5, 0.3], [0.2, 0.6]], [0.6, 0.4], dtype=F64)  # fmt: skip
for process in (sm.VE(), sm.VP()):
    exact = mix.score_model(process)
    pc = sm.samplers.predictor_corrector(exact, process, (4000, 2), 50, generator=g)
    alone = sm.samplers.reverse_diffusion(exact, process, (4000, 2), 50, generator=g)
    e_pc = sm.metrics.mixture_error(pc.x, mix)["total"]
    e_alone = sm.metrics.mixture_error(alone.x, mix)["total"]
    assert e_pc < 0.5 * e_alone
    quoted = {"VE": ("0.119", "0.013"), "VP": ("0.078", "0.012")}[type(process).__name__]
    assert (f"{e_alone:.3f}", f"{e_pc:.3f}") == quoted  # §8a
    print(
        f"check: (d) {type(process).__name__}, 50 steps, exact score: mixture error "
        f"{e_alone:.3f} (predictor alone, {alone.nfe} calls), {e_pc:.3f} (with one corrector "
        f"step, {pc.nfe} calls) -> ok"
    )
