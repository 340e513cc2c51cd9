"""Sampler grids fitted to a run's model (``scorematch tune``), kept in ``RUN/grids.json``.

:func:`tune_run` fits the grid of the run's deterministic few-step sampler, ``dpm_solver`` with
its defaults (UniPC-2, final x̂₀), at each requested NFE to the run's model
(:func:`scorematch.samplers.tune_grid`: from the same prior draws, match a 200-step solution of
the probability-flow ODE) and stores each grid with the checkpoint step it was fitted to and its
discrepancy to the reference before and after, on the fitting draws and on as many other draws.
:func:`choose_grid` is what :meth:`Run.sample` asks: the stored grid for this sampler, NFE and
checkpoint step, or the sampler's default grid, with one line saying which and why.

``grids.json``::

    {"version": 1, "grids": [{"sampler": "dpm_solver", "nfe": 10, "times": [80.0, …, 0.0],
      "step": 1500, "loss_default": …, "loss": …, "holdout_loss_default": …, "holdout_loss": …,
      "draws": 256, "holdout": 256, "reference_steps": 200, "seed": 0, "evaluations": 360,
      "seconds": 12.3}, …]}

One entry per (sampler, NFE, step): tuning again replaces it; grids of other steps stay (a run's
other checkpoints), and are passed over, with a note, when another checkpoint samples.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from .._checks import check_count, check_positive_int, model_device
from ..processes import NoiseLevels
from ..run_dir import RunDir
from ..samplers.tuning import TunedGrid, tune_grid
from .checks import choice, seed_value


class TunableRun(Protocol):
    """What tuning reads of a :class:`~.run.Run`."""

    model: Any
    process: Any
    step: int
    run_dir: Path | None

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def is_main(self) -> bool: ...

    @property
    def time_conditional(self) -> bool: ...

    @property
    def objective(self) -> str: ...

    @property
    def kind(self) -> str: ...


__all__ = [
    "GRIDS_FILE",
    "GRID_CHOICES",
    "TUNABLE",
    "GridChoice",
    "TunableRun",
    "beats_default",
    "check_tunable",
    "choose_grid",
    "parse_nfe",
    "stored_grids",
    "tune_run",
]

GRIDS_FILE = "grids.json"
GRIDS_VERSION = 1
TUNABLE = ("dpm_solver",)  # samplers whose grid `tune` fits (tune_grid: its default recipe)
# Run.sample's grid=: "auto" — the tuned grid for this sampler, NFE and step when there is one;
# "tuned" — that grid or an error; "default" — the sampler's default grid.
GRID_CHOICES = ("auto", "tuned", "default")
REFERENCE_STEPS = 200  # steps of the reference solution (tune_grid's default)
# Prior draws and sampler runs per free time, by data kind: an image model's call costs hundreds
# of times a small MLP's, and most of the gain comes in the first 5–10 runs per free time
# (benchmarks/results/samplers.md, "tuned grids on trained models").
DRAWS = {"vector": 256, "image": 64}
EVALUATIONS_PER_TIME = {"vector": 40, "image": 10}


@dataclass(frozen=True)
class GridChoice:
    """The grid a run samples on: ``times`` (explicit, ending in 0) or None for the sampler's
    default grid, ``tuned`` whether it is a stored tuned grid, and ``line``, one line for the
    user saying which grid and why (None when there is nothing to say)."""

    times: Tensor | None
    tuned: bool
    line: str | None


def parse_nfe(text: str | Iterable[int]) -> tuple[int, ...]:
    """``"5,10,20"`` (or integers) as sorted distinct NFEs, each at least 3; a one-line
    ``ValueError`` for anything else."""
    if isinstance(text, str):
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if not parts or not all(p.isdigit() for p in parts):
            raise ValueError(
                f"--nfe takes comma-separated whole numbers of model calls, e.g. 5,10,20; got {text!r}"
            )
        values = [int(p) for p in parts]
    else:
        values = [check_positive_int(v, "nfe") for v in text]
    small = [v for v in values if v < 3]
    if small or not values:
        raise ValueError(
            f"each NFE must be at least 3 (two steps and the final x̂₀ call), got {small or values}"
        )
    return tuple(sorted(set(values)))


def stored_grids(run_dir) -> list[dict[str, Any]]:
    """The entries of ``RUN/grids.json`` (empty when there is none)."""
    data = RunDir(run_dir).read_json(GRIDS_FILE)
    if data is None:
        return []
    grids = data.get("grids")
    if not isinstance(grids, list) or not all(isinstance(g, dict) for g in grids):
        raise ValueError(f"{RunDir(run_dir).file(GRIDS_FILE)}: expected a list of grids")
    return grids


def check_tunable(run: TunableRun) -> None:
    """A one-line ``ValueError`` unless the run's model is a score of every noise level."""
    if not run.time_conditional or isinstance(run.process, NoiseLevels):
        raise ValueError(
            f"tuning a sampler grid needs a model of every noise level (objective diffusion or "
            f"edm); this run was trained with {run.objective!r}, which "
            + (
                "learns one score s(x) and samples with annealed Langevin"
                if not run.time_conditional
                else "learns its few noise levels only"
            )
        )


def tune_run(
    run: TunableRun,
    nfes: str | Iterable[int],
    *,
    draws: int | None = None,
    holdout: int | None = None,
    seed: int = 0,
    max_evaluations: int | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Fit ``dpm_solver``'s grid to the run's model at each NFE of ``nfes`` and store the grids
    in ``RUN/grids.json`` (replacing those of the same sampler, NFE and step).

    Each fit uses ``draws`` prior draws (default ``DRAWS`` of the run's kind: 256 for vectors,
    64 for images) and measures the discrepancy on ``holdout`` other ones (default: as many),
    all from ``seed``; ``max_evaluations`` bounds the sampler runs per NFE (default
    ``EVALUATIONS_PER_TIME`` of the kind, 40 or 10, per free time: NFE − 1).  Returns the new
    entries.
    """
    check_tunable(run)
    nfes = parse_nfe(nfes)
    kind = run.kind if run.kind in DRAWS else "vector"
    draws = check_positive_int(DRAWS[kind] if draws is None else draws, "draws")
    holdout = draws if holdout is None else check_count(holdout, "holdout")
    seed = seed_value(seed)
    device = model_device(run.model)[0]
    run.model.eval()
    entries = []
    for nfe in nfes:
        start = time.perf_counter()
        tuned = tune_grid(
            run.model,
            run.process,
            (1, *run.shape),
            nfe,
            n=draws,
            holdout=holdout,
            reference_steps=REFERENCE_STEPS,
            max_evaluations=(
                EVALUATIONS_PER_TIME[kind] * (nfe - 1)
                if max_evaluations is None
                else max_evaluations
            ),
            generator=torch.Generator(device=device).manual_seed(seed),
            progress=progress and run.is_main,
        )
        entries.append(
            {
                **tuned.to_dict(),
                "step": run.step,
                "draws": draws,
                "holdout": holdout,
                "reference_steps": REFERENCE_STEPS,
                "seed": seed,
                "evaluations": tuned.evaluations,
                "seconds": round(time.perf_counter() - start, 3),
            }
        )
    if run.is_main and run.run_dir is not None:
        new = {_key(e) for e in entries}
        kept = [g for g in stored_grids(run.run_dir) if _key(g) not in new]
        grids = sorted(
            kept + entries, key=lambda g: (str(g["sampler"]), int(g["step"]), int(g["nfe"]))
        )
        RunDir(run.run_dir).write_json(GRIDS_FILE, {"version": GRIDS_VERSION, "grids": grids})
    return entries


def _key(entry: dict[str, Any]) -> tuple[str, int, int]:
    return str(entry.get("sampler")), int(entry.get("nfe", -1)), int(entry.get("step", -1))


def choose_grid(run: TunableRun, sampler: str, steps: int, mode: str = "auto") -> GridChoice:
    """The grid ``run`` samples with ``sampler`` at ``steps`` intervals: with ``mode`` "auto" the
    stored tuned grid for this sampler, NFE (``steps`` + 1: the final x̂₀ call) and the run's
    checkpoint step when ``grids.json`` has one and it beat the default grid on the draws it was
    not fitted on, else the default grid; "tuned" the stored grid or an error when there is
    none; "default" always the default grid."""
    mode = choice(mode, "grid", GRID_CHOICES)
    if mode == "default" or run.run_dir is None:
        if mode == "tuned":
            raise ValueError("grid='tuned' needs a run directory holding grids.json")
        return GridChoice(None, False, None)
    grids = stored_grids(run.run_dir)
    where = RunDir(run.run_dir).file(GRIDS_FILE)
    if sampler not in TUNABLE:
        if mode == "tuned":
            raise ValueError(
                f"tuned grids are for {', '.join(TUNABLE)} (`scorematch tune` fits its grid), "
                f"not {sampler!r}"
            )
        return GridChoice(None, False, None)
    nfe = steps + 1
    same = [g for g in grids if g.get("sampler") == sampler and int(g.get("nfe", -1)) == nfe]
    mine = [g for g in same if int(g.get("step", -1)) == run.step]
    if mine:
        tuned = TunedGrid.from_dict(mine[0])
        before, after = _discrepancies(mine[0])
        if mode == "auto" and not beats_default(mine[0]):  # the fit did not carry to other draws
            line = (
                f"note: the grid tuned at {nfe} NFE ({where.name}) was no closer to the reference "
                f"than the default on draws it was not fitted on ({after:.3g} against "
                f"{before:.3g}); using the default grid (--grid tuned to use it anyway)"
            )
            return GridChoice(None, False, line)
        gain = f": discrepancy {before:.3g} → {after:.3g}" if math.isfinite(after) else ""
        line = (
            f"grid: tuned for this model at {nfe} NFE by `scorematch tune` ({where.name}{gain}); "
            "--grid default for the default grid"
        )
        return GridChoice(tuned.times, True, line)
    if mode == "tuned":
        raise ValueError(
            f"{where} has no tuned grid for {sampler} at {nfe} NFE and step {run.step}; run "
            f"`scorematch tune {run.run_dir} --nfe {nfe}` first"
        )
    if same:
        other = sorted({int(g["step"]) for g in same})
        line = (
            f"note: {where.name} has a tuned grid for {sampler} at {nfe} NFE fitted to step "
            f"{', '.join(map(str, other))}, not to this model (step {run.step}); using the "
            "default grid (`scorematch tune` fits one to this checkpoint)"
        )
        return GridChoice(None, False, line)
    return GridChoice(None, False, None)


def beats_default(entry: dict[str, Any]) -> bool:
    """Whether a stored grid was closer to the reference than the default grid, on the held-out
    draws when it was measured there (else on the fitting draws): what "auto" asks of it."""
    before, after = _discrepancies(entry)
    return after < before


def _discrepancies(entry: dict[str, Any]) -> tuple[float, float]:
    """(default, tuned) discrepancy of an entry: on the held-out draws when measured there."""
    if entry.get("holdout_loss") is not None:
        return float(entry["holdout_loss_default"]), float(entry["holdout_loss"])
    return float(entry.get("loss_default", math.nan)), float(entry.get("loss", math.nan))
