"""Issue #15, one test per promise: one writer per run folder, weights that match their config,
no silent restart or fallback, falling back past each kind of damage, files that respect the
umask and name themselves when the disk is full, and the smaller refusals.  (The SIGKILL test and
the SIGTERM/Ctrl-C ones run real processes: ``test_kill.py``; random inputs: ``test_properties``.)
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner
from safetensors.torch import load_file

from scorematch.cli import cli
from scorematch.io import atomic_write_text
from scorematch.runs import load_run
from scorematch.training import (
    CheckpointDamaged,
    Trainer,
    TrainingDiverged,
    TrainingInterrupted,
    hold_run_lock,
    latest_checkpoint,
    load_checkpoint,
    read_checkpoint,
)
from scorematch.training.checkpoint import _canonical

TINY = ["--width", "16", "--depth", "1", "--batch-size", "64", "--sample-every", "0"]


def invoke(*args, ok: bool = True):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def one_line_error(result, *fragments: str) -> str:
    # Lines besides the error: only the warning that a resume changes the schedule's length.
    lines = [
        line
        for line in result.output.splitlines()
        if line.strip() and not line.startswith("scorematch: resuming")
    ]
    assert result.exit_code != 0 and len(lines) == 1 and lines[0].startswith("Error: "), lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def warnings_of(result, *about: str) -> list[str]:
    """The warning lines of a command (those that mention one of ``about``, if given)."""
    lines = [line for line in result.output.splitlines() if line.startswith("scorematch: ")]
    return [line for line in lines if not about or any(a in line for a in about)]


CHOICE = ("not the newest", "training from step 0")  # the lines that say which checkpoint


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 30-step run with checkpoints at steps 10, 20 and 30 (copied by ``run``)."""
    out = tmp_path_factory.mktemp("base") / "run"
    args = ["train", "--data", "moons", "--n", "200", "--out", out, "--steps", "30", *TINY]
    invoke(*args, "--checkpoint-every", "10", "--no-progress")
    return out


@pytest.fixture
def run(trained, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


def ckpt(run: Path, step: int, suffix: str = "safetensors") -> Path:
    return run / "checkpoints" / f"step_{step:08d}.{suffix}"


def resume(run: Path, steps: int = 40, ok: bool = True):
    return invoke("train", "--resume", "--out", run, "--steps", steps, "--no-progress", ok=ok)


# ------------------------------------------------------------------------------------------------
# 1. One writer per run folder; weights that match their config
# ------------------------------------------------------------------------------------------------
HOLDER = """
import fcntl, json, os, socket, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
print("locked", flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="flock")
def test_a_second_writer_is_refused_in_one_line_and_changes_nothing(run):
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run / ".lock")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        line = one_line_error(resume(run, ok=False), "is in use by another training")
        assert f"pid {holder.pid}" in line
        fresh = invoke("train", "--data", "circles", "--out", run, *TINY, ok=False)
        one_line_error(fresh, "is in use by another training")
    finally:
        holder.kill()
        holder.wait()
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".lock"}
    assert after == {p: b for p, b in before.items() if p.name != ".lock"}


def test_a_lock_left_by_a_killed_writer_is_taken_over_with_a_warning(run):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run / ".lock").write_text(json.dumps({"pid": dead.pid, "host": "h", "started": "t"}))
    result = resume(run)
    assert warnings_of(result, f"taking over the lock of pid {dead.pid} on h")
    assert not (run / ".lock").exists() and load_run(run).step == 40
    # A folder holding only what a killed writer left counts as empty for a new run.
    leftovers = run.parent / "left"
    leftovers.mkdir()
    (leftovers / ".lock").write_text("{}")
    (leftovers / ".config.abcd1234.tmp.yaml").write_text("half")
    args = ["--data", "moons", "--n", "100", "--steps", "2", *TINY, "--no-progress"]
    invoke("train", *args, "--out", leftovers)
    assert sorted(p.name for p in leftovers.iterdir()) == [
        "checkpoints",
        "config.yaml",
        "metrics.csv",
        "selection.json",
    ]


def test_the_lock_is_reentrant_in_a_process_and_held_during_fit(tmp_path):
    folder = tmp_path / "new" / "run"
    with hold_run_lock(folder, config={"a": 1}):
        assert (folder / "config.yaml").read_text() == "a: 1\n"  # created with its config
        assert json.loads((folder / ".lock").read_text())["pid"] == os.getpid()
        with hold_run_lock(folder):
            pass
        assert (folder / ".lock").exists()
    assert not (folder / ".lock").exists()
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["run"]  # no staging left


def test_load_run_refuses_weights_trained_with_another_config(run):
    original = yaml.safe_load((run / "config.yaml").read_text())
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"]["spec"] = "circles"  # the case: one data set's config, another's weights
    config["standardizer"]["mean"] = [0.0, 0.0]
    atomic_write_text(run / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    with pytest.raises(ValueError, match=r"step_00000030.*another config than .*config\.yaml"):
        load_run(run)
    line = one_line_error(invoke("sample", run, "-n", "3", "--out", run / "s.npy", ok=False))
    assert "data.spec, standardizer.mean" in line and "refusing" in line
    original["training"]["steps"] = 99  # what --resume --steps changes does not count
    atomic_write_text(run / "config.yaml", yaml.safe_dump(original, sort_keys=False))
    assert load_run(run).step == 30


# ------------------------------------------------------------------------------------------------
# 2. No silent restart, no silent fallback, never an overwritten tensor file
# ------------------------------------------------------------------------------------------------
def test_without_sidecars_resume_says_so_and_keeps_every_tensor_file(run):
    tensors = {p.name: p.read_bytes() for p in (run / "checkpoints").glob("*.safetensors")}
    for sidecar in (run / "checkpoints").glob("*.json"):
        sidecar.unlink()
    ckpt(run, 10).write_bytes(b"not these tensors")  # an orphan that differs from the re-save
    result = resume(run, steps=30)  # the same schedule: the re-saves are bit-identical
    (line,) = warnings_of(result, *CHOICE)
    assert "no complete checkpoint in" in line and "training from step 0" in line
    assert "step_00000030.safetensors" in line
    assert ckpt(run, 10).with_name("step_00000010.safetensors.superseded").read_bytes() == (
        b"not these tensors"
    )
    (moved,) = warnings_of(result, "already held other tensors")
    assert "kept as step_00000010.safetensors.superseded" in moved
    for name in ("step_00000020.safetensors", "step_00000030.safetensors"):
        assert (run / "checkpoints" / name).read_bytes() == tensors[name]  # the same: kept as is
    shutil.rmtree(run / "checkpoints")
    (line,) = warnings_of(resume(run, steps=50), *CHOICE)
    assert "checkpoints does not exist" in line and "training from step 0" in line


def test_a_missing_newest_sidecar_is_named_by_sample_evaluate_and_resume(run):
    ckpt(run, 30, "json").unlink()
    for result in (
        invoke("sample", run, "-n", "3", "--out", run / "s.npy", "--no-progress"),
        invoke("evaluate", run, "-n", "20", "--no-nll", "--no-progress"),
        resume(run),
    ):
        (line,) = warnings_of(result, *CHOICE)
        assert "using checkpoint" in line and "step_00000020.safetensors" in line
        assert "step_00000030.safetensors has no .json sidecar" in line
    ckpt(run, 40).unlink()  # now the sidecar is the orphan
    (line,) = warnings_of(invoke("sample", run, "-n", "3", "--out", run / "s.npy"), *CHOICE)
    assert "step_00000040.json has no .safetensors tensor file" in line


def _reseal(path: Path, **changes) -> None:
    import hashlib

    meta = json.loads(path.read_text())
    meta.update(changes)
    meta["metadata_sha256"] = hashlib.sha256(_canonical(meta)).hexdigest()
    path.write_text(json.dumps(meta))


def test_the_step_is_cross_checked_between_name_sidecar_and_tensor_file(run):
    _reseal(ckpt(run, 30, "json"), step=31)  # a consistent forgery: only the steps disagree
    with pytest.raises(
        CheckpointDamaged, match=r"steps disagree \(file name 30, .*'step' 31, tensor file 30\)"
    ):
        read_checkpoint(ckpt(run, 30))
    assert load_run(run).step == 20  # fell back
    meta = json.loads(ckpt(run, 20, "json").read_text())
    meta["step"] = 21  # edited without resealing: the sidecar's own hash catches it first
    ckpt(run, 20, "json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointDamaged, match="changed after it was written"):
        read_checkpoint(ckpt(run, 20))


# ------------------------------------------------------------------------------------------------
# 3. Fall back past damage: every kind, one line, the damaged pair moved aside
# ------------------------------------------------------------------------------------------------
def _flip_tensor_byte(run):
    p = ckpt(run, 30)
    blob = bytearray(p.read_bytes())
    blob[-3] ^= 0xFF
    p.write_bytes(bytes(blob))


def _edit_sidecar(**changes):
    def damage(run):
        _reseal(ckpt(run, 30, "json"), **changes)

    return damage


def _drop_sidecar_field(name):
    def damage(run):
        import hashlib

        path = ckpt(run, 30, "json")
        meta = json.loads(path.read_text())
        del meta[name]  # resealed, so that the field check, not the hash, reports it
        meta["metadata_sha256"] = hashlib.sha256(_canonical(meta)).hexdigest()
        path.write_text(json.dumps(meta))

    return damage


DAMAGE = {
    "truncated tensor file": (lambda r: ckpt(r, 30).write_bytes(ckpt(r, 30).read_bytes()[:-50]), "truncated"),
    "flipped tensor byte": (_flip_tensor_byte, "SHA-256 differs"),
    "empty tensor file": (lambda r: ckpt(r, 30).write_bytes(b""), "0 bytes"),
    "sidecar not JSON": (lambda r: ckpt(r, 30, "json").write_text("{not json"), "is corrupted"),
    "sidecar a list": (lambda r: ckpt(r, 30, "json").write_text("[1, 2]"), "not a scorematch checkpoint"),
    "sidecar bit flip": (lambda r: ckpt(r, 30, "json").write_text(ckpt(r, 30, "json").read_text().replace('"lr"', '"lR"', 1)), "changed after it was written"),
    "step not a number": (_edit_sidecar(step="12x"), "field 'step' is damaged"),
    "size not a number": (_edit_sidecar(tensors_bytes=None), "field 'tensors_bytes' is damaged"),
    "hash cut short": (_edit_sidecar(tensors_sha256="abc"), "field 'tensors_sha256'"),
    "step field missing": (_drop_sidecar_field("step"), "field 'step' is damaged (it is missing)"),
    "rng field missing": (_drop_sidecar_field("rng"), "field 'rng' is missing"),
    "metrics window damaged": (_edit_sidecar(metrics_window={"count": "x"}), "field 'metrics_window' is damaged"),
    "elapsed time negative": (_edit_sidecar(elapsed_seconds=-1), "field 'elapsed_seconds'"),
    "steps disagree": (_edit_sidecar(step=29), "steps disagree"),
}  # fmt: skip


@pytest.fixture(scope="module")
def from_step_20(trained, tmp_path_factory):
    """The step-40 tensors of the run resumed from its step-20 checkpoint."""
    copy = tmp_path_factory.mktemp("ref") / "run"
    shutil.copytree(trained, copy)
    for suffix in ("json", "safetensors"):
        ckpt(copy, 30, suffix).unlink()
    resume(copy)
    return load_file(ckpt(copy, 40))


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_resume_falls_back_past_each_kind_of_damage(run, from_step_20, kind):
    damage, fragment = DAMAGE[kind]
    damage(run)
    result = resume(run)
    (line,) = warnings_of(result, *CHOICE)
    assert "using checkpoint" in line and "step_00000020.safetensors" in line, line
    assert "step_00000030 is damaged" in line and fragment in line, line
    assert "moved aside as step_00000030.safetensors.corrupt and step_00000030.json.corrupt" in line
    assert ckpt(run, 30).with_name("step_00000030.safetensors.corrupt").is_file()
    got = load_file(ckpt(run, 40))  # resumed from the intact step 20, exactly
    assert got.keys() == from_step_20.keys()
    assert all(got[k].equal(v) for k, v in from_step_20.items())


def test_named_errors_for_an_explicit_damaged_checkpoint_and_when_none_is_good(run):
    _edit_sidecar(step="12x")(run)
    with pytest.raises(
        ValueError, match=r"step_00000030\.json.*field 'step' is damaged \(got '12x'\)"
    ):
        load_checkpoint(ckpt(run, 30))
    for step in (10, 20, 30):
        ckpt(run, step).write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        load_run(run)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == sorted(
        f"step_{s:08d}.{e}.corrupt" for s in (10, 20, 30) for e in ("json", "safetensors")
    )


def test_rotation_keeps_the_last_good_checkpoint_until_the_new_one_reads_back(
    tmp_path, monkeypatch
):
    from scorematch.training import checkpoint

    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    model = torch.nn.Linear(2, 2)
    loss = lambda m, b, g: (m(b) - b).pow(2).mean()  # noqa: E731
    kw = dict(batch_size=16, progress=False, checkpoint_every=2, keep_checkpoints=1)
    Trainer(model, loss, x, out_dir=tmp_path, **kw).fit(2)

    def bad_read_back(path, **_):
        raise CheckpointDamaged(Path(path), f"checkpoint file {path} is corrupted (simulated)")

    monkeypatch.setattr(checkpoint, "verify_checkpoint", bad_read_back)
    with pytest.raises(
        OSError, match=r"could not save checkpoint .*step_00000004.* kept is .*step_00000002"
    ):
        Trainer(model, loss, x, out_dir=tmp_path, **kw).fit(4, resume=True)
    assert latest_checkpoint(tmp_path / "checkpoints").name == "step_00000002.safetensors"
    assert (tmp_path / "checkpoints" / "step_00000004.safetensors.corrupt").is_file()


# ------------------------------------------------------------------------------------------------
# 7. The smaller ones
# ------------------------------------------------------------------------------------------------
def test_temp_files_of_a_killed_run_are_removed_on_resume(run):
    for name in (".metrics.abcd1234.tmp.csv", ".config.k2j4h5g6.tmp.yaml", "notes.tmp"):
        (run / name).write_text("half")
    (run / "samples").mkdir(exist_ok=True)
    (run / "samples" / ".step_00000010.qwer5678.tmp.png").write_text("half")
    resume(run)
    names = {p.name for p in run.rglob("*")}
    assert "notes.tmp" in names and not any(".tmp." in n for n in names)


def test_resume_of_a_folder_without_config_says_what_to_do(tmp_path):
    (tmp_path / "empty").mkdir()
    result = invoke("train", "--resume", "--out", tmp_path / "empty", ok=False)
    one_line_error(result, "no run to resume", "nothing was trained into it yet", "--data")


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_files_are_created_with_the_umask_not_0600(tmp_path, umask):
    old = os.umask(umask)
    try:
        out = tmp_path / "r"
        invoke("train", "--data", "moons", "--n", "100", "--out", out, "--steps", "2", *TINY)
        invoke("sample", out, "-n", "3", "--out", tmp_path / "s.csv", "--no-progress")
    finally:
        os.umask(old)
    files = [out / "config.yaml", out / "metrics.csv", ckpt(out, 2), ckpt(out, 2, "json")]
    for path in [*files, tmp_path / "s.csv"]:
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask


def test_a_full_disk_names_the_file_and_the_checkpoint_kept(run, monkeypatch):
    import scorematch.io as io
    from scorematch.training import checkpoint

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(io, "_fsync_file", full)
        with pytest.raises(OSError, match=r"could not write .*notes\.txt: No space left"):
            atomic_write_text(run / "notes.txt", "x")
        one_line_error(resume(run, ok=False), "could not write", "config.yaml", "No space left")
    with monkeypatch.context() as m:
        m.setattr(checkpoint, "atomic_write_bytes", full)
        line = one_line_error(resume(run, ok=False), "No space left on device")
    assert "could not save checkpoint" in line and "step_00000040.safetensors" in line
    assert line.endswith("the newest checkpoint kept is " + str(ckpt(run, 30)))
    assert not any(".tmp" in p.name for p in run.rglob("*"))


def test_smaller_refusals_are_one_line(run, tmp_path):
    args = ["train", "--data", "moons", "--n", "300", "--out", tmp_path / "a", "--test-fraction"]
    one_line_error(invoke(*args, "0.999", ok=False), "leaves 1 training row(s) of 300")
    one_line_error(invoke(*args, "0.001", ok=False), "leaves 1 held-out row(s) of 300")
    sample = ["sample", run, "-n", "3", "--out", tmp_path / "s.npy", "--seed", "-1"]
    one_line_error(
        invoke(*sample, ok=False), "seed must be an integer >= 0 (and below 2**63), got -1"
    )
    one_line_error(invoke("evaluate", run, "-n", "20", "--seed", "-2", ok=False), "seed")
    archive = tmp_path / "bad.npz"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("x.npy", "not an array at all")
        z.writestr("notes.txt", "hello")
    with zipfile.ZipFile(tmp_path / "text.npz", "w") as z:
        z.writestr("x.txt", "hello")
    for bad, fragment in ((archive, "bad.npz"), (tmp_path / "text.npz", "is not a NumPy array")):
        one_line_error(invoke("train", "--data", bad, "--out", tmp_path / "b", ok=False), fragment)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_divergence_is_reported_once(tmp_path, caplog):
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
    model = torch.nn.Linear(2, 2)
    loss = lambda m, b, g: m(b).sum() * float("nan")  # noqa: E731
    with caplog.at_level("DEBUG", logger="scorematch"), pytest.raises(TrainingDiverged):
        Trainer(model, loss, x, out_dir=tmp_path, progress=False, batch_size=8).fit(3)
    assert not [r for r in caplog.records if "NaN" in r.getMessage()]  # only the exception says it


def _signal_at(step: int, signum: int):
    calls = []

    def loss(model, batch, generator):
        calls.append(1)
        if len(calls) == step:
            os.kill(os.getpid(), signum)  # arrives mid-step: handled after the step
        noise = torch.randn(batch.shape, generator=generator)
        return (model(batch + 0.3 * noise) + noise / 0.3).pow(2).mean()

    return loss


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_saves_the_step_and_resume_is_exact(tmp_path, signum):
    x = torch.randn(40, 2, generator=torch.Generator().manual_seed(1))
    kw = dict(batch_size=8, progress=False, checkpoint_every=100, log_every=3, seed=2)

    def make():
        return torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))

    torch.manual_seed(0)
    full = Trainer(make(), _signal_at(-1, signum), x, out_dir=tmp_path / "full", **kw)
    full.fit(12)
    torch.manual_seed(0)
    cut = Trainer(make(), _signal_at(7, signum), x, out_dir=tmp_path / "cut", **kw)
    handler = signal.getsignal(signum)
    name = signal.Signals(signum).name
    with pytest.raises(
        TrainingInterrupted, match=rf"{name} at step 7: saved .*step_00000007"
    ) as err:
        cut.fit(12)
    assert err.value.step == 7 and signal.getsignal(signum) is handler  # handler given back
    again = Trainer(make(), _signal_at(-1, signum), x, out_dir=tmp_path / "cut", **kw)
    again.fit(12, resume=True)
    for k, v in full.model.state_dict().items():
        assert again.model.state_dict()[k].equal(v)
    assert (tmp_path / "cut" / "metrics.csv").read_text().count("\n") == 5


def test_checkpoints_also_come_by_wall_time(tmp_path, monkeypatch):
    from scorematch.training import stops

    clock = iter(range(10_000))
    monkeypatch.setattr(stops.SaveSchedule, "clock", staticmethod(lambda: float(next(clock))))
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
    loss = lambda m, b, g: (m(b) - b).pow(2).mean()  # noqa: E731
    kw = dict(batch_size=8, progress=False, checkpoint_every=None, keep_checkpoints=None)
    Trainer(torch.nn.Linear(2, 2), loss, x, out_dir=tmp_path, checkpoint_seconds=3, **kw).fit(9)
    steps = sorted(int(p.stem[5:]) for p in (tmp_path / "checkpoints").glob("*.safetensors"))
    assert steps == [3, 6, 9]
    with pytest.raises(ValueError, match="checkpoint_seconds"):
        Trainer(torch.nn.Linear(2, 2), loss, x, checkpoint_seconds=0)
    one_line_error(
        invoke(
            "train",
            "--data",
            "moons",
            "--out",
            tmp_path / "c",
            "--checkpoint-minutes",
            "-1",
            ok=False,
        ),
        "--checkpoint-minutes",
    )


def test_every_test_that_docs_reliability_names_exists():
    import ast
    import re

    root = Path(__file__).resolve().parents[1]
    text = (root / "docs" / "reliability.md").read_text(encoding="utf-8")
    named = re.findall(r"`(tests/\w+\.py)::(\w+)`", text)
    assert len(named) > 25
    for path, name in named:
        tree = ast.parse((root / path).read_text(encoding="utf-8"))
        functions = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert name in functions, f"docs/reliability.md names {path}::{name}, which does not exist"


def test_a_folder_created_meanwhile_by_another_process_is_locked_in_place(tmp_path, monkeypatch):
    from scorematch import run_dir as run_lock

    folder = tmp_path / "run"
    real_rename = run_lock.os.rename

    def racing_rename(src, dst):  # another process's folder appears just before our rename
        Path(dst).mkdir()
        (Path(dst) / "config.yaml").write_text("theirs")
        return real_rename(src, dst)

    monkeypatch.setattr(run_lock.os, "rename", racing_rename)
    with hold_run_lock(folder, config={"ours": 1}):
        assert (folder / "config.yaml").read_text() == "theirs"  # nothing of ours replaced it
        assert (folder / ".lock").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # the staged folder is gone
