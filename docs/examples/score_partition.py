"""§1 The score, and why the partition function drops out: s = ∇ₓ log p = −∇ₓE for p = e^{−E}/Z.

Checks: (a) −∇ₓ of the mixture's energy E = −log p + c equals GaussianMixture.score for any
constant c (log Z never enters); (b) sm.EnergyScore(E) equals sm.EnergyScore(E + 5) exactly.
"""

import torch

import scorematch as sm

torch.set_num_threads(1)
torch.manual_seed(0)  # MLPScore draws its layers from the global RNG: fix it for a repeatable run
mix = sm.GaussianMixture(
    [[-2.0, 0.0], [2.0, 1.0]], [[0.5, 0.3], [0.2, 0.6]], [0.6, 0.4], dtype=torch.float64
)
x = mix.sample(1000, generator=torch.Generator().manual_seed(0))

for c in (0.0, 3.7, -100.0):  # E = −log p + c: p ∝ e^{−E} whatever c, Z = e^{−c}
    energy = sm.EnergyScore(lambda y, c=c: -mix.log_prob(y) + c)
    err = float((energy(x) - mix.score(x)).abs().max())
    assert err < 1e-12, err
    print(f"check: −∇(−log p {c:+g}) equals the exact score: max error {err:.1e} -> ok")

net = sm.MLPEnergy(2, width=32, depth=1, time_embed_dim=0).double()
a, b = sm.EnergyScore(net), sm.EnergyScore(lambda y: net(y) + 5.0)
same = torch.equal(a(x), b(x))
assert same
print("check: EnergyScore(E) == EnergyScore(E + 5) bit for bit -> ok")
