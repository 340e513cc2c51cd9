"""§9 Question 1: average denoising models over noise levels?  sm.ScoreEnsemble.fit.

A DSM model at σ estimates ∇log p_σ: its bias against ∇log p grows like σ² (p_σ = p ∗ N(0, σ²I)),
its variance falls with σ.  For ŝ = Σ wⱼ sⱼ the held-out ISM is ½wᵀGw + wᵀb (G = E[sⱼ·s_k],
b = E[tr ∇sⱼ]), so weights have a closed form.  Checks, with exact blurred scores as members
(pure bias, no variance): (a) the fitted loss equals objectives.ism of the ensemble; (b) affine
weights (any sign) extrapolate towards σ → 0 like Richardson's and cut the Fisher divergence to
∇log p well below the best member, while simplex weights cannot go below the smallest σ;
(c) with variance only (one σ, independent error fields), the uniform average beats every member.
The trained-network version is benchmarks/noise_levels.py (docs/studies/noise-levels.md).
"""

import torch

import scorematch as sm
from scorematch.objectives import ism

torch.set_num_threads(1)
mix = sm.GaussianMixture([[-2.0, 0.0], [2.0, 1.0]], [[0.5, 0.3], [0.2, 0.6]], [0.6, 0.4], dtype=torch.float64)  # fmt: skip
g = torch.Generator().manual_seed(0)
x_val, x_test = mix.sample(5000, generator=g), mix.sample(20000, generator=g)


def fisher(score_fn):
    return float(0.5 * (score_fn(x_test) - mix.score(x_test)).square().sum(1).mean())


sigmas = (0.1, 0.2, 0.4)
members = [mix.perturbed(1.0, s).score for s in sigmas]
affine = sm.ScoreEnsemble.fit(members, x_val, constraint="affine")
simplex = sm.ScoreEnsemble.fit(members, x_val, constraint="simplex")
with torch.no_grad():
    direct = float(ism(affine.ensemble, x_val))
assert abs(affine.loss - direct) < 1e-10 * abs(direct)
print(
    f"check: fitted held-out ISM {affine.loss:.8f} = objectives.ism of the ensemble {direct:.8f} -> ok"
)
best = min(fisher(m) for m in members)
fa, fs = fisher(affine.ensemble), fisher(simplex.ensemble)
wa = [round(float(w), 2) for w in affine.ensemble.weights]
assert fa < 0.5 * best and min(wa) < 0 and abs(fs - best) < 1e-9
print(
    f"check: bias only: best member FD {best:.4f}, simplex {fs:.4f} (weights "
    f"{[round(float(w), 2) for w in simplex.ensemble.weights]}), affine {fa:.5f} (weights {wa}) -> ok"
)


def noisy(j):  # the σ = 0.1 blurred score plus an independent smooth error field
    a = torch.randn(2, 16, generator=torch.Generator().manual_seed(j), dtype=torch.float64)
    b = torch.randn(16, 2, generator=torch.Generator().manual_seed(100 + j), dtype=torch.float64)
    return lambda y: members[0](y) + 0.3 * torch.tanh(y @ a) @ b / 4


copies = [noisy(j) for j in range(6)]
uniform = sm.ScoreEnsemble(copies)
fu, each = fisher(uniform), [fisher(c) for c in copies]
assert fu < min(each)
print(
    f"check: variance only: members' FD {min(each):.3f}–{max(each):.3f}, uniform average {fu:.3f} -> ok"
)
