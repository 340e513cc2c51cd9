"""A run against the law its data came from (``runs.oracle``): the Fisher divergence to the true
score, the mixture error of the samples and the exact NLL gap, for the built-in mixture sets and
for a ``GaussianMixture`` given through the API; ``--objective esm`` and SSM's projection options
from the command line, end to end.

The comparisons are checked against exact oracles: a run whose model *is* the true score of its
standardised data must score F = 0 at every level and an NLL gap of 0 to p_{t_min} — which holds
only if the standardisation, the noise levels and the change of variables are all carried through
correctly.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from scorematch.cli import cli
from scorematch.data import TOY_MIXTURES, toy_mixture
from scorematch.distributions import GaussianMixture
from scorematch.runs import Run, build_loss, build_process, configure, make_plots
from scorematch.runs.oracle import (
    NOISE_LEVELS,
    comparison_levels,
    known_mixture,
    standardised_mixture,
)

TINY = ["--steps", "20", "--width", "16", "--depth", "1", "--batch-size", "64"]
QUIET = ["--sample-every", "0", "--no-progress"]


def invoke(*args, ok: bool = True):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


class ExactScore(torch.nn.Module):
    """The exact score of a law, as an unconditional score model ``model(z, t=None)``."""

    def __init__(self, law: GaussianMixture) -> None:
        super().__init__()
        self.law = law
        self.register_buffer("anchor", torch.zeros((), dtype=torch.float64))

    def forward(self, z, t=None):
        return self.law.score(z)


def _run(options: dict, model_of) -> tuple[Run, GaussianMixture]:
    """A Run of a resolved config whose model is ``model_of(law of z, process)``."""
    config, data = configure({"data": "mixture", "n": 1000, "width": 8, "depth": 1, **options})
    process = build_process(config)
    law_z = standardised_mixture(toy_mixture("mixture"), data.standardizer)
    run = Run(config, model_of(law_z, process), process, data.standardizer, data=data)
    return run, law_z


# ------------------------------------------------------------------------------------------------
# Exact oracles
# ------------------------------------------------------------------------------------------------
def test_the_exact_score_of_a_time_conditional_run_scores_zero():
    run, _ = _run({"objective": "edm"}, lambda law, process: law.score_model(process))
    result = run.evaluate(300, max_nll_points=150, rtol=1e-6)
    oracle = result.oracle
    assert oracle.source == "the built-in set 'mixture'"
    levels = comparison_levels(run.config, run.process)
    assert [f.t for f in oracle.fisher] == [lv.t for lv in levels]
    assert levels[0].t == run.process.t_min  # the data, where samplers end
    # EDM's clock is σ: the other levels are the noise levels σ/α themselves
    assert [round(lv.noise, 12) for lv in levels[1:]] == list(NOISE_LEVELS)
    for f in oracle.fisher:
        assert f.fisher < 1e-20 and f.scale > 1 and f.n == 4096
    nll = oracle.nll
    assert nll.points == 150 and nll.t_min == run.process.t_min
    # the PF-ODE density of the exact score is p_{t_min}: the gap to it is the ODE's error alone
    assert abs(nll.gap_t_min) < 1e-3
    # and the gap to the clean density is the blur's KL(p ‖ p_{t_min}), tiny at σ = 0.002
    assert abs(nll.gap - (nll.nll_true_t_min - nll.nll_true + nll.gap_t_min)) < 1e-9
    assert 0 < nll.nll_true_t_min - nll.nll_true < 1e-2
    assert nll.nll == pytest.approx(result.likelihood.nll)
    # an exact score samples the mixture: mode weights as good as exact samples' (3 sds)
    s = oracle.samples
    assert s["weight_error"] < s["weight_error_exact"] + 0.06 and s["nonfinite"] == 0
    record = result.to_dict()
    assert record["true_density"] == oracle.source and len(record["fisher_divergence"]) == 3
    assert record["true_nll_gap"] == nll.gap and record["mixture_total"] == s["total"]


def test_the_blurred_score_of_an_unconditional_run_scores_zero_at_its_own_sigma():
    """An unconditional model trained at σ targets ∇log p_σ: the exact blurred score has F = 0
    there, and at the data the F of ∇log p_σ against ∇log p (computed here directly)."""
    sigma = 0.3
    run, law_z = _run(
        {"objective": "esm", "sigma": sigma},
        lambda law, process: ExactScore(law.perturbed(1.0, sigma)),
    )
    result = run.evaluate(200, nll=False)
    data, target = result.oracle.fisher
    assert (data.t, data.noise, target.t, target.noise) == (None, 0.0, None, sigma)
    assert target.fisher < 1e-20
    x = law_z.sample(4096, generator=torch.Generator().manual_seed(0))
    direct = (law_z.perturbed(1.0, sigma).score(x) - law_z.score(x)).square().sum(1).mean()
    assert data.fisher == pytest.approx(float(direct), rel=1e-12)
    assert result.oracle.nll is None and result.to_dict()["true_nll_gap"] is None


def test_esm_loss_of_a_run_regresses_onto_the_standardised_true_score():
    for sigma in (0.0, 0.3):
        run, law_z = _run(
            {"objective": "esm", "sigma": sigma},
            lambda law, process, s=sigma: ExactScore(law.perturbed(1.0, s) if s else law),
        )
        loss = build_loss(run.config, run.process)
        z = run.standardizer.transform(run.data.train[:256]).double()
        g = torch.Generator().manual_seed(0)
        assert float(loss(run.model, z, g)) < 1e-20  # the exact (blurred) score: ESM = 0
        # any other score: ½ E‖s − ∇log p_σ‖² on the same noised batch
        other = ExactScore(law_z.perturbed(1.0, sigma + 0.2))
        got = loss(other, z, torch.Generator().manual_seed(1))
        zt = z + sigma * torch.randn(z.shape, generator=torch.Generator().manual_seed(1), dtype=z.dtype)  # fmt: skip
        want = 0.5 * (other(zt) - law_z.perturbed(1.0, sigma).score(zt)).square().sum(1).mean()
        torch.testing.assert_close(got, want)


def test_levels_of_each_kind_of_run():
    config = configure({"data": "mixture", "n": 300, "objective": "ncsn", "width": 8})[0]
    process = build_process(config)
    levels = comparison_levels(config, process)
    trained = process.sigmas.tolist()
    assert levels[0].t == process.t_min and all(lv.t in trained for lv in levels)
    config = configure({"data": "mixture", "n": 300, "objective": "diffusion", "width": 8})[0]
    process = build_process(config)
    noises = [lv.noise for lv in comparison_levels(config, process)]
    assert noises[1:] == pytest.approx(NOISE_LEVELS, rel=1e-6)  # VP: σ_t/α_t
    config = configure({"data": "mixture", "n": 300, "objective": "ism", "width": 8})[0]
    assert [lv.noise for lv in comparison_levels(config, None)] == [0.0]


def test_known_mixture_for_builtin_sets_and_given_mixtures(tmp_path):
    config = configure({"data": "8gaussians", "n": 100, "width": 8})[0]
    torch.testing.assert_close(known_mixture(config).means, toy_mixture("8gaussians").means)
    config = configure({"data": "moons", "n": 100, "width": 8})[0]
    assert known_mixture(config) is None
    with pytest.raises(ValueError, match="3 dimensions but the run's data have shape"):
        known_mixture(config, GaussianMixture(torch.zeros(1, 3), torch.ones(1, 3)))
    np.savetxt(tmp_path / "counts.csv", np.arange(40).reshape(20, 2) % 3, delimiter=",")
    config = configure({"data": str(tmp_path / "counts.csv"), "width": 8})[0]
    with pytest.raises(ValueError, match="discrete columns"):
        known_mixture(config, GaussianMixture(torch.zeros(1, 2), torch.ones(1, 2)))


# ------------------------------------------------------------------------------------------------
# Configs
# ------------------------------------------------------------------------------------------------
def test_esm_is_refused_where_the_true_score_is_unknown():
    with pytest.raises(ValueError) as err:
        configure({"data": "moons", "n": 100, "objective": "esm"})
    assert str(err.value).startswith(
        f"esm needs the true score; it is known for the built-in mixture sets: {', '.join(TOY_MIXTURES)}"
    )
    for name in TOY_MIXTURES:
        config = configure({"data": name, "n": 100, "objective": "esm", "width": 8})[0]
        assert config["objective"] == {"name": "esm", "sigma": 0.0}
        assert config["sampling"]["sampler"] == "annealed_langevin" and config["process"] is None


def test_projection_options_are_recorded_and_checked():
    base = {"data": "moons", "n": 100, "width": 8}
    config = configure({**base, "objective": "ssm"})[0]
    assert config["objective"]["projection"] == "rademacher"  # the default
    assert config["objective"]["n_projections"] == 1
    for kind in ("gaussian", "rademacher", "sphere"):
        config = configure({**base, "objective": "ssm-vr", "projection": kind, "projections": 3})[0]
        assert config["objective"] == {
            "name": "ssm-vr",
            "sigma": 0.0,
            "n_projections": 3,
            "projection": kind,
        }
    with pytest.raises(ValueError, match="unknown projection 'normal'; choose one of gaussian"):
        configure({**base, "objective": "ssm", "projection": "normal"})
    with pytest.raises(ValueError, match="projections must be a positive integer"):
        configure({**base, "objective": "ssm", "projections": 0})
    for objective in ("ism", "dsm", "edm"):
        with pytest.raises(ValueError, match="applies to ssm and ssm-vr, not"):
            configure({**base, "objective": objective, "projections": 2})


# ------------------------------------------------------------------------------------------------
# The command line, end to end
# ------------------------------------------------------------------------------------------------
def test_cli_esm_on_a_mixture_train_sample_evaluate_plot(tmp_path):
    out = tmp_path / "esm"
    invoke("train", "--data", "mixture", "--n", "600", "--objective", "esm", "--out", out, *TINY, *QUIET)  # fmt: skip
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["objective"] == {"name": "esm", "sigma": 0.0}
    invoke("sample", out, "-n", "50", "--out", tmp_path / "s.npy")
    assert np.load(tmp_path / "s.npy").shape == (50, 2)
    text = invoke("evaluate", out, "-n", "200", "--no-progress").output
    assert "true density                the built-in set 'mixture'" in text
    assert "Fisher divergence" in text and "mixture error of samples" in text
    record = json.loads((out / "evaluation.json").read_text())
    (fisher,) = record["fisher_divergence"]
    assert fisher["label"] == "data" and fisher["fisher"] > 0
    assert record["true_density"] == "the built-in set 'mixture'"
    assert record["mixture_weight_error"] >= 0 and record["true_nll_gap"] is None
    listed = invoke("plot", out, "-n", "100").output.split()
    assert str(out / "plots" / "score_comparison.png") in listed
    assert "energy_density.png" not in text


def test_cli_refuses_esm_on_data_without_a_known_score(tmp_path):
    result = invoke("train", "--data", "moons", "--objective", "esm", "--out", tmp_path / "r", *TINY, ok=False)  # fmt: skip
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code != 0 and len(lines) == 1
    assert lines[0].startswith(
        "Error: esm needs the true score; it is known for the built-in mixture sets: mixture, 8gaussians"
    )
    result = invoke("train", "--data", "mixture", "--objective", "ism", "--projection", "sphere", "--out", tmp_path / "r", *TINY, ok=False)  # fmt: skip
    assert result.exit_code != 0 and "applies to ssm and ssm-vr, not 'ism'" in result.output


def test_cli_ssm_projections_energy_model_end_to_end(tmp_path):
    out = tmp_path / "ssm"
    invoke(
        "train", "--data", "8gaussians", "--n", "600", "--objective", "ssm", "--projection",
        "sphere", "--projections", "3", "--model", "energy-mlp", "--sigma", "0.1",
        "--out", out, *TINY, *QUIET,
    )  # fmt: skip
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["objective"] == {
        "name": "ssm",
        "sigma": 0.1,
        "n_projections": 3,
        "projection": "sphere",
    }
    invoke("sample", out, "-n", "40", "--out", tmp_path / "s.npy")
    invoke("evaluate", out, "-n", "100", "--no-progress")
    record = json.loads((out / "evaluation.json").read_text())
    assert [f["noise"] for f in record["fisher_divergence"]] == [0.0, 0.1]
    listed = invoke("plot", out, "-n", "100").output.split()
    for name in ("score_comparison.png", "energy_density.png"):
        assert str(out / "plots" / name) in listed


def test_cli_likelihood_and_evaluate_report_the_nll_gap(tmp_path):
    out = tmp_path / "edm"
    invoke("train", "--data", "mixture", "--n", "600", "--val-fraction", "0", "--out", out, *TINY, *QUIET)  # fmt: skip
    text = invoke("likelihood", out, "--no-progress").output
    assert "true density (the built-in set 'mixture'): NLL" in text and "model − true" in text
    text = invoke("evaluate", out, "-n", "100", "--nll-rows", "40", "--no-progress").output
    assert "true NLL (nats/sample)" in text and "model − true at t_min" in text
    record = json.loads((out / "evaluation.json").read_text())
    assert record["true_nll_points"] == 40 == record["nll_points"]
    assert record["true_nll_nll"] == pytest.approx(record["nll"])
    assert len(record["fisher_divergence"]) == 3


def test_a_mixture_given_through_the_api(tmp_path):
    """Any GaussianMixture (data units) for a user's own 2-D table: evaluate and plot use it."""
    mix = GaussianMixture([[0.0, 5.0], [3.0, 7.0]], [[1.0, 0.25], [0.5, 0.5]], [0.4, 0.6])
    x = mix.sample(500, generator=torch.Generator().manual_seed(0))
    np.savetxt(tmp_path / "rows.csv", x.numpy(), delimiter=",", header="a,b", comments="")
    out = tmp_path / "run"
    invoke("train", "--data", tmp_path / "rows.csv", "--out", out, "--val-fraction", "0", *TINY, *QUIET)  # fmt: skip
    from scorematch.runs import load_run

    run = load_run(out)
    assert run.evaluate(100, nll=False).oracle is None  # a user's file: no law unless given
    result = run.evaluate(100, max_nll_points=30, mixture=mix)
    assert result.oracle.source == "the GaussianMixture given"
    assert result.oracle.nll.points == 30 and len(result.oracle.fisher) == 3
    paths = make_plots(run, tmp_path / "plots", n=100, mixture=mix)
    assert tmp_path / "plots" / "score_comparison.png" in paths


def test_help_names_the_sets_with_a_known_density():
    sets = f"({', '.join(TOY_MIXTURES)})"
    for command in ("evaluate", "plot", "train"):
        assert sets in " ".join(invoke(command, "--help").output.split()), command
