"""``scorematch evaluate`` (sample distances and held-out NLL) and ``scorematch likelihood``
(log p of the held-out split or of a file's rows)."""

from __future__ import annotations

import math
from pathlib import Path

import click

from ..data import load_dataset
from ..metrics import heldout_nll
from ..runs import write_evaluation
from .options import (
    check_out,
    checkpoint_line,
    checkpoint_option,
    device_option,
    format_value,
    open_run,
    save_array,
    t_min_option,
)


@click.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.option(
    "-n",
    "n",
    type=int,
    default=2000,
    show_default=True,
    help="Samples to draw and compare with the held-out split.",
)
@click.option(
    "--json",
    "json_out",
    type=click.Path(path_type=Path),
    help="Also write the results to this JSON file.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of sampling and of the metrics' randomness.",
)
@click.option(
    "--nll/--no-nll",
    default=True,
    show_default=True,
    help="Compute the held-out NLL (probability-flow ODE).",
)
@click.option(
    "--exact/--hutchinson",
    "exact",
    default=None,
    help="Divergence of the NLL: exact trace (default up to 16 dimensions) or Hutchinson's estimate.",
)
@click.option(
    "--rtol",
    type=float,
    default=1e-5,
    show_default=True,
    help="Relative (and absolute) tolerance of the likelihood's ODE solver.",
)
@t_min_option
@checkpoint_option
@device_option
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def evaluate(
    run_dir: Path,
    checkpoint: str | None,
    device: str,
    n: int,
    json_out: Path | None,
    seed: int,
    nll: bool,
    exact: bool | None,
    rtol: float,
    t_min: float | None,
    no_progress: bool,
) -> None:
    """Compare samples of RUN with its held-out split and compute the held-out NLL.

    Sliced Wasserstein distance, MMD² (RBF kernel, median bandwidth) and energy distance between
    -n samples and the held-out data, all in data units; the held-out negative log-likelihood in
    nats per sample (data units: the standardisation's log-determinant is accounted for) and in
    bits per dimension — for quantised images (digits, image folders) the discrete convention with
    uniform dequantization.  Results are printed and written to RUN/evaluation.json.
    """
    if n <= 0:
        raise click.UsageError(f"-n must be a positive number of samples, got {n}")
    run = open_run(run_dir, checkpoint, device)
    divergence = None if exact is None else ("exact" if exact else "hutchinson")
    result = run.evaluate(
        n,
        seed=seed,
        nll=nll,
        divergence=divergence,
        rtol=rtol,
        t_min=t_min,
        progress=not no_progress,
    )
    if not run.is_main:  # under torchrun every rank did its share; rank 0 writes and prints
        return
    path = write_evaluation(result)
    if json_out is not None:
        write_evaluation(result, json_out)
    rows = [
        ("step", result.step),
        ("samples / held-out", f"{result.n_samples} / {result.n_test}"),
        ("sliced Wasserstein", result.sliced_wasserstein),
        ("MMD²", result.mmd),
        ("energy distance", result.energy_distance),
        ("held-out NLL (nats/sample)", result.nll),
        ("  ± std. error", result.nll_stderr),
        ("bits/dim", result.bits_per_dim),
        ("  density at t_min", result.nll_t_min),
    ]
    for name, value in rows:
        click.echo(f"{name:<28}{format_value(value)}")
    click.echo(checkpoint_line(run))
    if result.nll_t_min is not None:
        chosen = run.t_min_reason if t_min is None else "--t-min"
        click.echo(f"likelihood read at t_min {result.nll_t_min:.4g} ({chosen})")
    if result.nll_note:
        click.echo(f"note: {result.nll_note}")
    click.echo(f"wrote {path}" + (f" and {json_out}" if json_out else ""))


@click.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.argument("file", required=False, type=click.Path(path_type=Path))
@click.option(
    "--exact/--hutchinson",
    "exact",
    default=None,
    help="Exact divergence (default up to 16 dimensions) or Hutchinson's estimate.",
)
@click.option(
    "--probes", type=int, default=1, show_default=True, help="Hutchinson probe vectors per sample."
)
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=Path),
    help="Save the per-sample log-likelihoods (.npy or .csv).",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the Hutchinson probes / dequantization noise.",
)
@click.option(
    "--rtol",
    type=float,
    default=1e-5,
    show_default=True,
    help="Relative (and absolute) tolerance of the ODE solver.",
)
@t_min_option
@checkpoint_option
@device_option
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def likelihood(
    run_dir: Path,
    checkpoint: str | None,
    device: str,
    file: Path | None,
    exact: bool | None,
    probes: int,
    out: Path | None,
    seed: int,
    rtol: float,
    t_min: float | None,
    no_progress: bool,
) -> None:
    """Log-likelihood of the held-out split of RUN (or of FILE's rows), in data units.

    Uses the probability-flow ODE with an adaptive solver (Song et al. 2021).  Needs a
    time-conditional objective (diffusion, edm, ncsn).  FILE is a .csv/.npy/.npz table or an
    image folder with samples shaped like the training data, in the same units.
    """
    if probes <= 0:
        raise click.UsageError(f"--probes must be positive, got {probes}")
    if out is not None:
        out = check_out(out, (".npy", ".csv"))
    run = open_run(run_dir, checkpoint, device)
    run.require_likelihood()
    if file is None:
        x, what = run.data.test, "held-out split"
    else:
        if not file.exists():
            raise FileNotFoundError(f"data file not found: {file}")
        x, what = load_dataset(file), str(file)
    divergence = run.default_divergence if exact is None else ("exact" if exact else "hutchinson")
    lp, nfe = run.log_likelihood(
        x,
        divergence=divergence,
        probes=probes,
        seed=seed,
        rtol=rtol,
        t_min=t_min,
        progress=not no_progress,
    )
    if not run.is_main:  # under torchrun every rank scored its share; rank 0 writes and prints
        return
    stats = heldout_nll(lp, dims=math.prod(run.shape))
    click.echo(
        f"{what}: {stats['n']} samples, mean log-likelihood {-stats['nll']:.4f} nats "
        f"(NLL {stats['nll']:.4f} ± {stats['stderr']:.4f}), {stats['bits_per_dim']:.4f} bits/dim, "
        f"{'exact' if divergence == 'exact' else 'Hutchinson'} divergence, {nfe} ODE evaluations"
    )
    click.echo(checkpoint_line(run))
    reason = run.t_min_reason if t_min is None else "--t-min"
    click.echo(f"density read at t_min {run.t_min if t_min is None else t_min:.4g} ({reason})")
    if out is not None:
        save_array(out, lp.numpy()[:, None])
        click.echo(f"wrote per-sample log-likelihoods to {out}")
