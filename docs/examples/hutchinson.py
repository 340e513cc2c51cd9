"""§4 Hutchinson's identity E[vᵀAv] = tr A for E[vvᵀ] = I, and sliced score matching.

E[vᵀAv] = E[tr(A vvᵀ)] = tr(A E[vvᵀ]) = tr A, for any square A.  SSM replaces tr ∇ₓs in ISM by
vᵀ∇ₓs v (and ½‖s‖² by ½(vᵀs)², whose mean is also ½‖s‖²); SSM-VR keeps ½‖s‖².
Checks: (a) the mean of vᵀAv over 200 000 draws of each projection kind matches tr A within 4
standard errors; (b) objectives.ssm and its variance-reduced form, averaged over projections,
equal objectives.ism within 4 standard errors; (c) SSM-VR's spread per draw is 2.5× smaller here,
and the variance SSM adds is that of ½(vᵀs)², ½‖s‖⁴ per sample for Gaussian v: the gain grows with
the size of the score.
"""

import torch

import scorematch as sm
from scorematch.objectives import ism, ssm
from scorematch.objectives.sliced import PROJECTIONS, projections

torch.set_num_threads(1)
torch.manual_seed(0)  # MLPScore draws its layers from the global RNG: fix it for a repeatable run
g = torch.Generator().manual_seed(0)
a = torch.randn(5, 5, generator=g, dtype=torch.float64)
for kind in PROJECTIONS:
    v = projections(200_000, torch.zeros(1, 5, dtype=torch.float64), kind, generator=g)[:, 0]
    q = torch.einsum("ni,ij,nj->n", v, a, v)
    est, se = float(q.mean()), float(q.std() / q.numel() ** 0.5)
    assert abs(est - float(torch.trace(a))) < 4 * se
    print(
        f"check: E[vᵀAv] = {est:.3f} ± {se:.3f} for {kind} v, tr A = {float(torch.trace(a)):.3f} -> ok"
    )

mix = sm.GaussianMixture([[-2.0, 0.0], [2.0, 1.0]], [[0.5, 0.3], [0.2, 0.6]], dtype=torch.float64)
x = mix.sample(2000, generator=g)
net = sm.MLPScore(2, width=32, depth=1, time_embed_dim=0, seed=1).double()
torch.nn.init.normal_(net.net.out.weight, std=0.5, generator=torch.Generator().manual_seed(1))
with torch.no_grad():
    exact = float(ism(net, x))
    sq = net(x).square().sum(1)  # ‖s‖² per sample
    draws = {}
    for vr in (False, True):  # the same 400 projections for both (one seed per draw)
        gens = [torch.Generator().manual_seed(1000 + k) for k in range(400)]
        draws[vr] = torch.stack([ssm(net, x, variance_reduced=vr, generator=q) for q in gens])
        est, se = float(draws[vr].mean()), float(draws[vr].std() / 400**0.5)
        assert abs(est - exact) < 4 * se
        name = "SSM-VR" if vr else "SSM"
        print(
            f"check: {name} mean over projections {est:.4f} ± {se:.4f}, ISM {exact:.4f}, "
            f"spread per draw {float(draws[vr].std()):.4f} -> ok"
        )
ratio = float(draws[False].std() / draws[True].std())
# docs/theory.md §4 quotes "2.5× smaller in standard deviation (6.5× in variance)".
assert round(ratio, 1) == 2.5 and round(ratio**2, 1) == 6.5, ratio
# What SSM-VR removes: with the same v, SSM − SSM-VR = mean over x of ½((vᵀs)² − ‖s‖²), and for
# Gaussian v, vᵀs ~ N(0, ‖s‖²), so Var_v ½(vᵀs)² = ½‖s‖⁴ per sample: predicted variance below.
diff = draws[False] - draws[True]
predicted, measured = float(0.5 * sq.square().mean() / x.shape[0]), float(diff.var())
assert abs(measured / predicted - 1) < 0.25
print(
    f"check: SSM's spread is {ratio:.1f}× SSM-VR's ({ratio**2:.1f}× in variance); the variance it "
    f"adds, {measured:.5f}, is the predicted E½‖s‖⁴/N = {predicted:.5f} -> ok"
)
