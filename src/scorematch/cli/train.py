"""``scorematch train``: train a run directory (or continue one with --resume)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..data import DEFAULT_TOY_SIZE, TOY_MIXTURES, ColumnCodec
from ..models import MODEL_NAMES
from ..objectives import PROJECTIONS
from ..objectives.noise_conditional import WEIGHTINGS
from ..run_dir import RunDir
from ..runs import DEFAULTS, OBJECTIVES, PROCESSES, load_config
from ..runs import train as train_run
from ..runs.conditional import LABEL_DROPOUT
from ..runs.config import PREDICTIONS, REFIT_MAX_ROWS, SLICED_DEFAULTS, TEST_FRACTION
from ..runs.selection import read_selection
from ..runs.train import RESUMABLE, Estimate
from ..training import TrainResult
from .impute import conditioning_lines
from .options import (
    categorical_option,
    column_lines,
    continuous_option,
    device_option,
    keep_option,
    na_values_option,
    speed_options,
)

TRAIN_HELP = """Train a score model on --data into the run directory --out.

\b
Objectives (--objective):
  diffusion  continuous-time denoising score matching of the score SDE (Song et al. 2021);
             --process vp|ve|subvp|edm, --weighting sigma2|likelihood|importance
  edm        the EDM loss with EDM preconditioning (Karras et al. 2022)
  ncsn       multi-scale denoising score matching over 10 geometric noise levels
             (Song & Ermon 2019); sampled by annealed Langevin dynamics
  dsm        denoising score matching at one noise level --sigma (Vincent 2011)
  ssm/ssm-vr sliced score matching (Song et al. 2019): --projection gaussian|rademacher|sphere,
             --projections K
  ism        implicit score matching (Hyvärinen 2005)
  esm        explicit score matching, a regression onto the true score: only for data whose
             score is known, the built-in mixture sets ({mixtures})
  ssm, ssm-vr, ism and esm train on the data perturbed by --sigma (default 0: clean data)
dsm, ssm, ssm-vr, ism and esm learn one unconditional score s(x) and are sampled by Langevin
dynamics at that noise level; they have no likelihood — `likelihood` and the NLL of `evaluate`
need a time-conditional objective (diffusion, edm or ncsn).  --model energy-mlp (an energy
E(x) with s = −∇E) works with dsm, ssm, ssm-vr, ism and esm.

\b
Defaults by data kind (EDM: process edm, EDM preconditioning, σ_data 0.5):
  vectors  mlp + edm, at most 3000 steps, batch a quarter of the rows within 32–512, lr 2e-3
           (cosine decay), EMA half-life ten epochs within 50–200 steps, heun sampler
           (50 steps); --objective diffusion defaults to --process vp with
           importance-sampled likelihood weighting
  images   unet + edm, 2000 steps, batch 64, lr 1e-3, EMA half-life 200 steps, heun sampler
           (18 steps); --objective diffusion defaults to --process vp, sigma2 weighting

\b
Model selection on validation rows (15% of a table's training rows, 10% of images;
--val-fraction 0 turns it off): the likelihood's bandwidth t_min is chosen on these rows, and
a table of up to 5000 training rows takes the checkpoint with the lowest validation loss as its
model, stops after 8 validations without improvement (--patience; not when --steps is given)
and is trained again on all its rows for the chosen number of steps (--no-refit).

--config FILE.yaml gives any of these options (keys as the option names, e.g. `batch_size: 256`
or `batch-size: 256`); flags on the command line win.  The run directory gets config.yaml
(everything needed to rebuild the run), checkpoints/, metrics.csv and samples/*.png.  An
existing run directory is never overwritten: --resume --out DIR continues it from its own
config.yaml (--steps N sets a new, larger total).

A table file's columns are each continuous, discrete, binary or categorical (printed at the
start; `scorematch datasets FILE` shows it without training): discrete ones are dequantised in
training and rounded back on `sample` (docs/guide.md).
"""

TRAIN_HELP = TRAIN_HELP.replace("{mixtures}", ", ".join(TOY_MIXTURES))
VECTOR, IMAGE = DEFAULTS["vector"], DEFAULTS["image"]


@click.command(help=TRAIN_HELP)
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
    type=click.Choice(OBJECTIVES, case_sensitive=False),
    help=f"Training objective (default: {VECTOR['objective']}).",
)
@click.option(
    "--process",
    type=click.Choice(PROCESSES, case_sensitive=False),
    help="Forward noising process of diffusion/edm (default: edm for --objective edm, "
    f"{VECTOR['process']} for --objective diffusion).",
)
@click.option(
    "--model",
    type=click.Choice(MODEL_NAMES, case_sensitive=False),
    help=f"Network (default: {VECTOR['model']} for vectors, {IMAGE['model']} for images).",
)
@click.option(
    "--prediction",
    type=click.Choice(PREDICTIONS, case_sensitive=False),
    help="What the network predicts (default: eps on vp/subvp, score on ve, edm on edm).",
)
@click.option(
    "--weighting",
    type=click.Choice(WEIGHTINGS, case_sensitive=False),
    help=f"Loss weighting of --objective diffusion (default: {VECTOR['weighting']} for vectors, "
    f"{IMAGE['weighting']} for images).",
)
@click.option(
    "--sigma",
    type=float,
    help="Noise level of dsm/ssm/ssm-vr/ism/esm, in standardised units (dsm default 0.1).",
)
@click.option(
    "--projection",
    type=click.Choice(PROJECTIONS, case_sensitive=False),
    help="Distribution of ssm/ssm-vr's random directions v, each with E[vvᵀ] = I (default: "
    f"{SLICED_DEFAULTS['projection']}).",
)
@click.option(
    "--projections",
    type=int,
    metavar="K",
    help=f"Random directions per sample of ssm/ssm-vr (default {SLICED_DEFAULTS['n_projections']}).",
)
@click.option("--steps", type=int, help="Total optimizer steps.")
@click.option("--batch-size", type=int, help="Batch size.")
@click.option("--lr", type=float, help="Peak learning rate (AdamW).")
@click.option("--ema-half-life", type=float, help="Half-life of the weight EMA, in steps.")
@click.option("--width", type=int, help="MLP hidden width.")
@click.option("--depth", type=int, help="MLP residual blocks.")
@click.option("--channels", type=int, help="U-Net base channels.")
@click.option(
    "--n",
    type=int,
    help=f"Toy sets: points to draw (default {DEFAULT_TOY_SIZE}); real data: random subset size.",
)
@click.option("--test-fraction", type=float, help=f"Held-out fraction (default {TEST_FRACTION}).")
@click.option(
    "--val-fraction",
    type=float,
    help="Share of the training rows that validate (default 0.15 for tables, 0.1 for images; "
    "0: no validation).",
)
@click.option(
    "--patience",
    type=int,
    help="Stop after this many validations without improvement (default 8 for tables of up to "
    f"{REFIT_MAX_ROWS} training rows; none on larger data or when --steps is given).",
)
@click.option(
    "--validate-every",
    type=int,
    help="Validate every N steps (default: steps/100 for tables, steps/20 for images, within "
    "10–100; none with --steps, whose model is its last step, unless --patience asks).",
)
@click.option(
    "--refit/--no-refit",
    default=None,
    help="Train a small table again on all its rows for the chosen number of steps (default: "
    f"on up to {REFIT_MAX_ROWS} training rows, off with --steps).",
)
@click.option(
    "--seed",
    type=int,
    help="Seed of the data, split, initialisation and training noise (default 0).",
)
@click.option(
    "--image-size", type=int, help="Image folders: crop and resize every image to this square size."
)
@click.option(
    "--levels",
    type=int,
    help="Image folders: how many pixel values the images really hold (e.g. 17 for 0…16 digits "
    "saved as 8-bit PNGs); pixels are snapped to them and bits/dim use them (default: the files' "
    "bit depth, 256 for 8-bit).",
)
@click.option(
    "--image-channels",
    type=click.Choice(["1", "3"]),
    help="Image folders: 1 (greyscale) or 3 (colour); default: the mode of most images.",
)
@categorical_option
@continuous_option
@keep_option
@na_values_option
@click.option(
    "--drop-missing",
    is_flag=True,
    default=None,
    help="Table files: train on the rows without missing cells only (by default every row "
    "trains, the masked objective fitting its observed cells).",
)
@click.option(
    "--conditional/--no-conditional",
    default=None,
    help="Train a mask-conditional network: one network for every pattern of known cells, so "
    "that the run imputes (`scorematch impute`) and samples given values (`sample --given`). "
    "Default: on for a table with gaps, else off.",
)
@click.option(
    "--labels",
    metavar="COLUMN|class",
    help="Train a class-conditional network: a table's COLUMN is the class label (not modelled); "
    "image data take `--labels class` (class sub-folders folder/<class>/*.png, or the digit of "
    "digits). Then `sample --label NAME --guidance W`.",
)
@click.option(
    "--label-dropout",
    type=float,
    help=f"With --labels: share of rows trained without their label, for guidance (default "
    f"{LABEL_DROPOUT}).",
)
@click.option(
    "--transform",
    type=click.Choice(["yeo-johnson", "none"]),
    help="Table files: the per-column transform of continuous columns, learned on the training "
    "rows (default yeo-johnson; benchmarks/results/skew.md).",
)
@click.option(
    "--checkpoint-every", type=int, help="Save a checkpoint every N steps (default: 4 per run)."
)
@click.option(
    "--checkpoint-minutes",
    type=float,
    help="Also save a checkpoint every N minutes of wall time (default 10; 0: never).",
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
@device_option
@speed_options
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def train(
    out: Path | None,
    config_file: Path | None,
    resume: bool,
    no_progress: bool,
    device: str,
    precision: str | None,
    compile_network: bool | None,
    grad_accum: int | None,
    **flags: Any,
) -> None:
    # Where and how to train; a resume may change them (`torchrun` adds processes).
    execution = dict(
        device=device, precision=precision, compile=compile_network, grad_accum=grad_accum
    )
    options = load_config(config_file) if config_file is not None else {}
    for key, value in flags.items():
        if value is not None:
            options[key] = value
    minutes = options.pop("checkpoint_minutes", 10.0)  # how often to save, not part of the run
    if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or not minutes >= 0:
        raise click.UsageError(f"--checkpoint-minutes must be a number >= 0, got {minutes!r}")
    out = out if out is not None else options.pop("out", None)
    options.pop("out", None)
    if out is None:
        raise click.UsageError("missing --out DIR (the run directory)")
    out = Path(out)
    if resume:
        extra = sorted(k for k in options if k not in RESUMABLE)
        if extra:
            names = ", ".join("--" + k.replace("_", "-") for k in extra)
            raise click.UsageError(
                f"{names} cannot be changed with --resume: the run's config.yaml fixes them"
            )
        result = train_run(
            options,
            out,
            resume=True,
            progress=not no_progress,
            checkpoint_minutes=minutes or None,
            **execution,
        )
    else:
        if "data" not in options:
            raise click.UsageError("missing --data (a built-in name, a file or a folder)")
        result = train_run(
            options,
            out,
            progress=not no_progress,
            announce=_announce,
            estimate=_estimate,
            checkpoint_minutes=minutes or None,
            **execution,
        )
    click.echo(
        f"trained {out} to step {result.step}: loss {result.loss:.4g}, "
        f"{result.seconds:.1f} s of training; checkpoint {result.checkpoint}"
    )
    for line in _selection_lines(out, result):
        click.echo(line)


def _announce(config: dict[str, Any]) -> None:
    """What the run is about to do, with the defaults it chose for this data."""
    data, tr = config["data"], config["training"]
    if data.get("columns"):
        for line in column_lines(ColumnCodec.from_config(data["columns"]), str(data["spec"])):
            click.echo(line)
    unit = "images" if len(data["shape"]) == 3 else "rows"
    rows = f"{data['n_train']} training {unit}"
    if data.get("n_val"):
        rows += f" ({data['n_val']} of them validate)"
    click.echo(f"data: {data['spec']}: {rows}, {data['n_test']} held out, shape {data['shape']}")
    for line in conditioning_lines(config):
        click.echo(line)
    steps = f"at most {tr['steps']}" if tr.get("patience") else str(tr["steps"])
    stop = (
        f", early stopping after {tr['patience']} validations without improvement"
        if tr.get("patience")
        else ""
    )
    line = (
        f"training: {steps} steps, batch {tr['batch_size']}, lr {tr['lr']:g}, EMA half-life "
        f"{tr['ema_half_life']:g} steps"
    )
    if tr.get("validate_every"):
        line += f"; validation every {tr['validate_every']} steps{stop}"
    click.echo(line)


ESTIMATE_FROM_SECONDS = 30.0  # shorter trainings start without an estimate


def _estimate(e: Estimate) -> None:
    """The expected training time, measured on this machine before the run starts."""
    if e.seconds < ESTIMATE_FROM_SECONDS:
        return
    parts = f"{e.steps} steps × {e.step_seconds:.3g} s"
    if e.validations:
        parts += f" + {e.validations} validations × {e.validation_seconds:.3g} s"
    minutes = e.seconds / 60
    total = f"{minutes:.1f} min" if minutes < 100 else f"{minutes / 60:.1f} h"
    click.echo(
        f"expected training time: about {total} ({parts}, measured here just now; early "
        "stopping can end it sooner, and a busy machine makes it longer)"
    )


def _selection_lines(out: Path, result: TrainResult) -> list[str]:
    """What the run chose on its validation rows (RUN/selection.json), in words."""
    selection = read_selection(out)
    if not selection:
        return []
    best = selection["best_step"]
    if not selection.get("validation"):
        lines = [f"model: the last step, {result.step} (no validation: --steps fixes the length)"]
    elif RunDir(out).read_config()["training"].get("model") == "last":
        lines = [f"model: the last step, {result.step} (lowest validation loss at step {best})"]
    else:
        how = "stopped early" if selection.get("stopped_early") else "ran to the end"
        lines = [f"model: step {best}, the lowest validation loss ({how})"]
    if selection.get("refit"):
        lines[0] += f"; trained again on all training rows for {best} steps"
    chosen = selection.get("t_min")
    if chosen:
        lines.append(
            f"likelihood bandwidth: t_min {chosen['value']:.4g}, the lowest validation NLL "
            f"({chosen['validation_nll']:.4g} nats/row) of {len(chosen['candidates'])} values"
        )
    return lines
