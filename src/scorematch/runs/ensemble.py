"""Ensemble runs: a run directory whose model is a weighted average of other runs'
score models, ŝ = Σⱼ wⱼ sⱼ (``sm.ScoreEnsemble``), with the weights that minimise held-out implicit
score matching on the members' common validation rows.

The members must have been trained on the same data, split and standardisation (the average is
taken in standardised space) and must not have trained on those validation rows (a refitted
table did: train the members with ``--no-refit``).  Time-conditional members are averaged at every
t and their weights fitted at the process's t_min (the scores of the nearly clean data);
unconditional members (``dsm``, ``ssm``… at different ``--sigma``) are sampled by Langevin at the
smallest member level.  The ensemble run holds only ``config.yaml``, with an ``ensemble`` section
naming the members and their weights; ``load_run`` (``runs.loading``) rebuilds it from the members'
directories.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..ensemble import CONSTRAINTS, ScoreEnsemble, solve_weights
from ..run_dir import RunDir
from .run import Run

__all__ = ["build_ensemble", "langevin_level"]

# What members must share: the data and split (so the same rows validate) and the standardisation.
SHARED_DATA = (
    "spec",
    "n",
    "seed",
    "image_size",
    "test_fraction",
    "split_seed",
    "val_fraction",
    "val_seed",
    "shape",
)


def _check_members(runs: Sequence[Run]) -> None:
    first = runs[0]
    for run in runs[1:]:
        for key in SHARED_DATA:
            if run.config["data"].get(key) != first.config["data"].get(key):
                raise ValueError(
                    f"{run.run_dir} and {first.run_dir} were trained on different data "
                    f"(data.{key}: {run.config['data'].get(key)!r} vs "
                    f"{first.config['data'].get(key)!r}); an ensemble needs the same data and split"
                )
        if run.config["standardizer"] != first.config["standardizer"]:
            raise ValueError(
                f"{run.run_dir} and {first.run_dir} standardise the data differently; an ensemble "
                "averages scores in one standardised space"
            )
        if run.time_conditional != first.time_conditional or (
            run.time_conditional and run.config["process"] != first.config["process"]
        ):
            raise ValueError(
                f"{run.run_dir} and {first.run_dir} learned different kinds of score (process or "
                "objective family differ): average time-conditional runs of one process, or "
                "unconditional runs"
            )
    for run in runs:
        if not run.config["data"].get("n_val"):
            raise ValueError(
                f"{run.run_dir} has no validation rows to fit the weights on "
                "(train it with --val-fraction > 0)"
            )
        if (run.selection or {}).get("refit"):
            raise ValueError(
                f"{run.run_dir} was trained again on its validation rows (refit); "
                "train the members with --no-refit"
            )


def langevin_level(run: Run) -> float:
    """The noise level an unconditional run samples at (0 for time-conditional runs): an
    ensemble of unconditional runs samples at the smallest of its members'."""
    return float(run.config["sampling"].get("level", 0.0))


def build_ensemble(
    members: Sequence[Run],
    out_dir: str | Path,
    *,
    constraint: str = "affine",
    divergence: str = "exact",
    seed: int = 0,
) -> dict[str, Any]:
    """Fit the weights on the members' common validation rows and write the ensemble run into
    ``out_dir`` (new or empty).  Returns its ``ensemble`` config section."""
    if len(members) < 2:
        raise ValueError("an ensemble needs at least two runs")
    if constraint not in CONSTRAINTS:
        raise ValueError(f"constraint must be one of {CONSTRAINTS}, got {constraint!r}")
    _check_members(members)
    out = RunDir(out_dir)
    if out.path.exists() and (not out.path.is_dir() or any(out.path.iterdir())):
        raise ValueError(f"--out {out.path} is not a new or empty directory")
    first = members[0]
    z_val = first.standardised(first.data.val).double()
    models = [copy.deepcopy(run.model).double() for run in members]
    t = float(first.process.t_min) if first.time_conditional else None
    gram, lin = ScoreEnsemble.ism_quadratic(
        models, z_val, t=t, divergence=divergence, generator=torch.Generator().manual_seed(seed)
    )
    weights = solve_weights(gram, lin, constraint)
    alone = [float(0.5 * gram[j, j] + lin[j]) for j in range(len(models))]
    base = min(members, key=langevin_level) if not first.time_conditional else first
    section = {
        "members": [str(Path(run.run_dir).resolve()) for run in members],
        "steps": [run.step for run in members],
        "weights": [float(w) for w in weights],
        "constraint": constraint,
        "validation_ism": float(0.5 * weights @ gram @ weights + weights @ lin),
        "member_validation_ism": alone,
        "validation_rows": int(z_val.shape[0]),
        "fitted_at_t": t,
    }
    config = copy.deepcopy(dict(base.config))
    config["ensemble"] = section
    with out.lock(config=config):  # a new folder appears with its config.yaml, in one rename
        if not out.is_run():  # an empty folder that existed: the config is written in place
            out.write_config(config)
    return section
