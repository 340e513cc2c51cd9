"""The ``scorematch`` command: train, sample, evaluate, compute likelihoods and plot.

This module only parses arguments and prints; the work is done by :mod:`scorematch.run`.
User mistakes end with exit code 1 and one line ``Error: …`` (``--debug`` shows tracebacks).
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path
from typing import Any

import click
import numpy as np

from . import __version__
from . import run as runs
from .io import atomic_save
from .samplers.api import SAMPLERS
from .training import TrainingDiverged

__all__ = ["cli", "main"]

logger = logging.getLogger("scorematch")

_USER_ERRORS = (ValueError, FileNotFoundError, OSError, TrainingDiverged)
_SAMPLE_SUFFIXES = (".npy", ".csv", ".png")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class _Group(click.Group):
    """A click group whose errors are one line ``Error: …`` (tracebacks only with --debug)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            raise click.Abort() from None
        except _USER_ERRORS as err:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            raise click.ClickException(_one_line(err) or type(err).__name__) from None
        except Exception as err:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            raise click.ClickException(
                f"unexpected {type(err).__name__}: {_one_line(err)} "
                "(rerun with --debug for the traceback)"
            ) from None

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Exit as err:
            rv = err.exit_code
        except click.Abort:
            click.echo("Error: aborted", err=True)
            rv = 1
        except click.ClickException as err:
            click.echo(f"Error: {_one_line(err.format_message())}", err=True)
            rv = err.exit_code
        if not standalone_mode:
            return rv
        sys.exit(rv or 0)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record (so in-process callers that
    swap stderr, e.g. click's test runner, see the messages)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _setup_logging(verbose: int) -> None:
    root = logging.getLogger("scorematch")
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("scorematch: %(message)s"))
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full Python tracebacks on errors.")
@click.option("-v", "--verbose", count=True, help="More log output (-vv: debug).")
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    help="CPU threads for torch's operations (default: torch's choice; `demo` uses 1).",
)
@click.version_option(__version__, prog_name="scorematch")
@click.pass_context
def cli(ctx: click.Context, debug: bool, verbose: int, threads: int | None) -> None:
    """Score matching and score-based diffusion models: learn ∇ log p(x) from data, sample new
    data, and measure the model (sample distances, exact log-likelihood).

    \b
    Quick start:
      scorematch demo                               # ~1-2 min: moons, NLL vs a Gaussian mixture
      scorematch datasets                           # what --data accepts
      scorematch train --data moons --out runs/m    # train a run directory
      scorematch sample runs/m -n 1000 --out s.png  # draw samples
      scorematch evaluate runs/m                    # distances + held-out NLL
      scorematch likelihood runs/m                  # log p of the held-out split
      scorematch plot runs/m                        # pictures into runs/m/plots/
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    ctx.obj["threads"] = threads
    _setup_logging(verbose)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------------
# datasets
# ------------------------------------------------------------------------------------------------
@cli.command()
def datasets() -> None:
    """List the built-in data sets and how to pass your own files and folders.

    Prints one row per built-in set (name, kind, size, description) — the 2-D toy sets and
    scikit-learn's handwritten digits — followed by the file formats --data accepts.
    """
    rows = [("name", "kind", "size", "description"), *runs.dataset_table()]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        click.echo("  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3])
    click.echo(
        "\nYour own data (--data PATH):\n"
        "  FILE.csv / .tsv / .txt   numeric table, one sample per row (header row optional)\n"
        "  FILE.npy / FILE.npz      array (N, D) of vectors, or (N, C, H, W) / (N, H, W) images\n"
        "                           (.npz: the only array, or the one named x, data or arr_0)\n"
        "  FOLDER/                  PNG/JPEG images (searched recursively); --image-size S crops\n"
        "                           and resizes them to S×S\n"
        "Toy sets draw --n points (default 10000) from --seed."
    )


# ------------------------------------------------------------------------------------------------
# train
# ------------------------------------------------------------------------------------------------
_TRAIN_HELP = """Train a score model on --data into the run directory --out.

\b
Objectives (--objective):
  diffusion  continuous-time denoising score matching of the score SDE (Song et al. 2021);
             --process vp|ve|subvp|edm, --weighting sigma2|likelihood|importance
  edm        the EDM loss with EDM preconditioning (Karras et al. 2022)
  ncsn       multi-scale denoising score matching over 10 geometric noise levels
             (Song & Ermon 2019); sampled by annealed Langevin dynamics
  dsm        denoising score matching at one noise level --sigma (Vincent 2011)
  ssm/ssm-vr sliced score matching (Song et al. 2019), ism implicit score matching
             (Hyvärinen 2005); on the data perturbed by --sigma (default 0: clean data)
dsm, ssm, ssm-vr and ism learn one unconditional score s(x) and are sampled by Langevin
dynamics at that noise level; they have no likelihood — `likelihood` and the NLL of `evaluate`
need a time-conditional objective (diffusion, edm or ncsn).  --model energy-mlp (an energy
E(x) with s = −∇E) works with dsm, ssm, ssm-vr and ism.

\b
Defaults by data kind (EDM: process edm, EDM preconditioning, σ_data 0.5):
  vectors  mlp + edm, 3000 steps, batch 512, lr 2e-3 (cosine decay), EMA half-life 200 steps,
           heun sampler (50 steps); --objective diffusion defaults to --process vp with
           importance-sampled likelihood weighting
  images   unet + edm, 2000 steps, batch 64, lr 1e-3, EMA half-life 200 steps, heun sampler
           (18 steps); --objective diffusion defaults to --process vp, sigma2 weighting

--config FILE.yaml gives any of these options (keys as the option names, e.g. `batch_size: 256`
or `batch-size: 256`); flags on the command line win.  The run directory gets config.yaml
(everything needed to rebuild the run), checkpoints/, metrics.csv and samples/*.png.  An
existing run directory is never overwritten: --resume --out DIR continues it from its own
config.yaml (--steps N sets a new, larger total).
"""


@cli.command(help=_TRAIN_HELP)
@click.option(
    "--data",
    help="Built-in name (see `scorematch datasets`), a .csv/.npy/.npz file, or an image folder.",
)
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=Path),
    help="Run directory to create (or to continue with --resume).",
)
@click.option(
    "--objective",
    type=click.Choice(runs.OBJECTIVES, case_sensitive=False),
    help="Training objective (default: edm).",
)
@click.option(
    "--process",
    type=click.Choice(runs.PROCESSES, case_sensitive=False),
    help="Forward noising process for diffusion/edm (default: vp; edm for --objective edm).",
)
@click.option(
    "--model",
    type=click.Choice(["mlp", "unet", "energy-mlp"], case_sensitive=False),
    help="Network (default: mlp for vectors, unet for images).",
)
@click.option(
    "--prediction",
    type=click.Choice(["eps", "x0", "score", "edm"], case_sensitive=False),
    help="What the network predicts (default: eps on vp/subvp, score on ve, edm on edm).",
)
@click.option(
    "--weighting",
    type=click.Choice(["sigma2", "likelihood", "importance"], case_sensitive=False),
    help="Loss weighting of --objective diffusion.",
)
@click.option(
    "--sigma",
    type=float,
    help="Noise level of dsm/ssm/ssm-vr/ism, in standardised units (dsm default 0.1).",
)
@click.option("--steps", type=int, help="Total optimizer steps.")
@click.option("--batch-size", type=int, help="Batch size.")
@click.option("--lr", type=float, help="Peak learning rate (AdamW).")
@click.option("--ema-half-life", type=float, help="Half-life of the weight EMA, in steps.")
@click.option("--width", type=int, help="MLP hidden width.")
@click.option("--depth", type=int, help="MLP residual blocks.")
@click.option("--channels", type=int, help="U-Net base channels.")
@click.option(
    "--n", type=int, help="Toy sets: points to draw (default 10000); real data: random subset size."
)
@click.option("--test-fraction", type=float, help="Held-out fraction (default 0.2).")
@click.option(
    "--seed",
    type=int,
    help="Seed of the data, split, initialisation and training noise (default 0).",
)
@click.option(
    "--image-size", type=int, help="Image folders: crop and resize every image to this square size."
)
@click.option(
    "--checkpoint-every", type=int, help="Save a checkpoint every N steps (default: 4 per run)."
)
@click.option(
    "--sample-every",
    type=int,
    help="Write samples/step_N.png every N steps (default: 4 per run; 0: never).",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    help="YAML file with any of these options.",
)
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.pass_context
def train(
    ctx: click.Context,
    out: Path | None,
    config_file: Path | None,
    resume: bool,
    no_progress: bool,
    **flags: Any,
) -> None:
    options = runs.load_config(config_file) if config_file is not None else {}
    for key, value in flags.items():
        if value is not None:
            options[key] = value
    out = out if out is not None else options.pop("out", None)
    options.pop("out", None)
    if out is None:
        raise click.UsageError("missing --out DIR (the run directory)")
    out = Path(out)
    if resume:
        extra = sorted(k for k in options if k not in ("steps", "checkpoint_every", "sample_every"))
        if extra:
            names = ", ".join("--" + k.replace("_", "-") for k in extra)
            raise click.UsageError(
                f"{names} cannot be changed with --resume: the run's config.yaml fixes them"
            )
        result = runs.train(
            None,
            out,
            resume=True,
            steps=options.get("steps"),
            checkpoint_every=options.get("checkpoint_every"),
            sample_every=options.get("sample_every"),
            progress=not no_progress,
        )
    else:
        if "data" not in options:
            raise click.UsageError("missing --data (a built-in name, a file or a folder)")
        result = runs.train(options, out, progress=not no_progress)
    click.echo(
        f"trained {out} to step {result.step}: loss {result.loss:.4g}, "
        f"{result.seconds:.1f} s of training; checkpoint {result.checkpoint}"
    )


# ------------------------------------------------------------------------------------------------
# sample
# ------------------------------------------------------------------------------------------------
def _save_array(path: Path, x: np.ndarray) -> None:
    if path.suffix == ".npy":
        atomic_save(path, lambda p: np.save(p, x))
    else:
        flat = x.reshape(x.shape[0], -1)
        header = ",".join(f"x{i + 1}" for i in range(flat.shape[1]))
        atomic_save(path, lambda p: np.savetxt(p, flat, delimiter=",", header=header, comments=""))


def _check_out(path: Path, suffixes: tuple[str, ...]) -> Path:
    if path.suffix.lower() not in suffixes:
        raise click.UsageError(
            f"--out {path}: unsupported file type {path.suffix or '(none)'!r}; use {', '.join(suffixes)}"
        )
    if not path.parent.exists():
        raise click.UsageError(f"--out {path}: folder {path.parent} does not exist")
    return path


@cli.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.option("-n", "n", type=int, required=True, help="Number of samples.")
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=Path),
    required=True,
    help="Output file: .npy or .csv (data units), or .png (image grid / scatter plot).",
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
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def sample(
    run_dir: Path,
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
    Samplers: heun (EDM, 2·steps−1 NFE), ode (RK4 probability flow), dpm_solver, euler_maruyama,
    reverse_diffusion, ancestral, predictor_corrector (stochastic), annealed_langevin (NCSN and the
    unconditional objectives dsm/ssm/ism, which only support it).
    """
    if n <= 0:
        raise click.UsageError(f"-n must be a positive number of samples, got {n}")
    out = _check_out(out, _SAMPLE_SUFFIXES)
    run = runs.load_run(run_dir)
    two_d = run.kind == "vector" and run.shape == (2,)
    if trajectory and not two_d:
        raise click.UsageError("--trajectory needs 2-D data (it draws the points moving)")
    drawn = run.sample(
        n,
        sampler=sampler,
        steps=steps,
        seed=seed,
        churn=churn,
        trajectory=trajectory,
        progress=not no_progress,
    )
    x = drawn.x.cpu()
    if out.suffix.lower() == ".png":
        from . import plots

        if run.kind == "image":
            plots.image_grid(x.clamp(0, 1), out)
        else:
            plots.samples_vs_data(x, None, out, title=f"{n} samples, step {run.step}")
    else:
        _save_array(out, x.numpy())
    click.echo(f"wrote {n} samples to {out} ({drawn.nfe} model evaluations, {drawn.seconds:.1f} s)")
    if trajectory:
        from . import plots

        gif = out.with_suffix(".gif")
        plots.trajectory_gif(drawn.trajectory, gif)
        click.echo(f"wrote the sampling trajectory to {gif}")


# ------------------------------------------------------------------------------------------------
# evaluate
# ------------------------------------------------------------------------------------------------
def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    return str(v)


# Shared by `evaluate` and `likelihood`.
_t_min_option = click.option(
    "--t-min",
    type=float,
    help="Score p_{t_min}, the density blurred by the process up to t_min (process clock; EDM: "
    "σ in standardised units). Default: the process's smallest t.",
)


@cli.command()
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
@_t_min_option
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def evaluate(
    run_dir: Path,
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
    run = runs.load_run(run_dir)
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
    path = runs.write_evaluation(run, result)
    if json_out is not None:
        runs.write_evaluation(run, result, json_out)
    rows = [
        ("step", result["step"]),
        ("samples / held-out", f"{result['n_samples']} / {result['n_test']}"),
        ("sliced Wasserstein", result["sliced_wasserstein"]),
        ("MMD²", result["mmd"]),
        ("energy distance", result["energy_distance"]),
        ("held-out NLL (nats/sample)", result["nll"]),
        ("  ± std. error", result["nll_stderr"]),
        ("bits/dim", result["bits_per_dim"]),
        ("  density at t_min", result.get("nll_t_min")),
    ]
    for name, value in rows:
        click.echo(f"{name:<28}{_fmt(value)}")
    if result.get("nll_note"):
        click.echo(f"note: {result['nll_note']}")
    click.echo(f"wrote {path}" + (f" and {json_out}" if json_out else ""))


# ------------------------------------------------------------------------------------------------
# likelihood
# ------------------------------------------------------------------------------------------------
@cli.command()
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
@_t_min_option
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def likelihood(
    run_dir: Path,
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
        out = _check_out(out, (".npy", ".csv"))
    run = runs.load_run(run_dir)
    run._require_likelihood()
    if file is None:
        x, what = run.data.test, "held-out split"
    else:
        from .data import load_dataset

        if not file.exists():
            raise FileNotFoundError(f"data file not found: {file}")
        x, what = load_dataset(file), str(file)
    dim = math.prod(run.shape)
    use_exact = exact if exact is not None else dim <= 16
    lp, nfe = run.log_likelihood(
        x,
        divergence="exact" if use_exact else "hutchinson",
        probes=probes,
        seed=seed,
        rtol=rtol,
        t_min=t_min,
        progress=not no_progress,
    )
    from .metrics import heldout_nll

    stats = heldout_nll(lp, dims=dim)
    click.echo(
        f"{what}: {stats['n']} samples, mean log-likelihood {-stats['nll']:.4f} nats "
        f"(NLL {stats['nll']:.4f} ± {stats['stderr']:.4f}), {stats['bits_per_dim']:.4f} bits/dim, "
        f"{'exact' if use_exact else 'Hutchinson'} divergence, {nfe} ODE evaluations"
    )
    if out is not None:
        _save_array(out, lp.numpy()[:, None])
        click.echo(f"wrote per-sample log-likelihoods to {out}")


# ------------------------------------------------------------------------------------------------
# plot
# ------------------------------------------------------------------------------------------------
@cli.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.option(
    "-n", "n", type=int, default=2000, show_default=True, help="Samples to draw for the pictures."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sampler's noise.")
def plot(run_dir: Path, n: int, seed: int) -> None:
    """Write pictures of RUN into RUN/plots/ and print their paths.

    Samples beside the held-out data (2-D scatter, or image grids), the learned score field as
    arrows over the data density (2-D), the sampling trajectories as a GIF (2-D) and the loss curve.
    """
    if n <= 0:
        raise click.UsageError(f"-n must be positive, got {n}")
    run = runs.load_run(run_dir)
    for path in runs.make_plots(run, n=n, seed=seed):
        click.echo(str(path))


# ------------------------------------------------------------------------------------------------
# demo
# ------------------------------------------------------------------------------------------------
@cli.command()
@click.option(
    "--data",
    default="moons",
    show_default=True,
    help="A built-in data set (e.g. moons, 8gaussians, digits) or a file/folder.",
)
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=Path),
    default=Path("runs/demo"),
    show_default=True,
    help="Run directory; an earlier run there is REPLACED.",
)
@click.option(
    "--steps", type=int, help="Training steps (default: the tuned default for the data kind)."
)
@click.option(
    "--quick",
    is_flag=True,
    help="A much shorter run (a few seconds; a smoke test, not a good model).",
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.pass_context
def demo(
    ctx: click.Context, data: str, out: Path, steps: int | None, quick: bool, no_progress: bool
) -> None:
    """Train, sample, evaluate and plot in one go (about 1-2 minutes on 2 CPU cores for moons).

    Trains the default model on --data (vectors: MLP + EDM, 3000 steps; digits and image folders:
    a small U-Net + EDM, 1500 steps), draws samples, compares them with the held-out split, computes the
    held-out NLL with the probability-flow likelihood (exact divergence for vectors) and — for
    vector data — the NLL of
    scikit-learn's GaussianMixture with the number of components chosen by BIC (1-20) on the same
    training split, then writes plots into --out/plots/.  If --out already holds a run, the demo
    overwrites it.  It runs torch on one thread unless `scorematch --threads N demo` says otherwise.
    """
    import time

    import torch

    if (ctx.obj or {}).get("threads") is None:
        # The demo's networks are small: intra-op threads cost more than they gain, and on a
        # busy machine their spin-waits made a 2-thread run ~20× slower in CPU time than 1 thread.
        torch.set_num_threads(1)
    t0, c0 = time.perf_counter(), time.process_time()
    res = runs.demo(data, out, steps=steps, quick=quick, progress=not no_progress)
    ev, base = res.evaluation, res.baseline
    cfg = res.run.config
    click.echo("")
    click.echo(
        f"scorematch demo — {cfg['data']['spec']} ({cfg['data']['n_train']} train / "
        f"{cfg['data']['n_test']} held-out), {cfg['model']['name']} + "
        f"{cfg['objective']['name']}"
        + (f" on {cfg['process']['name']}" if cfg.get("process") else "")
        + f", {res.run.step} steps"
    )
    if ev.get("nll") is not None:
        how = "exact" if ev["nll_divergence"] == "exact" else "Hutchinson"
        click.echo(
            f"  held-out NLL   model {ev['nll']:.4f} ± {ev['nll_stderr']:.4f} nats/sample, "
            f"{ev['bits_per_dim']:.4f} bits/dim ({how} probability-flow likelihood, "
            f"{ev['nll_points']} points)"
        )
    if base is not None and ev.get("nll") is not None:
        click.echo(
            f"                 GaussianMixture ({base['components']} components by BIC) "
            f"{base['nll']:.4f} ± {base['nll_stderr']:.4f} nats/sample"
        )
        diff = (base["log_prob"] - ev["_log_prob"]).double()  # per point: NLL_model − NLL_GMM
        se = float(diff.std() / math.sqrt(diff.numel()))
        verdict = "better" if float(diff.mean()) < 0 else "worse"
        click.echo(
            f"                 model − GMM = {float(diff.mean()):+.4f} ± {se:.4f} nats/sample "
            f"(paired std. error): the model is {verdict}"
        )
    click.echo(
        f"  samples        sliced W2 {ev['sliced_wasserstein']:.4f}, MMD² {ev['mmd']:.2e}, "
        f"energy distance {ev['energy_distance']:.2e} ({ev['n_samples']} samples vs held-out)"
    )
    t = res.timings
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in t.items() if k != "total")
    click.echo(
        f"  time           {time.perf_counter() - t0:.1f} s wall ({parts}); "
        f"{time.process_time() - c0:.1f} s CPU"
    )
    click.echo(f"  pictures       {', '.join(str(p) for p in res.plots)}")
    click.echo(f"  run            {out} (config.yaml, checkpoints/, metrics.csv, evaluation.json)")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``scorematch`` script."""
    cli.main(args=argv, prog_name="scorematch")


if __name__ == "__main__":  # pragma: no cover
    main()
