"""§3 Implicit score matching: ESM(θ) = ISM(θ) + C, C = ½E_p‖∇log p‖², by integration by parts.

ISM(θ) = E_p[tr ∇ₓs_θ + ½‖s_θ‖²] (objectives.ism, exact trace).  The step E_p[s_θ·∇log p] =
∫ s_θ·∇p = −E_p[tr ∇ₓs_θ] needs the boundary term p s_θ → 0 at the edge of the support.
Checks: (a) on a mixture, ESM − ISM is the same for three networks and equals ½E‖∇log p‖², to
1e-6 (expectations by quadrature on a grid); (b) on Exp(1) data (support x > 0,
p(0) = 1 ≠ 0) with s_θ = −θ, ESM = ½(θ − 1)² but ISM = ½θ², so ESM − ISM = ½ − θ is NOT constant
and ISM's minimiser θ = 0 is wrong: the boundary term p(0)s_θ(0) = −θ is what is missing.
"""

import torch

import scorematch as sm
from scorematch.objectives import esm, ism

torch.set_num_threads(1)
torch.manual_seed(0)  # MLPScore draws its layers from the global RNG: fix it for a repeatable run
mix = sm.GaussianMixture(
    [[-2.0, 0.0], [2.0, 1.0]], [[0.5, 0.3], [0.2, 0.6]], [0.6, 0.4], dtype=torch.float64
)
# Expectations by quadrature on a fine grid (midpoint rule, mass outside [−8, 8]² below 1e-12),
# so the identity is checked to quadrature precision rather than to Monte Carlo error.
h = 16 / 200
axis = torch.arange(-8 + h / 2, 8, h, dtype=torch.float64)
x = torch.cartesian_prod(axis, axis)
w = mix.log_prob(x).exp() * h * h
const = float((w * 0.5 * mix.score(x).square().sum(1)).sum())
for seed in (1, 2, 3):
    net = sm.MLPScore(2, width=32, depth=1, time_embed_dim=0, seed=seed).double()
    torch.nn.init.normal_(
        net.net.out.weight, std=0.5, generator=torch.Generator().manual_seed(seed)
    )
    with torch.no_grad():
        e_esm = float((w * esm(net, x, mix.score, reduction="none")).sum())
        e_ism = float((w * ism(net, x, reduction="none")).sum())
    assert abs(e_esm - e_ism - const) < 1e-6, (e_esm, e_ism, const)
    print(
        f"check: ESM = {e_esm:.6f}, ISM = {e_ism:.6f}, ESM − ISM = {e_esm - e_ism:.6f} = "
        f"½E‖∇log p‖² = {const:.6f} for network {seed} -> ok"
    )

e = torch.empty(200_000, 1, dtype=torch.float64).exponential_(generator=torch.Generator().manual_seed(1))  # fmt: skip
gaps = []
for theta in (0.0, 0.5, 1.0):
    s = lambda y, th=theta: torch.full_like(y, -th)  # noqa: E731
    true = lambda y: torch.full_like(y, -1.0)  # noqa: E731  the score of Exp(1) on x > 0
    gaps.append(float(esm(s, e, true) - ism(s, e)))
    assert abs(gaps[-1] - (0.5 - theta)) < 1e-12
print(
    f"check: on Exp(1), ESM − ISM = {[round(g, 3) for g in gaps]} for θ = 0, 0.5, 1: "
    "not constant (= ½ − θ), the boundary term p(0)s_θ(0) -> ok"
)
