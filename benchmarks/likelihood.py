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
    return rows, ref


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
    rows, _ = solver_sweep(lines, "VP (β 0.1…20), t ∈ [1e-5, 1]", mix, vp, x, configs, log)
    recipe = rows[0]
    default = next(r for r in rows if r["name"] == "ours: dopri5, angle, tol 1e-05")
    same_total = [r for r in rows[1:] if r["total"] <= 1.05 * recipe["total"]]
    best_total = min(same_total, key=lambda r: r["nfe"]) if same_total else None
    within_3e3 = [r for r in rows[1:] if r["ode"] <= 3e-3]
    best_3e3 = min(within_3e3, key=lambda r: r["nfe"]) if within_3e3 else None
    prior_share = recipe["total"] - recipe["ode"]
    lines += [
        "Findings (VP):",
        "",
        f"- The recipe costs {recipe['nfe']} NFE for a total error of {recipe['total']:.1e} nats/sample, "
        f"of which the solver contributes {recipe['ode']:.1e}: the rest (≈{prior_share:.1e}) is the prior "
        "mismatch log p_T − log N(0, I), which no solver setting removes.",
        f"- Default of `log_likelihood` (dopri5, angle, tol 1e-5): {default['nfe']} NFE "
        f"({default['nfe'] / recipe['nfe']:.2f}× the recipe), total {default['total']:.1e}, ODE {default['ode']:.1e}.",
    ]
    if best_total:
        lines.append(
            f"- Cheapest setting with the recipe's total error (within 5 %): **{best_total['name']}**, "
            f"{best_total['nfe']} NFE = {best_total['nfe'] / recipe['nfe']:.2f}× the recipe."
        )
    if best_3e3:
        lines.append(
            f"- Cheapest setting with a solver error ≤ 0.003 nats/sample (the issue's figure): "
            f"**{best_3e3['name']}**, {best_3e3['nfe']} NFE = {best_3e3['nfe'] / recipe['nfe']:.2f}× the recipe "
            f"(total error {best_3e3['total']:.1e})."
        )
    lines += [
        "- The mean error is set by ~1 % of tail samples whose paths cross between modes at small noise "
        "(sharp dips of the divergence; the median error is 5–10× below the mean). One step size "
        "serves the whole batch, so those samples decide the NFE; the integration variable changes "
        "this only moderately for VP, whose own clock t is already close to σ/α at low noise.",
        "",
    ]

    # VE and EDM: here the process clock is a poor integration variable.
    for title, process in (("VE (σ 0.01…50)", sm.VE()), ("EDM (σ 0.002…80)", sm.EDM())):
        cfg = [(tv, "dopri5", tol) for tv in ("t", "angle") for tol in (1e-4, 1e-5)]
        solver_sweep(lines, title, mix, process, x, cfg, log)

    # 16-D mixture.
    mix16 = mixture_16d()
    x16 = mix16.sample(N_SAMPLES, generator=torch.Generator().manual_seed(1))
    cfg16 = [(tv, "dopri5", tol) for tv in ("t", "angle") for tol in (1e-4, 1e-5)]
    solver_sweep(lines, "16-D mixture (5 components), VP", mix16, vp, x16, cfg16, log)

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
