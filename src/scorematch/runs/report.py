"""Reporting on a run: its pictures (:func:`make_plots`) and :func:`demo`, which trains,
evaluates, compares with a Gaussian mixture (:func:`~.verdict.gmm_baseline`) and plots in one
go."""

from __future__ import annotations

import contextlib
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..distributions import GaussianMixture
from ..parametrization import at_time
from ..plots import image_grid, loss_curve, samples_picture, score_field, trajectory_gif
from ..run_dir import RunDir
from .config import DEFAULTS
from .data import data_kind
from .evaluation import Evaluation, write_evaluation
from .execution import start
from .loading import load_run
from .oracle import known_mixture, oracle_plots
from .run import Run
from .train import train
from .verdict import Baseline, gmm_baseline, paired_verdict

__all__ = ["DEMO_SETTINGS", "DemoResult", "demo", "make_plots"]


# ------------------------------------------------------------------------------------------------
# Plots
# ------------------------------------------------------------------------------------------------
def make_plots(
    run: Run,
    out_dir: str | Path | None = None,
    *,
    n: int = 2000,
    seed: int = 0,
    columns: str | None = None,
    mixture: GaussianMixture | None = None,
) -> list[Path]:
    """Write the run's pictures into ``out_dir`` (default ``RUN/plots``) and return their paths:
    samples beside data (or an image grid), the learned score field and a sampling-trajectory
    GIF (2-D data), and the loss curve; a table's samples in a pair plot against its training
    rows (``columns``: which, default the most informative few).  Where the law of 2-D data is
    known (a built-in mixture set, or ``mixture`` in data units) also the learned score beside the
    true one (``score_comparison.png``), and for a 2-D energy model its energy and normalised
    density (``energy_density.png``): :func:`~.oracle.oracle_plots`.  Under torchrun every rank
    samples its share and rank 0 alone writes (the others return an empty list)."""
    if out_dir is None:
        if run.run_dir is None:
            raise ValueError("make_plots needs an out_dir for a run without a directory")
        out_dir = RunDir(run.run_dir).plots
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    two_d = (
        run.kind == "vector"
        and run.shape == (2,)
        and (run.columns is None or run.columns.passthrough)
    )
    truth = known_mixture(run.config, mixture)
    if run.kind == "image":
        drawn = run.sample(64, seed=seed)
        if not run.is_main:
            return []
        paths.append(image_grid(drawn.x.clamp(0, 1), folder / "samples.png", nrow=8))
        paths.append(image_grid(run.data.test[:64], folder / "data.png", nrow=8))
    else:
        drawn = run.sample(n, seed=seed, trajectory=two_d)
        if not run.is_main:
            return []
        title = f"{run.objective}, step {run.step}"
        table = run.columns is not None
        reference = run.data.train_complete if table else run.data.test
        name = "training rows" if table else "held-out data"
        paths.append(samples_picture(drawn.x, reference, folder / "samples.png",
                                     columns=run.columns, show=columns, title=title,
                                     data_name=name))  # fmt: skip
        if two_d:
            paths.append(_score_field(run, folder / "score_field.png"))
            paths += oracle_plots(
                truth,
                run.config,
                run.model,
                run.process,
                run.standardizer,
                folder,
                data=run.data.test,
                step=run.step,
            )
            if drawn.trajectory is not None and len(drawn.trajectory) > 1:
                gif = folder / "trajectory.gif"
                paths.append(trajectory_gif(drawn.trajectory, gif, data=run.data.test))
    metrics = None if run.run_dir is None else RunDir(run.run_dir).metrics_path
    if metrics is not None and metrics.is_file():
        with contextlib.suppress(ValueError):  # a run with no logged row yet has no curve
            paths.append(loss_curve(metrics, folder / "loss.png"))
    return paths


def _score_field(run: Run, path: Path) -> Path:
    """The learned score in data units, ∇ₓ log p(x) = (∇_z log p(z)) / s, at a small noise level."""
    std = run.standardizer
    if run.time_conditional:
        # The level where the scaled noise is 0.1 data standard deviations (inside the range).
        t = float(run.process.t_of_log_snr(torch.tensor(-2 * math.log(0.1), dtype=torch.float64)))
        t = min(max(t, run.process.t_min), run.process.t_max)
        score_z = at_time(run.model, t)
        title = f"learned score at noise 0.1 std (t = {t:.3g})"
    else:
        score_z = lambda z: run.model(z, None)  # noqa: E731
        title = f"learned score ({run.objective})"
    dtype = run.dtype

    def score_x(x: Tensor) -> Tensor:
        z = std.transform(x.to(dtype))
        with torch.no_grad():
            s = score_z(z)
        return (s / std.std.to(s)) if std.kind == "vector" else s

    return score_field(score_x, run.data.test, path, title=title, device=run.device)


# ------------------------------------------------------------------------------------------------
# Demo
# ------------------------------------------------------------------------------------------------
@dataclass
class DemoResult:
    """What :func:`demo` made: the run, its evaluation, the baseline (vector data), the pictures
    and the seconds each stage took."""

    run: Run
    evaluation: Evaluation
    baseline: Baseline | None
    plots: list[Path]
    timings: dict[str, float]

    def model_minus_baseline(self) -> tuple[float, float] | None:
        """Mean of NLL_model − NLL_GMM over the same held-out points and its paired standard
        error (negative: the model is better); None without both NLLs."""
        model_lp = self.evaluation.log_prob
        if self.baseline is None or model_lp is None:
            return None
        diff = (self.baseline.log_prob - model_lp).double()
        return float(diff.mean()), float(diff.std() / math.sqrt(diff.numel()))

    def verdict(self) -> str | None:
        """:func:`paired_verdict` of :meth:`model_minus_baseline` (None without both NLLs)."""
        paired = self.model_minus_baseline()
        return None if paired is None else paired_verdict(*paired)


# What the demo changes from the training defaults, by data kind (normal, --quick).
DEMO_SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    "vector": {"normal": {}, "quick": {"steps": 300, "n": 2000}},
    "image": {
        "normal": {"steps": 1500, "batch_size": 64, "channels": 16},
        "quick": {"steps": 30, "batch_size": 32, "channels": 8},
    },
}


def demo(
    data: str = "moons",
    out_dir: str | Path = "runs/demo",
    *,
    steps: int | None = None,
    quick: bool = False,
    progress: bool = True,
    device: str | None = "auto",
    announce: Callable[[dict[str, Any]], None] | None = None,
) -> DemoResult:
    """Train on ``data`` into ``out_dir`` (replacing an earlier run there), sample, evaluate against
    the held-out split (and a BIC-selected Gaussian mixture for vector data), and plot.

    The held-out NLL uses the exact divergence for vectors and Hutchinson's estimate for images,
    with ODE tolerances 1e-4 (the NLL hardly moves from 1e-5: ``benchmarks/results/design_choices.md``).
    ``device``: where to compute (``scorematch.devices.resolve_device``); under torchrun the
    training, sampling and likelihood are split over the ranks and rank 0 writes.
    ``announce(config)``: told the resolved config before training starts (as by ``train``).
    """
    folder = RunDir(out_dir)
    out = folder.path
    execution = start(device)
    if out.exists() and not folder.is_run() and not (out.is_dir() and not any(out.iterdir())):
        raise ValueError(
            f"{out} exists and is not a scorematch run; choose another --out for the demo"
        )
    if out.exists() and folder.is_run() and execution.is_main:
        shutil.rmtree(out)
    execution.barrier()
    kind = data_kind(data)
    options: dict[str, Any] = {"data": data, **DEMO_SETTINGS[kind]["quick" if quick else "normal"]}
    if steps is not None:
        options["steps"] = steps
    options["sample_every"] = options.get("steps", DEFAULTS[kind]["steps"])  # one, at the end
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    train(options, out, progress=progress, device=execution.device, announce=announce)
    timings["train"] = time.perf_counter() - t0
    run = load_run(out, device=execution.device)
    t1 = time.perf_counter()
    if kind == "vector":
        n, nll_points = (500, 500) if quick else (2000, 2000)
    else:
        n, nll_points = (16, 16) if quick else (256, 200)
    # The demo prints its own comparison with the mixture (below): no second one in evaluate.
    evaluation = run.evaluate(
        n, max_nll_points=nll_points, rtol=1e-4, progress=progress, verdict=False
    )
    if run.is_main:
        write_evaluation(evaluation)
    timings["evaluate"] = time.perf_counter() - t1
    baseline = None
    if kind == "vector" and run.is_main:  # the printed comparison: rank 0 only
        t2 = time.perf_counter()
        points = None if evaluation.likelihood is None else evaluation.likelihood.points
        held_out = run.data.test[:points]
        baseline = gmm_baseline(run.data.train_complete, held_out, seed=0)
        timings["baseline"] = time.perf_counter() - t2
    t3 = time.perf_counter()
    paths = make_plots(run, n=n)
    timings["plots"] = time.perf_counter() - t3
    timings["total"] = time.perf_counter() - t0
    return DemoResult(run, evaluation, baseline, paths, timings)
