"""Model selection (issue #13): the Validation rule, the Trainer's best step and early stopping
(checkpointed, protected from rotation, reproduced on resume), and a run's validation split and
selection on a table that overfits and on one that does not."""

from __future__ import annotations

import json

import pytest
import torch
from test_training import Net, _assert_same_state, _data, _kw, dsm_loss

from scorematch.runs import load_run
from scorematch.runs import train as train_run
from scorematch.runs.data import validation_index
from scorematch.runs.selection import read_selection
from scorematch.training import Trainer, latest_checkpoint, list_checkpoints
from scorematch.training.validation import Validation


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_validation_rule():
    v = Validation(lambda m, s: 0.0, every=5, patience=2)
    assert [v.due(s) for s in (4, 5, 10, 12)] == [False, True, True, False]
    assert v.record(5, 3.0) and v.best_step == 5
    assert v.record(10, 2.0) and not v.should_stop
    assert not v.record(15, 2.5) and not v.should_stop
    assert not v.record(20, float("nan")) and v.should_stop  # a NaN never counts as a best
    assert (v.best_step, v.best_value, v.since_best) == (10, 2.0, 2)
    w = Validation(lambda m, s: 0.0, every=5, patience=2)
    w.load_state_dict(json.loads(json.dumps(v.state_dict())))
    assert (w.best_step, w.best_value, w.since_best) == (10, 2.0, 2)
    assert w.history[:3] == v.history[:3] and w.history[3][0] == 20
    for bad in ({"every": 0}, {"every": 5, "patience": 0}, {"every": 5, "min_delta": -1.0}):
        with pytest.raises(ValueError):
            Validation(lambda m, s: 0.0, **bad)


def _scripted(values: dict[int, float]):
    """A validation figure that depends only on the step: a known best and a known stop."""
    return lambda model, step: values[step]


def test_trainer_stops_keeps_the_best_step_and_resumes_the_same(tmp_path):
    # Validations every 4 steps: best at 12, then 3 without improvement → stop at 24.
    values = {4: 5.0, 8: 4.0, 12: 3.0, 16: 3.5, 20: 3.1, 24: 3.2, 28: 1.0}
    kw = _kw(checkpoint_every=10, keep_checkpoints=1, validate_every=4, patience=3)
    full = Trainer(
        Net(), dsm_loss(), _data(), out_dir=tmp_path / "full", validate_fn=_scripted(values), **kw
    )
    result = full.fit(40)
    assert (result.step, result.best_step, result.stopped_early) == (24, 12, True)
    steps = [int(p.stem.split("_")[1]) for p in list_checkpoints(tmp_path / "full/checkpoints")]
    assert steps == [12, 24]  # keep 1, but the best step is never rotated away
    # Interrupted at step 17 and resumed: the same choice, the same state.
    part = Trainer(
        Net(), dsm_loss(), _data(), out_dir=tmp_path / "part", validate_fn=_scripted(values), **kw
    )
    part.fit(17)
    again = Trainer(
        Net(seed=9),
        dsm_loss(),
        _data(),
        out_dir=tmp_path / "part",
        validate_fn=_scripted(values),
        **kw,
    )
    resumed = again.fit(40, resume=True)
    assert (resumed.step, resumed.best_step, resumed.stopped_early) == (24, 12, True)
    assert again.validation.history == full.validation.history
    _assert_same_state(full, again)


def test_trainer_without_patience_runs_all_steps_and_records_the_best(tmp_path):
    values = {s: abs(s - 8) + 1.0 for s in range(4, 21, 4)}
    t = Trainer(
        Net(),
        dsm_loss(),
        _data(),
        out_dir=tmp_path,
        validate_fn=_scripted(values),
        **_kw(validate_every=4, checkpoint_every=None),
    )
    result = t.fit(20)
    assert (result.step, result.best_step, result.stopped_early) == (20, 8, False)
    meta = json.loads(latest_checkpoint(tmp_path / "checkpoints").with_suffix(".json").read_text())
    assert meta["validation"]["best_step"] == 8
    with pytest.raises(ValueError, match="validate_fn"):
        Trainer(Net(), dsm_loss(), _data(), validate_every=4, **_kw())


def test_validation_index_is_seeded_and_refuses_tiny_splits():
    a, b = validation_index(100, 0.15, 3), validation_index(100, 0.15, 3)
    assert torch.equal(a, b) and a.numel() == 15 and len(set(a.tolist())) == 15
    assert not torch.equal(a, validation_index(100, 0.15, 4))
    assert validation_index(100, 0.0, 3) is None
    assert validation_index(30, 0.15, 3) is None  # 4 validation rows would mean nothing


def _table(tmp_path, n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g) @ torch.tensor([[1.0, 0.5, 0.0], [0, 1, 0.3], [0, 0, 1]])
    path = tmp_path / f"table{n}.csv"
    lines = ["a,b,c"] + [",".join(f"{v:.6f}" for v in row) for row in x.tolist()]
    path.write_text("\n".join(lines) + "\n")
    return path


TINY_NET = {"width": 32, "depth": 1}


def test_a_tiny_table_stops_early_and_is_refitted(tmp_path):
    # 80 rows (64 train, 10 of them validate): a network memorises them long before 3000 steps.
    out = tmp_path / "tiny"
    options = {"data": str(_table(tmp_path, 80)), "patience": 5, **TINY_NET}
    train_run({**options}, out, progress=False)
    config = load_run(out).config
    selection = read_selection(out)
    assert selection["stopped_early"] and selection["refit"]
    assert selection["best_step"] < config["training"]["steps"]
    assert config["data"]["n_val"] == round(config["data"]["n_train"] * 0.15)
    run = load_run(out)
    assert run.step == selection["best_step"]  # refitted for the chosen number of steps
    assert run.t_min == selection["t_min"]["value"]
    assert torch.equal(
        run.data.val,
        run.data.train[
            validation_index(
                config["data"]["n_train"],
                config["data"]["val_fraction"],
                config["data"]["val_seed"],
            )
        ],
    )


def test_a_larger_table_with_a_fixed_step_count_runs_to_the_end(tmp_path):
    out = tmp_path / "fixed"
    train_run({"data": str(_table(tmp_path, 2000)), "steps": 120, **TINY_NET}, out, progress=False)
    selection = read_selection(out)
    assert not selection["stopped_early"] and not selection["refit"]
    run = load_run(out)
    assert run.step == 120  # a fixed --steps: the model is the last step
    assert load_run(out, checkpoint="best").step == selection["best_step"]


def test_a_fixed_step_count_validates_only_when_asked(tmp_path):
    """--steps makes the last step the model: no validation figure is computed (issue #20: it
    cost images about 30 %), yet the validation rows stay out of training and choose t_min;
    --validate-every brings the figure back."""
    table = str(_table(tmp_path, 400))
    plain, asked = tmp_path / "plain", tmp_path / "asked"
    train_run({"data": table, "steps": 40, **TINY_NET}, plain, progress=False)
    train_run({"data": table, "steps": 40, "validate_every": 10, **TINY_NET}, asked, progress=False)
    config = load_run(plain).config
    assert config["training"]["validate_every"] is None and config["training"]["model"] == "last"
    selection = read_selection(plain)
    assert selection["validation"] is None and selection["best_step"] == 40
    assert selection["t_min"] is not None and load_run(plain).step == 40
    kept = read_selection(asked)
    assert [row[0] for row in kept["validation"]["history"]] == [10, 20, 30, 40]
    # Both trained on the same rows (the validation rows left out): the same final weights.
    a, b = load_run(plain).model.state_dict(), load_run(asked).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)

    """--levels 17: a folder of 0…16 digits saved as 8-bit PNGs is snapped back onto 17 values,
    and its bits/dim use them (as the built-in digits do)."""
    import numpy as np
    from PIL import Image

    from scorematch.runs.config import configure

    folder = tmp_path / "digits17"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        k = rng.integers(0, 17, size=(8, 8))
        Image.fromarray(np.round(k * 255 / 16).astype(np.uint8), mode="L").save(folder / f"{i}.png")
    config, bundle = configure({"data": str(folder), "levels": 17, "val_fraction": 0})
    assert config["data"]["levels"] == 16 and config["data"]["pixel_levels"] == 17
    grid = (bundle.train * 16).round() / 16
    assert torch.equal(bundle.train, grid)  # every pixel is one of the 17 values k/16
    with pytest.raises(ValueError, match="levels"):
        configure({"data": "moons", "n": 50, "levels": 17})
    with pytest.raises(ValueError, match="levels"):
        configure({"data": str(folder), "levels": 1})
