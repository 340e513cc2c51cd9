"""`scorematch ensemble`: a run whose model is the weighted average of other runs' models, with
weights fitted on their common validation rows; refused when the runs cannot be averaged."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from scorematch.cli import cli
from scorematch.ensemble import ScoreEnsemble
from scorematch.runs import load_run
from scorematch.runs import train as train_run

TINY = {
    "data": "moons",
    "n": 400,
    "objective": "dsm",
    "steps": 40,
    "width": 16,
    "depth": 1,
    "refit": False,
    "sample_every": 0,
}


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    root = tmp_path_factory.mktemp("ens")
    paths = []
    for sigma in (0.1, 0.3):
        out = root / f"dsm_{sigma}"
        train_run({**TINY, "sigma": sigma}, out, progress=False)
        paths.append(out)
    return root, paths


def test_ensemble_run_is_the_weighted_average_and_samples(members):
    root, paths = members
    out = root / "ens"
    result = CliRunner().invoke(cli, ["ensemble", *map(str, paths), "--out", str(out)])
    assert result.exit_code == 0, result.output
    run = load_run(out)
    assert isinstance(run.model, ScoreEnsemble)
    weights = run.config["ensemble"]["weights"]
    assert sum(weights) == pytest.approx(1.0)
    singles = [load_run(p) for p in paths]
    z = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    expected = sum(w * s.model(z) for w, s in zip(weights, singles))
    torch.testing.assert_close(run.model(z), expected.to(run.model(z).dtype), rtol=1e-5, atol=1e-6)
    # The fitted weights are no worse on the validation rows than either member alone.
    section = run.config["ensemble"]
    assert section["validation_ism"] <= min(section["member_validation_ism"]) + 1e-9
    assert run.sample(50, seed=0).x.shape == (50, 2)  # Langevin at the smallest member level
    assert (
        CliRunner()
        .invoke(cli, ["evaluate", str(out), "-n", "50", "--no-nll", "--no-progress"])
        .exit_code
        == 0
    )


def test_ensemble_refuses_runs_it_cannot_average(members, tmp_path):
    _, paths = members
    other = tmp_path / "circles"
    train_run({**TINY, "data": "circles", "sigma": 0.1}, other, progress=False)
    for args, message in (
        ([paths[0], other], "different data"),
        ([paths[0]], "at least two"),
    ):
        result = CliRunner().invoke(
            cli, ["ensemble", *map(str, args), "--out", str(tmp_path / "x")]
        )
        assert result.exit_code == 1 and message in result.output, result.output
