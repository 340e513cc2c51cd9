"""``scorematch datasets``: the built-in data sets and the files --data reads."""

from __future__ import annotations

from pathlib import Path

import click

from ..data import DEFAULT_TOY_SIZE, read_table, scan_image_folder
from ..runs import dataset_table, table_columns
from .options import (
    categorical_option,
    column_lines,
    continuous_option,
    keep_option,
    na_values_option,
)


@click.command()
@click.argument("file", required=False, type=click.Path(path_type=Path))
@categorical_option
@continuous_option
@keep_option
@na_values_option
def datasets(
    file: Path | None,
    categorical: str | None,
    continuous: str | None,
    keep: str | None,
    na_values: str | None,
) -> None:
    """List the built-in data sets and how to pass your own files and folders; with FILE, what
    `train` would decide for each column of that table.

    Prints one row per built-in set (name, kind, size, description) — the 2-D toy sets and
    scikit-learn's handwritten digits — followed by the file formats --data accepts.  With a
    table FILE: one row per column, its kind (continuous, discrete, binary, categorical, or
    excluded: an identifier), its values, missing cells and why.  With a FOLDER of images: their
    sizes, modes and unreadable files.
    """
    if file is not None:
        if not file.exists():
            raise FileNotFoundError(f"data file not found: {file}")
        if file.is_dir():
            if categorical or continuous or keep or na_values:
                raise click.UsageError("--categorical/--continuous/--keep/--na-values need a table")
            for line in scan_image_folder(file).lines():
                click.echo(line)
            return
        codec = table_columns(str(file), categorical, continuous, keep, na_values)
        if codec is None:
            raise ValueError(
                f"{file} is not a table file (.csv, .tsv, .txt, .csv.gz, .parquet, .npy or .npz "
                "of rows)"
            )
        table = read_table(file, na_values=na_values)
        gaps = int(codec.encode(table).isnan().any(1).sum())
        what = f"{file} ({table.shape[0]} rows" + (f", {gaps} with empty cells)" if gaps else ")")
        for line in column_lines(codec, what):
            click.echo(line)
        return
    if categorical or continuous or keep or na_values:
        raise click.UsageError("--categorical/--continuous/--keep/--na-values need a table FILE")
    rows = [("name", "kind", "size", "description"), *dataset_table()]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        click.echo("  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3])
    click.echo(
        "\nYour own data (--data PATH):\n"
        "  FILE.csv / .tsv / .txt   table, one sample per row (header row optional; also\n"
        "  (.gz) / .parquet         gzip-compressed, and Parquet); columns of labels are\n"
        "                           categorical, NA and empty cells missing, row numbers and\n"
        "                           names left out (`scorematch datasets FILE` shows what is\n"
        "                           decided for each column)\n"
        "  FILE.npy / FILE.npz      array (N, D) of vectors, or (N, C, H, W) / (N, H, W) images\n"
        "                           (.npz: the only array, or the one named x, data or arr_0)\n"
        "  FOLDER/                  PNG/JPEG images (searched recursively); --image-size S crops\n"
        "                           and resizes them to S×S (`scorematch datasets FOLDER`\n"
        "                           previews them)\n"
        f"Toy sets draw --n points (default {DEFAULT_TOY_SIZE}) from --seed."
    )
