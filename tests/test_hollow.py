"""The hollow score network: its one-pass divergence against the full Jacobian's trace, and the
objectives and likelihood that use it against the same quantities computed the slow way."""

from __future__ import annotations

import pytest
import torch
from torch.func import jacrev, vmap

import scorematch as sm
from scorematch.likelihood import log_likelihood
from scorematch.models import HollowMLP, build_model, model_config
from scorematch.objectives import ism
from scorematch.objectives.implicit import CheapDivergence, exact_trace
from scorematch.parametrization import at_time, wrap

F64 = torch.float64


def _hollow(dim: int, seed: int = 0, std: float = 0.3, **kwargs) -> HollowMLP:
    """A float64 hollow net moved off its zero read-out (an untrained one returns 0)."""
    kwargs = {"width": 8, "features": 4, "time_embed_dim": 8, **kwargs}
    net = build_model("hollow", (dim,), seed=seed, **kwargs).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(std * torch.randn(p.shape, generator=g, dtype=F64))
    return net


def _jacobian_trace(fn, x: torch.Tensor) -> torch.Tensor:
    """tr ∂fn/∂x per sample from the full Jacobian (torch.func), for flat x (B, D)."""
    jac = vmap(jacrev(lambda xx: fn(xx[None])[0]))(x)
    return jac.diagonal(dim1=-2, dim2=-1).sum(-1)


@pytest.mark.parametrize("dim", [1, 2, 7, 33])
def test_one_pass_divergence_is_the_jacobian_trace(dim):
    net = _hollow(dim)
    x = torch.randn(6, dim, generator=torch.Generator().manual_seed(1), dtype=F64)
    t = torch.rand(6, generator=torch.Generator().manual_seed(2), dtype=F64)
    s, div = net.value_and_divergence(x, t)
    torch.testing.assert_close(s, net(x, t), rtol=0, atol=0)
    trace = vmap(lambda xx, tt: _jacobian_trace(lambda z: net(z, tt[None]), xx[None])[0])(x, t)
    tol = 1e-12 * (1 + float(trace.detach().abs().max()))
    torch.testing.assert_close(div, trace, rtol=0, atol=tol)

    # Unconditional use (t omitted) and image-shaped inputs.
    s0, div0 = net.value_and_divergence(x)
    torch.testing.assert_close(
        div0, _jacobian_trace(net, x), rtol=0, atol=1e-12 * (1 + float(div0.detach().abs().max()))
    )
    assert s0.shape == x.shape


def test_image_shaped_inputs_and_gradients_with_respect_to_x():
    net = _hollow(12)
    x = torch.randn(4, 1, 3, 4, generator=torch.Generator().manual_seed(3), dtype=F64)
    s, div = net.value_and_divergence(x, 0.3)
    assert s.shape == x.shape and div.shape == (4,)
    # d(Σ div)/dx through the one-pass trace equals the derivative of the Jacobian's trace.
    xr = x.reshape(4, 12).clone().requires_grad_(True)
    (g_cheap,) = torch.autograd.grad(net.value_and_divergence(xr, 0.3)[1].sum(), xr)
    (g_full,) = torch.autograd.grad(_jacobian_trace(lambda z: net(z, 0.3), xr).sum(), xr)
    torch.testing.assert_close(g_cheap, g_full, rtol=0, atol=1e-11)


def test_ism_with_the_hollow_net_equals_ism_the_slow_way():
    net = _hollow(5, seed=4)
    x = torch.randn(32, 5, generator=torch.Generator().manual_seed(5), dtype=F64)
    assert isinstance(net, CheapDivergence)
    slow = lambda z: net(z)  # noqa: E731  (hides value_and_divergence: D vector-Jacobian products)
    assert not isinstance(slow, CheapDivergence)
    params = list(net.parameters())
    for fast_fn, slow_fn in ((net, slow), (at_time(net, 0.4), at_time(slow_model(net), 0.4))):
        fast, ref = ism(fast_fn, x), ism(slow_fn, x)
        torch.testing.assert_close(fast, ref, rtol=1e-13, atol=1e-13)
        g_fast = torch.autograd.grad(fast, params, allow_unused=True)
        g_ref = torch.autograd.grad(ref, params, allow_unused=True)
        for a, b in zip(g_fast, g_ref, strict=True):
            if b is None:
                assert a is None or not a.any()
            else:
                torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    per_sample = ism(net, x, reduction="none")
    torch.testing.assert_close(per_sample, ism(slow, x, reduction="none"), rtol=1e-13, atol=1e-13)


def slow_model(net):
    """net(x, t) without the offer."""
    return lambda z, t: net(z, t)


def test_exact_trace_asks_the_score_function_once():
    net = _hollow(4)
    calls = []
    original = net.value_and_divergence

    class Spy:
        def __call__(self, x):
            return net(x)

        def value_and_divergence(self, x):
            calls.append(x.shape)
            return original(x)

    _, trace = exact_trace(Spy(), torch.randn(3, 4, dtype=F64))
    assert calls == [(3, 4)] and trace.shape == (3,)

    class Wrong:
        def __call__(self, x):
            return x

        def value_and_divergence(self, x):
            return x, x  # the trace must be (B,)

    with pytest.raises(ValueError, match=r"value_and_divergence\(x\)\[1\]"):
        exact_trace(Wrong(), torch.randn(3, 4))


@pytest.mark.parametrize("prediction", ["eps", "x0", "score", "edm"])
def test_parametrizations_pass_the_cheap_divergence_on(prediction):
    process = sm.VP() if prediction != "edm" else sm.EDM()
    net = _hollow(3, seed=6)
    model = wrap(net, process, prediction)
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(7), dtype=F64)
    t = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9], dtype=F64) * (
        process.t_max if prediction == "edm" else 1
    )
    s, div = model.value_and_divergence(x, t)
    torch.testing.assert_close(s, model(x, t), rtol=1e-13, atol=1e-13)
    trace = vmap(lambda xx, tt: _jacobian_trace(lambda z: model(z, tt[None]), xx[None])[0])(x, t)
    torch.testing.assert_close(div, trace, rtol=1e-10, atol=1e-10)
    # A net without the offer: the wrapper offers nothing either.
    plain = wrap(build_model("mlp", (3,), seed=0).double(), process, prediction)
    assert getattr(plain, "value_and_divergence", None) is None
    assert not callable(getattr(at_time(plain, 0.5), "value_and_divergence", None))


def test_likelihood_uses_the_one_pass_divergence_and_agrees_with_the_trace():
    process = sm.VP()
    model = wrap(_hollow(3, seed=8, std=0.05), process, "eps")
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(9), dtype=F64)
    fast = log_likelihood(model, process, x)
    slow = log_likelihood(slow_model(model), process, x)
    torch.testing.assert_close(fast.log_prob, slow.log_prob, rtol=1e-9, atol=1e-9)
    assert torch.equal(fast.nfe_per_sample, slow.nfe_per_sample)  # the same ODE, step for step
    for time in ("t", "angle"):
        kw = dict(time=time, step_control="batch", rtol=1e-3, atol=1e-3)
        a = log_likelihood(model, process, x, **kw)
        b = log_likelihood(slow_model(model), process, x, **kw)
        torch.testing.assert_close(a.log_prob, b.log_prob, rtol=1e-9, atol=1e-9)
    with torch.inference_mode():
        inside = log_likelihood(model, process, x)
    torch.testing.assert_close(inside.log_prob, fast.log_prob, rtol=0, atol=1e-12)


def test_no_grad_results_are_detached_and_training_gradients_reach_every_part():
    net = _hollow(4)
    x = torch.randn(8, 4, dtype=F64)
    with torch.no_grad():
        s, div = net.value_and_divergence(x, 0.2)
    assert not s.requires_grad and not div.requires_grad
    loss = ism(at_time(net, 0.2), x)
    loss.backward()
    for name, p in net.named_parameters():
        if name.startswith("time_embed") or name.startswith("conditioner") or "read" in name:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_factory_registry_and_bad_arguments():
    assert "hollow" in sm.models.MODEL_NAMES
    a = build_model("hollow", (2,), seed=3)
    b = build_model(**model_config(a))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert model_config(a)["width"] == 128 and build_model("hollow", (64,)).config["width"] == 32
    assert (a(torch.randn(5, 2), 0.5) == 0).all()  # zero read-out: an untrained score is 0
    with pytest.raises(ValueError, match="width"):
        HollowMLP(3, width=0)
    with pytest.raises(ValueError, match="built for 3 features"):
        HollowMLP(3)(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="unknown option"):
        build_model("hollow", (2,), norm="layer")


def test_a_run_of_a_hollow_network_scores_the_likelihood_exactly_at_any_dimension():
    from scorematch.data.transforms import Standardizer
    from scorematch.runs.run import EXACT_DIVERGENCE_MAX_DIM, Run

    dim = 4 * EXACT_DIVERGENCE_MAX_DIM
    process = sm.EDM()

    def run(name: str, d: int) -> Run:
        model = wrap(build_model(name, (d,), seed=0), process, "edm")
        config = {"data": {"shape": [d]}, "objective": {"name": "edm"}}
        return Run(
            config, model, process, Standardizer("vector", (d,), torch.zeros(d), torch.ones(d))
        )

    assert run("hollow", dim).default_divergence == "exact"  # one backward pass at any D
    assert run("mlp", dim).default_divergence == "hutchinson"  # D backward passes
    assert run("mlp", EXACT_DIVERGENCE_MAX_DIM).default_divergence == "exact"


def _flat_doc(name: str) -> str:
    from pathlib import Path

    return " ".join((Path(__file__).resolve().parents[1] / "docs" / name).read_text().split())


def test_the_docs_quote_the_measured_hollow_ism_cost():
    """docs/api.md and docs/guide.md quote the range of ISM-with-the-hollow-net / DSM and the MLP's
    ISM / (D·DSM) of benchmarks/results/objectives.md's timing tables."""
    import re
    from pathlib import Path

    table = (Path(__file__).resolve().parents[1] / "benchmarks/results/objectives.md").read_text()
    (hollow_row,) = re.findall(r"^\| ISM \(one pass\) \|(.*)\|$", table, re.M)
    hollow = [float(v) for v in re.findall(r"([\d.]+)×", hollow_row)]
    (mlp_row,) = re.findall(r"^\| ISM \(exact\) \|(.*)\|$", table, re.M)
    per_d = [float(v) for v in re.findall(r"\(([\d.]+)·D", mlp_row)]
    assert len(hollow) == len(per_d) == 5 and max(hollow) <= 3.0  # the target
    quoted = f"{min(hollow):.2f}–{max(hollow):.2f}×"
    for doc in ("api.md", "guide.md"):
        assert quoted in _flat_doc(doc), (doc, quoted)
    assert f"{min(per_d):.2f}–{max(per_d):.2f}·D × DSM" in _flat_doc("api.md")
