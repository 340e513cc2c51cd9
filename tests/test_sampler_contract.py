"""One contract for every sampler (samplers/base.py), checked on each of them with an exact oracle:
the signature, explicit grids implying steps, exact NFE, the one callback dict, the shared
``denoise=True`` default, seeds, and a named error instead of NaN samples."""

from __future__ import annotations

import inspect

import pytest
import torch

import scorematch as sm
from scorematch.samplers import SAMPLERS, get_sampler, grids

F64 = torch.float64
KEYS = {"i", "t", "sigma", "x", "denoised"}
# Cheap settings per sampler (method options only; the contract's arguments are the test's).
OPTIONS = {
    "annealed_langevin": {"langevin_steps": 3, "step_size": 1e-6},
    "predictor_corrector": {"corrector_steps": 1},
    "ode": {"method": "rk4"},
}
# Model calls per grid interval (+ ``per_level`` for annealed Langevin: steps + 1 levels).
PER_STEP = {"predictor_corrector": 2, "ode": 4, "heun": 2}


class Counting(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x, t):
        self.calls += 1
        return self.inner(x, t)


def _setup():
    process = sm.EDM(sigma_min=0.01, sigma_max=20.0)
    target = sm.Gaussian(torch.tensor([0.5, -1.0], dtype=F64), torch.tensor([0.3, 1.2], dtype=F64))
    model = Counting(target.score_model(process))
    x = process.prior_sample((6, 2), generator=torch.Generator().manual_seed(0), dtype=F64)
    return process, model, x


def _run(name, model, process, x, steps=None, **kw):
    return get_sampler(name)(model, process, x, steps, **{**OPTIONS.get(name, {}), **kw})


def _expected_nfe(name, steps, denoise):
    if name == "annealed_langevin":
        return (steps + 1) * OPTIONS[name]["langevin_steps"] + int(denoise)
    if name == "heun":  # Heun on every interval, then the x̂₀ step (EDM's Euler step to σ = 0)
        return 2 * steps + int(denoise)
    return PER_STEP.get(name, 1) * steps + int(denoise)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_signature(name):
    params = inspect.signature(get_sampler(name)).parameters
    assert list(params)[:4] == ["model", "process", "x_init_or_shape", "steps"]
    assert params["steps"].default is None
    for keyword, default in (("grid", None), ("generator", None), ("callback", None),
                             ("progress", False), ("denoise", True),
                             ("return_trajectory", False)):  # fmt: skip
        assert params[keyword].kind is inspect.Parameter.KEYWORD_ONLY, keyword
        if default is not None or keyword != "grid":
            assert params[keyword].default == default, keyword


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_explicit_grid_implies_steps_and_nfe_is_exact(name):
    process, model, x = _setup()
    times = grids.log_snr(process, 4)
    for denoise in (True, False):
        model.calls = 0
        g = torch.Generator().manual_seed(1)
        out = _run(name, model, process, x, grid=times, denoise=denoise, generator=g)
        assert out.nfe == model.calls == _expected_nfe(name, 4, denoise), (name, denoise)
        g = torch.Generator().manual_seed(1)
        same = _run(name, model, process, x, 4, grid=times, denoise=denoise, generator=g)
        assert torch.equal(out.x, same.x)
    with pytest.raises(ValueError, match="steps"):
        _run(name, model, process, x, 3, grid=times)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_callback_gets_one_dict_per_step(name):
    process, model, x = _setup()
    seen = []
    out = _run(name, model, process, x, 4, grid="log_snr", callback=seen.append,
               return_trajectory=True, denoise=False, generator=torch.Generator().manual_seed(2))  # fmt: skip
    n_calls = 5 if name == "annealed_langevin" else 4  # annealed Langevin: once per level
    assert len(seen) == n_calls
    times = grids.log_snr(process, 4).tolist()
    for i, c in enumerate(seen):
        assert set(c) == KEYS
        assert c["i"] == i
        assert c["t"] == pytest.approx(times[i], rel=1e-12)
        assert c["sigma"] == pytest.approx(float(process.sigma_hat(torch.tensor(times[i]))))
        assert c["x"].shape == x.shape and c["denoised"].shape == x.shape
    if name != "annealed_langevin":  # the state each step starts from is the trajectory's
        assert len(out.trajectory) == 5
        for c, state in zip(seen, out.trajectory):
            assert torch.equal(c["x"], state)


# Samplers whose rule on the real intervals does not depend on whether x̂₀ follows; the others add
# noise on the last interval (SDE samplers) or keep its order (dpm_solver) when it does.
SAME_INTERVALS = ("annealed_langevin", "ode", "heun")


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_denoise_default_is_tweedie_at_the_last_time(name):
    process, model, x = _setup()
    kw = {"grid": "log_snr"}
    calls = []
    recording = lambda z, t: (calls.append((z, t)), model(z, t))[1]  # noqa: E731
    a = _run(name, recording, process, x, 3, generator=torch.Generator().manual_seed(3), **kw)
    b = _run(name, model, process, x, 3, generator=torch.Generator().manual_seed(3),
             denoise=False, **kw)  # fmt: skip
    t_min = process.t_min
    # the last call is the x̂₀ step: Tweedie's formula at t_min, one call more than without it
    last_x, last_t = calls[-1]
    assert a.nfe == b.nfe + 1 == len(calls)
    torch.testing.assert_close(last_t, torch.full((6,), t_min, dtype=F64), rtol=1e-12, atol=0)
    torch.testing.assert_close(
        a.x, process.denoise(last_x, t_min, model(last_x, last_t)), rtol=1e-12, atol=1e-12
    )
    if name in SAME_INTERVALS:  # then x̂₀ is applied to exactly the state denoise=False returns
        expected = process.denoise(b.x, t_min, model(b.x, torch.full((6,), t_min, dtype=F64)))
        torch.testing.assert_close(a.x, expected, rtol=1e-12, atol=1e-12)


def test_a_grid_ending_at_zero_is_the_x0_step():
    # k-diffusion's and EDM's grids end at σ = 0: the last interval is the x̂₀ step, the same run
    # as the grid without its 0 and denoise=True; with denoise=False it is refused.
    process, model, x = _setup()
    times = grids.log_snr(process, 4)
    with_zero = torch.cat([times, times.new_zeros(1)])
    for name in SAMPLERS:
        a = _run(name, model, process, x, grid=times, generator=torch.Generator().manual_seed(1))
        b = _run(name, model, process, x, 5, grid=with_zero,
                 generator=torch.Generator().manual_seed(1))  # fmt: skip
        assert a.nfe == b.nfe and torch.equal(a.x, b.x), name
        with pytest.raises(ValueError, match="x̂₀"):
            _run(name, model, process, x, grid=with_zero, denoise=False)
    resolved = sm.samplers.resolve_grid("heun", process, 4, grid="log_snr")
    torch.testing.assert_close(resolved, with_zero, rtol=0, atol=0)
    torch.testing.assert_close(
        sm.samplers.resolve_grid("heun", process, grid=resolved), resolved, rtol=0, atol=0
    )


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_non_finite_samples_stop_with_a_named_error(name):
    process, _, x = _setup()

    def broken(z, t):  # finite at first, NaN once the noise is low
        return torch.where(t[:, None] < 1.0, torch.nan, -z / (1 + t[:, None] ** 2))

    with pytest.raises(ValueError, match=name.split("_")[0]):
        _run(name, broken, process, x, 6, grid="log_snr", denoise=False,
             generator=torch.Generator().manual_seed(4))  # fmt: skip
