"""The run folder (``RunDir``) and compatibility with run folders written before it: a run that
main wrote at 97392b8 (``tests/data/run_main_97392b8``: ``train --data moons --n 200 --steps 30
--width 16 --depth 1 --batch-size 64 --sample-every 0 --checkpoint-every 10``, its step-10
checkpoint removed) loads and resumes with today's code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from scorematch.cli import cli
from scorematch.run_dir import RunDir
from scorematch.runs import load_run
from scorematch.training import read_checkpoint

FIXTURE = Path(__file__).parent / "data" / "run_main_97392b8"


def invoke(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def old_run(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    return run


def test_a_run_written_by_main_loads_with_its_ema_weights(old_run):
    run = load_run(old_run)
    assert run.step == 30 and run.selection["t_min"]["value"] == pytest.approx(0.4)
    saved = load_file(old_run / "checkpoints" / "step_00000030.safetensors")
    for name, value in run.model.state_dict().items():
        assert torch.equal(value, saved[f"ema.{name}"]), name
    state = read_checkpoint(old_run, resumable=True).train_state()
    assert state["step"] == 30 and state["data_order"]["examples_consumed"] == 30 * 64
    assert state["validation"]["best_step"] == 30 and state["step_engine"]["precision"] == "fp32"


def test_a_run_written_by_main_resumes_to_what_main_wrote(old_run):
    # Resume main's step-20 checkpoint to step 30: the tensors main wrote at step 30 again.
    # (Equal to float32 rounding: the fixture may come from another CPU's vector units.)
    ckpts = old_run / "checkpoints"
    want = load_file(ckpts / "step_00000030.safetensors")
    rows = (old_run / "metrics.csv").read_text().splitlines()
    for suffix in ("json", "safetensors"):
        (ckpts / f"step_00000030.{suffix}").unlink()
    result = invoke("train", "--resume", "--out", old_run, "--steps", 30, "--no-progress")
    assert "changed settings" not in result.output and "different config" not in result.output
    got = load_file(ckpts / "step_00000030.safetensors")
    assert got.keys() == want.keys()
    for key, value in want.items():
        torch.testing.assert_close(got[key], value, rtol=1e-4, atol=1e-6, msg=key)
    again = (old_run / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in again] == [r.split(",")[0] for r in rows]
    meta = json.loads((ckpts / "step_00000030.json").read_text())
    assert meta["format_version"] == 1 and meta["validation"]["history"][-1][0] == 30
    assert load_run(old_run).step == 30


def test_run_dir_names_the_files_of_a_run(tmp_path):
    folder = RunDir(tmp_path / "r")
    assert folder.is_empty() and not folder.is_run()
    assert folder.checkpoints == tmp_path / "r" / "checkpoints"
    assert folder.evaluation_path().name == "evaluation.json"
    assert folder.evaluation_path(0.05).name == "evaluation_tmin-0.05.json"
    with folder.lock(config={"data": {"spec": "moons"}}):
        assert folder.is_run() and folder.config_path.read_text() == "data:\n  spec: moons\n"
    assert folder.read_json("grids.json") is None
    folder.write_json("grids.json", {"heun": [80.0, 1.0, 0.002]})  # a feature's own record
    assert folder.read_json("grids.json") == {"heun": [80.0, 1.0, 0.002]}
    with pytest.raises(ValueError, match=r"config\.yaml is not a scorematch run config"):
        folder.read_config()
    (folder.path / "bad.json").write_text("[1]")
    with pytest.raises(ValueError, match="expected a JSON object"):
        folder.read_json("bad.json")
    with pytest.raises(FileNotFoundError, match="is not a run directory"):
        RunDir(tmp_path / "nothing").read_config()


def test_a_resume_may_change_only_what_one_list_names(old_run):
    from scorematch.runs import train
    from scorematch.runs.train import RESUMABLE, RESUME_CHANGES

    assert set(RESUMABLE) == {"steps", "checkpoint_every", "sample_every"}
    assert {"training.steps", "training.device", "training.precision"} <= set(RESUME_CHANGES)
    with pytest.raises(ValueError, match="cannot change data, lr when resuming"):
        train({"data": "moons", "lr": 0.1, "steps": 40}, old_run, resume=True)
    with pytest.raises(ValueError, match=r"steps must be a positive integer, got 2\.5"):
        train({"steps": 2.5}, old_run, resume=True, progress=False)
    result = CliRunner().invoke(cli, ["train", "--resume", "--out", str(old_run), "--lr", "0.1"])
    assert result.exit_code != 0 and "--lr cannot be changed with --resume" in result.output


def test_build_config_reads_no_data_and_builds_no_network(monkeypatch):
    import scorematch.models.mlp as mlp
    import scorematch.runs.data as data_module
    from scorematch.runs import build_config, configure, load_data

    options = {"data": "moons", "n": 200, "width": 8, "depth": 1}
    loaded = {o: load_data({**options, "objective": o}) for o in ("edm", "ncsn", "dsm")}
    expected = {o: configure({**options, "objective": o})[0] for o in loaded}

    def forbidden(*args, **kwargs):
        raise AssertionError("build_config read data or built a network")

    monkeypatch.setattr(data_module, "load_split", forbidden)
    monkeypatch.setattr(mlp._ResidualMLP, "__init__", forbidden)
    for objective, data in loaded.items():
        config = build_config({**options, "objective": objective}, data)
        assert config == expected[objective]
        assert config["model"]["width"] == 8 and config["data"]["n_train"] == 160
