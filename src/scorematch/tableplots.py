"""Pictures of a table: the pair (corner) plot of real rows against sampled rows
(:func:`pair_plot`), and the choice of the columns it shows (:func:`informative_columns`).

The pair plot has one row and one column of panels per shown column.  On the diagonal, each
column's marginal: histograms (real filled grey, samples as a blue line) for numbers, bars of the
shares of each value (real grey, samples blue) for categorical columns and numbers with at most
``FEW_VALUES`` distinct values.  Below the diagonal, each pair's joint: for two numeric columns
the real rows' 2-D histogram in grey under the samples' density contours in blue; for a pair with
a categorical (or few-valued) column, a grid of cells with a grey square per cell whose area is
the real share and a blue outline whose area is the sampled share — a blue outline over no grey
is a combination the data never has.  Every panel has its own axis range (columns have unlike
units: no equal aspect).  A table of one column is a single histogram.  Written with
matplotlib's object API (no pyplot), atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from torch import Tensor

from .io import atomic_save

__all__ = ["FEW_VALUES", "MAX_PAIR_COLUMNS", "informative_columns", "pair_plot"]

FEW_VALUES = 12  # numbers with at most this many distinct values are drawn as bars
MAX_PAIR_COLUMNS = 6  # the default pair plot's columns at most
_BINS = 10  # quantile bins of a numeric column for the informativeness score
_DATA, _SAMPLE = "#59636e", "#1f6feb"


def _array(x: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _discretise(v: np.ndarray, categorical: bool) -> np.ndarray:
    """Integer bins of a column: its codes (categorical), its values (few distinct), else
    ``_BINS`` quantile bins; -1 where missing."""
    out = np.full(v.shape, -1, dtype=np.int64)
    ok = np.isfinite(v)
    if categorical or len(np.unique(v[ok])) <= _BINS:
        out[ok] = np.unique(v[ok], return_inverse=True)[1]
        return out
    edges = np.unique(np.quantile(v[ok], np.linspace(0, 1, _BINS + 1)[1:-1]))
    out[ok] = np.searchsorted(edges, v[ok], side="right")
    return out


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def informative_columns(
    x: Tensor | np.ndarray,
    categorical: Sequence[bool] | None = None,
    k: int = MAX_PAIR_COLUMNS,
) -> list[int]:
    """The ``k`` columns of rows ``x`` ``(N, D)`` (data units) that say most about the others, in
    table order: each column scores the mean, over the other columns, of the normalised mutual
    information NMI = I(a; b) / min(H(a), H(b)) of the two columns binned (categorical codes and
    few-valued columns by value, numbers in 10 quantile bins; rows with a missing cell in the pair
    left out).  Constant columns score 0.  With D ≤ k, every column."""
    a = _array(x)
    d = a.shape[1]
    if d <= k:
        return list(range(d))
    cat = list(categorical) if categorical is not None else [False] * d
    bins = [_discretise(a[:, j], cat[j]) for j in range(d)]
    nmi = np.zeros((d, d))
    for i in range(d):
        for j in range(i + 1, d):
            ok = (bins[i] >= 0) & (bins[j] >= 0)
            if ok.sum() < 2:
                continue
            bi, bj = bins[i][ok], bins[j][ok]
            joint = np.zeros((bi.max() + 1, bj.max() + 1))
            np.add.at(joint, (bi, bj), 1.0)
            hi, hj = _entropy(joint.sum(1)), _entropy(joint.sum(0))
            if min(hi, hj) <= 0:
                continue
            mutual = hi + hj - _entropy(joint.ravel())
            nmi[i, j] = nmi[j, i] = mutual / min(hi, hj)
    score = nmi.sum(1) / (d - 1)
    order = sorted(range(d), key=lambda j: (-score[j], j))
    return sorted(order[:k])


def _values(v: np.ndarray, categorical: bool, labels: Sequence[str] | None):
    """(positions, tick labels) of a column drawn as bars, or None for a numeric column."""
    finite = np.unique(v[np.isfinite(v)])
    if categorical:
        k = len(labels) if labels else int(finite.max()) + 1 if finite.size else 0
        names = list(labels) if labels else [str(i) for i in range(k)]
        return np.arange(k, dtype=np.float64), names
    if finite.size <= FEW_VALUES:
        return finite, [f"{u:.4g}" for u in finite]
    return None


def _range(*columns: np.ndarray) -> tuple[float, float]:
    pts = np.concatenate([c[np.isfinite(c)] for c in columns])
    lo, hi = np.percentile(pts, 0.5), np.percentile(pts, 99.5)
    pad = 0.05 * max(hi - lo, 1e-9)
    return float(lo - pad), float(hi + pad)


def _cells(v: np.ndarray, axis) -> np.ndarray:
    """Each value's cell index along an axis: its bar for a bar axis, else a bin of 12."""
    kind, where = axis
    if kind == "bars":
        return np.abs(v[:, None] - where[None, :]).argmin(1)
    return np.clip(np.searchsorted(where, v, side="right") - 1, 0, len(where) - 2)


def _diagonal(ax, d: np.ndarray | None, s: np.ndarray, axis) -> None:
    kind, where = axis
    if kind == "bars":
        width = 0.38 * (np.diff(where).min() if len(where) > 1 else 1.0)
        for rows, color, shift in ((d, _DATA, -1), (s, _SAMPLE, 1)):
            if rows is None:
                continue
            ok = rows[np.isfinite(rows)]
            share = np.bincount(_cells(ok, axis), minlength=len(where)) / max(len(ok), 1)
            ax.bar(where + shift * width / 2, share, width=width, color=color, alpha=0.85)
        return
    edges = np.linspace(where[0], where[-1], 31)
    if d is not None:
        ax.hist(d[np.isfinite(d)], bins=edges, density=True, color=_DATA, alpha=0.45)
    ax.hist(s[np.isfinite(s)], bins=edges, density=True, histtype="step", color=_SAMPLE, lw=1.3)


def _joint(ax, dx, dy, sx, sy, ax_x, ax_y) -> None:
    """A pair's joint: grey 2-D histogram under blue contours (numbers), or share squares."""
    if ax_x[0] == "bars" or ax_y[0] == "bars":
        nx = len(ax_x[1]) - (ax_x[0] == "range")
        ny = len(ax_y[1]) - (ax_y[0] == "range")
        cx = ax_x[1] if ax_x[0] == "bars" else (ax_x[1][:-1] + ax_x[1][1:]) / 2
        cy = ax_y[1] if ax_y[0] == "bars" else (ax_y[1][:-1] + ax_y[1][1:]) / 2
        gx, gy = np.meshgrid(cx, cy, indexing="ij")
        shares = []
        for rows in ((dx, dy), (sx, sy)):
            if rows[0] is None:
                shares.append(None)
                continue
            ok = np.isfinite(rows[0]) & np.isfinite(rows[1])
            grid = np.zeros((nx, ny))
            np.add.at(grid, (_cells(rows[0][ok], ax_x), _cells(rows[1][ok], ax_y)), 1.0)
            shares.append(grid.ravel() / max(ok.sum(), 1))
        # The largest share of either fills 85 % of a cell's side (panel ≈ 130 points wide).
        top = max(float(v.max()) for v in shares if v is not None) or 1.0
        full = (0.85 * 130.0 / max(nx, ny)) ** 2
        if shares[0] is not None:
            ax.scatter(gx.ravel(), gy.ravel(), s=full * shares[0] / top, marker="s", color=_DATA,
                       alpha=0.55, linewidths=0)  # fmt: skip
        ax.scatter(gx.ravel(), gy.ravel(), s=full * shares[1] / top, marker="s",
                   facecolors="none", edgecolors=_SAMPLE, linewidths=0.9)  # fmt: skip
        return
    xr, yr = (ax_x[1][0], ax_x[1][-1]), (ax_y[1][0], ax_y[1][-1])
    if dx is not None:
        ok = np.isfinite(dx) & np.isfinite(dy)
        bins = int(np.clip(np.sqrt(ok.sum()) / 1.5, 8, 40))  # a few rows per bin
        ax.hist2d(dx[ok], dy[ok], bins=bins, range=[xr, yr], cmap="Greys", cmin=1)
    ok = np.isfinite(sx) & np.isfinite(sy)
    bins = int(np.clip(np.sqrt(ok.sum()) / 2, 8, 30))
    h, xe, ye = np.histogram2d(sx[ok], sy[ok], bins=bins, range=[xr, yr])
    h = h / max(h.max(), 1e-12)
    if h.max() > 0:
        kernel = np.array([0.25, 0.5, 0.25])  # a light smoothing so the contours are readable
        h = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), 0, h)
        h = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), 1, h)
        xc, yc = (xe[:-1] + xe[1:]) / 2, (ye[:-1] + ye[1:]) / 2
        levels = np.array([0.1, 0.3, 0.6]) * h.max()
        ax.contour(xc, yc, h.T, levels=levels, colors=_SAMPLE, linewidths=0.9)


def pair_plot(
    samples: Tensor | np.ndarray,
    data: Tensor | np.ndarray | None,
    path: str | Path,
    *,
    names: Sequence[str] | None = None,
    labels: Sequence[Sequence[str] | None] | None = None,
    columns: Sequence[int] | None = None,
    title: str | None = None,
    data_name: str = "data",
    max_points: int = 20000,
) -> Path:
    """A pair plot of sampled rows against real rows (module doc), written to ``path``.

    Args:
        samples, data: rows in data units ``(N, D)`` (categoricals as codes); ``data`` may be None.
        names: the columns' names (default x1 … xD).
        labels: per column, a categorical column's labels (its codes index them), else None.
        columns: which columns to show (0-based); default :func:`informative_columns` of the
            data (or the samples), at most ``MAX_PAIR_COLUMNS``.
        title, data_name: the figure's title and what the real rows are called in the legend.
    """
    s_all = _array(samples).reshape(len(samples), -1)[:max_points]
    d_all = None if data is None else _array(data).reshape(len(data), -1)[:max_points]
    dims = s_all.shape[1]
    names = list(names) if names is not None else [f"x{j + 1}" for j in range(dims)]
    labels = list(labels) if labels is not None else [None] * dims
    if len(names) != dims or len(labels) != dims:
        raise ValueError(f"{dims} columns, but {len(names)} names and {len(labels)} label lists")
    cat = [lab is not None for lab in labels]
    if columns is None:
        columns = informative_columns(d_all if d_all is not None else s_all, cat)
    columns = [int(j) for j in columns]
    if not columns or any(not 0 <= j < dims for j in columns):
        raise ValueError(f"columns must be indices 0 … {dims - 1}, got {columns}")
    axes_of = []
    for j in columns:
        d = None if d_all is None else d_all[:, j]
        bars = _values(d if d is not None else s_all[:, j], cat[j], labels[j])
        if bars is not None:
            axes_of.append(("bars", bars[0], bars[1]))
        else:
            lo, hi = _range(s_all[:, j], *([] if d is None else [d]))
            axes_of.append(("range", np.linspace(lo, hi, 13), None))
    k = len(columns)
    size = 2.6 if k == 1 else 1.9
    fig = Figure(figsize=(max(size * k, 4.2), max(size * k, 3.4) + 0.3))
    grid = fig.subplots(k, k, squeeze=False)
    for r in range(k):
        for c in range(k):
            ax = grid[r][c]
            if c > r:
                ax.set_visible(False)
                continue
            jr, jc = columns[r], columns[c]
            ax_x = axes_of[c][:2]
            d_c = None if d_all is None else d_all[:, jc]
            if r == c:
                _diagonal(ax, d_c, s_all[:, jc], ax_x)
                ax.set_yticks([])
            else:
                d_r = None if d_all is None else d_all[:, jr]
                _joint(ax, d_c, d_r, s_all[:, jc], s_all[:, jr], ax_x, axes_of[r][:2])
            _ticks(ax, "x", axes_of[c], r == k - 1, names[jc])
            if r != c:
                _ticks(ax, "y", axes_of[r], c == 0, names[jr])
    handles = [Line2D([], [], color=_SAMPLE, lw=1.5, label=f"samples ({len(s_all)})")]
    if d_all is not None:
        handles.insert(0, Patch(color=_DATA, alpha=0.6, label=f"{data_name} ({len(d_all)})"))
    fig.legend(handles=handles, loc="upper right", fontsize=8, frameon=False)
    shown = "" if k == dims else f" — {k} of {dims} columns"
    if title or shown:
        fig.suptitle(f"{title or ''}{shown}".lstrip(" —"), fontsize=10, x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.88 if k == 1 else 0.97))  # room for the legend
    path = Path(path)
    atomic_save(path, lambda tmp: fig.savefig(tmp, format=path.suffix.lstrip(".") or "png",
                                              dpi=100))  # fmt: skip
    return path


def _ticks(ax, which: str, axis, outer: bool, name: str) -> None:
    """Tick labels and the column's name on the outer panels only; bar axes show their values."""
    kind, where, texts = axis
    set_ticks = ax.set_xticks if which == "x" else ax.set_yticks
    set_labels = ax.set_xticklabels if which == "x" else ax.set_yticklabels
    set_lim = ax.set_xlim if which == "x" else ax.set_ylim
    if kind == "bars":
        step = np.diff(where).min() if len(where) > 1 else 1.0
        set_lim(where[0] - 0.6 * step, where[-1] + 0.6 * step)
        set_ticks(where)
        set_labels(texts if outer else [], fontsize=7, rotation=45 if which == "x" else 0)
    else:
        set_lim(where[0], where[-1])
        ax.tick_params(axis=which, labelsize=7, labelbottom=outer, labelleft=outer)
    if outer:
        (ax.set_xlabel if which == "x" else ax.set_ylabel)(name, fontsize=8)
