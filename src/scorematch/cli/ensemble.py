"""``scorematch ensemble``: a run whose model is the weighted average of other runs' score models."""

from __future__ import annotations

from pathlib import Path

import click

from ..ensemble import CONSTRAINTS
from ..run_dir import RunDir
from ..runs import load_run
from ..runs.ensemble import build_ensemble


@click.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(path_type=Path),
    help="The ensemble run directory to create.",
)
@click.option(
    "--constraint",
    type=click.Choice(CONSTRAINTS),
    default="affine",
    show_default=True,
    help="Weights summing to 1 (affine: may be negative, an extrapolation) or on the simplex "
    "(w ≥ 0: a convex average).",
)
@click.option(
    "--hutchinson", is_flag=True, help="Hutchinson's trace estimate instead of the exact one."
)
def ensemble(runs: tuple[Path, ...], out: Path, constraint: str, hutchinson: bool) -> None:
    """Average the score models of RUNS (trained on the same data) into the run --out.

    The weights minimise implicit score matching on the members' common validation rows, a
    quadratic ½wᵀGw + wᵀb in the weights (``sm.ScoreEnsemble.fit``), so they need no true score;
    it estimates the Fisher divergence to the data's score up to a constant.  The members must
    not have trained on those rows (train them with --no-refit).  `sample`, `evaluate`,
    `likelihood` and `plot` then work on --out like on any run.
    """
    members = [load_run(path) for path in runs]
    section = build_ensemble(
        members, out, constraint=constraint, divergence="hutchinson" if hutchinson else "exact"
    )
    click.echo(
        f"ensemble of {len(runs)} runs, {constraint} weights fitted on "
        f"{section['validation_rows']} validation rows (held-out ISM, lower is better):"
    )
    for path, weight, ism in zip(runs, section["weights"], section["member_validation_ism"]):
        click.echo(f"  {weight:+.4f}  {path}  (alone: {ism:.4g})")
    click.echo(f"ensemble: {section['validation_ism']:.4g}; wrote {RunDir(out).config_path}")
