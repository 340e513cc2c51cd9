"""§5 Denoising score matching (Vincent 2011): E½‖s(x̃) − (x − x̃)/σ²‖² = ESM against ∇log p_σ + C.

x̃ = x + σε.  Because E[(x − x̃)/σ² | x̃] = ∇log p_σ(x̃) (p_σ = p ∗ N(0, σ²I), Tweedie), expanding the
square leaves a θ-free constant: DSM(θ) − ½E‖s_θ(x̃) − ∇log p_σ(x̃)‖² = C.  So the DSM minimiser is
the *blurred* score ∇log p_σ, not ∇log p.  Checks: (a) objectives.dsm − objectives.esm(x̃, exact
blurred score) is the same for three networks, within 4 standard errors, on common (x, ε);
(b) over the linear family s_c = c·∇log p_σ the DSM minimiser is c = 1 (grid of c).
"""

import torch

import scorematch as sm
from scorematch.objectives import dsm, esm

torch.set_num_threads(1)
torch.manual_seed(0)  # MLPScore draws its layers from the global RNG: fix it for a repeatable run
sigma = 0.5
mix = sm.GaussianMixture([[-2.0, 0.0], [2.0, 1.0]], [[0.5, 0.3], [0.2, 0.6]], dtype=torch.float64)
g = torch.Generator().manual_seed(0)
x = mix.sample(100_000, generator=g)
eps = torch.randn(x.shape, generator=g, dtype=torch.float64)
blurred = mix.perturbed(1.0, sigma)
x_noisy = x + sigma * eps
gaps = []
for seed in (1, 2, 3):
    net = sm.MLPScore(2, width=32, depth=1, time_embed_dim=0, seed=seed).double()
    torch.nn.init.normal_(
        net.net.out.weight, std=0.5, generator=torch.Generator().manual_seed(seed)
    )
    with torch.no_grad():
        d = dsm(net, x, sigma, noise=eps, reduction="none") - esm(
            net, x_noisy, blurred.score, reduction="none"
        )
    gaps.append(d)
for k in (1, 2):  # paired on the same (x, ε): only the θ-dependent part is left in the spread
    pair = gaps[k] - gaps[0]
    m, se = float(pair.mean()), float(pair.std() / pair.numel() ** 0.5)
    assert abs(m) < 4 * se
    print(
        f"check: DSM − ESM(∇log p_σ) = {float(gaps[k].mean()):.4f} for network {k + 1}, "
        f"{float(gaps[0].mean()):.4f} for network 1: paired difference {m:.4f} ± {se:.4f} -> ok"
    )

cs = torch.linspace(0.5, 1.5, 101, dtype=torch.float64)
losses = [float(dsm(lambda y, c=c: c * blurred.score(y), x, sigma, noise=eps)) for c in cs]
best = float(cs[int(torch.tensor(losses).argmin())])
assert abs(best - 1.0) <= 0.02
print(f"check: argmin_c DSM(c·∇log p_σ) = {best:.2f} (the blurred score is the minimiser) -> ok")
