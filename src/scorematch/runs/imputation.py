"""Conditional draws from a trained run, in data units: a table's missing cells filled in
(``scorematch impute``), samples given some columns' values (``sample --given``) and images with
a region filled in (``scorematch inpaint``).

One mechanism serves the three: :func:`scorematch.impute` draws the unknown entries of each row
given its known ones with the run's sampler, the known entries conditioned by the run's
mask-conditional network (exact given its score; ``scorematch.conditional.known``) or, asked for,
by replacement.  Here the rows go through the run's codec and standardisation and back: a
table's known discrete and categorical cells are spread over their bins afresh for each draw, as
training saw them (``ColumnCodec.spread``), a class label conditions the network
(:class:`scorematch.Guided`), and the rows are drawn in chunks of about ``CHUNK_ROWS`` model rows
(rows × draws), each chunk seeded by ``runs.sharding.block_seed(seed, chunk)``.

A point imputation is the mean of ``POINT_DRAWS`` draws for a number (snapped onto a discrete
column's values) and the most frequent draw for a categorical column (a row with no known cell
gets one draw: a plain sample); the 90 % interval is the 5 % and 95 % quantiles of the draws.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm.auto import tqdm

from .._checks import check_positive_int
from ..conditional import POINT_DRAWS, Guided, imputation_method, impute
from ..data import ColumnCodec, LabelCodec, from_model, table_labels, to_model
from ..data.column_kinds import number_label
from ..data.images import read_image_folder
from ..io import atomic_save, atomic_write_text
from ..plots import image_grid
from ..samplers.api import DEFAULT_STEPS, SAMPLERS
from .checks import choice, seed_value
from .conditional import masks_of
from .run import SampleResult
from .sharding import block_seed

__all__ = [
    "CHUNK_ROWS",
    "INTERVAL",
    "POINT_DRAWS",
    "REGIONS",
    "FilledTable",
    "Given",
    "GivenSamples",
    "Inpainted",
    "check_imputes",
    "describe_method",
    "imputation_chunks",
    "impute_table",
    "inpaint_folder",
    "interval",
    "parse_given",
    "point_estimate",
    "read_rows",
    "region_mask",
    "sample_given",
]

CHUNK_ROWS = 1 << 13  # model rows (rows × draws) per sampler call: bounded memory, few calls
INTERVAL = 0.9  # the central interval --summary gives (its quantiles: 0.05 and 0.95)
LANGEVIN_STEPS = 100  # annealed Langevin steps per level, as Run.sample takes them unasked


def check_imputes(run, method: str = "auto") -> str:
    """The imputation method ``run`` uses (``"conditional"`` or ``"replacement"``), or a one-line
    ValueError that names the way on: a run without a time-conditional score cannot impute, and a
    network that is not mask-conditional imputes only when replacement is asked for."""
    if not run.time_conditional:
        raise ValueError(
            f"this run learned one score s(x) ({run.objective}); imputing needs a time-conditional "
            "objective: train again with --objective edm (tables train a mask-conditional network "
            "by default)"
        )
    chosen = imputation_method(run.model, method)
    if method == "auto" and chosen == "replacement":
        raise ValueError(
            "this run's network is not mask-conditional: train it again with --conditional (one "
            "network for every pattern of known cells), or pass --method replacement (any run; "
            "biased: benchmarks/results/imputation.md)"
        )
    return chosen


def _sampler(run, sampler: str | None, steps: int | None) -> tuple[str, int | None, dict]:
    """The sampler, its grid intervals and options, as ``Run.sample`` resolves them."""
    cfg = run.config["sampling"]
    name = choice(sampler or cfg["sampler"], "sampler", tuple(SAMPLERS))
    if steps is None:
        steps = cfg["steps"] if name == cfg["sampler"] else None
    if steps is None:
        steps = LANGEVIN_STEPS if name == "annealed_langevin" else DEFAULT_STEPS[name]
    steps = check_positive_int(steps, "steps")
    if name == "annealed_langevin":
        return name, None, {"langevin_steps": steps}
    return name, steps, {}


def imputation_chunks(
    run,
    x: Tensor,
    *,
    draws: int,
    labels: Tensor | None = None,
    guidance: float = 0.0,
    method: str = "auto",
    seed: int = 0,
    sampler: str | None = None,
    steps: int | None = None,
    chunk_rows: int = CHUNK_ROWS,
    progress: Callable[[int], None] | None = None,
) -> Iterator[tuple[int, int, Tensor]]:
    """Draws of the missing entries (NaN) of rows ``x`` in data units (a table's columns
    ``(N, D)``, or images ``(N, C, H, W)``), chunk by chunk: yields ``(start, stop, draws)`` with
    ``draws`` of shape ``(K, stop − start, *event)`` in data units, the known entries exactly as
    given.  ``labels`` ``(N,)`` (−1: none) condition a labelled run, guided with weight
    ``guidance``; ``progress(rows)`` is called after each chunk."""
    method = check_imputes(run, method)
    k = check_positive_int(draws, "draws")
    seed = seed_value(seed)
    name, steps, options = _sampler(run, sampler, steps)
    columns: ColumnCodec | None = run.columns
    device, dtype = run.device, run.dtype
    n = x.shape[0]
    per_chunk = max(1, check_positive_int(chunk_rows, "chunk_rows") // k)
    if labels is not None and "label" not in _takes(run):
        raise ValueError("this run was trained without labels; train it with --labels")
    run.model.eval()
    for c, start in enumerate(range(0, n, per_chunk)):
        stop = min(start + per_chunk, n)
        rows = x[start:stop].double()
        gen = torch.Generator(device=device).manual_seed(block_seed(seed, c))
        y = to_model(columns, rows).repeat(k, *([1] * (rows.ndim - 1)))  # draw-major
        known = torch.isfinite(y)
        if columns is not None and columns.quantised:  # known discrete cells: a point of the bin
            y = columns.spread(y.to(device), gen).cpu()
        z = run.standardizer.transform(y).to(device=device, dtype=dtype)
        known = known.to(device)
        model = run.model
        if labels is not None:
            model = Guided(run.model, labels[start:stop].repeat(k).to(device), guidance)
        out = impute(model, run.process, z, known, method=method, sampler=name, steps=steps,
                     generator=gen, **options)  # fmt: skip
        data = from_model(columns, run.standardizer.inverse(out.detach().double().cpu()))
        data = data.reshape(k, stop - start, *data.shape[1:])
        given = rows.expand(k, *rows.shape)
        data = torch.where(given.isnan(), data, given)
        if progress is not None:
            progress(stop - start)
        yield start, stop, data


def _takes(run) -> tuple[str, ...]:
    return tuple(getattr(run.model, "conditioning", ()))


def point_estimate(columns: ColumnCodec | None, draws: Tensor) -> Tensor:
    """One value per entry from draws ``(K, N, *event)``: the mean (snapped onto a discrete
    column's values), the most frequent draw for a categorical column, and for a row without
    any known entry its first draw (a sample, not the data's mean)."""
    point = draws.mean(0)
    if columns is not None:
        point = columns.round(point)
        for j, labels in enumerate(columns.labels):
            if labels is not None:
                point[:, j] = draws[:, :, j].mode(0).values
    return point


def interval(
    columns: ColumnCodec | None, draws: Tensor, level: float = INTERVAL
) -> tuple[Tensor, Tensor, Tensor]:
    """(lower, upper, share) from draws ``(K, N, D)``: the (1 ∓ level)/2 quantiles of each entry
    (snapped onto discrete values; NaN for categorical columns), and for categorical columns the
    share of draws equal to the most frequent one (NaN elsewhere)."""
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=draws.dtype)
    lo, hi = torch.quantile(draws, q, dim=0)
    share = torch.full_like(lo, math.nan)
    if columns is not None:
        lo, hi = columns.round(lo), columns.round(hi)
        for j, labels in enumerate(columns.labels):
            if labels is not None:
                mode = draws[:, :, j].mode(0).values
                share[:, j] = (draws[:, :, j] == mode).double().mean(0)
                lo[:, j] = hi[:, j] = math.nan
    return lo, hi, share


# -- conditional samples given some columns ----------------------------------------------------
@dataclass(frozen=True)
class Given:
    """Values ``sample --given`` fixes: column index → value in data units (a categorical's code),
    and the class label's code (None: no label)."""

    values: dict[int, float]
    label: int | None = None


def parse_given(
    text: str | Mapping[str, Any], columns: ColumnCodec | None, names: Sequence[str],
    labels: LabelCodec | None = None,
) -> Given:  # fmt: skip
    """``"col=value,col2=value"`` (or a mapping) as :class:`Given`: each name a column of the run
    (``names``: its data columns, ``x1 … xD`` without a codec) or its label column, each value a
    number or one of a categorical column's labels; a one-line ValueError otherwise."""
    if isinstance(text, str):
        pairs = []
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            if "=" not in item:
                raise ValueError(f"--given: expected col=value, got {item!r}")
            key, value = item.split("=", 1)
            pairs.append((key.strip(), value.strip()))
    else:
        pairs = [(str(k), str(v)) for k, v in text.items()]
    if not pairs:
        raise ValueError('--given: no value given; write --given "col=value,col2=value"')
    values: dict[int, float] = {}
    label = None
    known = list(names) + ([labels.column] if labels is not None and labels.column else [])
    for key, value in pairs:
        if labels is not None and key == labels.column:
            label = labels.code(value)
            continue
        if key not in names:
            raise ValueError(
                f"--given: no column {key!r}; the run's columns are {', '.join(known)}"
            )
        j = list(names).index(key)
        if key in values:
            raise ValueError(f"--given: column {key!r} is given twice")
        values[j] = _value(columns, j, key, value)
    return Given(values, label)


def _value(columns: ColumnCodec | None, j: int, key: str, value: str) -> float:
    """One --given value in data units: a categorical label's code, else the number."""
    labels = None if columns is None else columns.labels[j]
    if labels is not None:
        if value in labels:
            return float(labels.index(value))
        try:  # a number written as the table writes it, e.g. 2 for "2"
            as_label = number_label(float(value))
        except ValueError:
            as_label = None
        if as_label in labels:
            return float(labels.index(as_label))
        shown = ", ".join(labels[:10]) + (", …" if len(labels) > 10 else "")
        raise ValueError(f"--given: {value!r} is not a label of column {key!r} ({shown})")
    try:
        v = float(value)
    except ValueError:
        raise ValueError(f"--given: column {key!r} holds numbers, not {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"--given: column {key!r} needs a finite number, got {value!r}")
    return v


def sample_given(
    run, given: Given, n: int, *, seed: int = 0, guidance: float = 0.0, method: str = "auto",
    sampler: str | None = None, steps: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> Tensor:  # fmt: skip
    """``n`` samples ``(n, D)`` in data units of the run's rows given the values of ``given``
    (each sample one draw of the conditional law; the given columns hold their values)."""
    n = check_positive_int(n, "n")
    x = torch.full((n, *run.data_shape), math.nan, dtype=torch.float64)
    for j, v in given.values.items():
        x[:, j] = v
    labels = None if given.label is None else torch.full((n,), given.label, dtype=torch.int64)
    out = [
        draws[0]
        for _, _, draws in imputation_chunks(
            run, x, draws=1, labels=labels, guidance=guidance, method=method, seed=seed,
            sampler=sampler, steps=steps, progress=progress,
        )
    ]  # fmt: skip
    return torch.cat(out)


class GivenSamples:
    """What ``sample --given`` draws, as a source for ``runs.streaming.sample_to_file`` (its
    ``shape``, ``columns`` and ``sample``): :func:`sample_given`'s draws of ``run`` given
    ``given``, the ``nfe`` of the result counting the network's evaluations."""

    def __init__(self, run, given: Given, *, guidance: float = 0.0, method: str = "auto") -> None:
        check_imputes(run, method)
        self.run, self.given, self.guidance, self.method = run, given, guidance, method
        self.shape = run.shape
        self.columns = run.columns
        self.is_main = True

    def sample(
        self, n: int, *, seed: int = 0, trajectory: bool = False, progress: bool = False,
        sampler: str | None = None, steps: int | None = None, churn: float = 0.0,
        grid: str = "auto",
    ) -> SampleResult:  # fmt: skip
        if trajectory or churn:
            raise ValueError("--trajectory and --churn apply to plain samples, not with --given")
        if grid == "tuned":  # a tuned grid is fitted to the unconditional sampler's solution
            raise ValueError("--grid tuned applies to plain samples, not with --given")
        calls = [0]

        def count(*_: Any) -> None:
            calls[0] += 1

        hook = self.run.model.register_forward_pre_hook(count)
        t0 = time.perf_counter()
        bar = tqdm(total=n, unit="sample", desc="sampling", disable=not progress)
        try:
            x = sample_given(self.run, self.given, n, seed=seed, guidance=self.guidance,
                             method=self.method, sampler=sampler, steps=steps,
                             progress=bar.update)  # fmt: skip
        finally:
            hook.remove()
            bar.close()
        return SampleResult(x, calls[0], None, time.perf_counter() - t0)


def describe_method(run, method: str) -> str:
    """How the run conditions on known entries, in a few words."""
    if method == "replacement":
        return "replacement (the known entries held at their noised values; biased)"
    what = "mask-conditional network" if masks_of(run.config) else "network"
    return f"the run's {what} (its conditional score of the unknown entries)"


# -- a table file filled in --------------------------------------------------------------------
@dataclass
class FilledTable:
    """What :func:`impute_table` did: the file's rows, the missing cells it filled (in how many
    rows, of which rows with no known cell: plain samples), the draws per cell, the label cells
    left empty (a labelled run's label is conditioned on, not modelled) and the files written."""

    rows: int
    cells: int
    filled_rows: int
    empty_rows: int
    draws: int
    label_gaps: int
    method: str
    out: str
    summary: str | None = None


def _file_columns(table, columns: ColumnCodec | None, width: int) -> list[int]:
    """For each modelled column, its index among the file's columns (matched as
    ``ColumnCodec.match`` matches them)."""
    if columns is None:
        return list(range(width))
    if table.has_header:
        return [table.names.index(name) for name in columns.names]
    if table.shape[1] == len(columns.all_columns):
        return [j for j, c in enumerate(columns.all_columns) if c.kind != "excluded"]
    return list(range(len(columns)))


def read_rows(run, text) -> tuple[Tensor, Tensor | None, list[int]]:
    """A text table's rows in the run's data units ``(N, D)`` (NaN where missing; columns matched
    by header), its labels for a labelled run (else None), and each modelled column's index in
    the file."""
    table = text.table
    columns: ColumnCodec | None = run.columns
    if columns is not None:
        x = columns.encode(columns.match(table)).double()
    else:
        d = run.data_shape[0]
        if table.shape[1] != d or table.text:
            raise ValueError(
                f"{table.where}{table.shape[1]} columns{' with text' if table.text else ''}; "
                f"the run models {d} numeric columns"
            )
        x = torch.from_numpy(table.values).double()
    codec = LabelCodec.from_config(run.config["data"].get("labels"))
    labels = None if codec is None or codec.source != "column" else table_labels(table, codec)
    return x, labels, _file_columns(table, columns, table.shape[1])


def impute_table(
    run, text, out, *, draws: int | None = None, point_draws: int = POINT_DRAWS,
    summary=None, seed: int = 0, method: str = "auto", sampler: str | None = None,
    steps: int | None = None, progress: bool = False,
) -> FilledTable:  # fmt: skip
    """Fill in the missing cells of a text table (``data.read_text_table``) with ``run`` and
    write it to ``out`` (CSV; tab-separated for .tsv): every known cell as it was written, in the
    file's column order with its header (every other byte of the file too: same delimiter and
    quoting, so a complete row's line comes back as it was); each missing cell of a modelled column its point
    imputation (module doc; ``point_draws`` draws), or with ``draws=K`` K imputations of each
    row, consecutive, after a leading column ``draw`` (0 … K − 1).  ``summary``: also write a CSV
    with each filled cell's row, column, estimate, 90 % interval and (categorical) the share of
    draws that gave it."""
    method = check_imputes(run, method)
    x, labels, where = read_rows(run, text)
    columns: ColumnCodec | None = run.columns
    k = check_positive_int(draws if draws is not None else point_draws, "draws")
    gaps = x.isnan()
    todo = torch.nonzero(gaps.any(1)).flatten()
    n_rows = x.shape[0]
    stats = {"empty": int(gaps[todo].all(1).sum()) if todo.numel() else 0}
    filled: dict[int, Tensor] = {}  # row -> (K, D) draws of the rows with gaps
    summary_rows: list[list[str]] = []
    bar = tqdm(total=int(todo.numel()), unit="row", desc="impute", disable=not progress)
    chunks = imputation_chunks(
        run, x[todo], draws=k, labels=None if labels is None else labels[todo], method=method,
        seed=seed, sampler=sampler, steps=steps, progress=bar.update,
    )  # fmt: skip
    for start, stop, chunk in chunks:
        for i, row in enumerate(todo[start:stop].tolist()):
            filled[row] = chunk[:, i]
        if summary is not None:
            summary_rows += _summary_rows(columns, chunk, todo[start:stop], gaps, x.shape[1])
    bar.close()

    kinds = None if columns is None else [c.kind for c in columns.columns]
    places = {j: written_decimals([r[where[j]] for r in text.rows], gaps[:, j])
              for j in range(x.shape[1])
              if kinds is None or kinds[j] != "categorical"}  # fmt: skip

    def formatted(values: Tensor) -> list[list[str]]:
        """Cells of data-unit rows: the codec's (labels, integers), continuous numbers with as
        many decimals as the column's cells are written with, and grid values padded to them
        (an integer column that pandas wrote as ``41.0`` gets ``14.0``, not ``14``)."""
        out = columns.format_rows(values) if columns is not None else [
            [f"{v:.7g}" for v in r] for r in values.tolist()
        ]  # fmt: skip
        for j, dec in places.items():
            if dec is None:
                continue
            for r, v in zip(out, values[:, j].tolist()):
                if kinds is None or kinds[j] == "continuous":
                    r[j] = f"{v:.{dec}f}"
                elif dec and "." not in r[j] and r[j].lstrip("-").isdigit():
                    r[j] = f"{r[j]}.{'0' * dec}"
        return out

    lines: list[str] = []
    delimiter = text.delimiter or " "
    for i in range(n_rows):
        if i not in filled:
            rows_i = [text.line(i)] * (k if draws is not None else 1)
        else:
            d = filled[i]  # (K, D)
            if draws is None:
                one = d[:1] if bool(gaps[i].all()) else point_estimate(columns, d[:, None])
                values = formatted(one)
            else:
                values = formatted(d)
            missing = torch.nonzero(gaps[i]).flatten().tolist()
            rows_i = [text.line(i, {where[j]: v[j] for j in missing}) for v in values]
        if draws is None:
            lines += rows_i
        else:
            lines += [f"{d}{delimiter}{r}" for d, r in enumerate(rows_i)]
    if text.header_line is not None:
        head = text.header_line
        if draws is not None:
            head = ('"draw"' if head.lstrip().startswith('"') else "draw") + delimiter + head
        lines.insert(0, head)
    atomic_write_text(out, "".join(line + "\n" for line in lines))
    if summary is not None:
        head = ["row", "column", "estimate", "lower_5", "upper_95", "share"]
        atomic_write_text(summary, _csv_text(head, summary_rows, ","))
    label_gaps = 0 if labels is None else int((labels < 0).sum())
    return FilledTable(n_rows, int(gaps.sum()), int(todo.numel()), stats["empty"], k, label_gaps,
                       method, str(out), None if summary is None else str(summary))  # fmt: skip


def written_decimals(cells: Sequence[str], missing: Tensor) -> int | None:
    """The most decimals among a column's written cells (``"39.1"``: 1), or None when a cell is
    written otherwise (an exponent) or none is known."""
    most = None
    for cell, gap in zip(cells, missing.tolist()):
        if gap:
            continue
        text = cell.strip().strip('"').lstrip("+-")
        whole, _, frac = text.partition(".")
        if not (whole or frac) or not (whole + frac).isdigit():
            return None
        most = max(most or 0, len(frac))
    return most


def _summary_rows(
    columns: ColumnCodec | None, draws: Tensor, rows: Tensor, gaps: Tensor, width: int
) -> list[list[str]]:
    """One CSV row per missing cell of ``rows`` (draws ``(K, n, D)``): the row's number in the
    file (1-based), the column, the point estimate, the 90 % interval and the mode's share."""
    point = point_estimate(columns, draws)
    lo, hi, share = interval(columns, draws)
    names = columns.names if columns is not None else [f"x{j + 1}" for j in range(width)]

    def cells(values: Tensor) -> list[list[str]]:
        if columns is not None:
            return columns.format_rows(values)
        return [["" if math.isnan(v) else f"{v:.7g}" for v in r] for r in values.tolist()]

    est, low, high = cells(point), cells(lo), cells(hi)
    out = []
    for i, row in enumerate(rows.tolist()):
        for j in torch.nonzero(gaps[row]).flatten().tolist():
            s = share[i, j].item()
            out.append([str(row + 1), names[j], est[i][j], low[i][j], high[i][j],
                        "" if math.isnan(s) else f"{s:.3g}"])  # fmt: skip
    return out


def _csv_text(header: list[str], rows: list[list[str]], delimiter: str) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


# -- images with a region filled in ------------------------------------------------------------
REGIONS = ("left", "right", "top", "bottom", "centre")


def region_mask(mask: str | Path, size: tuple[int, int]) -> Tensor:
    """The pixels to fill in, ``(H, W)`` booleans: a named half (``left``, ``right``, ``top``,
    ``bottom``), the central square of half the side (``centre``), or a PNG of the images' size
    whose light pixels (≥ 128 in grey) are filled in; a one-line error otherwise."""
    h, w = size
    name = str(mask).lower()
    if name in REGIONS or name == "center":
        out = torch.zeros(h, w, dtype=torch.bool)
        if name == "left":
            out[:, : w // 2] = True
        elif name == "right":
            out[:, w // 2 :] = True
        elif name == "top":
            out[: h // 2] = True
        elif name == "bottom":
            out[h // 2 :] = True
        else:
            out[h // 4 : h - h // 4, w // 4 : w - w // 4] = True
        return out
    path = Path(mask).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"--mask {mask}: neither one of {', '.join(REGIONS)} nor an existing image file"
        )
    try:
        with Image.open(path) as im:
            grey = np.asarray(im.convert("L"))
    except (OSError, ValueError) as err:
        raise ValueError(f"--mask {mask}: cannot read it as an image ({err})") from None
    if grey.shape != (h, w):
        raise ValueError(
            f"--mask {mask}: {grey.shape[1]}×{grey.shape[0]} pixels; the run's images are {w}×{h}"
        )
    out = torch.from_numpy(grey >= 128)
    if not bool(out.any()):
        raise ValueError(f"--mask {mask}: no light pixel, so nothing to fill in (light = fill in)")
    return out


@dataclass
class Inpainted:
    """What :func:`inpaint_folder` did: the images filled in, the pixels filled in each, the
    method, the files written (one per image) and the comparison grid."""

    images: int
    pixels: int
    method: str
    files: list[Path]
    grid: Path


def inpaint_folder(
    run, folder: str | Path, mask: str | Path, out: str | Path, *, seed: int = 0,
    method: str = "auto", sampler: str | None = None, steps: int | None = None,
    progress: bool = False,
) -> Inpainted:  # fmt: skip
    """Fill in the region ``mask`` (:func:`region_mask`) of every image of ``folder`` (read at
    the run's size and channels) with ``run`` and write each to ``out`` under its relative path
    as PNG (atomically), with ``comparison.png``: the images with the region blanked (grey)
    above the same images filled in (at most 8)."""
    if run.kind != "image":
        raise ValueError("this run models a table; fill in its missing cells with `impute`")
    method = check_imputes(run, method)  # before anything is read or drawn
    c, h, w = run.shape
    region = region_mask(mask, (h, w))
    x, files = read_image_folder(folder, h, "L" if c == 1 else "RGB")
    x = x.double()
    x[:, :, region] = math.nan
    bar = tqdm(total=x.shape[0], unit="image", desc="inpaint", disable=not progress)
    parts = [d[0] for _, _, d in imputation_chunks(run, x, draws=1, method=method, seed=seed,
                                                  sampler=sampler, steps=steps,
                                                  progress=bar.update)]  # fmt: skip
    bar.close()
    filled = torch.cat(parts).clamp(0, 1)
    root, target = Path(folder).expanduser(), Path(out)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for image, file in zip(filled, files):
        path = target / Path(file).relative_to(root).with_suffix(".png")
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = (image.numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8)
        pil = Image.fromarray(pixels[..., 0] if c == 1 else pixels)
        atomic_save(path, lambda tmp, pil=pil: pil.save(tmp, format="PNG"))
        written.append(path)
    shown = min(8, x.shape[0])
    grid = image_grid(torch.cat([x[:shown].nan_to_num(0.5), filled[:shown]]),
                      target / "comparison.png", nrow=shown)  # fmt: skip
    return Inpainted(x.shape[0], int(region.sum()), method, written, grid)
