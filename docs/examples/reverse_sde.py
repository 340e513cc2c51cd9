"""§7 Forward SDE, Anderson's reverse SDE and the Euler–Maruyama step.

Forward: dx = f(t)x dt + g(t)dW has the Gaussian marginal x_t = α_t x₀ + σ_t ε (processes.VP:
α = e^{−B/2}, σ² = 1 − e^{−B}).  Reverse (Anderson 1982): dx = [f x − g² ∇log p_t] dt + g dW̄, run from
t_max to t_min, has the same marginals.  Euler–Maruyama: x ← x − [f x − g² s] Δ + g √Δ z
(samplers.euler_maruyama, eta=1).  Checks: (a) simulating the forward SDE with small Euler–
Maruyama steps from mixture samples gives the mean and covariance of mixture.perturbed(α_t, σ_t);
(b) the reverse SDE driven by the exact score reproduces the mixture (metrics.mixture_error:
weight error and Bures excess within a few times the noise of exact samples).
"""

import math

import torch

import scorematch as sm

torch.set_num_threads(1)
mix = sm.GaussianMixture([[-2.0, 0.0], [2.0, 1.0]], [[0.5, 0.3], [0.2, 0.6]], [0.6, 0.4], dtype=torch.float64)  # fmt: skip
vp = sm.VP()
g = torch.Generator().manual_seed(0)
x = mix.sample(20_000, generator=g)
t_end, steps = 0.3, 300
dt = t_end / steps
for i in range(steps):  # forward Euler–Maruyama from t = 0
    t = torch.tensor(i * dt, dtype=torch.float64)
    x = x + vp.drift(x, t) * dt + vp.diffusion(t) * math.sqrt(dt) * torch.randn(x.shape, generator=g, dtype=torch.float64)  # fmt: skip
alpha, sigma = vp.marginal(torch.tensor(t_end, dtype=torch.float64))
law = mix.perturbed(float(alpha), float(sigma))
mean_err = float((x.mean(0) - law.mean()).abs().max())
cov_err = float((torch.cov(x.T) - law.covariance()).abs().max())
assert mean_err < 0.05 and cov_err < 0.08
print(
    f"check: forward SDE at t = {t_end}: mean error {mean_err:.3f}, covariance error {cov_err:.3f} "
    f"against α_t x₀ + σ_t ε (α = {float(alpha):.3f}, σ = {float(sigma):.3f}) -> ok"
)

out = sm.samplers.euler_maruyama(mix.score_model(vp), vp, (4000, 2), 500, generator=g)
err = sm.metrics.mixture_error(out.x, mix)
assert err["weight_error"] < 0.03 and err["bures_excess"] < 4 * err["bures_noise"] + 0.02
print(
    f"check: reverse SDE (Euler–Maruyama, 500 steps, exact score): weight error "
    f"{err['weight_error']:.3f} (exact samples {err['weight_error_exact']:.3f}), Bures excess "
    f"{err['bures_excess']:.3f} (noise {err['bures_noise']:.3f}) -> ok"
)
