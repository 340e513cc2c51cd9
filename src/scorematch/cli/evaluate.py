"""``scorematch evaluate`` (sample distances and held-out NLL) and ``scorematch likelihood``
(log p of the held-out split or of a file's rows)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click

from ..data import load_dataset
from ..metrics import heldout_nll
from ..runs import Evaluation, Run, evaluation_path, write_evaluation
from ..runs.oracle import known_mixture, true_nll
from .options import (
    check_out,
    checkpoint_line,
    checkpoint_option,
    device_option,
    divergence_option,
    format_value,
    grid_option,
    open_run,
    rtol_option,
    save_array,
    shows_bits_per_dim,
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
    "--nll-rows",
    type=int,
    default=2000,
    show_default=True,
    help="Held-out rows the NLL is computed on (the first ones of the split): bounds its time.",
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
    "--target",
    metavar="COL",
    help="Tables: also train on synthetic, test on real — predict this column (name or 1-based "
    "index) from the others with gradient-boosted trees fitted on the samples, scored on the "
    "held-out rows (R², or macro F1 for a categorical or binary column).",
)
@click.option(
    "--verdict/--no-verdict",
    default=True,
    show_default=True,
    help="Vector data: judge the figures against a BIC Gaussian mixture fitted on the same "
    "training rows and against the training rows themselves.",
)
@divergence_option
@rtol_option
@t_min_option
@grid_option
@checkpoint_option
@device_option
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def evaluate(
    run_dir: Path,
    checkpoint: str | None,
    device: str,
    n: int,
    nll_rows: int,
    json_out: Path | None,
    seed: int,
    nll: bool,
    target: str | None,
    verdict: bool,
    exact: bool | None,
    rtol: float,
    t_min: float | None,
    grid: str,
    no_progress: bool,
) -> None:
    """Compare samples of RUN with its held-out split and compute the held-out NLL.

    Sliced Wasserstein distance, MMD² (RBF kernel, median bandwidth) and energy distance between
    -n samples and the held-out data, all in data units; the held-out negative log-likelihood in
    nats per sample (data units: the standardisation's log-determinant is accounted for) and in
    bits per dimension (printed for discrete data only: quantised images, with uniform
    dequantization, and all-discrete tables).  A table's discrete columns count as the probability
    of their values (uniform dequantization over each value's bin).  MMD² and energy distance are
    unbiased estimates, so values slightly below 0 mean no measurable difference.

    \b
    Memorisation: the median distance from a sample to its closest training row, divided by the
    same for held-out rows (≈ 1 when the model generalises, ≪ 1 when it copies training rows),
    and the share of samples that are near-copies of a training row (within a quarter of the
    training rows' typical nearest-neighbour distance; held-out rows' share beside it); a warning
    is printed when they look like copying.

    \b
    Known density: for the built-in Gaussian-mixture sets (mixture, 8gaussians) also the Fisher
    divergence E‖s_θ − ∇log p_t‖² to the true score at the data and a few noise levels
    (standardised units), the mixture error of the samples (mode weights, per-mode Bures
    distance) and the exact NLL gap to the true density.

    \b
    Verdict (vector data, --no-verdict to skip): the same kind of figures in standardised units —
    held-out NLL, exact Wasserstein-1, energy distance, the ForestDiffusion paper's coverage and,
    with --target COL, train-on-synthetic-test-on-real — for the model, for a Gaussian mixture
    (components by BIC) fitted on the same training rows, and for the training rows themselves
    (the floor), with one sentence per figure: better than, level with or worse than the mixture
    (2 paired standard errors decide).

    Results are printed and written to RUN/evaluation.json — RUN/evaluation_tmin-T.json with
    --t-min T, so that the default evaluation is never replaced by another setting's.
    """
    if n <= 0:
        raise click.UsageError(f"-n must be a positive number of samples, got {n}")
    if nll_rows <= 0:
        raise click.UsageError(f"--nll-rows must be positive, got {nll_rows}")
    if json_out is not None:
        json_out = check_out(json_out, (".json",), "--json")
    run = open_run(run_dir, checkpoint, device)
    divergence = None if exact is None else ("exact" if exact else "hutchinson")
    result = run.evaluate(
        n,
        max_nll_points=nll_rows,
        seed=seed,
        nll=nll,
        divergence=divergence,
        rtol=rtol,
        t_min=t_min,
        progress=not no_progress,
        grid=grid,
        verdict=verdict,
        target=target,
        announce=None if no_progress else (lambda line: click.echo(f"{line} …", err=True)),
    )
    if not run.is_main:  # under torchrun every rank did its share; rank 0 writes and prints
        return
    path = write_evaluation(result, evaluation_path(run.run_dir, t_min))
    if json_out is not None:
        write_evaluation(result, json_out)
    for name, value in _report_rows(result, shows_bits_per_dim(run)) + _oracle_rows(result):
        click.echo(f"{name:<28}{format_value(value)}")
    click.echo(checkpoint_line(run, checkpoint))
    if result.samples.grid_note:
        click.echo(result.samples.grid_note)
    if result.likelihood is not None:
        chosen = run.t_min_reason if t_min is None else "--t-min"
        click.echo(f"likelihood read at t_min {result.likelihood.t_min:.4g} ({chosen})")
    for note in _notes(result):
        click.echo(f"note: {note}")
    for line in verdict_lines(result):
        click.echo(line)
    warning = result.memorisation.warning() if result.memorisation is not None else None
    if warning:
        click.echo(f"warning: {warning}")
    click.echo(f"wrote {path}" + (f" and {json_out}" if json_out else ""))


def _report_rows(result: Evaluation, bits: bool) -> list[tuple[str, Any]]:
    """The table `evaluate` prints (bits/dim only for discrete data)."""
    s, nll, m = result.samples, result.likelihood, result.memorisation
    rows: list[tuple[str, Any]] = [
        ("step", result.step),
        ("samples / held-out", f"{s.n} / {result.n_test}"),
        *_subset_row(s.distance_rows, result.n_test),
        ("sliced Wasserstein", s.sliced_wasserstein),
        ("MMD² (unbiased)", s.mmd),
        ("energy distance (unbiased)", s.energy_distance),
        ("held-out NLL (nats/sample)", None if nll is None else nll.nll),
        ("  ± std. error", None if nll is None else nll.stderr),
    ]
    if bits:
        rows.append(("bits/dim", None if nll is None else nll.bits_per_dim))
    rows.append(("  density at t_min", None if nll is None else nll.t_min))
    if m is not None:
        rows += [
            ("memorisation ratio", m.ratio),
            ("  ± std. error", m.ratio_stderr),
            (
                "near-copies",
                f"{100 * m.copy_fraction:.1f}% of samples "
                f"(held-out rows: {100 * m.heldout_copy_fraction:.1f}%)",
            ),
        ]
    return rows


def verdict_lines(result: Evaluation) -> list[str]:
    """The verdict (vector data): each figure for the model, the mixture and the training rows,
    then one sentence per figure and the memorisation ratio in words."""
    v = result.verdict
    if v is None:
        return []
    lines = [
        f"compared in standardised units (numeric columns / their sd, labels one-hot), on {v.rows} "
        f"held-out rows; the mixture: {v.mixture_components} Gaussian component(s) chosen by BIC "
        f"on {v.mixture_rows} training rows; {v.samples} rows per source:",
        f"  {'':<36}{'model':>11}{'mixture':>11}{'train rows':>11}",
    ]
    labels = {"energy_distance": "energy distance (unbiased)"}
    for f in v.figures:
        label = labels.get(f.key, f.label)
        if f.key == "tstr":
            label = f"train synthetic, test real: {v.tstr_metric}"
        cells = [format_value(x) for x in (f.model, f.mixture, f.floor)]
        lines.append(f"  {label[:36]:<36}" + "".join(f"{c:>11}" for c in cells))
    lines += [f"  - {f.sentence}" for f in v.figures]
    if v.memorisation:
        lines.append(f"  - {v.memorisation}")
    lines.append(f"verdict: {v.summary}")
    return lines


def _oracle_rows(result: Evaluation) -> list[tuple[str, Any]]:
    """The rows against the data's known law (built-in mixture sets), when it is known."""
    oracle = result.oracle
    if oracle is None:
        return []
    rows: list[tuple[str, Any]] = [
        ("true density", oracle.source),
        ("Fisher divergence", "E‖s_θ − ∇log p_t‖², standardised units (relative: / E‖∇log p_t‖²)"),
    ]
    for f in oracle.fisher:
        rows.append(
            (f"  {f.label}", f"{f.fisher:.4g} ± {f.stderr:.2g} (relative {f.relative:.3g})")
        )
    s = oracle.samples
    rows.append(
        (
            "mixture error of samples",
            f"{s['total']:.4g}: mode weights {s['weight_error']:.3g} (exact samples "
            f"{s['weight_error_exact']:.3g}), Bures excess {s['bures_excess']:.3g} "
            f"(noise {s['bures_noise']:.2g})",
        )
    )
    nll = oracle.nll
    if nll is not None:
        rows += [
            ("true NLL (nats/sample)", nll.nll_true),
            ("  model − true", f"{nll.gap:.4g} ± {nll.stderr:.2g} (estimates KL(p ‖ p_θ))"),
            (
                "  model − true at t_min",
                f"{nll.gap_t_min:.4g} ± {nll.stderr_t_min:.2g} (true density blurred to "
                f"t_min {nll.t_min:.4g}, as the model's is read)",
            ),
        ]
    return rows


def _true_density_line(run: Run, x, log_prob, t_min: float) -> str | None:
    """The model's NLL against the exact one, for data whose law is known (mixture sets)."""
    mixture = known_mixture(run.config)
    if mixture is None or x.ndim != 2:
        return None
    nll = true_nll(log_prob, x, mixture, run.standardizer, run.process, t_min)
    return (
        f"true density (the built-in set {run.config['data']['spec']!r}): NLL {nll.nll_true:.4f}; "
        f"model − true {nll.gap:.4f} ± {nll.stderr:.4f} nats, {nll.gap_t_min:.4f} ± "
        f"{nll.stderr_t_min:.4f} against the true density blurred to t_min"
    )


def _notes(result: Evaluation) -> list[str]:
    """Lines that keep the table from puzzling its reader."""
    notes = []
    if result.nll_note:
        notes.append(result.nll_note)
    if min(result.samples.mmd, result.samples.energy_distance) < 0:
        notes.append(
            "MMD² and energy distance are unbiased estimates: a value slightly below 0 means no "
            "measurable difference between samples and held-out data"
        )
    nll = result.likelihood
    if nll is not None and nll.log_bin_volume:
        volume = nll.log_bin_volume
        sign = "+" if volume < 0 else "−"
        notes.append(
            f"the NLL is the {nll.convention}; a continuous density p in data units "
            f"compares as −log p(x) {sign} {abs(volume):.4g} (Σ log step of the discrete columns)"
        )
    if result.verdict is not None:
        notes.append(
            "the three distances above are in data units (the columns with the largest units "
            "dominate them); the verdict below compares in standardised units"
        )
    elif result.memorisation is not None:
        notes.append(
            "memorisation ratio = median distance from a sample to its closest training row / the "
            "same for held-out rows (≈ 1: generalises; ≪ 1: copies training rows)"
        )
    return notes


def _subset_row(rows: int | None, n_test: int) -> list[tuple[str, str]]:
    """The row saying that MMD and energy distance used a random subset of the held-out split."""
    if rows is None or rows >= n_test:
        return []
    return [("  MMD, energy: held-out", f"random {rows} of {n_test}")]


@click.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.argument("file", required=False, type=click.Path(path_type=Path))
@divergence_option
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
@rtol_option
@t_min_option
@checkpoint_option
@device_option
@click.option(
    "--drop-missing", is_flag=True, help="FILE: score its rows without missing cells only."
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def likelihood(
    run_dir: Path,
    drop_missing: bool,
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
    image folder with samples shaped like the training data, in the same units.  For the
    built-in Gaussian-mixture sets also the exact NLL of the true density and the gap to it.
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
        x = load_dataset(file, columns=run.columns, drop_missing=drop_missing, purpose="score")
        what = str(file)
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
    stats = heldout_nll(lp, dims=math.prod(run.data_shape))
    bpd = f"{stats['bits_per_dim']:.4f} bits/dim, " if shows_bits_per_dim(run) else ""
    click.echo(
        f"{what}: {stats['n']} samples, mean log-likelihood {-stats['nll']:.4f} nats "
        f"(NLL {stats['nll']:.4f} ± {stats['stderr']:.4f}), {bpd}"
        f"{'exact' if divergence == 'exact' else 'Hutchinson'} divergence, {nfe} ODE evaluations"
    )
    click.echo(checkpoint_line(run, checkpoint))
    reason = run.t_min_reason if t_min is None else "--t-min"
    click.echo(f"density read at t_min {run.t_min if t_min is None else t_min:.4g} ({reason})")
    line = _true_density_line(run, x, lp, run.t_min if t_min is None else t_min)
    if line:
        click.echo(line)
    if out is not None:
        save_array(out, lp.numpy(), header=["log_prob"])  # one value per row: shape (N,)
        click.echo(f"wrote per-sample log-likelihoods to {out}")
