"""`scorematch tune` and the tuned grids of a run: what grids.json holds, that `sample` and
`evaluate` sample on exactly the stored times for the same sampler, NFE and checkpoint (and say
so), that another checkpoint's grid is passed over with a note, and one-line errors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from click.testing import CliRunner

import scorematch as sm
from scorematch import io as io_module
from scorematch.cli import cli
from scorematch.run_dir import RunDir
from scorematch.runs import load_run
from scorematch.runs.sharding import block_seed
from scorematch.runs.tuning import (
    GRIDS_FILE,
    beats_default,
    choose_grid,
    parse_nfe,
    stored_grids,
    tune_run,
)

TINY = ["--steps", "30", "--width", "16", "--depth", "1", "--batch-size", "64"]
QUICK = ["--draws", "32", "--max-evaluations", "40", "--no-progress"]


def invoke(*args, ok: bool = True):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def one_line_error(result, *fragments: str) -> str:
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def tuned_run(tmp_path_factory):
    """A tiny moons run whose own sampler is dpm_solver at 4 NFE, tuned at 4 and 6 NFE."""
    folder = tmp_path_factory.mktemp("runs")
    out, settings = folder / "moons", folder / "settings.yaml"
    settings.write_text("sampler: dpm_solver\nsample_steps: 3\n")
    invoke("train", "--data", "moons", "--n", "300", "--out", out, *TINY, "--config", settings,
           "--sample-every", "0", "--no-progress")  # fmt: skip
    result = invoke("tune", out, "--nfe", "6,4", *QUICK)
    return out, result.output


def test_parse_nfe_takes_comma_separated_counts_of_at_least_three():
    assert parse_nfe("20,5, 10,5") == (5, 10, 20)
    assert parse_nfe([7]) == (7,)
    for bad in ("", "5;10", "5,x", "1.5", "-5"):
        with pytest.raises(ValueError, match="comma-separated"):
            parse_nfe(bad)
    with pytest.raises(ValueError, match="at least 3"):
        parse_nfe("2,10")


def test_tune_stores_each_grid_with_its_checkpoint_and_discrepancies(tuned_run):
    out, output = tuned_run
    run = load_run(out)
    grids = stored_grids(out)
    assert [(g["sampler"], g["nfe"], g["step"]) for g in grids] == [
        ("dpm_solver", 4, run.step),
        ("dpm_solver", 6, run.step),
    ]
    for g in grids:
        times = torch.tensor(g["times"], dtype=torch.float64)
        assert times.numel() == g["nfe"] + 1 and float(times[-1]) == 0.0
        assert float(times[0]) == run.process.t_max and bool((times[1:] < times[:-1]).all())
        assert g["draws"] == g["holdout"] == 32 and g["reference_steps"] == 200
        assert 0 <= g["loss"] < g["loss_default"]  # better on the draws it was fitted on
        assert g["holdout_loss"] >= 0 and g["holdout_loss_default"] >= 0
    # the printed table: one row per NFE with the held-out discrepancies, and where they went
    rows = {int(line.split()[0]): line.split() for line in output.splitlines()
            if line.split() and line.split()[0].isdigit()}  # fmt: skip
    assert sorted(rows) == [4, 6]
    for g in grids:
        row = rows[g["nfe"]]
        assert float(row[1]) == pytest.approx(g["holdout_loss_default"], rel=1e-3)
        assert float(row[2]) == pytest.approx(g["holdout_loss"], rel=1e-3)
    assert f"wrote {out / GRIDS_FILE}" in output


def test_run_samples_on_the_stored_times_for_its_sampler_nfe_and_step(tuned_run):
    out, _ = tuned_run
    run = load_run(out)
    entry = next(g for g in stored_grids(out) if g["nfe"] == 6)
    times = torch.tensor(entry["times"], dtype=torch.float64)
    drawn = run.sample(50, sampler="dpm_solver", steps=5, seed=3)
    assert (
        drawn.tuned_grid and drawn.nfe == 6 and "tuned for this model at 6 NFE" in drawn.grid_note
    )
    gen = torch.Generator().manual_seed(block_seed(3, 0))
    z = sm.sample(
        run.model, run.process, (50, 2), sampler="dpm_solver", grid=times, generator=gen
    ).x
    torch.testing.assert_close(drawn.x, run.standardizer.inverse(z), rtol=0, atol=0)
    # --grid default opts out: the default recipe, silently
    plain = run.sample(50, sampler="dpm_solver", steps=5, seed=3, grid="default")
    assert not plain.tuned_grid and plain.grid_note is None and not torch.equal(plain.x, drawn.x)
    gen = torch.Generator().manual_seed(block_seed(3, 0))
    z = sm.sample(run.model, run.process, (50, 2), sampler="dpm_solver", steps=5, generator=gen).x
    torch.testing.assert_close(plain.x, run.standardizer.inverse(z), rtol=0, atol=0)
    # no tuned grid at this NFE, or another sampler: the default grid, nothing to say
    for options in ({"sampler": "dpm_solver", "steps": 7}, {"sampler": "heun", "steps": 3}):
        other = run.sample(20, seed=3, **options)
        assert not other.tuned_grid and other.grid_note is None
    with pytest.raises(ValueError, match="no tuned grid for dpm_solver at 8 NFE"):
        run.sample(20, sampler="dpm_solver", steps=7, grid="tuned")
    with pytest.raises(ValueError, match="not 'heun'"):
        run.sample(20, sampler="heun", steps=3, grid="tuned")
    with pytest.raises(
        ValueError, match=r"unknown grid 'best'; choose one of auto, tuned, default"
    ):
        run.sample(20, grid="best")


def test_sample_and_evaluate_say_which_grid_they_used(tuned_run, tmp_path):
    out, _ = tuned_run
    lines = invoke("sample", out, "-n", "40", "--out", tmp_path / "s.npy", "--no-progress").output
    assert "grid: tuned for this model at 4 NFE" in lines and "--grid default" in lines
    lines = invoke("sample", out, "-n", "40", "--out", tmp_path / "s.npy", "--grid", "default",
                   "--no-progress").output  # fmt: skip
    assert "grid:" not in lines
    lines = invoke("evaluate", out, "-n", "64", "--no-nll", "--no-progress").output
    assert "grid: tuned for this model at 4 NFE" in lines
    record = json.loads((out / "evaluation.json").read_text())
    assert record["sampler_grid"] == "tuned" and record["sampler_nfe"] == 4
    invoke("evaluate", out, "-n", "64", "--no-nll", "--no-progress", "--grid", "default")
    assert json.loads((out / "evaluation.json").read_text())["sampler_grid"] == "default"


def test_a_grid_of_another_checkpoint_is_passed_over_with_a_note(tuned_run, tmp_path):
    out, _ = tuned_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    data = json.loads((copy / GRIDS_FILE).read_text())
    for g in data["grids"]:
        g["step"] += 1000
    (copy / GRIDS_FILE).write_text(json.dumps(data))
    run = load_run(copy)
    chosen = choose_grid(run, "dpm_solver", 3)
    assert chosen.times is None and not chosen.tuned
    assert f"fitted to step {run.step + 1000}, not to this model (step {run.step})" in chosen.line
    drawn = run.sample(20, seed=1)
    assert not drawn.tuned_grid and drawn.grid_note == chosen.line
    # tuning this checkpoint adds its grid and keeps the other step's
    tune_run(run, [4], draws=32, max_evaluations=40)
    keys = sorted((g["nfe"], g["step"]) for g in stored_grids(copy))
    assert keys == [(4, run.step), (4, run.step + 1000), (6, run.step + 1000)]
    assert run.sample(20, seed=1).tuned_grid


def test_tune_errors_are_one_line(tuned_run, tmp_path):
    out, _ = tuned_run
    one_line_error(invoke("tune", out, "--nfe", "5,ten", ok=False), "--nfe", "'5,ten'")
    one_line_error(invoke("tune", out, "--nfe", "2", ok=False), "at least 3")
    one_line_error(invoke("tune", tmp_path / "nowhere", ok=False), "run directory not found")
    empty = tmp_path / "untrained"
    empty.mkdir()
    shutil.copy(out / "config.yaml", empty / "config.yaml")
    one_line_error(invoke("tune", empty, ok=False), "no checkpoint", "train it first")
    ssm = tmp_path / "ssm"
    invoke("train", "--data", "moons", "--n", "200", "--out", ssm, "--objective", "ssm",
           "--steps", "5", "--width", "8", "--depth", "1", "--sample-every", "0", "--no-progress")  # fmt: skip
    one_line_error(invoke("tune", ssm, *QUICK, ok=False), "'ssm'", "every noise level")
    one_line_error(invoke("sample", out, "-n", "5", "--out", tmp_path / "s.npy", "--steps", "7",
                          "--grid", "tuned", ok=False), "scorematch tune")  # fmt: skip


def test_a_grid_no_better_on_held_out_draws_is_used_only_when_asked(tuned_run, tmp_path):
    out, _ = tuned_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    data = json.loads((copy / GRIDS_FILE).read_text())
    entry = next(g for g in data["grids"] if g["nfe"] == 4)
    assert beats_default(entry)  # as tuned: better on the draws it was not fitted on
    entry["holdout_loss"] = entry["holdout_loss_default"]  # a tie is not a gain
    (copy / GRIDS_FILE).write_text(json.dumps(data))
    assert not beats_default(entry)
    run = load_run(copy)
    chosen = choose_grid(run, "dpm_solver", 3)
    assert chosen.times is None and not chosen.tuned
    assert chosen.line.startswith("note: the grid tuned at 4 NFE (grids.json) was no closer")
    assert "--grid tuned to use it anyway" in chosen.line
    forced = choose_grid(run, "dpm_solver", 3, "tuned")
    assert forced.tuned and forced.times.tolist() == entry["times"]
    # the 6-NFE grid is untouched and still used
    assert choose_grid(run, "dpm_solver", 5).tuned
    lines = invoke("sample", copy, "-n", "20", "--out", tmp_path / "s.npy", "--no-progress").output
    assert "was no closer" in lines and "grid: tuned" not in lines


def test_grids_json_is_written_through_the_run_folder_atomically(tuned_run, tmp_path, monkeypatch):
    out, _ = tuned_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    before = (copy / GRIDS_FILE).read_bytes()
    run = load_run(copy)
    written = []
    real_write = RunDir.write_json

    def spy(self, name, data):
        written.append(name)
        return real_write(self, name, data)

    monkeypatch.setattr(RunDir, "write_json", spy)
    tune_run(run, [5], draws=8, max_evaluations=2)
    assert written == [GRIDS_FILE]
    assert sorted(g["nfe"] for g in stored_grids(copy)) == [4, 5, 6]
    # killed at the rename: the former file is intact and no temporary file is left behind
    now = (copy / GRIDS_FILE).read_bytes()

    def killed(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(io_module.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        tune_run(run, [7], draws=8, max_evaluations=2)
    assert (copy / GRIDS_FILE).read_bytes() == now != before
    assert sorted(p.name for p in copy.iterdir() if "grids" in p.name) == [GRIDS_FILE]
