"""``scorematch sample``: draw samples from a trained run, in data units."""

from __future__ import annotations

from pathlib import Path

import click

from ..plots import image_grid, samples_picture, trajectory_gif
from ..runs.streaming import sample_to_file
from ..samplers import SAMPLERS
from .options import (
    check_out,
    checkpoint_line,
    checkpoint_option,
    device_option,
    open_run,
)

SAMPLE_SUFFIXES = (".npy", ".csv", ".png")


@click.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.option("-n", "n", type=int, required=True, help="Number of samples.")
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=Path),
    required=True,
    help="Output file: .npy or .csv (data units; a table's CSV has its column names and labels), "
    "or .png (image grid / scatter plot).",
)
@click.option(
    "--sampler",
    type=click.Choice(list(SAMPLERS), case_sensitive=False),
    help="Sampler (default: the run's, e.g. heun).",
)
@click.option("--steps", type=int, help="Sampler steps (default: the run's).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sampler's noise.")
@click.option(
    "--churn",
    type=float,
    default=0.0,
    show_default=True,
    help="heun only: EDM's S_churn, noise added back at each step (0 = deterministic).",
)
@click.option(
    "--trajectory",
    is_flag=True,
    help="2-D data: also write the sampling trajectory as a GIF next to --out.",
)
@checkpoint_option
@device_option
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def sample(
    run_dir: Path,
    checkpoint: str | None,
    device: str,
    n: int,
    out: Path,
    sampler: str | None,
    steps: int | None,
    seed: int,
    churn: float,
    trajectory: bool,
    no_progress: bool,
) -> None:
    """Draw samples from a trained RUN, in data units (the standardisation undone).

    \b
    Samplers: heun (EDM, 2·steps+1 NFE), ode (RK4 probability flow), dpm_solver, euler_maruyama,
    reverse_diffusion, ancestral, predictor_corrector (stochastic), annealed_langevin (NCSN and the
    unconditional objectives dsm/ssm/ism, which only support it).
    """
    if n <= 0:
        raise click.UsageError(f"-n must be a positive number of samples, got {n}")
    out = check_out(out, SAMPLE_SUFFIXES)
    run = open_run(run_dir, checkpoint, device)
    two_d = run.kind == "vector" and run.shape == (2,)
    if trajectory and not two_d:
        raise click.UsageError("--trajectory needs 2-D data (it draws the points moving)")
    # In chunks, each written to --out as it is drawn (.npy/.csv): memory flat in -n.
    drawn = sample_to_file(
        run,
        n,
        out,
        keep=out.suffix.lower() == ".png",
        sampler=sampler,
        steps=steps,
        seed=seed,
        churn=churn,
        trajectory=trajectory,
        progress=not no_progress,
    )
    if not run.is_main:  # under torchrun every rank drew its share; rank 0 writes and prints
        return
    if out.suffix.lower() == ".png":
        x = drawn.x.cpu()
        if run.kind == "image":
            image_grid(x.clamp(0, 1), out)
        else:
            data = (
                run.data.train_complete if run.columns is not None else None
            )  # a table: pair plot
            samples_picture(x, data, out, columns=run.columns, title=f"{n} samples, step {run.step}",
                            data_name="training rows")  # fmt: skip
    click.echo(f"wrote {n} samples to {out} ({drawn.nfe} model evaluations, {drawn.seconds:.1f} s)")
    click.echo(checkpoint_line(run, checkpoint))
    if trajectory:
        gif = out.with_suffix(".gif")
        trajectory_gif(drawn.trajectory, gif)
        click.echo(f"wrote the sampling trajectory to {gif}")
