"""The ``scorematch`` command: train, sample, evaluate, compute likelihoods and plot.

This package only parses arguments and prints; the work is done by :mod:`scorematch.runs`.  One
module per command group (:mod:`.datasets`, :mod:`.train`, :mod:`.sample`, :mod:`.evaluate` with
``evaluate`` and ``likelihood``, :mod:`.plot`, :mod:`.demo`, :mod:`.tune`; options shared between them in
:mod:`.options`); this module holds the group, its error handling and :func:`main`.  User mistakes
end with exit code 1 and one line ``Error: …`` (``--debug`` shows tracebacks).

Under ``torchrun --nproc_per_node=N -m scorematch COMMAND …`` every process runs the command;
the work is split inside the library (training data, sample and likelihood rows) and only rank 0
writes files and prints: the other ranks' standard output is discarded and their log shows
errors only (:func:`quiet_other_ranks`).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import Any

import click
import torch

from .. import __version__
from ..devices import default_threads
from ..runs.execution import finish
from ..training import TrainingDiverged, TrainingInterrupted
from .datasets import datasets
from .demo import demo
from .ensemble import ensemble
from .evaluate import evaluate, likelihood
from .impute import impute, inpaint
from .plot import plot
from .sample import sample
from .train import train
from .tune import tune

__all__ = ["cli", "main", "quiet_other_ranks"]

# Errors a user can cause: printed as one line, without a traceback.
USER_ERRORS = (ValueError, FileNotFoundError, OSError, TrainingDiverged)


def one_line(text: Any) -> str:
    """``text`` with every run of whitespace (newlines included) made one space."""
    return " ".join(str(text).split())


class Group(click.Group):
    """A click group whose errors are one line ``Error: …`` (tracebacks only with --debug)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except TrainingInterrupted as err:  # SIGTERM/Ctrl-C: the state is saved; say where
            click.echo(f"scorematch: {err}", err=True)
            raise click.exceptions.Exit(128 + err.signum) from None
        except KeyboardInterrupt:
            raise click.Abort() from None
        except USER_ERRORS as err:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            raise click.ClickException(one_line(err) or type(err).__name__) from None
        except Exception as err:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            raise click.ClickException(
                f"unexpected {type(err).__name__}: {one_line(err)} "
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
            click.echo(f"Error: {one_line(err.format_message())}", err=True)
            rv = err.exit_code
        if not standalone_mode:
            return rv
        sys.exit(rv or 0)


class StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record (so in-process callers that
    swap stderr, e.g. click's test runner, see the messages)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def setup_logging(verbose: int) -> None:
    """Log the ``scorematch`` logger to stderr: warnings, -v info, -vv debug."""
    root = logging.getLogger("scorematch")
    if not any(isinstance(h, StderrHandler) for h in root.handlers):
        handler = StderrHandler()
        handler.setFormatter(logging.Formatter("scorematch: %(message)s"))
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)


def quiet_other_ranks() -> None:
    """Under torchrun, on every rank but 0: standard output to the null device, and only errors
    logged — so the command's lines and warnings appear once (errors still show on stderr)."""
    if int(os.environ.get("RANK", "0")) > 0:
        if sys.stdout is sys.__stdout__:  # kept open for the life of the process
            sys.stdout = open(os.devnull, "w", encoding="utf-8")
        logging.getLogger("scorematch").setLevel(logging.ERROR)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full Python tracebacks on errors.")
@click.option("-v", "--verbose", count=True, help="More log output (-vv: debug).")
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    help="CPU threads for torch's operations. Default: $OMP_NUM_THREADS when set (torchrun "
    "sets 1 per process), else 1 — on a busy 2-core machine 2 threads trained 7.5-10.8x slower "
    "than 1 (benchmarks/results/scale.md), on a quiet one equally fast; raise it for big "
    "networks on an idle machine.",
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
      scorematch tune runs/m --nfe 5,10,20          # fit the sampler's grid to the model
      scorematch likelihood runs/m                  # log p of the held-out split
      scorematch plot runs/m                        # pictures into runs/m/plots/
      torchrun --standalone --nproc_per_node=2 -m scorematch train ...  # several processes

    Every computing command takes --device (auto: CUDA when available); docs/distributed.md
    covers GPUs, mixed precision and torchrun.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    ctx.obj["threads"] = threads
    setup_logging(verbose)
    quiet_other_ranks()
    torch.set_num_threads(threads if threads is not None else default_threads())


# Each command lives in its own module; `scorematch --help` lists them by name.
for command in (
    datasets,
    train,
    sample,
    evaluate,
    likelihood,
    plot,
    demo,
    ensemble,
    impute,
    inpaint,
    tune,
):
    cli.add_command(command)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM outside training ends like Ctrl-C: one line, files whole


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``scorematch`` script (and of ``python -m scorematch``)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)  # (training saves first: training.stops)
    try:
        cli.main(args=argv, prog_name="scorematch")
    finally:
        finish()  # under torchrun: leave the process group before the process exits
