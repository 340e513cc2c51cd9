"""``scorematch tune``: fit the default deterministic sampler's grid to a trained run's model."""

from __future__ import annotations

from pathlib import Path

import click

from ..runs.tuning import GRIDS_FILE, beats_default, parse_nfe, tune_run
from .options import checkpoint_line, checkpoint_option, device_option, open_run


@click.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.option(
    "--nfe",
    default="5,10,20",
    show_default=True,
    help="Model calls of the sampler to tune for, comma-separated (each at least 3).",
)
@click.option(
    "--draws",
    type=int,
    help="Prior draws the grid is fitted on, and as many others it is checked on (default 256 "
    "for tables and points, 64 for images).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the draws.")
@click.option(
    "--max-evaluations",
    type=int,
    help="Sampler runs per NFE at most (default 40·(NFE − 1) for tables and points, 10·(NFE − 1) "
    "for images).",
)
@checkpoint_option
@device_option
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def tune(
    run_dir: Path,
    checkpoint: str | None,
    device: str,
    nfe: str,
    draws: int | None,
    seed: int,
    max_evaluations: int | None,
    no_progress: bool,
) -> None:
    """Fit the time grid of dpm_solver (UniPC-2, the run's default deterministic sampler family)
    to RUN's model at each --nfe, and keep the grids in RUN/grids.json.

    From the same prior draws, the tuned sampler's samples are brought as close as possible (mean
    squared distance per coordinate) to a 200-step solution of the probability-flow ODE
    (LD3, Chen et al. 2024). `sample` and `evaluate` then use the grid for that sampler, NFE and
    checkpoint and say so (dpm_solver at N NFE: --sampler dpm_solver --steps N−1); --grid
    default opts out. Tuning another checkpoint keeps this one's grids.
    """
    nfes = parse_nfe(nfe)  # a bad --nfe fails before the run is loaded
    if draws is not None and draws <= 0:
        raise click.UsageError(f"--draws must be positive, got {draws}")
    run = open_run(run_dir, checkpoint, device)
    entries = tune_run(
        run,
        nfes,
        draws=draws,
        seed=seed,
        max_evaluations=max_evaluations,
        progress=not no_progress,
    )
    if not run.is_main:
        return
    click.echo(checkpoint_line(run, checkpoint))
    click.echo(
        f"discrepancy to a {entries[0]['reference_steps']}-step ODE solution (mean squared "
        f"distance per coordinate, {entries[0]['holdout']} draws not used for fitting):"
    )
    click.echo(
        f"{'NFE':>5}  {'default grid':>12}  {'tuned grid':>12}  {'ratio':>6}  {'seconds':>8}"
    )
    for e in entries:
        before, after = e["holdout_loss_default"], e["holdout_loss"]
        if before is None:  # no held-out draws: the fitting draws
            before, after = e["loss_default"], e["loss"]
        ratio = after / before if before > 0 else float("nan")
        click.echo(
            f"{e['nfe']:>5}  {before:>12.4g}  {after:>12.4g}  {ratio:>6.2f}  {e['seconds']:>8.1f}"
        )
    used = [e for e in entries if beats_default(e)]
    steps = ", ".join(f"--steps {e['nfe'] - 1}" for e in used)
    click.echo(
        f"wrote {run.run_dir / GRIDS_FILE}; `scorematch sample RUN --sampler dpm_solver` uses "
        + (f"them at {steps}" if used else "none of them")
    )
    worse = [str(e["nfe"]) for e in entries if not beats_default(e)]
    if worse:
        click.echo(
            f"at {', '.join(worse)} NFE the tuned grid is no better than the default on the "
            "held-out draws: sampling keeps the default grid there (--grid tuned overrides)"
        )
