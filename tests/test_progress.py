"""Long phases say what they do (issue #20 item 8): the measured training-time estimate leaves the
training unchanged and is printed at the start, choosing t_min shows a bar, the demo says what it
does before its first bar."""

from __future__ import annotations

import importlib

import torch
from click.testing import CliRunner

from scorematch.cli import cli
from scorematch.runs import load_run, train
from scorematch.runs.selection import choose_t_min, t_min_candidates

train_cli = importlib.import_module("scorematch.cli.train")  # the module, not the command

SMALL = {"data": "moons", "n": 300, "width": 16, "depth": 1, "batch_size": 32, "sample_every": 0}


def test_the_measured_estimate_leaves_the_training_unchanged(tmp_path):
    said = []
    options = {**SMALL, "steps": 40, "validate_every": 10}
    train(options, tmp_path / "a", progress=False, estimate=said.append)
    train(options, tmp_path / "b", progress=False)
    (e,) = said
    assert (e.steps, e.validations) == (40, 4)
    assert e.step_seconds > 0 and e.validation_seconds > 0
    assert e.seconds == e.steps * e.step_seconds + e.validations * e.validation_seconds
    a, b = (load_run(tmp_path / k).model.state_dict() for k in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_train_prints_the_expected_time_first(tmp_path, monkeypatch):
    monkeypatch.setattr(train_cli, "ESTIMATE_FROM_SECONDS", 0.0)
    args = ["train", "--data", "moons", "--steps", "20", "--width", "16"]
    args += ["--depth", "1", "--sample-every", "0", "--no-progress", "--out", str(tmp_path / "r")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    (i,) = [k for k, line in enumerate(lines) if line.startswith("expected training time: about")]
    assert "20 steps × " in lines[i] and "measured here just now" in lines[i]
    assert i < next(k for k, line in enumerate(lines) if line.startswith("trained "))


def test_choosing_t_min_shows_a_bar_over_the_candidates(tmp_path, capsys):
    train({**SMALL, "steps": 20}, tmp_path / "r", progress=False)
    run = load_run(tmp_path / "r")
    capsys.readouterr()
    rows = run.data.val[:20]
    quiet = choose_t_min(run, rows)
    assert capsys.readouterr().err == ""
    loud = choose_t_min(run, rows, progress=True)
    err = capsys.readouterr().err
    assert "choosing t_min on 20 validation rows" in err
    assert f"{len(t_min_candidates(run.process))}/{len(t_min_candidates(run.process))}" in err
    assert loud == quiet  # the bar changes nothing


def test_memorisation_reads_at_most_2000_held_out_rows(tmp_path):
    from scorematch.runs.run import MAX_MEMORISATION_ROWS

    train({**SMALL, "n": 13000, "steps": 5}, tmp_path / "r", progress=False)
    run = load_run(tmp_path / "r")
    assert run.data.test.shape[0] > MAX_MEMORISATION_ROWS == 2000
    m = run.memorisation(run.data.test[:100], seed=0)
    assert (m.n_samples, m.n_heldout, m.n_train) == (100, 2000, run.data.train.shape[0])
