"""``scorematch sample``: draw samples from a trained run, in data units."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..conditional import METHODS
from ..plots import image_grid, samples_picture, trajectory_gif
from ..runs.conditional import run_labels
from ..runs.imputation import Given, GivenSamples, parse_given
from ..runs.streaming import sample_to_file
from ..samplers import SAMPLERS
from .options import (
    check_out,
    checkpoint_line,
    checkpoint_option,
    device_option,
    grid_option,
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
@grid_option
@click.option(
    "--given",
    metavar="COL=VALUE,...",
    help='Tables: samples given some columns\' values, e.g. --given "species=Gentoo,year=2008" '
    "(a mask-conditional run: one trained on a table with gaps, or with --conditional).",
)
@click.option(
    "--label",
    metavar="NAME",
    help="A run trained with --labels: samples of this class (its name, or its index).",
)
@click.option(
    "--guidance",
    type=float,
    default=0.0,
    show_default=True,
    help="With --label: classifier-free guidance weight w, s = (1 + w)·s(x|y) − w·s(x); "
    "0 samples the class as learned, larger values trade variety for typical members.",
)
@click.option(
    "--method",
    type=click.Choice(["auto", *METHODS]),
    default="auto",
    show_default=True,
    help="With --given: auto uses the run's mask-conditional network; replacement works with any "
    "run but is biased (benchmarks/results/imputation.md).",
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
    grid: str,
    given: str | None,
    label: str | None,
    guidance: float,
    method: str,
    no_progress: bool,
) -> None:
    """Draw samples from a trained RUN, in data units (the standardisation undone).

    \b
    Samplers: heun (EDM, 2·steps+1 NFE), ode (RK4 probability flow), dpm_solver, euler_maruyama,
    reverse_diffusion, ancestral, predictor_corrector (stochastic), annealed_langevin (NCSN and the
    unconditional objectives dsm/ssm/ism, which only support it).

    \b
      scorematch sample runs/t -n 500 --out s.csv --given "island=Biscoe,year=2008"
      scorematch sample runs/d -n 64 --out sevens.png --label 7 --guidance 2
    """
    if n <= 0:
        raise click.UsageError(f"-n must be a positive number of samples, got {n}")
    out = check_out(out, SAMPLE_SUFFIXES)
    run = open_run(run_dir, checkpoint, device)
    two_d = run.kind == "vector" and run.shape == (2,)
    options: dict[str, Any] = {}
    if trajectory and not two_d:
        raise click.UsageError("--trajectory needs 2-D data (it draws the points moving)")
    if guidance != 0 and label is None:
        raise click.UsageError("--guidance weighs a class: give it with --label NAME")
    if method != "auto" and given is None:
        raise click.UsageError("--method applies with --given")
    source, code = run, None
    codec = run_labels(run.config)
    if label is not None:
        if codec is None:
            raise click.UsageError("--label: this run was trained without labels (train --labels)")
        code = codec.code(label)
    if given is not None:
        if run.kind == "image":
            raise click.UsageError("--given applies to tables (columns given by name)")
        names = run.columns.names if run.columns is not None else [f"x{j + 1}" for j in
                                                                    range(run.shape[0])]  # fmt: skip
        cond = parse_given(given, run.columns, names, codec)
        if code is not None and cond.label is not None and cond.label != code:
            raise click.UsageError("--label and the label column in --given disagree")
        if code is not None:
            cond = Given(cond.values, code)
        source = GivenSamples(run, cond, guidance=guidance, method=method)
    elif code is not None:
        options["label"], options["guidance"] = code, guidance
    # In chunks, each written to --out as it is drawn (.npy/.csv): memory flat in -n.
    drawn = sample_to_file(
        source,
        n,
        out,
        keep=out.suffix.lower() == ".png",
        sampler=sampler,
        steps=steps,
        seed=seed,
        churn=churn,
        trajectory=trajectory,
        progress=not no_progress,
        grid=grid,
        **options,
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
    what = f" given {given}" if given is not None else ""
    if code is not None:
        what += f" of class {codec.classes[code]}" + (
            f", guidance {guidance:g}" if guidance else ""
        )
    click.echo(
        f"wrote {n} samples{what} to {out} ({drawn.nfe} model evaluations, {drawn.seconds:.1f} s)"
    )
    click.echo(checkpoint_line(run, checkpoint))
    if drawn.grid_note:
        click.echo(drawn.grid_note)
    if trajectory:
        gif = out.with_suffix(".gif")
        trajectory_gif(drawn.trajectory, gif)
        click.echo(f"wrote the sampling trajectory to {gif}")
