"""§11 A common mis-statement: ISM with ‖∇ₓs‖²_F + 2 tr ∇ₓs in place of ‖s‖² + 2 tr ∇ₓs.

The correct 2·ISM is E[‖s_θ‖² + 2 tr ∇ₓs_θ] = 2·ESM − E‖∇log p‖².  The mis-stated loss
L_bad = E[‖∇ₓs_θ‖²_F + 2 tr ∇ₓs_θ] has no such relation.  Data N(μ, 0.25 I) in 2-D, model
s_θ(x) = −(x − m)/v: L_bad = D/v² − 2D/v, blind to m and minimised at v = 1 whatever the data.
Checks (expectations by quadrature on a grid): 2·ESM − 2·ISM is the same for three θ; 2·ESM − L_bad
is not; the minimiser of 2·ISM over a grid of (m, v) is the data's (μ, 0.25), that of L_bad is v = 1.
"""

import torch
from torch.func import jacrev, vmap

import scorematch as sm
from scorematch.objectives import esm, ism

torch.set_num_threads(1)
mu, var = torch.tensor([0.5, -0.5], dtype=torch.float64), 0.25
data = sm.Gaussian(mu, torch.full((2,), var, dtype=torch.float64))
h = 8 / 160
axis = torch.arange(-4 + h / 2, 4, h, dtype=torch.float64)
x = torch.cartesian_prod(axis, axis)
w = data.log_prob(x).exp() * h * h


def model(m, v):
    return lambda y: -(y - m) / v


def losses(m, v):
    s = model(m * torch.tensor([1.0, -1.0], dtype=torch.float64), v)
    jac = vmap(jacrev(lambda y: s(y[None])[0]))(x)  # (N, D, D)
    with torch.no_grad():
        two_ism = 2 * float((w * ism(s, x, reduction="none")).sum())
        two_esm = 2 * float((w * esm(s, x, data.score, reduction="none")).sum())
    bad = float((w * (jac.square().sum((1, 2)) + 2 * jac.diagonal(dim1=1, dim2=2).sum(1))).sum())
    return two_esm, two_ism, bad


thetas = ((0.0, 1.0), (0.5, 0.25), (1.0, 0.5))
vals = [losses(m, v) for m, v in thetas]
good = [e - i for e, i, _ in vals]
bad = [e - b for e, _, b in vals]
assert max(good) - min(good) < 1e-8 and max(bad) - min(bad) > 1.0
print(f"check: 2·ESM − 2·ISM = {[round(v, 6) for v in good]} for three θ: constant -> ok")
print(f"check: 2·ESM − L_bad = {[round(v, 3) for v in bad]} for the same θ: not constant -> ok")
grid = [(m, v) for m in (0.0, 0.5, 1.0) for v in (0.125, 0.25, 0.5, 1.0, 2.0)]
scores = {mv: losses(*mv) for mv in grid}
best_good = min(grid, key=lambda mv: scores[mv][1])
best_bad = min(grid, key=lambda mv: scores[mv][2])
blind = all(abs(scores[(m, v)][2] - scores[(0.0, v)][2]) < 1e-9 for m, v in grid)
assert best_good == (0.5, 0.25) and best_bad[1] == 1.0 and blind
print(
    f"check: argmin 2·ISM = (m, v) = {best_good} (the data: μ = ½(1, −1), variance 0.25); "
    f"argmin L_bad has v = {best_bad[1]:g} and is the same for every m -> ok"
)
