"""Class labels and classifier-free guidance: networks with a label embedding, the ``Guided``
score model, and exact checks on a labelled mixture (each class a component, exact scores).

Class-conditional sampling with the exact conditional score reproduces the class's component
(``metrics.mixture_error``), and the likelihood of the same wrapper is the component's exact
density.  Guidance w > 0 samples p_t(x | y) p_t(y | x)^w (not a fixed law at t = 0): the test
checks the wrapper's formula, that samples get more typical of their class as w grows, and that
every sampler and the likelihood take it.
"""

from __future__ import annotations

import pytest
import torch

import scorematch as sm
from scorematch.metrics import mixture_error
from scorematch.models import UNet, build_model

F64 = torch.float64


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def labelled() -> sm.GaussianMixture:
    """Three overlapping 2-D classes (the mixture's components)."""
    return sm.GaussianMixture(
        means=[[-1.0, 0.0], [1.0, 0.5], [0.0, -1.2]],
        covs=[[[0.5, 0.2], [0.2, 0.3]], [[0.3, 0.0], [0.0, 0.6]], [[0.4, -0.1], [-0.1, 0.3]]],
        weights=[0.5, 0.3, 0.2],
        dtype=F64,
    )


def component(mix: sm.GaussianMixture, k: int) -> sm.Gaussian:
    return sm.Gaussian(mix.means[k], mix.covs[k])


# -- networks ---------------------------------------------------------------------------------------
def test_unlabelled_networks_are_unchanged():
    """Models built without labels or masks have today's parameters, in today's order, from the
    same seed (old checkpoints load into them)."""
    mlp = build_model("mlp", (2,), seed=0, width=8, depth=1)
    assert [k for k, _ in mlp.state_dict().items()] == [
        "net.time_embed.fourier.freqs", "net.time_embed.mlp.0.weight", "net.time_embed.mlp.0.bias",
        "net.time_embed.mlp.2.weight", "net.time_embed.mlp.2.bias", "net.inp.weight",
        "net.inp.bias", "net.blocks.0.fc1.weight", "net.blocks.0.fc1.bias",
        "net.blocks.0.emb.weight", "net.blocks.0.emb.bias", "net.blocks.0.fc2.weight",
        "net.blocks.0.fc2.bias", "net.out.weight", "net.out.bias",
    ]  # fmt: skip
    labelled_mlp = build_model("mlp", (2,), seed=0, width=8, depth=1, num_classes=3)
    for k, v in mlp.state_dict().items():  # the label table is built last: same draws before
        torch.testing.assert_close(labelled_mlp.state_dict()[k], v, rtol=0, atol=0)
    unet = UNet(1, channels=8, channel_mult=(1, 2), num_res_blocks=1, groups=4)
    assert not any("label" in k for k in unet.state_dict())
    assert unet.conv_in.in_channels == 1


@pytest.mark.parametrize("kind", ["mlp", "unet"])
def test_label_embedding_starts_at_zero_and_learns_per_class(kind):
    if kind == "mlp":
        net = sm.MLPScore(3, width=16, depth=1, num_classes=4)
        x = torch.randn(5, 3, generator=gen(1))
    else:
        net = UNet(1, channels=8, channel_mult=(1, 2), num_res_blocks=1, groups=4, num_classes=4)
        x = torch.randn(5, 1, 4, 4, generator=gen(1))
    assert net.conditioning == ("label",)
    t = torch.full((5,), 0.3)
    table = (net.net if kind == "mlp" else net).label_embed.table
    assert bool((table.weight == 0).all())  # an untrained labelled network is the unlabelled one
    with torch.no_grad():  # give every other weight (the zero output layer too) random values
        for p in net.parameters():
            if p is not table.weight:
                p.normal_(0.0, 0.3, generator=gen(0))
    label = torch.tensor([0, 1, 2, 3, -1])
    base = net(x, t)
    torch.testing.assert_close(net(x, t, label=label), base)
    with torch.no_grad():
        table.weight.normal_(0.0, 1.0, generator=gen(2))
    out = net(x, t, label=label)
    assert not torch.allclose(out[:4], base[:4])
    torch.testing.assert_close(out[4], net(x, t)[4])  # −1 is the "no label" token = None
    torch.testing.assert_close(net(x, t, label=2), net(x, t, label=torch.full((5,), 2)))


def test_label_validation():
    net = sm.MLPScore(2, width=8, depth=1, num_classes=3)
    x, t = torch.zeros(2, 2), torch.zeros(2)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\) or be −1"):
        net(x, t, label=torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="shape"):
        net(x, t, label=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="num_classes=0"):
        sm.MLPScore(2, width=8, depth=1)(x, t, label=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="time_embed_dim"):
        sm.MLPScore(2, time_embed_dim=0, num_classes=3)
    model = sm.wrap(sm.MLPScore(2, width=8, depth=1), sm.VP())
    with pytest.raises(ValueError, match="takes no conditioning, not label"):
        model(x, t, label=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="takes no labels"):
        sm.Guided(model, 1)
    with pytest.raises(ValueError, match="guidance must be"):
        sm.Guided(labelled().score_model(sm.VP()), 1, guidance=-1.0)


def test_mask_conditional_unet_reads_known_pixels():
    net = UNet(
        1, channels=8, channel_mult=(1, 2), num_res_blocks=1, groups=4, mask_conditional=True
    )
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.2)
    x = torch.randn(2, 1, 4, 4, generator=gen(3))
    mask = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    mask[:, :, :, :2] = True
    known = torch.randn(2, 1, 4, 4, generator=gen(4))
    out = net(x, torch.zeros(2), known=known, mask=mask)
    assert out.shape == x.shape
    moved = x.clone()
    moved[mask] += 5.0  # the state at known pixels is not read ...
    torch.testing.assert_close(net(moved, torch.zeros(2), known=known, mask=mask), out)
    other = known.clone()
    other[mask] += 1.0  # ... their clean values are
    assert not torch.allclose(net(x, torch.zeros(2), known=other, mask=mask), out)


# -- Guided on the exact labelled mixture -----------------------------------------------------------
def test_guided_is_the_guidance_formula():
    mix, process = labelled(), sm.VP()
    exact = mix.score_model(process)
    x = torch.randn(6, 2, generator=gen(5), dtype=F64)
    t = torch.linspace(0.05, 1.0, 6, dtype=F64)
    label = torch.tensor([0, 1, 2, 0, 1, -1])
    for w in (0.0, 0.5, 3.0):
        out = sm.Guided(exact, label, guidance=w)(x, t)
        ref = (1 + w) * exact(x, t, label=label) - w * exact(x, t)
        torch.testing.assert_close(out, ref, rtol=1e-14, atol=1e-14)
    alpha, sigma = process.marginal(t)
    one = sm.Guided(exact, 1)(x, t)
    for b in range(6):
        law = component(mix, 1).perturbed(float(alpha[b]), float(sigma[b]))
        torch.testing.assert_close(one[b : b + 1], law.score(x[b : b + 1]), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k", [0, 1, 2])
def test_class_conditional_sampling_with_the_exact_score_is_the_class(k):
    mix, process = labelled(), sm.EDM()
    model = sm.Guided(mix.score_model(process), k)
    x = sm.sample(model, process, (4000, 2), steps=60, generator=gen(k)).x
    e = mixture_error(x, component(mix, k))
    assert e["bures_excess"] < 3 * e["bures_noise"] + 0.005, e


def test_guidance_makes_samples_more_typical_of_their_class():
    mix, process = labelled(), sm.EDM()
    exact = mix.score_model(process)
    confidence = []
    for w in (0.0, 1.0, 3.0):
        x = sm.sample(
            sm.Guided(exact, 2, guidance=w), process, (3000, 2), steps=40, generator=gen(7)
        ).x
        confidence.append(float(mix.responsibilities(x)[:, 2].mean()))
    assert confidence[0] < confidence[1] < confidence[2], confidence
    assert confidence[2] > 0.95


def test_the_likelihood_takes_a_guided_model():
    mix, process = labelled(), sm.VP()
    k = 1
    model = sm.Guided(mix.score_model(process), k)
    x = component(mix, k).sample(8, generator=gen(9))
    law = component(mix, k)
    a_min, s_min = (float(v) for v in process.marginal(torch.tensor(process.t_min, dtype=F64)))
    a_max, s_max = (float(v) for v in process.marginal(torch.tensor(process.t_max, dtype=F64)))
    out = sm.log_likelihood(
        model, process, x, rtol=1e-6, atol=1e-6,
        prior_log_prob=lambda z: law.perturbed(a_max, s_max).log_prob(z),
    )  # fmt: skip
    target = law.perturbed(a_min, s_min).log_prob(x)
    assert (out.log_prob - target).abs().max() < 1e-3
    guided = sm.log_likelihood(sm.Guided(mix.score_model(process), k, 2.0), process, x)
    assert bool(torch.isfinite(guided.log_prob).all())


def test_linear_skip_starts_at_zero_and_is_linear_in_the_input():
    plain = build_model("mlp", (3,), seed=0, width=8, depth=1, mask_conditional=True)
    skip = build_model(
        "mlp", (3,), seed=0, width=8, depth=1, mask_conditional=True, linear_skip=True
    )
    x, t = torch.randn(4, 3, generator=gen(1)), torch.full((4,), 0.2)
    mask = torch.tensor([[1, 0, 0]] * 4, dtype=torch.bool)
    known = torch.randn(4, 3, generator=gen(2))
    torch.testing.assert_close(
        skip(x, t, known=known, mask=mask), plain(x, t, known=known, mask=mask)
    )
    with torch.no_grad():
        skip.net.skip.weight.normal_(0.0, 1.0, generator=gen(3))
    gap = skip(x, t, known=known, mask=mask) - plain(x, t, known=known, mask=mask)
    inputs = torch.cat([x * ~mask, known * mask, mask.float(), torch.zeros_like(x)], 1)
    torch.testing.assert_close(gap, inputs @ skip.net.skip.weight.T)
