"""Likelihood benchmark: probability-flow ODE accuracy per model evaluation, against exact densities.

Run by hand (a few minutes on one CPU core):

    .venv/bin/python benchmarks/likelihood.py            # writes benchmarks/results/likelihood.md

A 2-D mixture of 5 anisotropic Gaussians is driven by its exact score under VP (β 0.1 … 20,
t ∈ [1e-5, 1]); 1000 samples.  The reference is the exact log-density of the mixture noised at
t_min = 1e-5 (the flow transports p_{t_min}, not p_0).  Two errors are reported per setting:
"total" uses the N(0, I) prior for x_T, as a user would; "ODE" replaces it with the exact
log p_{t_max}, leaving the solver error alone.  NFE counts ODE right-hand-side evaluations, each one
batched model forward pass (the exact divergence reuses it through torch.func.vjp).

(1) the score-SDE recipe: scipy.integrate.solve_ivp RK45, rtol = atol = 1e-5, in t, exact trace;
(2) scorematch.log_likelihood over solvers, tolerances and integration variables (t or the angle
    φ = arctan(σ/α)); the same comparison for VE and EDM and for a 16-D mixture;
(3) Hutchinson estimates with 1, 4, 16 Rademacher probes against the exact trace.
"""

from __future__ import annotations

import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.integrate import solve_ivp
from torch.func import vjp, vmap

import scorematch as sm
from scorematch.likelihood import log_likelihood

F64 = torch.float64
N_SAMPLES = 1000
OUT = Path(__file__).resolve().parent / "results" / "likelihood.md"


def mixture_2d() -> sm.GaussianMixture:
    """5 rotated, strongly anisotropic components (std ratios up to 10:1), unequal weights."""
    means = torch.tensor(
        [[-2.0, 0.0], [2.0, 1.5], [0.5, -2.0], [-1.0, 2.5], [2.5, -1.0]], dtype=F64
    )
    angles = torch.tensor([0.3, -0.8, 1.2, 0.0, 2.0], dtype=F64)
    stds = torch.tensor([[0.6, 0.08], [0.4, 0.15], [0.5, 0.05], [0.3, 0.3], [0.7, 0.1]], dtype=F64)
    c, s = angles.cos(), angles.sin()
    rot = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
    covs = rot @ torch.diag_embed(stds**2) @ rot.transpose(-1, -2)
    return sm.GaussianMixture(means, covs, torch.tensor([0.3, 0.2, 0.2, 0.15, 0.15], dtype=F64))


def mixture_16d() -> sm.GaussianMixture:
    """5 components in 16-D with random orientations and stds log-uniform in [0.05, 0.7]."""
    g = torch.Generator().manual_seed(16)
    d, k = 16, 5
    means = 1.5 * torch.randn(k, d, generator=g, dtype=F64)
    q, _ = torch.linalg.qr(torch.randn(k, d, d, generator=g, dtype=F64))
    stds = torch.exp(
        torch.empty(k, d, dtype=F64).uniform_(math.log(0.05), math.log(0.7), generator=g)
    )
    covs = q @ torch.diag_embed(stds**2) @ q.transpose(-1, -2)
    return sm.GaussianMixture(means, covs)


def score_sde_recipe(model, process, x, rtol=1e-5, atol=1e-5):
    """Song et al.'s likelihood.py: solve_ivp RK45 in t on the flattened (x, Δlogp), exact trace."""
    b, d = x.shape
    eye = torch.eye(d, dtype=x.dtype)[:, None, :].expand(d, b, d)

    def rhs(t, y):
        xx = torch.from_numpy(y[: b * d].reshape(b, d))
        tt = torch.full((b,), t, dtype=x.dtype)
        f, g2 = process.log_alpha_rate(tt)[:, None], process.diffusion(tt)[:, None] ** 2
        with torch.no_grad():
            v, pullback = vjp(lambda z: f * z - 0.5 * g2 * model(z, tt), xx)
            div = torch.einsum("ibi->b", vmap(pullback)(eye)[0])
        return np.concatenate([v.numpy().ravel(), div.numpy()])

    y0 = np.concatenate([x.numpy().ravel(), np.zeros(b)])
    sol = solve_ivp(rhs, (process.t_min, process.t_max), y0, method="RK45", rtol=rtol, atol=atol)
    x_end = torch.from_numpy(sol.y[: b * d, -1].reshape(b, d))
    delta = torch.from_numpy(sol.y[b * d :, -1])
    return process.prior_log_prob(x_end) + delta, x_end, sol.nfev


def measure(name, run, model, process, ref):
    """Time one solve and return a result row with total and ODE-only errors."""
    start = time.perf_counter()
    log_prob, x_end, nfe = run()
    seconds = time.perf_counter() - start
    exact_end = model.log_prob(x_end, process.t_max)
    ode = log_prob - process.prior_log_prob(x_end) + exact_end
    total_err, ode_err = (log_prob - ref).abs(), (ode - ref).abs()
    return dict(
        name=name,
        nfe=nfe,
        total=total_err.mean().item(),
        ode=ode_err.mean().item(),
        median=ode_err.median().item(),
        max=ode_err.max().item(),
        seconds=seconds,
    )


def ours(model, process, x, **kw):
    def run():
        out = log_likelihood(model, process, x, return_latent=True, **kw)
        return out.log_prob, out.latent, out.nfe

    return run


def fmt_row(r):
    return (
        f"| {r['name']} | {r['nfe']} | {r['total']:.2e} | {r['ode']:.2e} | {r['median']:.1e} "
        f"| {r['max']:.1e} | {r['seconds']:.1f} |"
    )


HEADER = (
    "| setting | NFE | mean abs err, total (nats) | mean abs err, ODE only | median (ODE) | max (ODE) | seconds |\n"
    "|---|---:|---:|---:|---:|---:|---:|"
)


def solver_sweep(lines, title, mixture, process, x, configs, log):
    model = mixture.score_model(process)
    ref = model.log_prob(x, process.t_min)
    rows = [
        measure(
            "score-SDE recipe: scipy RK45, t, tol 1e-5",
            lambda: score_sde_recipe(model, process, x),
            model,
            process,
            ref,
        )
    ]
    log(fmt_row(rows[0]))
    for time_var, solver, tol in configs:
        name = f"ours: {solver}, {time_var}, tol {tol:.0e}"
        r = measure(
            name,
            ours(model, process, x, time=time_var, solver=solver, rtol=tol, atol=tol),
            model,
            process,
            ref,
        )
        rows.append(r)
        log(fmt_row(r))
    lines += [f"### {title}", "", HEADER, *map(fmt_row, rows), ""]
    return rows


def cheapest(rows, ok):
    good = [r for r in rows[1:] if ok(r)]
    if not good:
        return "none in the sweep"
    r = min(good, key=lambda r: r["nfe"])
    return f"{r['nfe']} ({r['nfe'] / rows[0]['nfe']:.2f}×): {r['name'].removeprefix('ours: ')}"


def summary(problems: dict) -> list[str]:
    """Cheapest of our settings under three accuracy criteria, relative to the recipe's NFE."""
    out = [
        "### Summary: NFE of our cheapest setting (ratio to the recipe) for a given accuracy",
        "",
        "| problem | recipe NFE | recipe err total / ODE | default (dopri5, angle, 1e-5) | "
        "ODE err ≤ 1.5× recipe's | total err ≤ 1.05× recipe's | ODE err ≤ 0.003 |",
        "|---|---:|---|---|---|---|---|",
    ]
    for name, rows in problems.items():
        rec = rows[0]
        default = next(r for r in rows if r["name"] == "ours: dopri5, angle, tol 1e-05")
        out.append(
            f"| {name} | {rec['nfe']} | {rec['total']:.1e} / {rec['ode']:.1e} | "
            f"{default['nfe']} ({default['nfe'] / rec['nfe']:.2f}×), ODE {default['ode']:.1e} | "
            f"{cheapest(rows, lambda r, rec=rec: r['ode'] <= 1.5 * rec['ode'])} | "
            f"{cheapest(rows, lambda r, rec=rec: r['total'] <= 1.05 * rec['total'])} | "
            f"{cheapest(rows, lambda r: r['ode'] <= 3e-3)} |"
        )
    vp = problems["2-D, VP"][0]
    out += [
        "",
        "Findings:",
        "",
        f"- The recipe (rtol = atol = 1e-5) costs {vp['nfe']} NFE on the 2-D VP problem for a solver error of "
        f"{vp['ode']:.1e} nats/sample; its total error {vp['total']:.1e} is almost all prior mismatch "
        "log p_T − log N(0, I), which no solver setting removes. A looser tolerance is what halves "
        "the NFE: 0.003 nats of solver error costs about 50–65 NFE.",
        "- At equal accuracy the angle variable φ = arctan(σ/α) on x/√(α²+σ²) saves 15 % (VP) to "
        "35–40 % (VE, EDM, whose own clocks are log σ and σ) of the evaluations in 2-D; on the 16-D "
        "problem (data std ≈ 1.3) it costs ~15 % more than t. It is the default of `log_likelihood`. "
        "The recipe's own accuracy (at its tol 1e-5) at ≤ half its NFE is **not** reached by any "
        "solver, tolerance or integration variable tried (here and in exploration: t, λ, σ̂, σ̂^(1/7), asinh σ̂, the "
        "angle; dopri5, dopri8, bosh3, LSODA; per-sample error norms); 0.003 nats is, see the "
        "equal-accuracy section below.",
        "- Why: the mean error is set by ~1 % of tail samples whose paths cross between modes at "
        "small noise, where the divergence has sharp dips (with dopri5 the median error is 10–20× below the mean). "
        "One step size serves the whole batch, so those samples decide the NFE in any variable.",
        "",
    ]
    return out


def equal_accuracy(mixture, process, x, log) -> list[str]:
    """The recipe at looser tolerances too: NFE against error for both, on the 2-D VP problem."""
    model = mixture.score_model(process)
    ref = model.log_prob(x, process.t_min)
    recipe, mine = [], []
    for tol in (1e-5, 1e-4, 5e-4, 1e-3, 2e-3):
        recipe.append(
            measure(
                f"score-SDE recipe: scipy RK45, t, tol {tol:.0e}",
                lambda tol=tol: score_sde_recipe(model, process, x, tol, tol),
                model,
                process,
                ref,
            )
        )
        log(fmt_row(recipe[-1]))
    for solver, time_var, tol in (
        ("dopri5", "angle", 1e-3),
        ("dopri5", "angle", 7e-4),
        ("bosh3", "angle", 3e-3),
        ("bosh3", "t", 3e-3),
        ("bosh3", "angle", 2e-3),
    ):
        mine.append(
            measure(
                f"ours: {solver}, {time_var}, tol {tol:.0e}",
                ours(model, process, x, solver=solver, time=time_var, rtol=tol, atol=tol),
                model,
                process,
                ref,
            )
        )
        log(fmt_row(mine[-1]))

    def cheapest_within(rows, limit=3e-3):
        good = [r for r in rows if r["total"] <= limit]
        return min(good, key=lambda r: r["nfe"]) if good else None

    r_best, o_best = cheapest_within(recipe), cheapest_within(mine)
    base = recipe[0]["nfe"]
    verdict = []
    if o_best is not None:
        verdict.append(
            f"Total error ≤ 0.003 nats: ours from {o_best['nfe']} NFE "
            f"({o_best['name'].removeprefix('ours: ')}; {o_best['nfe'] / base:.2f}× the recipe's "
            f"{base} NFE at its tol 1e-5)"
        )
    if r_best is not None:
        verdict.append(
            f"the recipe itself, loosened, from {r_best['nfe']} NFE "
            f"({r_best['name'].removeprefix('score-SDE recipe: ')})"
        )
    ratio = (
        f"; at equal accuracy ours takes {o_best['nfe'] / r_best['nfe']:.2f}× the recipe's NFE"
        if o_best is not None and r_best is not None
        else ""
    )
    return [
        "### Equal accuracy: the recipe at looser tolerances too (2-D, VP)",
        "",
        HEADER,
        *map(fmt_row, recipe + mine),
        "",
        "; ".join(verdict) + ratio + ". The issue's reference point (≈ 110 NFE for 0.003 nats) is "
        f"the recipe at tol 1e-5, which on this mixture errs by {recipe[0]['total']:.1e} nats, "
        f"{3e-3 / recipe[0]['total']:.1f}× less than 0.003; 0.003 nats itself comes from loosening "
        "the tolerance, for the recipe as for ours.",
        "",
    ]


def main() -> None:
    torch.set_num_threads(1)  # stable timings on a shared machine; all ratios are one-core ratios
    lines: list[str] = []

    def log(msg):
        print(msg, flush=True)

    t_start = time.perf_counter()
    mix = mixture_2d()
    x = mix.sample(N_SAMPLES, generator=torch.Generator().manual_seed(0))
    vp = sm.VP(beta_min=0.1, beta_max=20.0, t_min=1e-5)
    clean_gap = (mix.score_model(vp).log_prob(x, vp.t_min) - mix.log_prob(x)).abs().mean().item()

    lines += [
        "# Likelihood benchmark (probability-flow ODE, exact mixture score)",
        "",
        f"Produced by `benchmarks/likelihood.py` ({platform.machine()}, torch {torch.__version__}, "
        f"1 CPU thread, float64). {N_SAMPLES} samples of a 5-component anisotropic 2-D mixture; "
        "reference = exact log-density of the mixture noised at t_min "
        f"(mean |log p_(t_min) − log p_0| = {clean_gap:.1e} nats for VP). "
        "*Total* error uses the process prior for x_T (what a user gets); *ODE only* replaces it with "
        "the exact log p_(t_max), isolating the solver. NFE = ODE right-hand-side evaluations = batched "
        "model forward passes (dopri5: 6 per step + 2 to start).",
        "",
    ]

    # (1) + (2) VP: recipe against a sweep of our settings.
    configs = [
        (tv, solver, tol)
        for tv in ("t", "angle")
        for solver, tols in (
            ("dopri5", (1e-3, 1e-4, 1e-5)),
            ("bosh3", (1e-3, 1e-4)),
            ("dopri8", (1e-3, 1e-4)),
        )
        for tol in tols
    ]
    problems = {
        "2-D, VP": solver_sweep(lines, "VP (β 0.1…20), t ∈ [1e-5, 1]", mix, vp, x, configs, log)
    }
    cfg = [(tv, "dopri5", tol) for tv in ("t", "angle") for tol in (1e-4, 1e-5)]
    for title, process in (("VE (σ 0.01…50)", sm.VE()), ("EDM (σ 0.002…80)", sm.EDM())):
        problems[f"2-D, {title.split()[0]}"] = solver_sweep(lines, title, mix, process, x, cfg, log)
    mix16 = mixture_16d()
    x16 = mix16.sample(N_SAMPLES, generator=torch.Generator().manual_seed(1))
    problems["16-D, VP"] = solver_sweep(
        lines, "16-D mixture (5 components), VP", mix16, vp, x16, cfg, log
    )
    lines += summary(problems)
    lines += equal_accuracy(mix, vp, x, log)

    # (3) Hutchinson against the exact trace (default solver settings).
    lines += [
        "### Hutchinson trace estimator (Rademacher probes drawn once per call), VP, dopri5, angle, tol 1e-5",
        "",
        "Error = Hutchinson log p − exact-trace log p (same solver settings), per sample.",
        "",
        "| data | divergence | NFE | mean abs err (nats) | std of err | seconds | s / NFE vs exact |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for label, mixture, xs in (("2-D", mix, x), ("16-D", mix16, x16)):
        model = mixture.score_model(vp)
        start = time.perf_counter()
        exact = log_likelihood(model, vp, xs)
        t_exact = time.perf_counter() - start
        per_nfe = t_exact / exact.nfe
        lines.append(f"| {label} | exact trace | {exact.nfe} | 0 | 0 | {t_exact:.1f} | 1.00 |")
        log(lines[-1])
        for probes in (1, 4, 16):
            start = time.perf_counter()
            h = log_likelihood(
                model,
                vp,
                xs,
                divergence="hutchinson",
                probes=probes,
                generator=torch.Generator().manual_seed(probes),
            )
            sec = time.perf_counter() - start
            err = h.log_prob - exact.log_prob
            lines.append(
                f"| {label} | Hutchinson, {probes} probe{'s' if probes > 1 else ''} | {h.nfe} | "
                f"{err.abs().mean():.3f} | {err.std():.3f} | {sec:.1f} | {sec / h.nfe / per_nfe:.2f} |"
            )
            log(lines[-1])
    lines += [
        "",
        "The Hutchinson error is noise of mean zero (its std shrinks as 1/√probes); it averages out "
        "over a test set but not per sample. In 2-D the exact trace costs two vmapped backward passes "
        "and is the better choice; its cost grows with D (one backward pass per dimension, batched).",
        "",
        f"Total benchmark time: {time.perf_counter() - t_start:.0f} s.",
        "",
    ]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines), encoding="utf-8")
    os.replace(tmp, OUT)
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
