"""§11 Common mis-statements, each shown wrong.

Data N(μ, 0.25 I) in 2-D and the Gaussian model score s_θ(x) = −(x − m)/v unless said otherwise;
expectations by quadrature on a grid.

(a) ISM with ‖∇ₓs‖²_F in place of ‖s‖²: L_bad = E[‖∇ₓs_θ‖²_F + 2 tr ∇ₓs_θ] = D/v² − 2D/v is not
    2·ESM − const; it is blind to m and minimised at v = 1 whatever the data.
(b) ESM as regression onto the model's own score ∇log p_θ: ½E‖s_θ − ∇log p_θ‖² is identically 0;
    and E_p‖∇log p_θ‖² is not free of θ (it is the ½‖s‖² term ISM keeps).
(c) The reverse-SDE Euler–Maruyama step with the drift's sign flipped, x ← x + [f x − g² s]Δ + g√Δ z
    (Δ > 0 while time runs backwards): driven by the exact score it explodes instead of giving data.
(d) SSM "derived" by slicing the mis-stated ISM of (a): vᵀ∇s v + ½‖vᵀ∇s‖² has mean tr ∇s + ½‖∇s‖²_F
    = ½L_bad over v, so it inherits (a)'s flaw; the correct ½(vᵀs)² has mean ½‖s‖².
(e) "Equal scores imply equal distributions" needs p > 0 on a connected set: two mixtures with the
    same separated modes and weights (0.5, 0.5) and (0.9, 0.1) have scores that agree on the data
    below 1e-15 in Fisher divergence, while their total-variation distance is 0.4.
(f) DSM's σ is not an observation noise of the data and DSM does not learn ESM's parameter: its
    minimiser is the blurred score, here v = 0.25 + σ² for every σ the trainer picks.
"""

import math

import torch
from torch.func import jacrev, vmap

import scorematch as sm
from scorematch.objectives import dsm, esm, ism, ssm

torch.set_num_threads(1)
F64 = torch.float64
mu, var = torch.tensor([0.5, -0.5], dtype=F64), 0.25
data = sm.Gaussian(mu, torch.full((2,), var, dtype=F64))
h = 8 / 160
axis = torch.arange(-4 + h / 2, 4, h, dtype=F64)
x = torch.cartesian_prod(axis, axis)
w = data.log_prob(x).exp() * h * h


def model(m, v):
    mvec = m * torch.tensor([1.0, -1.0], dtype=F64)
    return lambda y: -(y - mvec) / v


def expect(values):
    return float((w * values).sum())


# (a) ---------------------------------------------------------------------------------------------
def losses(m, v):
    s = model(m, v)
    jac = vmap(jacrev(lambda y: s(y[None])[0]))(x)  # (N, D, D)
    with torch.no_grad():
        two_ism = 2 * expect(ism(s, x, reduction="none"))
        two_esm = 2 * expect(esm(s, x, data.score, reduction="none"))
    bad = expect(jac.square().sum((1, 2)) + 2 * jac.diagonal(dim1=1, dim2=2).sum(1))
    return two_esm, two_ism, bad


thetas = ((0.0, 1.0), (0.5, 0.25), (1.0, 0.5))
vals = [losses(m, v) for m, v in thetas]
good = [e - i for e, i, _ in vals]
bad = [e - b for e, _, b in vals]
assert max(good) - min(good) < 1e-8 and max(bad) - min(bad) > 1.0
print(f"check: (a) 2·ESM − 2·ISM = {[round(v, 6) for v in good]} for three θ: constant -> ok")
print(f"check: (a) 2·ESM − L_bad = {[round(v, 3) for v in bad]} for the same θ: not constant -> ok")
grid = [(m, v) for m in (0.0, 0.5, 1.0) for v in (0.125, 0.25, 0.5, 1.0, 2.0)]
scores = {mv: losses(*mv) for mv in grid}
best_good = min(grid, key=lambda mv: scores[mv][1])
best_bad = min(grid, key=lambda mv: scores[mv][2])
blind = all(abs(scores[(m, v)][2] - scores[(0.0, v)][2]) < 1e-9 for m, v in grid)
assert best_good == (0.5, 0.25) and best_bad[1] == 1.0 and blind
print(
    f"check: (a) argmin 2·ISM = (m, v) = {best_good} (the data: μ = ½(1, −1), variance 0.25); "
    f"argmin L_bad has v = {best_bad[1]:g} and is the same for every m -> ok"
)

# (b) ---------------------------------------------------------------------------------------------
self_esm, sq_norm = [], []
for m, v in thetas:
    s = model(m, v)
    self_esm.append(expect(esm(s, x, s, reduction="none")))
    sq_norm.append(expect(s(x).square().sum(1)))
assert all(e == 0.0 for e in self_esm) and max(sq_norm) - min(sq_norm) > 1.0
print(
    f"check: (b) ½E‖s_θ − ∇log p_θ‖² = {self_esm} for three θ (identically 0: no information), "
    f"while E_p‖∇log p_θ‖² = {[round(q, 3) for q in sq_norm]} depends on θ -> ok"
)

# (c) ---------------------------------------------------------------------------------------------
mix = sm.GaussianMixture([[-2.0, 0.0], [2.0, 1.0]], [[0.5, 0.3], [0.2, 0.6]], [0.6, 0.4], dtype=F64)  # fmt: skip
vp, g = sm.VP(), torch.Generator().manual_seed(0)
exact = mix.score_model(vp)
times = torch.linspace(vp.t_max, vp.t_min, 301, dtype=F64)
out = {}
for name, sign in (("correct", -1.0), ("flipped", 1.0)):
    y = vp.prior_sample((4000, 2), generator=g, dtype=F64)
    for i in range(300):
        t, delta = times[i], float(times[i] - times[i + 1])
        drift = vp.drift(y, t) - vp.diffusion(t) ** 2 * exact(y, t)
        z = torch.randn(y.shape, generator=g, dtype=F64)
        y = y + sign * drift * delta + vp.diffusion(t) * math.sqrt(delta) * z
    out[name] = (float(y.std(0).max()), sm.metrics.mixture_error(y, mix))
data_std = float(mix.sample(4000, generator=g).std(0).max())
ok_err, bad_std = out["correct"][1], out["flipped"][0]
assert ok_err["weight_error"] < 0.03 and ok_err["bures_excess"] < 4 * ok_err["bures_noise"] + 0.02
assert bad_std > 20 * data_std
print(
    f"check: (c) reverse Euler–Maruyama with x − [f x − g² s]Δ: weight error "
    f"{ok_err['weight_error']:.3f}, Bures excess {ok_err['bures_excess']:.3f}; with the sign "
    f"flipped the samples' std is {bad_std:.0f} against the data's {data_std:.2f} -> ok"
)

# (d) ---------------------------------------------------------------------------------------------
g = torch.Generator().manual_seed(1)
sliced = {}
for m, v in ((0.0, 0.4), (1.0, 0.4), (0.5, 1.0), (0.5, 0.25)):
    s = model(m, v)
    jac = vmap(jacrev(lambda y, s=s: s(y[None])[0]))(x)
    p = torch.randn(64, *x.shape, generator=g, dtype=F64)  # 64 projections per grid point
    vjv = torch.einsum("kni,nij,knj->kn", p, jac, p).mean(0)
    jtv = torch.einsum("kni,nij->knj", p, jac).square().sum(-1).mean(0)
    with torch.no_grad():
        right = expect(ssm(s, x, n_projections=64, generator=g, reduction="none"))
        target = expect(ism(s, x, reduction="none"))
    sliced[(m, v)] = (expect(vjv + 0.5 * jtv), 2 / v**2 / 2 - 2 / v, right, target)
for (m, v), (wrong, half_bad, right, target) in sliced.items():
    tol = 0.03 * max(1.0, abs(half_bad), abs(target))  # Monte Carlo over 64 projections
    assert abs(wrong - half_bad) < tol and abs(right - target) < tol, (m, v, sliced[(m, v)])
assert abs(sliced[(0.0, 0.4)][0] - sliced[(1.0, 0.4)][0]) < 0.05
assert sliced[(0.5, 1.0)][0] < sliced[(0.5, 0.25)][0] and sliced[(0.5, 0.25)][2] < sliced[(0.5, 1.0)][2]  # fmt: skip
print(
    "check: (d) E_v[vᵀ∇s v + ½‖vᵀ∇s‖²] = ½L_bad = D/(2v²) − D/v (m = 0 and m = 1 at v = 0.4: "
    f"{sliced[(0.0, 0.4)][0]:.3f}, {sliced[(1.0, 0.4)][0]:.3f}; exact {sliced[(0.0, 0.4)][1]:.3f}) "
    "and prefers v = 1 over the data's 0.25; E_v[vᵀ∇s v + ½(vᵀs)²] = ISM "
    f"({sliced[(0.5, 0.25)][2]:.3f} vs {sliced[(0.5, 0.25)][3]:.3f}) and prefers 0.25 -> ok"
)

# (e) ---------------------------------------------------------------------------------------------
modes, covs = [[-6.0, 0.0], [6.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]
even = sm.GaussianMixture(modes, covs, [0.5, 0.5], dtype=F64)
skew = sm.GaussianMixture(modes, covs, [0.9, 0.1], dtype=F64)
xe = even.sample(100_000, generator=g)
fisher = float(0.5 * (even.score(xe) - skew.score(xe)).square().sum(1).mean())
tv = 0.5 * float((even.log_prob(x.mul(4)).exp() - skew.log_prob(x.mul(4)).exp()).abs().sum() * (4 * h) ** 2)  # fmt: skip
blur = even.perturbed(1.0, 4.0), skew.perturbed(1.0, 4.0)
xb = blur[0].sample(100_000, generator=g)
fisher_blur = float(0.5 * (blur[0].score(xb) - blur[1].score(xb)).square().sum(1).mean())
assert fisher < 1e-15 and abs(tv - 0.4) < 0.01 and fisher_blur > 1e8 * fisher
print(
    f"check: (e) weights (0.5, 0.5) vs (0.9, 0.1) on modes ±6: Fisher divergence on the data "
    f"{fisher:.1e}, total variation {tv:.3f}; blurred by σ = 4 the scores differ (Fisher "
    f"divergence {fisher_blur:.1e}) -> ok"
)

# (f) ---------------------------------------------------------------------------------------------
xs = data.sample(50_000, generator=g)
eps = torch.randn(xs.shape, generator=g, dtype=F64)
vs = torch.arange(0.2, 0.8, 0.01, dtype=F64)
found = {}
for sigma in (0.3, 0.5, 0.7):
    curve = torch.stack([dsm(model(0.5, float(v)), xs, sigma, noise=eps) for v in vs])
    found[sigma] = float(vs[int(curve.argmin())])
    assert abs(found[sigma] - (var + sigma**2)) <= 0.011, (sigma, found[sigma])
curve = torch.stack([ism(model(0.5, float(v)), xs) for v in vs])
assert abs(float(vs[int(curve.argmin())]) - var) <= 0.011
print(
    "check: (f) argmin_v DSM = "
    + ", ".join(f"{v:.3f} at σ = {s}" for s, v in found.items())
    + f" (= 0.25 + σ²: the blurred variance); argmin_v ISM = {float(vs[int(curve.argmin())]):.3f}"
    " (the data's) -> ok"
)
