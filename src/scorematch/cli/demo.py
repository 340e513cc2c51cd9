"""``scorematch demo``: train, sample, evaluate against a Gaussian mixture, and plot, in one go."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from ..runs import demo as run_demo
from .options import device_option, shows_bits_per_dim


@click.command()
@click.option(
    "--data",
    default="moons",
    show_default=True,
    help="A built-in data set (e.g. moons, 8gaussians, digits) or a file/folder.",
)
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=Path),
    default=Path("runs/demo"),
    show_default=True,
    help="Run directory; an earlier run there is REPLACED.",
)
@click.option(
    "--steps", type=int, help="Training steps (default: the tuned default for the data kind)."
)
@click.option(
    "--quick",
    is_flag=True,
    help="A much shorter run (a few seconds; a smoke test, not a good model).",
)
@device_option
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def demo(
    data: str, out: Path, steps: int | None, quick: bool, device: str, no_progress: bool
) -> None:
    """Train, sample, evaluate and plot in one go (about 1-2 minutes on 2 CPU cores for moons).

    Trains the default model on --data (vectors: MLP + EDM, 3000 steps; digits and image folders:
    a small U-Net + EDM, 1500 steps), draws samples, compares them with the held-out split, computes the
    held-out NLL with the probability-flow likelihood (exact divergence for vectors) and — for
    vector data — the NLL of
    scikit-learn's GaussianMixture with the number of components chosen by BIC (1-20) on the same
    training split, then writes plots into --out/plots/.  If --out already holds a run, the demo
    overwrites it.  Like every command it runs torch on one CPU thread unless OMP_NUM_THREADS or
    `scorematch --threads N demo` says otherwise (the demo's networks are small: more threads
    cost more than they gain).
    """
    t0, c0 = time.perf_counter(), time.process_time()

    def header(cfg: dict[str, Any]) -> None:  # first, before the progress bars
        click.echo(
            f"scorematch demo — {cfg['data']['spec']}: training {cfg['model']['name']} + "
            f"{cfg['objective']['name']} for {cfg['training']['steps']} steps, then sampling, "
            "the held-out likelihood, "
            + ("a Gaussian-mixture baseline " if cfg["data"].get("kind") == "vector" else "")
            + f"and pictures into {out} …"
        )

    res = run_demo(
        data,
        out,
        steps=steps,
        quick=quick,
        progress=not no_progress,
        device=device,
        announce=header,
    )
    ev, base = res.evaluation, res.baseline
    cfg = res.run.config
    click.echo("")
    click.echo(
        f"scorematch demo — {cfg['data']['spec']} ({cfg['data']['n_train']} train / "
        f"{cfg['data']['n_test']} held-out), {cfg['model']['name']} + "
        f"{cfg['objective']['name']}"
        + (f" on {cfg['process']['name']}" if cfg.get("process") else "")
        + f", {res.run.step} steps"
    )
    nll, m, drawn = ev.likelihood, ev.memorisation, ev.samples
    if nll is not None:
        how = "exact" if nll.divergence == "exact" else "Hutchinson"
        bpd = f"{nll.bits_per_dim:.4f} bits/dim, " if shows_bits_per_dim(res.run) else ""
        click.echo(
            f"  held-out NLL   model {nll.nll:.4f} ± {nll.stderr:.4f} nats/sample, "
            f"{bpd}({how} probability-flow likelihood, {nll.points} points)"
        )
    paired = res.model_minus_baseline()
    if base is not None and paired is not None:
        click.echo(
            f"                 GaussianMixture ({base.components} components by BIC) "
            f"{base.nll:.4f} ± {base.nll_stderr:.4f} nats/sample"
        )
        mean, se = paired
        verdict = res.verdict()
        says = (
            f"the model is {verdict}"
            if verdict != "not significantly different"
            else "not significantly different (under 2 standard errors)"
        )
        click.echo(
            f"                 model − GMM = {mean:+.4f} ± {se:.4f} nats/sample "
            f"(paired std. error): {says}"
        )
    click.echo(
        f"  samples        sliced W2 {drawn.sliced_wasserstein:.4f}, MMD² {drawn.mmd:.2e}, "
        f"energy distance {drawn.energy_distance:.2e} ({drawn.n} samples vs held-out; "
        "MMD² and energy distance are unbiased: ≤ 0 means no measurable difference)"
    )
    if m is not None:
        click.echo(
            f"  memorisation   ratio {m.ratio:.2f} (≈ 1: samples as far from the "
            f"training rows as held-out rows are; ≪ 1: copies), near-copies "
            f"{100 * m.copy_fraction:.1f}% (held-out rows {100 * m.heldout_copy_fraction:.1f}%)"
        )
        if m.warning():
            click.echo(f"  warning: {m.warning()}")
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in res.timings.items() if k != "total")
    click.echo(
        f"  time           {time.perf_counter() - t0:.1f} s wall ({parts}); "
        f"{time.process_time() - c0:.1f} s CPU"
    )
    click.echo(f"  pictures       {', '.join(str(p) for p in res.plots)}")
    click.echo(f"  run            {out} (config.yaml, checkpoints/, metrics.csv, evaluation.json)")
