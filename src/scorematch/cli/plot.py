"""``scorematch plot``: the pictures of a run."""

from __future__ import annotations

from pathlib import Path

import click

from ..runs import make_plots
from .options import checkpoint_line, checkpoint_option, device_option, open_run


@click.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.option(
    "-n", "n", type=int, default=2000, show_default=True, help="Samples to draw for the pictures."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sampler's noise.")
@click.option(
    "--columns",
    metavar="COLS",
    help="Tables: the columns of the pair plot (names or 1-based indices, comma-separated); "
    "default the most informative few, at most 6.",
)
@checkpoint_option
@device_option
def plot(
    run_dir: Path, n: int, seed: int, columns: str | None, checkpoint: str | None, device: str
) -> None:
    """Write pictures of RUN into RUN/plots/ and print their paths.

    Samples beside the held-out data (2-D scatter, or image grids; a table: a pair plot against
    its training rows — marginals on the diagonal, bars for categorical columns, 2-D densities
    below — of --columns or the most informative few, by mutual information), the learned score
    field as arrows over the data density (2-D), the sampling trajectories as a GIF (2-D) and the
    loss curve.
    For the built-in Gaussian-mixture sets (mixture, 8gaussians), whose score is known:
    score_comparison.png, the learned score beside the true one and the map of their difference,
    at the data and (time-conditional objectives) at a few noise levels, in standardised units.
    For a 2-D energy model (--model energy-mlp): energy_density.png, the learned energy and the
    normalised density e^(−E)/Z, Z by quadrature on the plot's grid.
    """
    if n <= 0:
        raise click.UsageError(f"-n must be positive, got {n}")
    run = open_run(run_dir, checkpoint, device)
    paths = make_plots(run, n=n, seed=seed, columns=columns)
    if not run.is_main:  # under torchrun every rank sampled its share; rank 0 wrote the files
        return
    for path in paths:
        click.echo(str(path))
    click.echo(checkpoint_line(run, checkpoint), err=True)  # stdout lists the files, one per line
