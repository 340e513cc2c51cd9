"""``scorematch datasets``: the built-in data sets and the files --data reads."""

from __future__ import annotations

import click

from ..data import DEFAULT_TOY_SIZE
from ..runs import dataset_table


@click.command()
def datasets() -> None:
    """List the built-in data sets and how to pass your own files and folders.

    Prints one row per built-in set (name, kind, size, description) — the 2-D toy sets and
    scikit-learn's handwritten digits — followed by the file formats --data accepts.
    """
    rows = [("name", "kind", "size", "description"), *dataset_table()]
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
        f"Toy sets draw --n points (default {DEFAULT_TOY_SIZE}) from --seed."
    )
