"""Pictures of a run: samples beside data, the learned score field, sampling trajectories, image
grids and the loss curve.  Every function writes one file atomically and returns its path.

Figures are built with matplotlib's object API (``Figure``, not pyplot), so plotting works without a
screen and never changes the backend or the open figures of the caller's session.
"""

from __future__ import annotations

import csv
import math
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


# -- The learned score and energy against the true ones (issue #22) ---------------------------------

__all__ += ["energy_density", "normalised_density", "score_comparison", "score_error_map"]

_TRUE_COLOR = "#2da44e"


def _module_dtype_device(model) -> tuple[torch.dtype, torch.device | None]:
    """The floating dtype and device of a module's first floating tensor (float32, None else)."""
    if isinstance(model, torch.nn.Module):
        for tensor in (*model.parameters(), *model.buffers()):
            if tensor.is_floating_point():
                return tensor.dtype, tensor.device
    return torch.float32, None


def _law_limits(law, pad: float = 4.0) -> tuple[tuple[float, float], tuple[float, float]]:
    """A box holding all but a negligible part of a 2-D mixture's mass: each component's mean
    ± ``pad`` standard deviations along each axis."""
    sd = law.covs.diagonal(dim1=1, dim2=2).sqrt()
    lo = (law.means - pad * sd).min(0).values.tolist()
    hi = (law.means + pad * sd).max(0).values.tolist()
    return (lo[0], hi[0]), (lo[1], hi[1])


def _grid_points(xlim, ylim, n: int, dtype, device) -> tuple[np.ndarray, np.ndarray, Tensor]:
    gx, gy = np.meshgrid(np.linspace(*xlim, n), np.linspace(*ylim, n))
    pts = torch.tensor(np.stack([gx.ravel(), gy.ravel()], 1), dtype=dtype, device=device)
    return gx, gy, pts


def _arrows(ax, gx, gy, s: np.ndarray, scale: float, color: str) -> None:
    """Arrows compressed by log1p of their length (the score grows linearly far from the data)."""
    norm = np.linalg.norm(s, axis=1, keepdims=True)
    s = s / np.maximum(norm, 1e-12) * np.log1p(norm) / scale
    ax.quiver(gx.ravel(), gy.ravel(), s[:, 0], s[:, 1], color=color, angles="xy", width=0.004, scale=1.0, scale_units="xy")  # fmt: skip


def score_error_map(
    model: Callable[..., Tensor],
    law,
    xlim: tuple[float, float],
    ylim: tuple[float, float],
    *,
    t: float | None = None,
    grid: int = 121,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """A 2-D model's score against the exact score of ``law`` (the ``GaussianMixture`` it targets;
    at time t the noised mixture ``perturbed(α_t, σ_t)``) on a ``grid`` × ``grid`` box.

    The model is called ``model(x)``, or ``model(x, t)`` given t, in its own dtype and device
    (float32 for a plain function).  Returns the x and y grids, the learned and exact scores
    ``(grid², 2)``, log p ``(grid, grid)`` and F = E_p‖s_θ − ∇log p‖² by quadrature on the grid.
    """
    if int(grid) != grid or grid < 2:
        raise ValueError(f"grid must be an integer >= 2, got {grid}")
    exact = law.to(dtype=torch.float64)
    dtype, device = _module_dtype_device(model)
    gx, gy, pts = _grid_points(xlim, ylim, int(grid), dtype, device)
    with torch.no_grad():
        learned = model(pts) if t is None else model(pts, torch.full((len(pts),), t, dtype=dtype, device=device))  # fmt: skip
    if not isinstance(learned, Tensor) or learned.shape != pts.shape:
        got = tuple(learned.shape) if isinstance(learned, Tensor) else type(learned).__name__
        raise ValueError(f"model must return a score of shape {tuple(pts.shape)}, got {got}")
    learned = _np(learned)
    true = _np(exact.score(pts.cpu().double()))
    log_p = _np(exact.log_prob(pts.cpu().double())).reshape(gx.shape)
    weight = np.exp(log_p - log_p.max()).ravel()
    fisher = float((weight * np.square(learned - true).sum(1)).sum() / weight.sum())
    return gx, gy, learned, true, log_p, fisher


def score_comparison(
    model: Callable[..., Tensor],
    mixture,
    path: str | Path,
    *,
    process=None,
    times: Sequence[float] | None = None,
    arrows: int = 21,
    heat: int = 121,
    title: str | None = None,
) -> Path:
    """The learned 2-D score field beside the true one, and a map of ‖s_θ − ∇log p_t‖.

    One row per noise level: s_θ(x, t) (arrows over p_t), the exact ∇log p_t of ``mixture`` noised
    by ``process`` (``perturbed(α_t, σ_t)``), and log₁₀‖s_θ − ∇log p_t‖ with contours of p_t (away
    from the data the loss puts no weight, so the error there is not controlled); titles give
    F = E_{p_t}‖s_θ − ∇log p_t‖² by quadrature (``score_error_map``).  Without ``process``: one
    row, ``model(x)`` against the clean mixture; with one: ``model(x, t)`` at ``times`` (default
    ``[process.t_min]``).  Box: component means ± 4 sd of p_t; both fields share one arrow scale.
    """
    if getattr(mixture, "dim", None) != 2:
        raise ValueError(f"score_comparison draws 2-D mixtures, got dim={getattr(mixture, 'dim', None)}")  # fmt: skip
    if process is None and times is not None:
        raise ValueError("times need a process (noise levels mean nothing without one)")
    levels: list[float | None] = [None] if process is None else list(times or [process.t_min])
    if not levels:
        raise ValueError("times must hold at least one noise level")
    fig = Figure(figsize=(12.6, 4.2 * len(levels)))
    axes = fig.subplots(len(levels), 3, squeeze=False)
    for row, t in zip(axes, levels):
        if t is None:
            law, label = mixture, "data"
        else:
            alpha, sigma = (float(v) for v in process.marginal(torch.tensor(float(t), dtype=torch.float64)))  # fmt: skip
            law = mixture.perturbed(alpha, sigma)
            # On a σ clock (α = 1, σ = t) the level is σ itself; else name both.
            label = f"σ = {sigma:.3g}" if alpha == 1.0 and sigma == float(t) else f"t = {float(t):.3g}, σ/α = {sigma / alpha:.3g}"  # fmt: skip
        xlim, ylim = _law_limits(law.to(dtype=torch.float64))
        hx, hy, learned_h, true_h, log_p, fisher = score_error_map(model, law, xlim, ylim, t=t, grid=heat)  # fmt: skip
        ax_, ay_, learned_a, true_a, _, _ = score_error_map(model, law, xlim, ylim, t=t, grid=arrows)  # fmt: skip
        err = np.linalg.norm(learned_h - true_h, axis=1)
        scale = max(float(np.log1p(np.linalg.norm(true_a, axis=1)).max()), 1e-12)
        scale /= 0.9 * (xlim[1] - xlim[0]) / (arrows - 1)  # the longest true arrow spans a cell
        extent = (*xlim, *ylim)
        for ax, field, name, color in (
            (row[0], learned_a, f"learned s_θ ({label})", _SAMPLE_COLOR),
            (row[1], true_a, f"true ∇log p ({label})", _TRUE_COLOR),
        ):
            ax.imshow(np.exp(log_p), origin="lower", extent=extent, cmap="Greys", aspect="auto")
            _arrows(ax, ax_, ay_, field, scale, color)
            ax.set(xlim=xlim, ylim=ylim, title=name)
        im = row[2].imshow(np.log10(np.maximum(err, 1e-6)).reshape(hx.shape), origin="lower", extent=extent, cmap="magma", aspect="auto")  # fmt: skip
        peak = log_p.max()
        row[2].contour(hx, hy, log_p, levels=[peak - 8, peak - 4.5, peak - 1.5], colors="white", linewidths=0.7)  # fmt: skip
        row[2].set(xlim=xlim, ylim=ylim, title=f"log₁₀‖s_θ − ∇log p‖, F = {fisher:.3g}")
        fig.colorbar(im, ax=row[2], fraction=0.046, pad=0.04)
        for ax in row:
            ax.set_xticks([]), ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _savefig(fig, path, dpi=100)


def normalised_density(
    energy: Callable[[Tensor], Tensor],
    xlim: tuple[float, float],
    ylim: tuple[float, float],
    *,
    grid: int = 200,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """An energy E on a 2-D box and its normalised density e^{−E}/Z, Z by quadrature on the box.

    Z = Σ e^{−E(xᵢ)} h_x h_y over the ``grid``² cell centres (midpoint rule, as a log-sum-exp): when
    the box holds e^{−E}'s mass this is p_θ = e^{−E}/Z.  ``energy`` maps ``(n, 2)`` to ``(n,)`` or
    ``(n, 1)``.  Returns the cells' x and y grids, E and the density on them, and log Z.
    """
    if int(grid) != grid or grid < 2:
        raise ValueError(f"grid must be an integer >= 2, got {grid}")
    hx, hy = (xlim[1] - xlim[0]) / grid, (ylim[1] - ylim[0]) / grid
    if not (hx > 0 and hy > 0):
        raise ValueError(f"need xlim and ylim with lo < hi, got {xlim} and {ylim}")
    gx, gy, pts = _grid_points(
        (xlim[0] + hx / 2, xlim[1] - hx / 2), (ylim[0] + hy / 2, ylim[1] - hy / 2), grid, dtype, device
    )  # fmt: skip
    with torch.no_grad():
        e = energy(pts).reshape(-1).to(torch.float64).cpu()
    if e.numel() != pts.shape[0] or not bool(torch.isfinite(e).all()):
        raise ValueError("energy must return one finite value per grid point")
    log_z = float(torch.logsumexp(-e, 0)) + math.log(hx * hy)
    density = torch.exp(-e - log_z)
    return gx, gy, e.numpy().reshape(gx.shape), density.numpy().reshape(gx.shape), log_z


def energy_density(
    energy: Callable[[Tensor], Tensor],
    path: str | Path,
    *,
    mixture=None,
    data: Tensor | np.ndarray | None = None,
    limits: tuple[tuple[float, float], tuple[float, float]] | None = None,
    grid: int = 200,
    title: str | None = None,
) -> Path:
    """A 2-D energy model: the learned energy E, its normalised density e^{−E}/Z (Z by quadrature
    on the plot grid, see ``normalised_density``) and, given ``mixture``, the true density.

    The score −∇E does not see Z, the density does: titles give log Z and the total-variation
    distance ½∫|p_θ − p| on the grid.  ``energy``: an ``EnergyScore`` (``.energy`` is used) or E(x).
    Box: ``limits``, else the mixture's (means ± 4 sd), else the data's range.
    """
    fn = energy.energy if hasattr(energy, "energy") else energy
    if limits is None and mixture is None and data is None:
        raise ValueError("energy_density needs limits, a mixture or data to choose its box")
    if limits is None:
        limits = _law_limits(mixture.to(dtype=torch.float64)) if mixture is not None else _limits(_np(data)[:, :2], pad=0.15)  # fmt: skip
    dtype, device = _module_dtype_device(energy)
    gx, gy, e, density, log_z = normalised_density(fn, *limits, grid=grid, dtype=dtype, device=device)  # fmt: skip
    extent = (*limits[0], *limits[1])
    panels = 3 if mixture is not None else 2
    fig = Figure(figsize=(4.4 * panels, 4.2))
    axes = fig.subplots(1, panels)
    shown = e - e.min()
    top = float(np.percentile(shown, 90))  # far corners would swamp the colour scale
    im = axes[0].imshow(shown, origin="lower", extent=extent, cmap="viridis", aspect="auto", vmax=top)  # fmt: skip
    if top > 0:
        axes[0].contour(gx, gy, shown, levels=np.linspace(0, top, 8)[1:], colors="white", linewidths=0.5)  # fmt: skip
    fig.colorbar(im, ax=axes[0], fraction=0.046, pad=0.04)
    axes[0].set_title("learned energy E − min E")
    axes[1].imshow(density, origin="lower", extent=extent, cmap="Blues", aspect="auto")
    axes[1].set_title(f"e^(−E)/Z, log Z = {log_z:.3f}")
    if data is not None:
        d = _np(data)[:2000, :2]
        axes[1].scatter(d[:, 0], d[:, 1], s=1, color=_DATA_COLOR, alpha=0.3, linewidths=0)
    if mixture is not None:
        pts = torch.tensor(np.stack([gx.ravel(), gy.ravel()], 1), dtype=torch.float64)
        true = _np(mixture.to(dtype=torch.float64).log_prob(pts).exp()).reshape(gx.shape)
        cell = (gx[0, 1] - gx[0, 0]) * (gy[1, 0] - gy[0, 0])
        tv = 0.5 * float(np.abs(density - true).sum() * cell)
        axes[2].imshow(true, origin="lower", extent=extent, cmap="Greens", aspect="auto")
        axes[2].set_title(f"true density (TV to e^(−E)/Z: {tv:.3f})")
    for ax in axes:
        ax.set_xticks([]), ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _savefig(fig, path, dpi=100)
