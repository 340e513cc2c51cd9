"""Model selection for a run on its validation rows: the validation figure the ``Trainer``
watches, the choice of the likelihood's bandwidth t_min, and the record of both choices,
``RUN/selection.json`` (a ``RunDir`` record), which ``load_run`` and a resumed ``train`` read back.

The validation figure is the training objective on the validation rows at fixed noise draws:
every evaluation draws the same noise (a generator seeded once), so two validations differ only
by the model, and overfitting — a model that fits the training rows' own blurred points — shows
as a rising figure.  t_min is the noise level the probability-flow density is read at: p_{t_min}
is the model's density blurred by the forward process up to t_min, a bandwidth.  On a few hundred
rows the smallest t_min puts a sharp peak on every training row; the value that maximises the
validation log-likelihood is the honest one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._checks import model_device
from ..run_dir import SELECTION_FILE, RunDir
from ..training.validation import ValidateFn

__all__ = [
    "T_MIN_CANDIDATES",
    "choose_t_min",
    "read_selection",
    "t_min_candidates",
    "validation_loss",
    "write_selection",
]

# Bandwidths tried, as scaled noise levels σ/α in standardised units (data std 1): the process's
# own t_min, then 0.005 … 0.4.
T_MIN_CANDIDATES = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4)
MAX_VALIDATION_ROWS = 4096  # rows × noise repeats per validation
MAX_T_MIN_ROWS = 1000


def validation_loss(
    loss_fn: Callable[[nn.Module, Tensor, torch.Generator], Tensor],
    z_val: Tensor,
    *,
    seed: int,
    batch_size: int,
    time_conditional: bool,
) -> ValidateFn:
    """``fn(model, step)``: the objective's mean on the (standardised) validation rows, each row
    repeated with fresh noise up to ``MAX_VALIDATION_ROWS`` evaluations (at most 16 repeats), the
    same draws at every call."""
    repeats = int(min(16, max(1, MAX_VALIDATION_ROWS // z_val.shape[0])))
    rows = z_val.repeat(repeats, *([1] * (z_val.ndim - 1)))

    def figure(model: nn.Module, step: int) -> float:
        device = model_device(model)[0]
        generator = torch.Generator(device=device).manual_seed(int(seed))
        total = 0.0
        # Objectives that differentiate the score (ISM, SSM, energy models) need autograd.
        with torch.no_grad() if time_conditional else torch.enable_grad():
            for chunk in rows.split(batch_size):
                loss = loss_fn(model, chunk.to(device), generator)
                total += float(loss.detach()) * chunk.shape[0]
        return total / rows.shape[0]

    return figure


def t_min_candidates(process) -> list[float]:
    """The process's own t_min and the times whose scaled noise level σ/α is each of
    ``T_MIN_CANDIDATES`` inside the process's range (ascending)."""
    lo = float(process.sigma_hat(torch.tensor(process.t_min, dtype=torch.float64)))
    hi = float(process.sigma_hat(torch.tensor(process.t_max, dtype=torch.float64)))
    times = [float(process.t_min)]
    for s in T_MIN_CANDIDATES:
        if lo < s < hi:
            lam = torch.tensor(-2.0 * math.log(s), dtype=torch.float64)
            times.append(float(process.t_of_log_snr(lam)))
    return sorted(set(times))


def choose_t_min(
    run, x_val: Tensor, *, rtol: float = 1e-3, seed: int = 0, progress: bool = False
) -> dict[str, Any]:
    """The t_min (process clock) with the lowest mean validation NLL among ``t_min_candidates``,
    on at most ``MAX_T_MIN_ROWS`` validation rows (data units), with every candidate's NLL.
    ``progress``: a bar over the candidates (each one a probability-flow ODE over the rows)."""
    x = x_val[:MAX_T_MIN_ROWS]
    table = []
    candidates = t_min_candidates(run.process)
    bar = tqdm(
        candidates,
        desc=f"choosing t_min on {x.shape[0]} validation rows",
        unit="value",
        disable=not (progress and run.is_main),
    )
    for t in bar:
        lp, _ = run.log_likelihood(
            x, t_min=t, rtol=rtol, seed=seed, divergence=run.default_divergence
        )
        nll = float(-lp.mean())
        table.append([t, nll if math.isfinite(nll) else None])
        bar.set_postfix_str(f"t_min {t:.3g}: NLL {nll:.4g}")
    finite = [row for row in table if row[1] is not None]
    if not finite:
        raise ValueError("the validation log-likelihood is not finite at any t_min")
    best = min(finite, key=lambda row: row[1])
    return {
        "value": best[0],
        "validation_nll": best[1],
        "rows": int(x.shape[0]),
        "candidates": table,
    }


def read_selection(run_dir: str | Path) -> dict[str, Any] | None:
    """``RUN/selection.json`` as a dict, or None when the run made no selection."""
    return RunDir(run_dir).read_json(SELECTION_FILE)


def write_selection(run_dir: str | Path, selection: dict[str, Any]) -> Path:
    """Write (atomically) the run's selection record."""
    return RunDir(run_dir).write_json(SELECTION_FILE, selection)
