"""The command line beyond one CPU process: every command on --device cpu and --device auto, the
training settings a run records, a CUDA-trained run read on the CPU (skipped without CUDA), and
torchrun — two gloo processes started through the real command line that train, are killed,
resume on one process and match the single-process run; that train with DDP, sample, evaluate
and score rows equal to the single-process result row for row; and print their lines once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from safetensors.torch import load_file

import scorematch
from scorematch.cli import cli
from scorematch.devices import resolve_device
from scorematch.training import latest_checkpoint

TINY = ["--steps", "20", "--width", "16", "--depth", "1", "--batch-size", "32",
        "--sample-every", "0", "--no-progress"]  # fmt: skip
SRC = Path(scorematch.__file__).resolve().parents[1]
HELPER = Path(__file__).with_name("_torchrun_cli.py")
# --standalone: a rendezvous on a free local port (other torchrun jobs may hold the default).
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def invoke(*args: object, ok: bool = True):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def _env() -> dict[str, str]:
    """The test's environment with this scorematch first on the path and one thread each."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _config(run: Path) -> dict:
    return yaml.safe_load((run / "config.yaml").read_text())


# ---------------------------------------------------------------- devices
def test_help_documents_device_precision_compile_grad_accum_and_threads():
    def flat(*command: str) -> str:
        return " ".join(invoke(*command, "--help").output.split())

    for command in ("train", "sample", "evaluate", "likelihood", "plot", "demo"):
        assert "--device auto|cpu|cuda|cuda:N|mps" in flat(command), command
    train = flat("train")
    for option in ("--precision [fp32|bf16|fp16]", "--compile / --no-compile", "--grad-accum K"):
        assert option in train
    assert "$OMP_NUM_THREADS when set" in flat() and "else 1" in flat()
    assert "datasets" in cli.commands and "--device" not in flat("datasets")  # computes nothing


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_every_command_runs_with_device_cpu_and_auto(tmp_path, device):
    run = tmp_path / "run"
    invoke("train", "--data", "moons", "--n", "200", "--out", run, *TINY, "--device", device)
    assert _config(run)["training"]["device"] == str(resolve_device(device))
    invoke("sample", run, "-n", "40", "--out", tmp_path / "s.npy", "--device", device,
           "--no-progress")  # fmt: skip
    assert np.load(tmp_path / "s.npy").shape == (40, 2)
    invoke("evaluate", run, "-n", "40", "--device", device, "--no-progress")
    assert "held-out split" in invoke("likelihood", run, "--device", device, "--no-progress").output
    invoke("plot", run, "-n", "50", "--device", device)
    assert (run / "plots" / "samples.png").is_file()
    text = invoke("demo", "--quick", "--steps", "5", "--out", tmp_path / "demo", "--device",
                  device, "--no-progress").output  # fmt: skip
    assert "held-out NLL" in text


def test_train_records_where_and_how_it_trained_and_resume_keeps_it(tmp_path):
    run = tmp_path / "run"
    invoke("train", "--data", "moons", "--n", "200", "--out", run, *TINY, "--val-fraction", "0",
           "--device", "cpu", "--precision", "bf16", "--grad-accum", "2")  # fmt: skip
    tr = _config(run)["training"]
    assert (tr["device"], tr["world_size"], tr["precision"], tr["compile"], tr["grad_accum"]) == (
        "cpu", 1, "bf16", False, 2)  # fmt: skip
    meta = json.loads(latest_checkpoint(run / "checkpoints").with_suffix(".json").read_text())
    assert meta["trainer"]["precision"] == "bf16" and meta["trainer"]["grad_accum"] == 2
    invoke("train", "--resume", "--out", run, "--steps", "30", "--no-progress")
    tr = _config(run)["training"]
    assert tr["precision"] == "bf16" and tr["grad_accum"] == 2 and tr["steps"] == 30
    invoke("train", "--resume", "--out", run, "--steps", "40", "--precision", "fp32",
           "--grad-accum", "1", "--no-progress")  # fmt: skip
    assert _config(run)["training"]["precision"] == "fp32"
    for args, fragment in (
        (("--objective", "ism", "--compile"), "--compile applies to the first-order objectives"),
        (("--device", "gpu"), "unknown device 'gpu'"),
        (("--grad-accum", "0"), "grad_accum must be a positive integer"),
    ):
        result = invoke("train", "--data", "moons", "--n", "200", "--out", tmp_path / "bad",
                        *TINY, *args, ok=False)  # fmt: skip
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 1 and lines[-1].startswith("Error: ") and fragment in lines[-1]
    if not torch.cuda.is_available():
        result = invoke("sample", run, "-n", "5", "--out", tmp_path / "x.npy", "--device",
                        "cuda", ok=False)  # fmt: skip
        assert result.exit_code == 1 and "Error: device 'cuda': CUDA is not available" in (
            result.output)  # fmt: skip


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none here)")
def test_a_run_trained_on_cuda_samples_on_the_cpu(tmp_path):
    run = tmp_path / "run"
    invoke("train", "--data", "moons", "--n", "200", "--out", run, *TINY, "--device", "cuda",
           "--precision", "bf16")  # fmt: skip
    assert _config(run)["training"]["device"].startswith("cuda")
    for device in ("cuda", "cpu"):
        invoke("sample", run, "-n", "20", "--out", tmp_path / f"{device}.npy", "--device", device)
        invoke("likelihood", run, "--device", device, "--no-progress")
    a, b = np.load(tmp_path / "cuda.npy"), np.load(tmp_path / "cpu.npy")
    assert a.shape == b.shape == (20, 2) and np.isfinite(a).all() and np.isfinite(b).all()


# ---------------------------------------------------------------- torchrun
def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


ISM_RUN = ["--data", "moons", "--objective", "ism", "--width", "32", "--depth", "2",
           "--batch-size", "64", "--val-fraction", "0", "--seed", "3", "--steps", "200",
           "--checkpoint-every", "10", "--sample-every", "0", "--no-progress"]  # fmt: skip


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker processes in /proc")
def test_torchrun_training_killed_and_resumed_on_one_process_matches_one_process(tmp_path):
    """Two gloo processes train ISM (deterministic: σ = 0, no noise) through `python -m
    torch.distributed.run … -m scorematch train`; both workers are killed (SIGKILL) once the
    first checkpoint exists; `train --resume` continues on one process to step 200.

    Tolerance: the global batches are the same on any number of processes, so the distributed
    segment differs from one process only in the order of the gradient sums (float32 rounding,
    ~1e-7 relative per step), which the remaining Adam steps carry without amplifying much:
    measured 1.5e-7 (one or two ulps of weights below 1) after 200 steps; allowed 1e-5."""
    dist_run, single = tmp_path / "dist", tmp_path / "single"
    log = (tmp_path / "torchrun.log").open("w")
    proc = subprocess.Popen([*TORCHRUN, "-m", "scorematch", "train", *ISM_RUN, "--out", dist_run],
                            env=_env(), stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while latest_checkpoint(dist_run / "checkpoints") is None:
            assert proc.poll() is None, (tmp_path / "torchrun.log").read_text()
            assert time.monotonic() < deadline, "no checkpoint after 300 s"
            time.sleep(0.02)
        workers = _children(proc.pid)
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert len(workers) == 2 and proc.returncode != 0  # killed mid-run, not finished
    killed_at = int(latest_checkpoint(dist_run / "checkpoints").stem.split("_")[1])
    meta = json.loads(latest_checkpoint(dist_run / "checkpoints").with_suffix(".json").read_text())
    assert 10 <= killed_at < 200 and meta["world_size"] == 2
    assert _config(dist_run)["training"]["world_size"] == 2

    resumed = invoke("train", "--resume", "--out", dist_run, "--no-progress").output
    assert "trained" in resumed and _config(dist_run)["training"]["world_size"] == 1
    invoke("train", *ISM_RUN, "--out", single)
    a = load_file(latest_checkpoint(dist_run / "checkpoints"))
    b = load_file(latest_checkpoint(single / "checkpoints"))
    weights = [k for k in b if k.startswith(("model.", "ema."))]
    assert weights and set(weights) <= set(a)
    for k in weights:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-5)
    rows = [line.split(",")[0] for line in (dist_run / "metrics.csv").read_text().splitlines()]
    assert rows == [
        line.split(",")[0] for line in (single / "metrics.csv").read_text().splitlines()
    ]


def test_torchrun_train_sample_evaluate_likelihood_equal_one_process_row_for_row(tmp_path):
    """DDP training (edm, first-order), then sample / evaluate / likelihood split over two ranks
    in blocks of 1000 rows: the rows equal the single-process command's exactly (each block is
    computed by the same code, on the same rows, from the same seed), and rank 0 alone prints."""
    run, rows = tmp_path / "run", tmp_path / "rows.npy"
    x = np.random.default_rng(0).normal(size=(2300, 2)).astype(np.float32)
    np.save(rows, x)
    commands = [
        ["train", "--data", "moons", "--n", "300", "--out", str(run), *TINY, "--val-fraction", "0"],
        ["sample", str(run), "-n", "2500", "--steps", "4", "--out", str(tmp_path / "s2.npy"),
         "--no-progress"],
        ["likelihood", str(run), str(rows), "--rtol", "1e-3", "--out", str(tmp_path / "lp2.npy"),
         "--no-progress"],
        ["evaluate", str(run), "-n", "1200", "--rtol", "1e-3", "--json", str(tmp_path / "e2.json"),
         "--no-progress"],
    ]  # fmt: skip
    proc = subprocess.run([*TORCHRUN, str(HELPER), json.dumps(commands)], env=_env(),
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for line in ("trained ", "wrote 2500 samples", "mean log-likelihood", "sliced Wasserstein"):
        assert proc.stdout.count(line) == 1, proc.stdout  # rank 0 prints, once
    tr = _config(run)["training"]
    assert (tr["world_size"], tr["device"]) == (2, "cpu")

    invoke("sample", run, "-n", "2500", "--steps", "4", "--out", tmp_path / "s1.npy",
           "--no-progress")  # fmt: skip
    invoke("likelihood", run, rows, "--rtol", "1e-3", "--out", tmp_path / "lp1.npy",
           "--no-progress")  # fmt: skip
    invoke("evaluate", run, "-n", "1200", "--rtol", "1e-3", "--json", tmp_path / "e1.json",
           "--no-progress")  # fmt: skip
    s1, s2 = np.load(tmp_path / "s1.npy"), np.load(tmp_path / "s2.npy")
    assert s1.shape == (2500, 2) and np.array_equal(s1, s2)
    lp1, lp2 = np.load(tmp_path / "lp1.npy"), np.load(tmp_path / "lp2.npy")
    assert lp1.shape == (2300,) and np.array_equal(lp1, lp2)
    e1, e2 = (json.loads((tmp_path / f"e{i}.json").read_text()) for i in (1, 2))
    timing = {"seconds", "sample_seconds", "nll_seconds"}
    assert {k: v for k, v in e1.items() if k not in timing} == {
        k: v for k, v in e2.items() if k not in timing
    }
