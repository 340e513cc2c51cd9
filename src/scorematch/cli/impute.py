"""``scorematch impute``: fill in a table's missing cells with a trained run; ``scorematch
inpaint``: a region of images; and the lines ``train`` prints about what a run is conditioned
on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..conditional import METHODS, POINT_DRAWS
from ..data import LabelCodec, read_text_table
from ..runs.imputation import describe_method, impute_table, inpaint_folder
from ..samplers import SAMPLERS
from .options import checkpoint_line, checkpoint_option, device_option, open_run

__all__ = ["conditioning_lines", "impute", "inpaint"]

IMPUTE_SUFFIXES = (".csv", ".tsv", ".txt")


def conditioning_lines(config: dict[str, Any]) -> list[str]:
    """What ``train`` says about a run's gaps and conditioning: the missing cells per column, a
    mask-conditional network and its uses, the labels."""
    data, model = config["data"], config["model"]
    lines = []
    gaps = data.get("gaps")
    if gaps:
        per = ", ".join(f"{k} {v}" for k, v in sorted(gaps["cells"].items(), key=lambda t: -t[1]))
        lines.append(
            f"missing cells: {gaps['rows']} of {data['n_train']} training rows have gaps "
            f"({per}); every row trains, the masked objective fitting its observed cells "
            "(--drop-missing: the complete rows only)"
        )
    if model.get("mask_conditional") and len(data["shape"]) == 3:
        lines.append(
            "network: mask-conditional — it fills in a region of images (`scorematch inpaint RUN "
            "IMAGES --mask left --out DIR`)"
        )
    elif model.get("mask_conditional"):
        lines.append(
            "network: mask-conditional — it fills in missing cells (`scorematch impute RUN "
            "FILE`) and samples given values (`sample --given`)"
        )
    labels = LabelCodec.from_config(data.get("labels"))
    if labels is not None:
        dropout = config["objective"].get("label_dropout")
        lines.append(
            f"{labels.describe()}; label dropout {dropout:g} (`sample --label NAME --guidance W`)"
        )
    return lines


def draw_options(command: Callable) -> Callable:
    """The options ``impute`` and ``inpaint`` share: how the unknown entries are drawn
    (``--method``, ``--sampler``, ``--steps``, ``--seed``), the checkpoint, the device, progress."""
    for option in reversed((
        click.option(
            "--method", type=click.Choice(["auto", *METHODS]), default="auto", show_default=True,
            help="auto: the run's mask-conditional network (trained on gaps, or with "
            "--conditional); replacement works with any run but is biased.",
        ),
        click.option("--sampler", type=click.Choice(list(SAMPLERS)),
                     help="Sampler (default: the run's)."),
        click.option("--steps", type=int, help="Sampler steps (default: the run's)."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of the draws."),
        checkpoint_option,
        device_option,
        click.option("--no-progress", is_flag=True, help="No progress bar."),
    )):  # fmt: skip
        command = option(command)
    return command


@click.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.argument("table", metavar="TABLE", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="The filled table (.csv; .tsv for tab-separated): the file's columns, header and known "
    "cells as written, each missing cell filled in.",
)
@click.option(
    "--draws",
    type=click.IntRange(min=1),
    metavar="K",
    help="Multiple imputation: K filled copies of each row (K·N rows, each row's K draws "
    "together), with a leading column `draw` (0 … K−1). Without it: one point imputation.",
)
@click.option(
    "--point-draws",
    type=click.IntRange(min=1),
    default=POINT_DRAWS,
    show_default=True,
    help="Draws behind a point imputation: their mean for a number, the most frequent draw for "
    'a categorical column (benchmarks/results/imputation.md, "How many draws").',
)
@click.option(
    "--summary",
    type=click.Path(path_type=Path),
    help="Also write a CSV with each filled cell's row, column, estimate, 90 % interval (5 % and "
    "95 % quantiles of the draws) and, for a categorical column, the share of draws that gave it.",
)
@draw_options
def impute(
    run_dir: Path,
    table: Path,
    out: Path,
    draws: int | None,
    point_draws: int,
    summary: Path | None,
    method: str,
    sampler: str | None,
    steps: int | None,
    seed: int,
    checkpoint: str | None,
    device: str,
    no_progress: bool,
) -> None:
    """Fill in the missing cells of TABLE (a CSV with empty, NA, NaN or ? cells) with the run RUN.

    Known cells come back exactly as written, in the file's column order; categorical and
    integer columns get their own labels and values; a row whose every cell is missing gets a
    plain sample.  The run's columns are matched by header.

    \b
      scorematch impute runs/t table.csv --out filled.csv
      scorematch impute runs/t table.csv --out draws.csv --draws 5     # multiple imputation
      scorematch impute runs/t table.csv --out filled.csv --summary cells.csv
    """
    for path in (out, summary):
        if path is not None and not path.parent.exists():
            raise click.UsageError(f"{path}: folder {path.parent} does not exist")
    if out.suffix.lower() not in IMPUTE_SUFFIXES:
        raise click.UsageError(f"--out {out}: write a {', '.join(IMPUTE_SUFFIXES)} file")
    run = open_run(run_dir, checkpoint, device)
    if run.kind == "image":
        raise click.UsageError(
            "this run models images: fill in a region with `scorematch inpaint RUN IMAGES --mask "
            "left --out DIR`"
        )
    na = run.columns.na_values if run.columns is not None else None
    text = read_text_table(table, na_values=na)
    done = impute_table(
        run, text, out, draws=draws, point_draws=point_draws, summary=summary, seed=seed,
        method=method, sampler=sampler, steps=steps, progress=not no_progress,
    )  # fmt: skip
    if done.cells == 0:
        click.echo(f"{table}: no missing cell in the run's columns; wrote it unchanged to {out}")
    else:
        how = (
            f"{done.draws} draws per row"
            if draws is not None
            else f"mean of {done.draws} draws per number, most frequent draw per category"
        )
        click.echo(
            f"filled {done.cells} missing cells in {done.filled_rows} of {done.rows} rows of "
            f"{table} ({how}) with {describe_method(run, done.method)}; wrote {out}"
        )
        if done.empty_rows:
            click.echo(f"{done.empty_rows} row(s) had no known cell: each got a plain sample")
    if done.label_gaps:
        click.echo(
            f"{done.label_gaps} row(s) have no label: the label column is conditioned on, not "
            "modelled, so its empty cells stay empty"
        )
    if summary is not None:
        click.echo(f"wrote each filled cell's estimate and 90 % interval to {summary}")
    click.echo(checkpoint_line(run, checkpoint))


@click.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.argument("images", metavar="IMAGES", type=click.Path(path_type=Path))
@click.option(
    "--mask",
    required=True,
    metavar="left|right|top|bottom|centre|PATH.png",
    help="The region to fill in: a half, the central square (half the side), or a PNG of the "
    "run's image size whose light pixels are filled in.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Folder for the filled images (same relative names, as PNG) and comparison.png.",
)
@draw_options
def inpaint(
    run_dir: Path,
    images: Path,
    mask: str,
    out: Path,
    method: str,
    sampler: str | None,
    steps: int | None,
    seed: int,
    checkpoint: str | None,
    device: str,
    no_progress: bool,
) -> None:
    """Fill in a region of every image of the folder IMAGES with the image run RUN.

    \b
      scorematch inpaint runs/d my_digits/ --mask left --out filled/
      scorematch inpaint runs/d my_digits/ --mask hole.png --out filled/ --method replacement
    """
    run = open_run(run_dir, checkpoint, device)
    done = inpaint_folder(run, images, mask, out, seed=seed, method=method, sampler=sampler,
                          steps=steps, progress=not no_progress)  # fmt: skip
    click.echo(
        f"filled {done.pixels} pixels of each of {done.images} images of {images} with "
        f"{describe_method(run, done.method)}; wrote them to {out}, and {done.grid}"
    )
    click.echo(checkpoint_line(run, checkpoint))
