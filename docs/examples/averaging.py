"""§9 Question 1: average denoising models over noise levels?  sm.ScoreEnsemble.fit.

A DSM model at σ estimates ∇log p_σ: its bias against ∇log p grows like σ² (p_σ = p ∗ N(0, σ²I)),
its variance falls with σ.  For ŝ = Σ wⱼ sⱼ the held-out ISM is ½wᵀGw + wᵀb (G = E[sⱼ·s_k],
b = E[tr ∇sⱼ]), so weights have a closed form.  Checks, with exact blurred scores at σ = 0.1, 0.2,
0.4 as members (pure bias, no variance):
(a) the fitted loss equals objectives.ism of the ensemble;
(b) affine weights (any sign) cut the Fisher divergence to ∇log p well below the best member, while
    simplex weights stay on the smallest σ;
(c) the oracle affine weights (fitted with the true score) cancel the σ² term of the bias,
    Σwⱼσⱼ² ≈ 0, like Richardson's extrapolation; weights fitted by held-out ISM on N rows do not:
    the members are nearly collinear (cond G ~ 3·10⁵), so the unregularised fit moves along a flat
    direction with the Monte Carlo error of (G, b) — its spread over validation draws is of order
    1 at N = 5 000 and shrinks like 1/√N; fit's default ridge (1e-3) damps that direction;
(d) a convex average cannot beat the least-biased member when the members' biases point the same
    way (every E[bⱼ·b_k] ≥ minᵢ E‖bᵢ‖²), but it can when they point opposite ways;
(e) variance only (one σ, independent error fields): the uniform average beats every member;
(f) averaging scores with constant weights is not a Bayesian model average: a BMA averages
    densities, so its score is Σ πⱼ(x) sⱼ(x) with πⱼ(x) ∝ wⱼ pⱼ(x); constant weights give the score
    of the geometric mixture ∝ Π pⱼ^{wⱼ}, which with negative weights need not be normalisable.
The trained-network version is benchmarks/noise_levels.py (docs/studies/noise-levels.md); the
ridge default is measured in benchmarks/ensemble_weights.py.
"""

import inspect

import torch

import scorematch as sm
from scorematch.ensemble import solve_weights
from scorematch.objectives import ism

torch.set_num_threads(1)
F64 = torch.float64
mix = sm.GaussianMixture([[-2.0, 0.0], [2.0, 1.0]], [[0.5, 0.3], [0.2, 0.6]], [0.6, 0.4], dtype=F64)  # fmt: skip
g = torch.Generator().manual_seed(0)
x_val, x_test = mix.sample(5000, generator=g), mix.sample(20000, generator=g)


def fisher(score_fn):
    return float(0.5 * (score_fn(x_test) - mix.score(x_test)).square().sum(1).mean())


def rounded(w):
    return [round(float(v), 2) for v in w]


sigmas = torch.tensor([0.1, 0.2, 0.4], dtype=F64)
members = [mix.perturbed(1.0, float(s)).score for s in sigmas]

# (a) ---------------------------------------------------------------------------------------------
affine = sm.ScoreEnsemble.fit(members, x_val, constraint="affine")
simplex = sm.ScoreEnsemble.fit(members, x_val, constraint="simplex")
with torch.no_grad():
    direct = float(ism(affine.ensemble, x_val))
assert abs(affine.loss - direct) < 1e-10 * abs(direct)
print(
    f"check: (a) fitted held-out ISM {affine.loss:.8f} = objectives.ism of the ensemble {direct:.8f} -> ok"
)

# (b) ---------------------------------------------------------------------------------------------
best = min(fisher(m) for m in members)
fa, fs = fisher(affine.ensemble), fisher(simplex.ensemble)
assert fa < 0.15 * best and abs(fs - best) < 1e-9  # §9: "10× below the best member"
print(
    f"check: (b) bias only: best member FD {best:.4f}, simplex {fs:.4f} (weights "
    f"{rounded(simplex.ensemble.weights)}), affine {fa:.5f} (weights "
    f"{rounded(affine.ensemble.weights)}) -> ok"
)

# (c) ---------------------------------------------------------------------------------------------
outs = torch.stack([m(x_test) for m in members])  # (J, n, D)
gram_true = torch.einsum("jnd,knd->jk", outs, outs) / x_test.shape[0]
cross = torch.einsum("jnd,nd->j", outs, mix.score(x_test)) / x_test.shape[0]
oracle = solve_weights(gram_true, -cross, "affine")  # argmin of the true Fisher divergence
h = sigmas**2  # Richardson: the Lagrange weights that extrapolate a + b h + c h² to h = 0
richardson = torch.stack([torch.prod(torch.cat([h[:j], h[j + 1 :]]) / (torch.cat([h[:j], h[j + 1 :]]) - h[j])) for j in range(3)])  # fmt: skip
f_oracle = fisher(sm.ScoreEnsemble(members, oracle))
f_rich = fisher(sm.ScoreEnsemble(members, richardson))
moment = {k: float(w @ h) for k, w in (("oracle", oracle), ("richardson", richardson))}
assert abs(moment["oracle"]) < 0.1 * float(h[0]) and abs(moment["richardson"]) < 1e-15
assert f_oracle < 1e-4 * best and f_rich < 1e-2 * best
assert rounded(oracle) == [1.53, -0.58, 0.05] and f"{moment['oracle']:.4f}" == "0.0008"  # §9
print(
    f"check: (c) oracle affine weights {rounded(oracle)}: FD {f_oracle:.1e}, Σwσ² = "
    f"{moment['oracle']:.4f} (the smallest member's σ² is {float(h[0]):.2f}); Richardson's "
    f"{rounded(richardson)}: FD {f_rich:.1e} -> ok"
)
cond = float(torch.linalg.cond(sm.ScoreEnsemble.ism_quadratic(members, x_val)[0]))
spread, fds, damped = {}, {}, {}
for n in (1000, 5000, 25000):
    ws, fs_, wd = [], [], []
    for r in range(10):
        xv = mix.sample(n, generator=torch.Generator().manual_seed(1000 + r))
        gram, lin = sm.ScoreEnsemble.ism_quadratic(members, xv)
        w = solve_weights(gram, lin, "affine", ridge=1e-10)  # unregularised
        ws.append(w)
        fs_.append(fisher(sm.ScoreEnsemble(members, w)))
        wd.append(solve_weights(gram, lin, "affine", ridge=sm.ensemble.DEFAULT_RIDGE))
    ws = torch.stack(ws)
    spread[n], fds[n] = float(ws[:, 0].std()), max(fs_)
    damped[n] = float(torch.stack(wd)[:, 0].std())
    if n == 5000:
        moments = (ws @ h).tolist()
shrink = spread[1000] / spread[25000]
assert cond > 1e4 and spread[5000] > 1.0 and 3.0 < shrink < 8.0 and max(map(abs, moments)) > 0.01
assert all(damped[n] < 0.1 * spread[n] for n in spread)
quoted = [f"{v:.2f}" for v in (*spread.values(), *damped.values())]  # docs/theory.md §9
assert quoted == ["5.35", "2.01", "0.98", "0.27", "0.09", "0.05"] and f"{cond:.0e}" == "4e+05"
assert max(map(abs, moments)) < 0.07
print(
    f"check: (c) cond G = {cond:.1e}; unregularised affine weights over 10 validation draws: sd of "
    f"w₁ {spread[1000]:.2f}, {spread[5000]:.2f}, {spread[25000]:.2f} at N = 1 000, 5 000, "
    f"25 000 (÷{shrink:.1f} for 25× the data, √25 = 5); at N = 5 000 Σwσ² ranges over "
    f"{min(moments):.3f}…{max(moments):.3f}; worst FD {fds[5000]:.4f}; with fit's default ridge "
    f"the sd is {damped[1000]:.2f}, {damped[5000]:.2f}, {damped[25000]:.2f} -> ok"
)

fit_default = inspect.signature(sm.ScoreEnsemble.fit).parameters["ridge"].default
assert fit_default == sm.ensemble.DEFAULT_RIDGE == 1e-3  # §9 quotes "ρ = 10⁻³ by default"

# (d) ---------------------------------------------------------------------------------------------
bias = outs - mix.score(x_test)
bias_gram = torch.einsum("jnd,knd->jk", bias, bias) / x_test.shape[0]
assert bool((bias_gram >= bias_gram.diagonal().min()).all())  # same direction: simplex = best


def bump(y):  # a smooth field to add as a bias
    return torch.tanh(y.flip(1)) * torch.exp(-0.1 * y.square().sum(1, keepdim=True))


for name, c in (("same", (0.3, 0.6)), ("opposite", (0.3, -0.2))):
    pair = [lambda y, c=c_: mix.score(y) + c * bump(y) for c_ in c]
    fit = sm.ScoreEnsemble.fit(pair, x_val, constraint="simplex")
    f_pair, f_fit = [fisher(m) for m in pair], fisher(fit.ensemble)
    if name == "same":
        assert abs(f_fit - min(f_pair)) < 1e-12
    else:
        assert f_fit < 0.012 * min(f_pair)  # §9: "100× below either"
    print(
        f"check: (d) biases {c} ({name} direction): members' FD {f_pair[0]:.4f}, {f_pair[1]:.4f}; "
        f"simplex weights {rounded(fit.ensemble.weights)}, FD {f_fit:.1e} -> ok"
    )


# (e) ---------------------------------------------------------------------------------------------
def noisy(j):  # the σ = 0.1 blurred score plus an independent smooth error field
    a = torch.randn(2, 16, generator=torch.Generator().manual_seed(j), dtype=F64)
    b = torch.randn(16, 2, generator=torch.Generator().manual_seed(100 + j), dtype=F64)
    return lambda y: members[0](y) + 0.3 * torch.tanh(y @ a) @ b / 4


copies = [noisy(j) for j in range(6)]
uniform = sm.ScoreEnsemble(copies)
fu, each = fisher(uniform), [fisher(c) for c in copies]
assert fu < min(each)
print(
    f"check: (e) variance only: members' FD {min(each):.3f}–{max(each):.3f}, uniform average {fu:.3f} -> ok"
)

# (f) ---------------------------------------------------------------------------------------------
eye = torch.ones(2, dtype=F64)
p1, p2 = sm.Gaussian([-1.0, 0.0], eye, dtype=F64), sm.Gaussian([1.0, 0.0], eye, dtype=F64)
y = x_test[:2000]
average = sm.ScoreEnsemble([p1.score, p2.score])(y)  # constant weights ½, ½
geometric = sm.Gaussian([0.0, 0.0], eye, dtype=F64)  # √(p₁p₂) normalised: N(0, I)
bma = sm.GaussianMixture([[-1.0, 0.0], [1.0, 0.0]], torch.stack([eye, eye]), [0.5, 0.5], dtype=F64)
post = torch.softmax(torch.stack([p1.log_prob(y), p2.log_prob(y)], 1), 1)  # πⱼ(x) ∝ ½ pⱼ(x)
bma_by_members = post[:, :1] * p1.score(y) + post[:, 1:] * p2.score(y)
e_geo = float((average - geometric.score(y)).abs().max())
e_bma = float((bma_by_members - bma.score(y)).abs().max())
gap = float((average - bma.score(y)).norm(dim=1).mean())
assert e_geo < 1e-12 and e_bma < 1e-12 and gap > 0.3
q1, q2 = sm.Gaussian([0.0, 0.0], eye, dtype=F64), sm.Gaussian([0.0, 0.0], 0.5 * eye, dtype=F64)
signed = sm.ScoreEnsemble([q1.score, q2.score], [3.0, -2.0])(y)  # 3(−x) − 2(−2x) = +x
outward = float((signed * y).sum(1).min())
assert torch.allclose(signed, y) and outward >= 0
print(
    f"check: (f) the uniform score average equals the score of the geometric mixture √(p₁p₂) (max "
    f"error {e_geo:.0e}), not the BMA's Σπⱼ(x)sⱼ(x) (= the mixture score to {e_bma:.0e}; mean "
    f"‖difference‖ {gap:.2f}); weights (3, −2) on N(0, I), N(0, ½I) give the score +x of "
    f"e^(‖x‖²/2), not normalisable -> ok"
)
