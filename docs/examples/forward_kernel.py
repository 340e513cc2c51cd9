"""§7a Why the forward drift is affine, and §7b the DDPM chain as a discretised VP SDE.

§7a.  For dx = f(t) x dt + g(t) dW the conditional law of x_t given x₀ stays Gaussian, N(α_t x₀, σ_t² I),
with dα/dt = f α and dσ²/dt = 2 f σ² + g² (the mean and variance of a linear SDE).  That closed-form
kernel is what DSM regresses onto (∇log N(x_t; α_t x₀, σ_t²I) = −(x_t − α_t x₀)/σ_t²).  Checks:
(a) integrating the two ODEs with each process's f and g (RK4) reproduces process.marginal(t) for VE,
VP, sub-VP and EDM; (b) from a point mass, the OU drift −x gives a Gaussian law at t (skewness and
excess kurtosis 0 within sampling error, mean and variance as the kernel says), while the
non-affine drift −x³ does not (skewness and kurtosis clearly non-zero): no closed-form kernel.

§7b.  DDPM (Ho et al. 2020): x_i = √(1 − β_i) x_{i−1} + √β_i z with β_i = β(i/N)/N, so
x_i = √ᾱ_i x₀ + √(1 − ᾱ_i) ε with ᾱ_i = Π(1 − β_k).  As N → ∞, log ᾱ → −∫β = −B(t): the chain is
the Euler discretisation of the VP SDE dx = −½β x dt + √β dW (α_t² = e^{−B}, σ_t² = 1 − α_t²).
Checks: (c) |log ᾱ_N(t) + B(t)| shrinks like 1/N (÷10 for 10× the steps); (d) DDPM's reverse
step x_{i−1} = (x_i + β_i s)/√(1 − β_i) + √β_i z (samplers.reverse_diffusion on VP) driven by the
exact score reproduces the mixture.
"""

import math

import torch

import scorematch as sm

torch.set_num_threads(1)
F64 = torch.float64

# (a) ---------------------------------------------------------------------------------------------
for process in (sm.VE(), sm.VP(), sm.SubVP(), sm.EDM()):
    t0, t1, n = process.t_min, min(process.t_max, 1.0), 2000
    h = (t1 - t0) / n
    a0, s0 = process.marginal(torch.tensor(t0, dtype=F64))
    state = torch.stack([a0, s0**2])  # (α, σ²)

    def rhs(t, y, process=process):
        f = process.log_alpha_rate(torch.tensor(t, dtype=F64))
        g2 = process.diffusion(torch.tensor(t, dtype=F64)) ** 2
        return torch.stack([f * y[0], 2 * f * y[1] + g2])

    for i in range(n):  # classical RK4
        t = t0 + i * h
        k1 = rhs(t, state)
        k2 = rhs(t + h / 2, state + h / 2 * k1)
        k3 = rhs(t + h / 2, state + h / 2 * k2)
        k4 = rhs(t + h, state + h * k3)
        state = state + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    a1, s1 = process.marginal(torch.tensor(t1, dtype=F64))
    err = max(abs(float(state[0] / a1) - 1), abs(float(state[1] / s1**2) - 1))
    assert err < 1e-10, (process, err)  # §7a quotes 10⁻¹¹
    print(
        f"check: (a) {type(process).__name__}: dα/dt = fα, dσ²/dt = 2fσ² + g² integrated to "
        f"t = {t1:g} give marginal(t) to relative {err:.0e} -> ok"
    )

# (b) ---------------------------------------------------------------------------------------------
g = torch.Generator().manual_seed(0)
x0, t_end, steps, n = 1.5, 0.3, 300, 40_000
moments = {}
for name, drift in (("affine −x", lambda y: -y), ("cubic −x³", lambda y: -(y**3))):
    y = torch.full((n,), x0, dtype=F64)
    dt = t_end / steps
    for _ in range(steps):  # dx = drift dt + √2 dW, Euler–Maruyama
        y = y + drift(y) * dt + math.sqrt(2 * dt) * torch.randn(n, generator=g, dtype=F64)
    z = (y - y.mean()) / y.std()
    moments[name] = (float(y.mean()), float(y.var()), float(z.pow(3).mean()), float(z.pow(4).mean() - 3))  # fmt: skip
mean, var, skew, kurt = moments["affine −x"]
se_skew, se_kurt = math.sqrt(6 / n), math.sqrt(24 / n)
assert abs(mean - x0 * math.exp(-t_end)) < 0.01 and abs(var - (1 - math.exp(-2 * t_end))) < 0.01
assert abs(skew) < 3 * se_skew and abs(kurt) < 3 * se_kurt  # §7a: "within 3 standard errors"
c_skew, c_kurt = moments["cubic −x³"][2:]
assert abs(c_skew) > 20 * se_skew and abs(c_kurt) > 5 * se_kurt
assert (f"{c_skew:+.2f}", f"{c_kurt:+.2f}") == ("-0.50", "+0.30")  # quoted in docs/theory.md §7a
print(
    f"check: (b) from x₀ = {x0} to t = {t_end}: drift −x gives mean {mean:.3f}, variance {var:.3f} "
    f"(kernel: {x0 * math.exp(-t_end):.3f}, {1 - math.exp(-2 * t_end):.3f}), skewness {skew:+.3f}, "
    f"excess kurtosis {kurt:+.3f} (s.e. {se_skew:.3f}, {se_kurt:.3f}); drift −x³ gives skewness "
    f"{c_skew:+.2f}, excess kurtosis {c_kurt:+.2f}: not Gaussian -> ok"
)

# (c) ---------------------------------------------------------------------------------------------
vp = sm.VP()
errors = {}
for n_steps in (100, 1000, 10_000):
    i = torch.arange(1, n_steps + 1, dtype=F64)
    betas = vp.beta(i / n_steps) / n_steps  # DDPM's β_i: 1e-4 … 0.02 for N = 1000
    log_abar = torch.log1p(-betas).cumsum(0)
    errors[n_steps] = max(
        abs(float(log_abar[int(n_steps * t) - 1] + vp.integrated_beta(torch.tensor(t, dtype=F64))))
        for t in (0.25, 0.5, 1.0)
    )
assert 7 < errors[100] / errors[1000] < 13 and 7 < errors[1000] / errors[10_000] < 13
assert [f"{errors[k]:.2g}" for k in errors] == ["0.86", "0.078", "0.0077"]  # §7b
betas_1000 = vp.beta(torch.tensor([1e-3, 1.0], dtype=F64)) / 1000
print(
    f"check: (c) DDPM with β_i = β(i/N)/N (N = 1000: β from {float(betas_1000[0]):.0e} to "
    f"{float(betas_1000[1]):.2f}): max |log ᾱ + B(t)| = {errors[100]:.1e}, {errors[1000]:.1e}, "
    f"{errors[10_000]:.1e} at N = 100, 1 000, 10 000: the VP SDE is the limit -> ok"
)

# (d) ---------------------------------------------------------------------------------------------
mix = sm.GaussianMixture([[-2.0, 0.0], [2.0, 1.0]], [[0.5, 0.3], [0.2, 0.6]], [0.6, 0.4], dtype=F64)  # fmt: skip
out = sm.samplers.reverse_diffusion(mix.score_model(vp), vp, (3000, 2), 1000, generator=g)
err = sm.metrics.mixture_error(out.x, mix)
assert err["weight_error"] < 0.03 and err["bures_excess"] < 4 * err["bures_noise"] + 0.02
print(
    f"check: (d) DDPM's reverse chain (reverse_diffusion on VP, 1000 steps, exact score): weight "
    f"error {err['weight_error']:.3f}, Bures excess {err['bures_excess']:.3f} (noise "
    f"{err['bures_noise']:.3f}) -> ok"
)
