"""Pictures of a run: samples beside data, the learned score field, sampling trajectories, image
grids and the loss curve.  Every function writes one file atomically and returns its path.

Figures are built with matplotlib's object API (``Figure``, not pyplot), so plotting works without a
screen and never changes the backend or the open figures of the caller's session.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib import animation
from matplotlib.figure import Figure
from PIL import Image
from torch import Tensor

from .data.table import parse_column_list, resolve_columns
from .io import atomic_save
from .tableplots import informative_columns, pair_plot

__all__ = [
    "image_grid",
    "informative_columns",
    "loss_curve",
    "pair_plot",
    "samples_picture",
    "samples_vs_data",
    "score_field",
    "trajectory_gif",
]

_DATA_COLOR = "#59636e"
_SAMPLE_COLOR = "#1f6feb"


def _np(x: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _savefig(fig, path: str | Path, **kwargs) -> Path:
    path = Path(path)
    fmt = path.suffix.lstrip(".") or "png"
    atomic_save(path, lambda tmp: fig.savefig(tmp, format=fmt, **kwargs))
    return path


def _limits(
    *arrays: np.ndarray, pad: float = 0.08
) -> tuple[tuple[float, float], tuple[float, float]]:
    pts = np.concatenate([a[np.isfinite(a).all(1)] for a in arrays], 0)
    lo, hi = np.percentile(pts, 0.5, axis=0), np.percentile(pts, 99.5, axis=0)
    span = np.maximum(hi - lo, 1e-6)
    lo, hi = lo - pad * span, hi + pad * span
    return (float(lo[0]), float(hi[0])), (float(lo[1]), float(hi[1]))


def _marker(n: int) -> tuple[float, float]:
    """(marker area, alpha) that keep a scatter of n points visible: large, opaque dots for a few
    dozen held-out rows, small translucent ones for thousands."""
    size = float(np.clip(3000.0 / max(n, 1), 2.0, 18.0))
    return size, (0.5 if n > 2000 else 0.85)


def samples_vs_data(
    samples: Tensor | np.ndarray,
    data: Tensor | np.ndarray | None,
    path: str | Path,
    *,
    title: str | None = None,
    max_points: int = 5000,
    labels: Sequence[str] | None = None,
    data_name: str = "data",
) -> Path:
    """Scatter plots of 2-D data (left, titled ``data_name``) and model samples (right) on shared axes.

    Only the first two coordinates are drawn; for higher dimensions this is a projection, said
    in the title.  ``labels`` (e.g. a table's column names) name the two axes, which then keep
    their ticks; markers grow when there are few points so that a small held-out split shows.
    """
    s_all, d_all = _np(samples), None if data is None else _np(data)
    dims = s_all.reshape(s_all.shape[0], -1).shape[1]
    if dims == 1:  # one column: its histogram
        return pair_plot(s_all, d_all, path, names=labels, title=title, data_name=data_name)
    s = s_all.reshape(s_all.shape[0], -1)[:max_points, :2]
    panels = [("samples", s, _SAMPLE_COLOR)]
    if d_all is not None:
        d = d_all.reshape(d_all.shape[0], -1)[:max_points, :2]
        panels.insert(0, (data_name, d, _DATA_COLOR))
    xlim, ylim = _limits(*[p[1] for p in panels])
    fig = Figure(figsize=(4.2 * len(panels), 4.4 if labels else 4.2))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (name, pts, color) in zip(axes[0], panels):
        size, alpha = _marker(len(pts))
        ax.scatter(pts[:, 0], pts[:, 1], s=size, alpha=alpha, color=color, linewidths=0)
        ax.set(xlim=xlim, ylim=ylim, title=f"{name} ({len(pts)})")
        if labels:
            ax.set_xlabel(labels[0])
            if len(labels) > 1:
                ax.set_ylabel(labels[1])
            ax.tick_params(labelsize=7)
        else:
            ax.set_aspect("equal")
            ax.set_xticks([]), ax.set_yticks([])
    if dims > 2:
        title = f"{title + ' — ' if title else ''}first 2 of {dims} columns"
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _savefig(fig, path, dpi=110)


def samples_picture(
    samples: Tensor | np.ndarray,
    data: Tensor | np.ndarray | None,
    path: str | Path,
    *,
    columns=None,
    show: str | Sequence[str] | None = None,
    title: str | None = None,
    data_name: str = "data",
) -> Path:
    """Samples beside data: a table's pair plot when ``columns`` (its
    :class:`~scorematch.data.ColumnCodec`) is given — ``show`` names the columns to draw (names
    or 1-based indices, ``"a,b,3"``; default the most informative few) — else a 2-D scatter
    (:func:`samples_vs_data`)."""
    if columns is None:
        if show:
            raise ValueError("--columns applies to tables (a run on a table file)")
        return samples_vs_data(samples, data, path, title=title, data_name=data_name)
    chosen = None
    if show:
        chosen = sorted(resolve_columns(columns.names, parse_column_list(show), "--columns"))
    return pair_plot(samples, data, path, names=columns.names, labels=columns.labels,
                     columns=chosen, title=title, data_name=data_name)  # fmt: skip


def score_field(
    score_fn: Callable[[Tensor], Tensor],
    data: Tensor | np.ndarray,
    path: str | Path,
    *,
    grid: int = 24,
    title: str | None = None,
    device: torch.device | str | None = None,
) -> Path:
    """Arrows of a learned 2-D score s(x) over a histogram of the data density.

    ``score_fn`` maps a ``(n, 2)`` float tensor to scores of the same shape (e.g. the model bound
    at a small noise level with ``at_time``); the grid is built on ``device`` (the model's;
    None: torch's default device).  Arrow lengths are normalised per plot.
    """
    d = _np(data)[:, :2]
    xlim, ylim = _limits(d)
    gx, gy = np.meshgrid(np.linspace(*xlim, grid), np.linspace(*ylim, grid))
    grid_points = np.stack([gx.ravel(), gy.ravel()], 1)
    pts = torch.tensor(grid_points, dtype=torch.float32, device=device)
    with torch.no_grad():
        s = _np(score_fn(pts))
    norm = np.linalg.norm(s, axis=1, keepdims=True)
    # Compress long arrows (the score grows linearly far from the data) so the field stays legible.
    s = s / np.maximum(norm, 1e-12) * np.log1p(norm)
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.hist2d(d[:, 0], d[:, 1], bins=80, range=[xlim, ylim], cmap="Greys")
    ax.quiver(
        gx.ravel(), gy.ravel(), s[:, 0], s[:, 1], color=_SAMPLE_COLOR, angles="xy", width=0.003
    )
    ax.set(xlim=xlim, ylim=ylim, aspect="equal", title=title or "learned score ∇ log p")
    ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    return _savefig(fig, path, dpi=110)


def trajectory_gif(
    trajectory: Sequence[Tensor],
    path: str | Path,
    *,
    data: Tensor | np.ndarray | None = None,
    frames: int = 40,
    fps: int = 10,
    max_points: int = 2000,
) -> Path:
    """Animated GIF of 2-D samples travelling from the prior to the data (one frame per kept step)."""
    if len(trajectory) < 2:
        raise ValueError("a trajectory needs at least two states")
    keep = np.unique(
        np.linspace(0, len(trajectory) - 1, min(frames, len(trajectory))).round().astype(int)
    )
    states = [_np(trajectory[i])[:max_points, :2] for i in keep]
    ref = _np(data)[:, :2] if data is not None else states[-1]
    xlim, ylim = _limits(ref, pad=0.3)
    fig = Figure(figsize=(4.5, 4.5))
    ax = fig.subplots()
    if data is not None:
        ax.scatter(ref[:max_points, 0], ref[:max_points, 1], s=2, color=_DATA_COLOR, alpha=0.3)
    dots = ax.scatter(states[0][:, 0], states[0][:, 1], s=3, color=_SAMPLE_COLOR)
    ax.set(xlim=xlim, ylim=ylim, aspect="equal")
    ax.set_xticks([]), ax.set_yticks([])
    label = ax.set_title("")

    def draw(i: int):
        dots.set_offsets(states[i])
        label.set_text(f"step {keep[i]} / {len(trajectory) - 1}")
        return dots, label

    anim = animation.FuncAnimation(fig, draw, frames=len(states), blit=False)
    atomic_save(Path(path), lambda tmp: anim.save(tmp, writer=animation.PillowWriter(fps=fps)))
    return Path(path)


def image_grid(
    images: Tensor | np.ndarray, path: str | Path, *, nrow: int | None = None, scale: int = 4
) -> Path:
    """Tile ``(N, C, H, W)`` images with values in [0, 1] into one PNG (nearest-neighbour upscaled)."""
    x = _np(images)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"images must have shape (N, 1 or 3, H, W), got {x.shape}")
    n, c, h, w = x.shape
    nrow = nrow or int(np.ceil(np.sqrt(n)))
    ncol = int(np.ceil(n / nrow))
    pad = 1
    canvas = np.ones((ncol * (h + pad) + pad, nrow * (w + pad) + pad, c))
    for i in range(n):
        r, q = divmod(i, nrow)
        canvas[
            pad + r * (h + pad) : pad + r * (h + pad) + h,
            pad + q * (w + pad) : pad + q * (w + pad) + w,
        ] = x[i].transpose(1, 2, 0)
    img = (np.clip(canvas, 0, 1) * 255).round().astype(np.uint8)
    img = img[..., 0] if c == 1 else img
    pil = Image.fromarray(img).resize((img.shape[1] * scale, img.shape[0] * scale), Image.NEAREST)
    atomic_save(Path(path), lambda tmp: pil.save(tmp, format="PNG"))
    return Path(path)


def loss_curve(metrics_csv: str | Path, path: str | Path) -> Path:
    """Training loss against step from a run's ``metrics.csv`` (log-scale when the loss is positive)."""
    steps, losses = [], []
    with open(metrics_csv, newline="") as f:
        for row in csv.DictReader(f):
            steps.append(float(row["step"]))
            losses.append(float(row["loss"]))
    if not steps:
        raise ValueError(f"{metrics_csv}: no rows to plot")
    fig = Figure(figsize=(5.5, 3.5))
    ax = fig.subplots()
    ax.plot(steps, losses, color=_SAMPLE_COLOR, lw=1)
    if min(losses) > 0:
        ax.set_yscale("log")
    ax.set(xlabel="step", ylabel="loss", title="training loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _savefig(fig, path, dpi=110)
