"""§4 Hutchinson's identity E[vᵀAv] = tr A for E[vvᵀ] = I, and sliced score matching.

E[vᵀAv] = E[tr(A vvᵀ)] = tr(A E[vvᵀ]) = tr A, for any square A.  SSM replaces tr ∇ₓs in ISM by
vᵀ∇ₓs v (and ½‖s‖² by ½(vᵀs)², whose mean is also ½‖s‖²); SSM-VR keeps ½‖s‖².
Checks: (a) the mean of vᵀAv over 200 000 draws of each projection kind matches tr A within 4
standard errors; (b) objectives.ssm and its variance-reduced form, averaged over projections,
equal objectives.ism within 4 standard errors, and SSM-VR's per-projection spread is smaller.
"""

import torch

import scorematch as sm
from scorematch.objectives import ism, ssm
from scorematch.objectives.sliced import PROJECTIONS, projections

torch.set_num_threads(1)
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
    for vr in (False, True):
        draws = torch.stack([ssm(net, x, variance_reduced=vr, generator=g) for _ in range(400)])
        est, se = float(draws.mean()), float(draws.std() / draws.numel() ** 0.5)
        assert abs(est - exact) < 4 * se
        name = "SSM-VR" if vr else "SSM"
        print(
            f"check: {name} mean over projections {est:.4f} ± {se:.4f}, ISM {exact:.4f}, "
            f"spread per draw {float(draws.std()):.4f} -> ok"
        )
