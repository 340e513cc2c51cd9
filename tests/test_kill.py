"""A training killed with SIGKILL at random moments, and resumed each time, ends bit-identical to
an uninterrupted one: model, EMA and optimizer tensors, and every logged number of metrics.csv.

The kills land anywhere: during start-up (before the run folder exists), in the middle of the
training loop, and while a checkpoint is being written (the moment a temporary file appears in
``checkpoints/``).  After each kill the folder either does not exist or holds its config.yaml
(it is created with it in one rename), so the next command is a fresh ``train`` or ``--resume``.
Checkpoints come every few steps and every 0.1 s of wall time, so that many kills hit a save.
The test is bounded: six kills, then one resume to the end (about 30 s on two cores).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from safetensors.torch import load_file

STEPS = 500
TRAIN = [
    "--threads", "1", "train", "--data", "moons", "--n", "300", "--width", "16", "--depth", "1",
    "--batch-size", "32", "--steps", str(STEPS), "--checkpoint-every", "5",
    "--checkpoint-minutes", "0.0017", "--sample-every", "0", "--no-progress",
]  # fmt: skip
KILLS = 6


def _train(steps: int, data: str = "moons") -> list[str]:
    """``TRAIN`` with another number of steps or data set."""
    return [{str(STEPS): str(steps), "moons": data}.get(a, a) for a in TRAIN]


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "scorematch", *args]


def _env() -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[1] / "src")
    return {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _start(out: Path) -> subprocess.Popen:
    """A fresh ``train`` while the folder does not exist, else ``train --resume``."""
    if out.exists():
        assert (out / "config.yaml").is_file(), "a run folder without its config.yaml"
        args = ["--threads", "1", "train", "--resume", "--out", str(out), "--no-progress"]
        args += ["--checkpoint-minutes", "0.0017"]
    else:
        args = [*TRAIN, "--out", str(out)]
    return subprocess.Popen(
        _command(*args), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _wait_until(condition, proc: subprocess.Popen, timeout: float = 60.0) -> bool:
    """Poll ``condition`` every millisecond while ``proc`` runs; False if it ended first."""
    end = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.001)
    return False


def _training(out: Path, proc: subprocess.Popen):
    def started() -> bool:  # the lock names this process: its fit has begun
        try:
            return json.loads((out / ".lock").read_text()).get("pid") == proc.pid
        except (OSError, ValueError):
            return False

    return started


def _saving(out: Path):
    def mid_save() -> bool:
        try:
            return any(e.name.startswith(".step_") for e in os.scandir(out / "checkpoints"))
        except OSError:
            return False

    return mid_save


def _metrics(path: Path) -> list[list[str]]:
    # step, loss, lr, grad_norm: every logged number but the timing columns.
    return [line.split(",")[:4] for line in path.read_text().splitlines()]


def test_sigkill_at_random_moments_then_resume_is_bit_identical(tmp_path):
    rng = random.Random(15)
    reference = subprocess.Popen(
        _command(*TRAIN, "--out", str(tmp_path / "reference")),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out = tmp_path / "killed"
    moments = ["start-up", "training", "save", "training", "save", "training"]
    kills: list[str] = []
    deadline = time.monotonic() + 240
    while len(kills) < KILLS and time.monotonic() < deadline:
        proc = _start(out)
        moment = moments[len(kills)]
        if moment == "start-up":
            landed = not _wait_until(lambda: False, proc, timeout=rng.uniform(0.0, 2.0))
        elif moment == "training":
            landed = _wait_until(_training(out, proc), proc)
            time.sleep(rng.uniform(0.0, 0.3))
        else:
            landed = _wait_until(_training(out, proc), proc) and _wait_until(_saving(out), proc)
        if proc.poll() is not None:  # it finished (or failed) before the kill
            output = proc.communicate()[0]
            assert proc.returncode == 0, output
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills.append(moment if landed or moment == "start-up" else "late")
        assert not out.exists() or (out / "config.yaml").is_file()
    assert len(kills) >= 5, kills

    final = _start(out)
    output = final.communicate(timeout=240)[0]
    assert final.returncode == 0 and f"step {STEPS}" in output, output
    ref_output = reference.communicate(timeout=240)[0]
    assert reference.returncode == 0, ref_output

    name = f"step_{STEPS:08d}.safetensors"
    got = load_file(out / "checkpoints" / name)
    want = load_file(tmp_path / "reference" / "checkpoints" / name)
    assert got.keys() == want.keys()
    assert any(k.startswith("optim.") for k in got) and any(k.startswith("ema.") for k in got)
    for key in want:
        assert got[key].equal(want[key]), key
    assert _metrics(out / "metrics.csv") == _metrics(tmp_path / "reference" / "metrics.csv")
    leftovers = [p.name for p in out.rglob("*") if ".tmp" in p.name or p.name.endswith(".new")]
    assert leftovers == [] and not (out / ".lock").exists()
    print(f"kills survived: {len(kills)} ({', '.join(kills)})")


def test_sigterm_saves_a_checkpoint_and_says_so(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        _command(*_train(100_000), "--out", str(out)),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert _wait_until(_training(out, proc), proc)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    # stdout holds only what train announces at its start (data, defaults)
    assert proc.returncode == 128 + signal.SIGTERM and "stopped" not in stdout, stderr
    _assert_says_where_it_stopped(stderr, "SIGTERM", out)


def _assert_says_where_it_stopped(text: str, signame: str, out: Path) -> None:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and f"training stopped by {signame} at step" in lines[0], text
    step = int(lines[0].split(" at step ")[1].split(":")[0])
    path = out / "checkpoints" / f"step_{step:08d}.safetensors"
    # "saved …", or "its checkpoint is …" when the step was on the save grid anyway.
    assert f"saved {path}" in lines[0] or f"its checkpoint is {path}" in lines[0], lines[0]
    assert (out / "checkpoints" / f"step_{step:08d}.json").is_file()
    assert not (out / ".lock").exists()


def test_ctrl_c_saves_a_checkpoint_and_says_so(tmp_path):
    import threading

    from click.testing import CliRunner

    from scorematch.cli import cli

    out = tmp_path / "run"

    def interrupt() -> None:  # Ctrl-C, once the training is under way
        while not (out / "metrics.csv").exists():
            time.sleep(0.005)
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    result = CliRunner().invoke(cli, [*_train(100_000)[2:], "--out", str(out)])
    assert result.exit_code == 128 + signal.SIGINT, result.output
    _assert_says_where_it_stopped(result.stderr, "SIGINT", out)


def test_two_trainings_started_together_into_one_folder_never_mix(tmp_path):
    """The issue's case: moons and circles into one --out at once.  One trains; the other is
    refused in one line; the folder's config.yaml and weights are the same run's."""
    out = tmp_path / "shared"
    procs = {
        data: subprocess.Popen(
            _command(*_train(60, data), "--out", str(out)),
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for data in ("moons", "circles")
    }
    results = {data: (p.wait(timeout=240), *p.communicate()) for data, p in procs.items()}
    codes = sorted(code for code, _, _ in results.values())
    assert codes == [0, 1], results
    (winner,) = [d for d, (code, _, _) in results.items() if code == 0]
    (loser,) = [r for d, r in results.items() if d != winner]
    lines = [line for line in loser[2].splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), loser
    assert any(s in lines[0] for s in ("is in use by another training", "already holds a run"))
    config = (out / "config.yaml").read_text()
    assert f"spec: {winner}" in config
    saved = json.loads((out / "checkpoints" / "step_00000060.json").read_text())
    assert saved["config"]["data"]["spec"] == winner
    assert not [p for p in tmp_path.iterdir() if p.name != "shared"]  # no staging folder left
