"""§6 Multi-scale (NCSN) and continuous-time (score SDE) denoising score matching.

NCSN: ℓ = ½‖σ s(x̃, σ) + ε‖² with σ drawn from the levels; continuous DSM: ℓ = ½‖σ_t s(x_t, t) + ε‖²
with t ~ U[t_min, t_max] (λ = σ_t²).  Writing s = s* + δ with s* the exact score of p_σ (p_t),
ℓ(s) − ℓ(s*) = ½σ²‖δ‖² + σ δ·(σ s* + ε), and E[ε | x̃] = −σ s*(x̃), so the mean gap is the
σ²-weighted ESM: E ½σ²‖s − s*‖², minimised by the exact score at every level.
Checks: for objectives.ncsn and objectives.diffusion, the mean gap between a perturbed model and
the exact score model (mixture.score_model) equals the weighted ESM within 4 paired standard
errors, and is positive.
"""

import torch

import scorematch as sm
from scorematch.objectives import diffusion, ncsn

torch.set_num_threads(1)
mix = sm.GaussianMixture([[-2.0, 0.0], [2.0, 1.0]], [[0.5, 0.3], [0.2, 0.6]], dtype=torch.float64)
g = torch.Generator().manual_seed(0)
n = 100_000
x = mix.sample(n, generator=g)
eps = torch.randn(x.shape, generator=g, dtype=torch.float64)


def perturbed(exact):
    """s = 0.8 s* + a smooth bump: any model will do."""
    return lambda y, t: 0.8 * exact(y, t) + 0.3 * torch.tanh(y.flip(1))


levels = sm.NoiseLevels.geometric(0.05, 3.0, n=6)
sig = levels.sigmas.to(torch.float64)[torch.randint(6, (n,), generator=g)]
vp = sm.VP()
t = vp.t_min + (vp.t_max - vp.t_min) * torch.rand(n, generator=g, dtype=torch.float64)
for name, loss, process, level, scale in (
    ("ncsn", lambda m: ncsn(m, levels, x, sigma=sig, noise=eps, reduction="none"), levels, sig, sig),
    ("diffusion", lambda m: diffusion(m, vp, x, t=t, noise=eps, reduction="none"), vp, t, vp.marginal(t)[1]),
):  # fmt: skip
    exact = mix.score_model(process)
    model = perturbed(exact)
    with torch.no_grad():
        gap = loss(model) - loss(exact)
        alpha, sigma = process.marginal(level)
        xt = alpha[:, None] * x + sigma[:, None] * eps
        weighted_esm = 0.5 * scale**2 * (model(xt, level) - exact(xt, level)).square().sum(1)
    d = gap - weighted_esm
    m, se = float(d.mean()), float(d.std() / n**0.5)
    assert abs(m) < 4 * se and float(gap.mean()) > 0
    print(
        f"check: {name}: loss(model) − loss(exact) = {float(gap.mean()):.4f}, σ²-weighted ESM "
        f"= {float(weighted_esm.mean()):.4f} (difference {m:.4f} ± {se:.4f}) -> ok"
    )
