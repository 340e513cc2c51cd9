"""Likelihood benchmark: probability-flow ODE accuracy per model evaluation, against exact densities.

Run by hand (a few minutes on one CPU core; `nice` on a shared machine):

    .venv/bin/python benchmarks/likelihood.py            # writes benchmarks/results/likelihood.md

A 2-D mixture of 5 anisotropic Gaussians is driven by its exact score under VP (β 0.1 … 20,
t ∈ [1e-5, 1]); 1000 samples.  The reference is the exact log-density of the mixture noised at
t_min = 1e-5 (the flow transports p_{t_min}, not p_0).  Two errors are reported per setting:
"total" uses the N(0, I) prior for x_T, as a user would; "ODE" replaces it with the exact
log p_{t_max}, leaving the solver error alone.  NFE counts ODE right-hand-side evaluations of a
sample.  With one step size for the batch (score-SDE's recipe, ``step_control="batch"``) every
sample costs the batch's count; with per-sample steps (the default) each sample its own, and the
batch costs their sum: both the mean and the maximum per sample are reported.

(1) the score-SDE recipe: scipy.integrate.solve_ivp RK45, rtol = atol = 1e-5, in t, exact trace;
(2) scorematch.log_likelihood before (one step size for the batch, torchdiffeq) and after
    (per-sample steps) over solvers, tolerances and integration variables (t or the angle
    φ = arctan(σ/α)); the same comparison for VE and EDM and for a 16-D mixture;
(3) the choice of the per-sample defaults (step controller, error weight of the log-density,
    tolerance) on a separate tuning mixture — the mixture of (1)–(2) only reports;
(4) Hutchinson estimates with 1, 4, 16 Rademacher probes against the exact trace.
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
from scorematch import adaptive_rk
from scorematch.likelihood import DENSITY_ERROR_WEIGHT, log_likelihood
from scorematch.probability_flow import Divergence, make_flow

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


def mixture_tuning() -> sm.GaussianMixture:
    """The mixture the per-sample defaults were chosen on: 6 random 2-D components, stds
    log-uniform in [0.05, 0.7], random orientations and weights (not the reported mixture)."""
    g = torch.Generator().manual_seed(7)
    k = 6
    means = 2.0 * torch.randn(k, 2, generator=g, dtype=F64)
    angles = math.pi * torch.rand(k, generator=g, dtype=F64)
    stds = torch.exp(
        torch.empty(k, 2, dtype=F64).uniform_(math.log(0.05), math.log(0.7), generator=g)
    )
    c, s = angles.cos(), angles.sin()
    rot = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
    covs = rot @ torch.diag_embed(stds**2) @ rot.transpose(-1, -2)
    weights = torch.rand(k, generator=g, dtype=F64) + 0.5
    return sm.GaussianMixture(means, covs, weights / weights.sum())


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
    nfe = torch.as_tensor(nfe).double()
    return dict(
        name=name,
        nfe=nfe.mean().item(),
        nfe_max=int(nfe.max()),
        total=total_err.mean().item(),
        ode=ode_err.mean().item(),
        median=ode_err.median().item(),
        max=ode_err.max().item(),
        seconds=seconds,
    )


def ours(model, process, x, **kw):
    def run():
        out = log_likelihood(model, process, x, return_latent=True, **kw)
        return out.log_prob, out.latent, out.nfe_per_sample

    return run


def fmt_row(r):
    return (
        f"| {r['name']} | {r['nfe']:.1f} | {r['nfe_max']} | {r['total']:.2e} | {r['ode']:.2e} "
        f"| {r['median']:.1e} | {r['max']:.1e} | {r['seconds']:.1f} |"
    )


HEADER = (
    "| setting | NFE per sample, mean | max | mean abs err, total (nats) | mean abs err, ODE only "
    "| median (ODE) | max (ODE) | seconds |\n|---|---:|---:|---:|---:|---:|---:|---:|"
)
BEFORE = "before (batch steps)"
AFTER = "after (per-sample steps)"


def label(step_control, solver, time_var, tol):
    who = BEFORE if step_control == "batch" else AFTER
    return f"{who}: {solver}, {time_var}, tol {tol:.0e}"


def solver_sweep(lines, title, mixture, process, x, configs, log):
    """The recipe, then log_likelihood at each (step_control, solver, time, tol) of ``configs``."""
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
    for control, solver, time_var, tol in configs:
        kw = dict(step_control=control, solver=solver, time=time_var, rtol=tol, atol=tol)
        r = measure(
            label(control, solver, time_var, tol),
            ours(model, process, x, **kw),
            model,
            process,
            ref,
        )
        rows.append(r)
        log(fmt_row(r))
    lines += [f"### {title}", "", HEADER, *map(fmt_row, rows), ""]
    return rows


def cheapest(rows, ok, who):
    good = [r for r in rows[1:] if r["name"].startswith(who) and ok(r)]
    if not good:
        return "none in the sweep"
    r = min(good, key=lambda r: r["nfe"])
    name = r["name"].split(": ", 1)[1]
    return f"**{r['nfe']:.0f}** ({r['nfe'] / rows[0]['nfe']:.2f}×; max {r['nfe_max']}): {name}"


def summary(problems: dict) -> list[str]:
    """Cheapest setting before and after at the recipe's accuracy, relative to the recipe's NFE."""
    out = [
        "### Summary: mean NFE per sample (ratio to the recipe; max) at the recipe's accuracy",
        "",
        "Accuracy as the recipe's: total error ≤ 1.0× the recipe's (what the issue asks) or "
        '≤ 1.05× (the criterion under which the former default "matched" it at 98 NFE), or ODE '
        "error ≤ 1.0× the recipe's (the solver alone). Only the settings of the sweeps above count.",
        "",
        "| problem | recipe NFE | recipe err total / ODE | criterion | before (batch steps) "
        "| after (per-sample steps) | default after (dopri5, angle, 1e-5) |",
        "|---|---:|---|---|---|---|---|",
    ]
    for name, rows in problems.items():
        rec = rows[0]
        default = next(r for r in rows if r["name"] == label("per_sample", "dopri5", "angle", 1e-5))
        dflt = (
            f"{default['nfe']:.0f} ({default['nfe'] / rec['nfe']:.2f}×; max {default['nfe_max']}),"
            f" total {default['total']:.2e}, ODE {default['ode']:.1e}"
        )
        for crit, ok in (
            ("total err ≤ 1.0×", lambda r, rec=rec: r["total"] <= rec["total"]),
            ("total err ≤ 1.05×", lambda r, rec=rec: r["total"] <= 1.05 * rec["total"]),
            ("ODE err ≤ 1.0×", lambda r, rec=rec: r["ode"] <= rec["ode"]),
        ):
            out.append(
                f"| {name} | {rec['nfe']:.0f} | {rec['total']:.2e} / {rec['ode']:.1e} | {crit} | "
                f"{cheapest(rows, ok, BEFORE)} | {cheapest(rows, ok, AFTER)} | {dflt} |"
            )
    return [*out, "", *findings(problems["2-D, VP"])]


def findings(rows: list[dict]) -> list[str]:
    """What the 2-D VP rows say about the issue's target (≤ half the recipe's NFE)."""
    rec = rows[0]
    default = next(r for r in rows if r["name"] == label("per_sample", "dopri5", "angle", 1e-5))
    before = next(r for r in rows if r["name"] == label("batch", "dopri5", "angle", 1e-5))
    after = [r for r in rows if r["name"].startswith(AFTER) and r["total"] <= rec["total"]]
    best = min(after, key=lambda r: r["nfe"]) if after else None
    reached = best is not None and best["nfe"] <= rec["nfe"] / 2
    attempts = (default["nfe"] - 2) / 6
    return [
        "Findings (2-D, VP):",
        "",
        f"- Per-sample steps at the same tolerance cost {default['nfe']:.0f} evaluations per sample "
        f"on average (max {default['nfe_max']}) against {before['nfe']:.0f} for one step size for "
        f"the batch, with a {before['ode'] / default['ode']:.1f}× smaller ODE error "
        f"({default['ode']:.1e} against {before['ode']:.1e} nats); the batch's hardest sample no "
        "longer sets everyone's steps.",
        (
            f"- At the recipe's total accuracy the cheapest per-sample setting takes "
            f"{best['nfe']:.0f} ({best['nfe'] / rec['nfe']:.2f}× the recipe's {rec['nfe']:.0f}): the "
            f"issue's target of half ({rec['nfe'] / 2:.0f}) is "
            + ("reached." if reached else "**not** reached.")
            if best
            else "- No per-sample setting of the sweep reaches the recipe's total accuracy."
        ),
        f"- Where the evaluations go: dopri5 spends 2 to start and 6 per step attempt, so the "
        f"default's mean is about {attempts:.1f} attempts per sample (rejections are rare with the "
        "PI controller). Even a sample that stays inside one component crosses that component's "
        "log-density transition (near φ ≈ its standard deviation) and the merging of the modes "
        "(φ ≈ 0.4–1.2) and needs about 8 steps there; other pairs (tsit5, bosh3; Verner 6(5) "
        "and dopri8 in exploration), other variables and other controllers moved the count by "
        "less than 10 % at equal error (tuning table below).",
        "",
    ]


def tuning(log) -> list[str]:
    """How the per-sample defaults were chosen, on the tuning mixture only: for each variant of
    step controller and error norm, the mean NFE per sample at the recipe's ODE accuracy on that
    mixture, interpolated (log-error) over a tolerance sweep."""
    mix = mixture_tuning()
    x = mix.sample(N_SAMPLES // 2, generator=torch.Generator().manual_seed(0))
    vp = sm.VP(beta_min=0.1, beta_max=20.0, t_min=1e-5)
    model = mix.score_model(vp)
    ref = model.log_prob(x, vp.t_min)
    rec_lp, rec_end, rec_nfe = score_sde_recipe(model, vp, x)
    rec_ode = rec_lp - vp.prior_log_prob(rec_end) + model.log_prob(rec_end, vp.t_max) - ref
    target = rec_ode.abs().mean().item()
    flow = make_flow("angle", model, vp, x)
    rhs = Divergence("exact").rhs(flow, None)

    def f(s, y, rows):
        v, div = rhs(s, y[:, :2], rows)
        return torch.cat([v, div[:, None]], 1)

    def norm(weight):
        return lambda e: torch.maximum(e[:, :-1].square().mean(1).sqrt(), weight * e[:, -1].abs())

    y0 = torch.cat([x / flow.c0, x.new_zeros(x.shape[0], 1)], 1)
    variants = [
        ("classical (1, 0)", (1.0, 0.0), 1.0),
        ("classical (1, 0)", (1.0, 0.0), DENSITY_ERROR_WEIGHT),
        ("PI (0.7, 0.4), Gustafsson", (0.7, 0.4), 1.0),
        ("PI (0.7, 0.4), Gustafsson", (0.7, 0.4), DENSITY_ERROR_WEIGHT),
        ("PI (0.6, 0.2)", (0.6, 0.2), 1.0),
        ("PI (0.6, 0.2) — the default", (0.6, 0.2), DENSITY_ERROR_WEIGHT),
    ]
    out = [
        "### Choosing the per-sample defaults (tuning mixture, VP, dopri5, angle)",
        "",
        f"A separate 6-component 2-D mixture (`mixture_tuning`, {x.shape[0]} samples). The recipe "
        f"takes {rec_nfe} NFE there for an ODE error of {target:.2e} nats; each variant is run at "
        "tolerances 3e-6 … 3e-4 and its mean NFE per sample at that error is interpolated. "
        "Log-density weight: the weight of its error estimate against the points' in the error norm "
        "(1 = torchdiffeq's norm of the pair).",
        "",
        "| step controller (β₁, β₂) | log-density weight | NFE at the recipe's ODE error "
        "| (NFE, ODE error) at tol 3e-6, 1e-5, 3e-5, 1e-4, 3e-4 |",
        "|---|---:|---:|---|",
    ]
    for name, controller, weight in variants:
        pts = []
        for tol in (3e-6, 1e-5, 3e-5, 1e-4, 3e-4):
            sol = adaptive_rk.solve(
                f, y0, *flow.span, rtol=tol, atol=tol, norm=norm(weight), controller=controller
            )
            x_end = flow.c1 * sol.y[:, :2]
            lp = (
                model.log_prob(x_end, vp.t_max)
                + 2 * torch.log(flow.c1)
                + sol.y[:, 2]
                - 2 * torch.log(flow.c0)
            )
            pts.append((sol.nfe.double().mean().item(), (lp - ref).abs().mean().item()))
        nfe, err = np.array(pts).T
        order = np.argsort(err)
        at = float(np.interp(np.log(target), np.log(err[order]), nfe[order]))
        cells = ", ".join(f"({n:.0f}, {e:.1e})" for n, e in pts)
        out.append(f"| {name} | {weight:g} | {at:.1f} ({at / rec_nfe:.2f}×) | {cells} |")
        log(out[-1])
    return [
        *out,
        "",
        "The tolerance stays at 1e-5 (score-SDE's): at it, the default's ODE error on this mixture "
        "is about the recipe's. The pair dopri5 beat tsit5 and bosh3 here, and higher orders "
        "(Verner 6(5), dopri8) took more evaluations at this accuracy, as did other integration "
        "variables (t, log-SNR, σ̂, powers of φ) with per-sample steps: the angle stays the default.",
        "",
    ]


def hutchinson(lines, mix, x, mix16, x16, vp, log):
    lines += [
        "### Hutchinson trace estimator (Rademacher probes drawn once per call), VP, "
        "default solver (per-sample dopri5, angle, tol 1e-5)",
        "",
        "Error = Hutchinson log p − exact-trace log p (same solver settings), per sample.",
        "",
        "| data | divergence | NFE per sample, mean | mean abs err (nats) | std of err | seconds "
        "| s / NFE vs exact |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, mixture, xs in (("2-D", mix, x), ("16-D", mix16, x16)):
        model = mixture.score_model(vp)
        start = time.perf_counter()
        exact = log_likelihood(model, vp, xs)
        t_exact = time.perf_counter() - start
        n_exact = exact.nfe_per_sample.double().mean().item()
        per_nfe = t_exact / n_exact
        lines.append(f"| {name} | exact trace | {n_exact:.1f} | 0 | 0 | {t_exact:.1f} | 1.00 |")
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
            n = h.nfe_per_sample.double().mean().item()
            lines.append(
                f"| {name} | Hutchinson, {probes} probe{'s' if probes > 1 else ''} | {n:.1f} | "
                f"{err.abs().mean():.3f} | {err.std():.3f} | {sec:.1f} | {sec / n / per_nfe:.2f} |"
            )
            log(lines[-1])
    lines += [
        "",
        "The Hutchinson error is noise of mean zero (its std shrinks as 1/√probes); it averages out "
        "over a test set but not per sample. In 2-D the exact trace costs two vmapped backward passes "
        "and is the better choice; its cost grows with D (one backward pass per dimension, batched) "
        "unless the model offers its own divergence (`HollowMLP`: one pass).",
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
        "the exact log p_(t_max), isolating the solver. NFE = ODE right-hand-side evaluations of one "
        "sample (dopri5: 6 per step + 2 to start). *Before*: one step size for the batch "
        '(torchdiffeq, `step_control="batch"`, the former default), so every sample costs the '
        "batch's NFE. *After*: per-sample steps (`scorematch.adaptive_rk`, the default), each sample "
        "its own NFE; the batch costs their sum (mean × B) in as many batched calls as the maximum. "
        "Seconds are wall time on a shared machine (other jobs running): compare NFE.",
        "",
    ]
    before = [
        ("batch", solver, tv, tol)
        for tv in ("t", "angle")
        for solver, tols in (("dopri5", (1e-3, 1e-4, 1e-5)), ("bosh3", (1e-3, 1e-4)))
        for tol in tols
    ]
    after = [("per_sample", "dopri5", "angle", tol) for tol in (1e-4, 5e-5, 3e-5, 2e-5, 1e-5)]
    after += [
        ("per_sample", "dopri5", "t", 1e-5),
        ("per_sample", "tsit5", "angle", 1e-5),
        ("per_sample", "bosh3", "angle", 1e-4),
    ]
    problems = {
        "2-D, VP": solver_sweep(
            lines, "VP (β 0.1…20), t ∈ [1e-5, 1]", mix, vp, x, before + after, log
        )
    }
    short = [
        ("batch", "dopri5", "angle", 1e-5),
        ("batch", "dopri5", "t", 1e-5),
        ("per_sample", "dopri5", "angle", 3e-5),
        ("per_sample", "dopri5", "angle", 1e-5),
        ("per_sample", "dopri5", "t", 1e-5),
    ]
    for title, process in (("VE (σ 0.01…50)", sm.VE()), ("EDM (σ 0.002…80)", sm.EDM())):
        problems[f"2-D, {title.split()[0]}"] = solver_sweep(
            lines, title, mix, process, x, short, log
        )
    mix16 = mixture_16d()
    x16 = mix16.sample(N_SAMPLES, generator=torch.Generator().manual_seed(1))
    problems["16-D, VP"] = solver_sweep(
        lines, "16-D mixture (5 components), VP", mix16, vp, x16, short, log
    )
    lines += summary(problems)
    lines += tuning(log)
    hutchinson(lines, mix, x, mix16, x16, vp, log)
    lines += [f"Total benchmark time: {time.perf_counter() - t_start:.0f} s.", ""]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines), encoding="utf-8")
    os.replace(tmp, OUT)
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
