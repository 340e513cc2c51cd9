"""Score and energy networks: shapes, dtypes, zero initialisation, smoothness, factory."""

from __future__ import annotations

import math

import pytest
import torch

from scorematch.models import (
    MLPEnergy,
    MLPScore,
    UNet,
    build_model,
    count_parameters,
    model_config,
)
from scorematch.models.embedding import GaussianFourierFeatures


def _randomise(model: torch.nn.Module, seed: int = 0, std: float = 0.2) -> torch.nn.Module:
    """Give every parameter (including the zero-initialised outputs) a random value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std)
    return model


# -- MLPScore ----------------------------------------------------------------------------------
@pytest.mark.parametrize("event", [(2,), (5,), (3, 4), (1, 2, 2)])
@pytest.mark.parametrize("batch", [1, 7])
def test_mlp_score_shapes(event, batch):
    dim = int(torch.tensor(event).prod())
    model = _randomise(MLPScore(dim, width=32, depth=2))
    x = torch.randn(batch, *event)
    assert model(x, torch.rand(batch)).shape == x.shape
    assert model(x, 0.5).shape == x.shape
    assert model(x).shape == x.shape
    assert model(x, None).shape == x.shape


def test_mlp_score_scalar_and_batched_time_agree():
    model = _randomise(MLPScore(2, width=32, depth=2))
    x = torch.randn(6, 2)
    out_scalar = model(x, 0.3)
    out_vector = model(x, torch.full((6,), 0.3))
    out_one = model(x, torch.tensor([0.3]))
    torch.testing.assert_close(out_scalar, out_vector, rtol=0, atol=0)
    torch.testing.assert_close(out_scalar, out_one, rtol=0, atol=0)
    # the output really depends on t, and each sample only on its own t
    t = torch.rand(6)
    assert not torch.allclose(model(x, t), out_scalar)
    per_sample = torch.cat([model(x[i : i + 1], t[i : i + 1]) for i in range(6)])
    torch.testing.assert_close(model(x, t), per_sample, rtol=1e-5, atol=1e-6)


def test_mlp_zero_init_output():
    torch.manual_seed(0)
    model = MLPScore(3, width=64, depth=3)
    x = torch.randn(10, 3)
    # The output layer is exactly zero, so the initial score is exactly 0.
    assert model(x, torch.rand(10)).abs().max() == 0
    energy = MLPEnergy(3, width=64, depth=3)
    e = energy(x, 0.2)
    assert e.shape == (10,) and e.abs().max() == 0


def test_mlp_float64_and_bad_input():
    model = MLPScore(4, width=16, depth=1).double()
    x = torch.randn(3, 4, dtype=torch.float64)
    out = model(x, torch.rand(3, dtype=torch.float64))
    assert out.dtype == torch.float64
    with pytest.raises(ValueError, match="4 features"):
        model(torch.randn(3, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="t must be a scalar"):
        model(x, torch.rand(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="batch"):
        model(torch.randn(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="activation"):
        MLPScore(2, activation="relu")
    with pytest.raises(ValueError, match="width"):
        MLPScore(2, width=0)


def test_unconditional_mlp_has_no_time_embedding():
    model = MLPScore(2, width=16, depth=1, time_embed_dim=0)
    assert model.net.time_embed is None
    x = torch.randn(4, 2)
    torch.testing.assert_close(model(x), model(x, 0.7))


def test_mlp_works_under_torch_func():
    """vmap(jacrev) per sample equals the batched autograd Jacobian: the network is vmap-safe."""
    model = _randomise(MLPScore(3, width=16, depth=2)).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    t = torch.rand(5, dtype=torch.float64)
    jac = torch.func.vmap(torch.func.jacrev(lambda xi, ti: model(xi[None], ti[None])[0]))(x, t)
    for i in range(5):
        ti = t[i : i + 1]
        ref = torch.autograd.functional.jacobian(lambda xi, ti=ti: model(xi[None], ti)[0], x[i])
        torch.testing.assert_close(jac[i], ref, rtol=1e-12, atol=1e-12)


def test_energy_is_twice_differentiable():
    """Hessian of the energy is finite, symmetric and matches finite differences of the gradient.

    Central differences of an analytic C^∞ function in float64 with h = 1e-5 have error
    O(h²‖∇³E‖) ≈ 1e-9, so 1e-6 is a safe tolerance.
    """
    energy = _randomise(MLPEnergy(3, width=32, depth=2), std=0.3).double()
    x = torch.randn(4, 3, dtype=torch.float64)

    def e(xi):
        return energy(xi[None], torch.tensor([0.4], dtype=torch.float64))[0]

    hess = torch.func.vmap(torch.func.hessian(e))(x)
    assert torch.isfinite(hess).all() and hess.abs().max() > 1e-3
    torch.testing.assert_close(hess, hess.transpose(-1, -2), rtol=0, atol=1e-12)
    grad = torch.func.vmap(torch.func.grad(e))
    h = 1e-5
    for j in range(3):
        step = torch.zeros(3, dtype=torch.float64)
        step[j] = h
        fd = (grad(x + step) - grad(x - step)) / (2 * h)
        torch.testing.assert_close(hess[:, :, j], fd, rtol=0, atol=1e-6)
    # unconditional use, as a plain energy E(x)
    assert energy(x).shape == (4,)


def test_fourier_features_are_seeded():
    a, b = GaussianFourierFeatures(16, 16.0, seed=0), GaussianFourierFeatures(16, 16.0, seed=0)
    c = GaussianFourierFeatures(16, 16.0, seed=1)
    torch.testing.assert_close(a.freqs, b.freqs, rtol=0, atol=0)
    assert not torch.equal(a.freqs, c.freqs)
    assert "freqs" in a.state_dict()
    # frequencies are N(0, s²): the sample std of 8 draws is within a factor 3 of s
    assert 16 / 3 < float(a.freqs.std()) < 16 * 3
    emb = a(torch.tensor([0.0, 0.5]))
    assert emb.shape == (2, 16)
    torch.testing.assert_close(emb[0], torch.cat([torch.zeros(8), torch.ones(8)]))


# -- UNet --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("shape", "kwargs"),
    [
        ((1, 8, 8), {"channels": 16, "channel_mult": (1, 2, 2), "num_res_blocks": 1}),
        ((3, 16, 16), {"channels": 16, "channel_mult": (1, 2, 2), "num_res_blocks": 1}),
        ((3, 32, 32), {"channels": 8, "channel_mult": (1, 2, 2, 2), "num_res_blocks": 1}),
        ((1, 12, 20), {"channels": 8, "channel_mult": (1, 2, 2), "num_res_blocks": 1}),
    ],
)
def test_unet_shapes(shape, kwargs):
    model = UNet(shape[0], **kwargs)
    x = torch.randn(2, *shape)
    out = model(x, torch.rand(2))
    assert out.shape == x.shape
    assert out.abs().max() == 0  # final convolution starts at zero
    _randomise(model, std=0.05)
    out = model(x, 0.5)
    assert out.shape == x.shape and torch.isfinite(out).all() and out.abs().max() > 0
    assert model(x).shape == x.shape


def test_unet_float64_time_dependence_and_per_sample():
    model = _randomise(UNet(1, channels=8, channel_mult=(1, 2), num_res_blocks=1), std=0.1)
    model = model.double()
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    out = model(x, t)
    assert out.dtype == torch.float64
    assert not torch.allclose(out, model(x, 0.1))
    per_sample = torch.cat([model(x[i : i + 1], t[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(out, per_sample, rtol=1e-10, atol=1e-12)


def test_unet_jvp_matches_finite_differences():
    """forward-mode AD works (sliced score matching uses jvp); float64 central differences."""
    model = _randomise(UNet(1, channels=8, channel_mult=(1, 2), num_res_blocks=1), std=0.1)
    model = model.double()
    x = torch.randn(2, 1, 4, 4, dtype=torch.float64)
    v = torch.randn_like(x)
    _, jv = torch.func.jvp(lambda z: model(z, 0.3), (x,), (v,))
    h = 1e-6
    fd = (model(x + h * v, 0.3) - model(x - h * v, 0.3)) / (2 * h)
    torch.testing.assert_close(jv, fd, rtol=1e-5, atol=1e-7)


def test_unet_bad_inputs():
    model = UNet(1, channels=8, channel_mult=(1, 2, 2), num_res_blocks=1)
    with pytest.raises(ValueError, match="divisible by 4"):
        model(torch.randn(1, 1, 10, 8), 0.5)
    with pytest.raises(ValueError, match=r"\(batch, 1, H, W\)"):
        model(torch.randn(1, 3, 8, 8), 0.5)
    with pytest.raises(ValueError, match="attention level"):
        UNet(1, channel_mult=(1, 2), attention_levels=(2,))
    with pytest.raises(ValueError, match="channel_mult"):
        UNet(1, channel_mult=())


def test_unet_group_clipping_and_attention_levels():
    model = UNet(1, channels=12, channel_mult=(1, 2), num_res_blocks=1, attention_levels=(0, -1))
    norms = [m for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert all(m.num_channels % m.num_groups == 0 for m in norms)
    assert all(m.num_groups <= 32 for m in norms)
    assert {m.num_groups for m in norms} == {12, 18, 24}  # 36 = 24 + 12 channels → 18 groups
    assert model.config["attention_levels"] == [0, 1]
    assert model(torch.randn(1, 1, 4, 4), 0.1).shape == (1, 1, 4, 4)


# -- factory -----------------------------------------------------------------------------------
def test_build_model_defaults_and_counts():
    mlp = build_model("mlp", (2,))
    assert isinstance(mlp, MLPScore) and 50_000 < count_parameters(mlp) < 300_000
    energy = build_model("energy-mlp", (2,))
    assert isinstance(energy, MLPEnergy)
    digits = build_model("unet", (1, 8, 8))
    assert isinstance(digits, UNet) and 200_000 < count_parameters(digits) < 3_000_000
    mnist = build_model("unet", (1, 28, 28))  # 28 halves only twice → 3 levels
    assert len(mnist.config["channel_mult"]) == 3
    assert build_model("unet", (3, 32, 32)).config["channel_mult"] == [1, 2, 2, 2]
    flat = build_model("mlp", (1, 8, 8), width=64, depth=1)
    assert flat(torch.randn(2, 1, 8, 8), 0.1).shape == (2, 1, 8, 8)


def test_build_model_is_reproducible():
    a = build_model("mlp", (2,), seed=3, width=32)
    rng_before = torch.random.get_rng_state()
    b = build_model(**model_config(a))
    assert torch.equal(rng_before, torch.random.get_rng_state())  # global RNG untouched
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    c = build_model("mlp", (2,), seed=4, width=32)
    assert not torch.equal(a.state_dict()["net.inp.weight"], c.state_dict()["net.inp.weight"])
    assert model_config(a)["width"] == 32


def test_build_model_errors():
    with pytest.raises(ValueError, match="unknown model"):
        build_model("resnet", (2,))
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        build_model("unet", (2,))
    with pytest.raises(ValueError, match="unknown option"):
        build_model("mlp", (2,), widht=3)
    with pytest.raises(ValueError, match="channels"):
        build_model("unet", (1, 8, 8), in_channels=3)
    with pytest.raises(ValueError, match="build_model"):
        model_config(MLPScore(2))


def test_input_fourier_features_formula_roundtrip_and_smoothness():
    from scorematch.models.embedding import InputFourierFeatures

    feats = InputFourierFeatures(2, 5, scale=1.5, seed=3)
    x = torch.randn(4, 2, dtype=torch.float64)
    angle = 2 * math.pi * x @ feats.freqs.double()
    torch.testing.assert_close(feats(x), torch.cat([x, angle.sin(), angle.cos()], 1))
    assert torch.equal(feats.freqs, InputFourierFeatures(2, 5, scale=1.5, seed=3).freqs)
    with pytest.raises(ValueError, match="input_features"):
        InputFourierFeatures(2, 0)
    with pytest.raises(ValueError, match="input_scale"):
        InputFourierFeatures(2, 3, scale=-1.0)

    net = build_model("mlp", (2,), seed=1, input_features=6, input_scale=2.0).double()
    again = build_model(**model_config(net)).double()
    again.load_state_dict(net.state_dict())
    torch.testing.assert_close(again(x, 0.3), net(x, 0.3))
    # Smooth in x: the exact Jacobian trace that ISM uses matches autograd, column by column.
    with torch.random.fork_rng():
        torch.manual_seed(0)
        for p in net.parameters():
            p.data.normal_(0, 0.3)
    xr = x.clone().requires_grad_(True)
    s = net(xr, 0.3)
    loop = sum(torch.autograd.grad(s[:, i].sum(), xr, retain_graph=True)[0][:, i] for i in range(2))
    from scorematch.objectives import ism

    value = ism(lambda z: net(z, 0.3), x, reduction="none")
    expected = 0.5 * (s.detach() ** 2).sum(1) + loop.detach()
    torch.testing.assert_close(value, expected)
