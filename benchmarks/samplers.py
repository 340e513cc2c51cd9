"""Samplers benchmark: sample error against the number of score evaluations (NFE).

Every sampler of ``scorematch.samplers`` and the fast schedulers of 🤗 diffusers a user would
otherwise pick (DPM-Solver++(2M), with and without Karras σ's; Heun, with and without Karras σ's;
Euler) are driven by the *same exact score* of a known Gaussian mixture, on a 2-D and a 16-D
mixture, for NFE ∈ {5, 10, 20, 50, 100, 1000}.  Each cell draws 50 000 samples and measures them
with ``scorematch.metrics.mixture_error`` (mode-weight error + excess per-mode Bures–Wasserstein
distance over exact samples of the same size).  Target (issue #3): at 10 NFE, half the error of the
best diffusers peer on both mixtures.

Run (from the repository root, dev venv with the ``bench`` extra, i.e. diffusers, installed)::

    .venv/bin/pip install -c constraints.txt "diffusers>=0.27"      # once
    .venv/bin/python benchmarks/samplers.py                           # full run → results/
    .venv/bin/python benchmarks/samplers.py --quick                   # 5 000 samples, NFE ≤ 100
    .venv/bin/python benchmarks/samplers.py --samples 20000 --nfe 5,10,20 --rows heun,dpm

Options: ``--samples N`` per cell, ``--nfe`` list of target NFE, ``--rows`` substrings selecting
rows, ``--mixtures 2d,16d``, ``--jobs`` worker processes (default 2, one torch thread each: on a
shared machine one thread per process is much faster than intra-op threads fighting for cores),
``--no-write`` to print only.  Writes ``benchmarks/results/samplers.md`` and ``samplers.png``.

All sampling is in float32 (the metric works in float64).  The exact score is
``mixture.score_model(process)``; when all samples share one time (every sampler here) it is
evaluated as ``mixture.perturbed(α_t, σ_t).score(x)`` — the same oracle and formula without the
per-sample (α, σ) broadcasting — which is checked against ``score_model`` at start-up.
Runtime of the full run: about 20 min on 2 idle cores.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import torch
from torch import Tensor, nn

from scorematch.distributions import GaussianMixture
from scorematch.metrics import mixture_error
from scorematch.processes import EDM, VE, VP
from scorematch.samplers import get_sampler

NFE_TARGETS = (5, 10, 20, 50, 100, 1000)
SEED = 1234  # prior noise: the same draw for every row (common random numbers)
DTYPE = torch.float32
RESULTS = Path(__file__).resolve().parent / "results"
# Slow-to-converge and verification rows run at 1000 NFE; the converged high-order rows of ours stop
# at 100 unless --all-1000 (keeps the full run within its 25-minute budget).
FULL_RANGE_ONLY = 1000


# -- the two mixtures ------------------------------------------------------------------------------
def _rotation(d: int, generator: torch.Generator) -> Tensor:
    q, r = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


def mixture_2d(seed: int = 20240) -> GaussianMixture:
    """Six anisotropic components: five on a ring of radius 2 and one at the centre, unequal weights.

    Axis variances in [0.2, 0.6] × [0.03, 0.1], random orientations; neighbours on the ring
    (2.35 apart) overlap along their long axes.
    """
    g = torch.Generator().manual_seed(seed)
    angles = torch.arange(5, dtype=torch.float64) * 2 * math.pi / 5 + 0.3
    means = torch.cat([2.0 * torch.stack([angles.cos(), angles.sin()], 1), torch.zeros(1, 2)])
    major = 0.2 + 0.4 * torch.rand(6, generator=g, dtype=torch.float64)
    minor = 0.03 + 0.07 * torch.rand(6, generator=g, dtype=torch.float64)
    covs = []
    for k in range(6):
        u = _rotation(2, g)
        covs.append(u @ torch.diag(torch.stack([major[k], minor[k]])) @ u.T)
    weights = torch.tensor([0.25, 0.2, 0.15, 0.15, 0.15, 0.1], dtype=torch.float64)
    return GaussianMixture(means, torch.stack(covs), weights).to(dtype=DTYPE)


def mixture_16d(seed: int = 16016) -> GaussianMixture:
    """Eight components in 16-D: means N(0, 0.8² I) (pairwise distances ≈ 3–6), full covariances
    with log-uniform eigenvalues in [0.05, 1] along random axes, unequal weights."""
    g = torch.Generator().manual_seed(seed)
    k, d = 8, 16
    means = 0.8 * torch.randn(k, d, generator=g, dtype=torch.float64)
    covs = []
    for _ in range(k):
        u = _rotation(d, g)
        lam = torch.exp(math.log(0.05) * torch.rand(d, generator=g, dtype=torch.float64))
        covs.append(u @ torch.diag(lam) @ u.T)
    weights = torch.softmax(0.5 * torch.randn(k, generator=g, dtype=torch.float64), 0)
    return GaussianMixture(means, torch.stack(covs), weights).to(dtype=DTYPE)


MIXTURES = {"2d": mixture_2d, "16d": mixture_16d}


# -- the exact score -------------------------------------------------------------------------------
class ExactScore(nn.Module):
    """``mixture.score_model(process)``, evaluated through ``mixture.perturbed(α, σ).score`` when the
    whole batch shares one time (the same exact oracle, cheaper than per-sample α, σ)."""

    def __init__(self, mixture: GaussianMixture, process) -> None:
        super().__init__()
        self.exact = mixture.score_model(process)
        self.mixture, self.process = mixture, process

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(x.shape[0])
        if bool((t == t[0]).all()):
            alpha, sigma = self.process.marginal(t[:1].double())
            return self.mixture.perturbed(float(alpha), float(sigma)).score(x)
        return self.exact(x, t)


def check_exact_score(mixture: GaussianMixture) -> float:
    """Largest relative gap between the fast path and ``score_model`` over a few times (≈ 1e-6)."""
    g = torch.Generator().manual_seed(0)
    worst = 0.0
    for process in (VP(), EDM()):
        model = ExactScore(mixture, process)
        for t in (process.t_min, 0.5 * (process.t_min + process.t_max), process.t_max):
            alpha, sigma = process.marginal(torch.tensor(t, dtype=torch.float64))
            x = float(alpha) * mixture.sample(512, generator=g) + float(sigma) * torch.randn(
                512, mixture.dim, generator=g, dtype=mixture.dtype
            )
            tt = torch.full((512,), t, dtype=mixture.dtype)
            ref = mixture.score_model(process)(x, tt)
            gap = (model(x, tt) - ref).abs().max() / ref.abs().max()
            worst = max(worst, float(gap))
    return worst


# -- rows: how each sampler turns a target NFE into steps --------------------------------------------
@dataclass
class Row:
    label: str
    family: str  # "ours" or "diffusers"
    kind: str  # decides the steps ↔ NFE relation and how it is run
    process: str = ""  # process (ours) or schedule (diffusers)
    grid: str = ""
    options: dict = field(default_factory=dict)
    full_range: bool = True  # run the 1000-NFE column too


def plan(row: Row, target: int) -> tuple[dict, int]:
    """(arguments, actual NFE) giving the largest NFE ≤ target (never more calls than a peer gets)."""
    k = row.kind
    if k in ("sde", "dpm", "ode-euler", "peer-dpm", "peer-euler"):
        if k == "sde":  # steps + 1 (final Tweedie denoise)
            return {"steps": max(target - 1, 1)}, max(target - 1, 1) + 1
        return {"steps": target}, target
    if k in ("heun", "peer-heun"):  # 2·steps − 1 (last step Euler only)
        steps = max((target + 1) // 2, 1)
        return {"steps": steps}, 2 * steps - 1
    if k == "pc":  # 2·steps + 1 (predictor + 1 corrector per step, final denoise)
        steps = max((target - 1) // 2, 1)
        return {"steps": steps}, 2 * steps + 1
    if k == "ode-rk4":
        steps = max(target // 4, 1)
        return {"steps": steps}, 4 * steps
    if k == "ald":  # levels · steps + 1; at most 10 levels (NCSN), as many as the budget allows
        budget = max(target - 1, 1)
        levels = min(10, budget)
        steps = budget // levels
        return {"steps": steps, "levels": levels}, levels * steps + 1
    raise ValueError(f"unknown row kind {k!r}")


def rows() -> list[Row]:
    vp, edm = "VP", "EDM"
    return [
        # stochastic samplers of ours (score-SDE setups, uniform time)
        Row("euler_maruyama", "ours", "sde", vp, "uniform"),
        Row("reverse_diffusion", "ours", "sde", vp, "uniform"),
        Row("ancestral", "ours", "sde", vp, "uniform"),
        Row("predictor_corrector", "ours", "pc", vp, "uniform"),
        Row("annealed_langevin", "ours", "ald", "VE", "geometric"),
        Row("annealed_langevin", "ours", "ald", edm, "geometric"),
        # deterministic samplers of ours
        Row("heun", "ours", "heun", edm, "edm_rho"),
        Row("heun", "ours", "heun", edm, "log_snr", full_range=False),
        Row("dpm_solver", "ours", "dpm", edm, "log_snr", full_range=False),
        Row("dpm_solver", "ours", "dpm", edm, "edm_rho", full_range=False),
        Row("dpm_solver", "ours", "dpm", vp, "log_snr", full_range=False),
        Row("dpm_solver", "ours", "dpm", vp, "uniform", full_range=False),
        Row("ode (rk4)", "ours", "ode-rk4", edm, "edm_rho", {"method": "rk4"}, full_range=False),
        Row("ode (euler)", "ours", "ode-euler", edm, "edm_rho", {"method": "euler"}, full_range=False),
        # diffusers peers, DDPM linear β schedule (1e-4 … 0.02, 1000 train steps)
        Row("DPMSolverMultistep (dpmsolver++, 2M)", "diffusers", "peer-dpm", "DDPM β", "linspace",
            {"use_karras_sigmas": False}),
        Row("DPMSolverMultistep (dpmsolver++, 2M)", "diffusers", "peer-dpm", "DDPM β", "karras",
            {"use_karras_sigmas": True}),
        Row("HeunDiscrete", "diffusers", "peer-heun", "DDPM β", "linspace",
            {"use_karras_sigmas": False}),
        Row("HeunDiscrete", "diffusers", "peer-heun", "DDPM β", "karras", {"use_karras_sigmas": True}),
        Row("EulerDiscrete", "diffusers", "peer-euler", "DDPM β", "linspace"),
    ]


ADAPTIVE_TOLERANCES = (1e-2, 1e-3, 1e-4)


def make_process(name: str):
    return {"VP": VP, "VE": VE, "EDM": EDM}[name]()


# -- running one cell ------------------------------------------------------------------------------
def run_ours(row: Row, mixture: GaussianMixture, n: int, args: dict) -> tuple[Tensor, int]:
    process = make_process(row.process)
    model = ExactScore(mixture, process)
    options = dict(row.options)
    steps = args["steps"]
    if row.kind == "ald":
        options["levels"] = args["levels"]
        ends = torch.tensor([process.t_max, process.t_min], dtype=torch.float64)
        alpha, sigma = process.marginal(ends)
        options["step_size"] = 0.2 * float(sigma[1] / alpha[1]) ** 2  # NCSN's ε = 0.2 σ_L²
    elif row.grid != "geometric":
        options["grid"] = row.grid
    name = {"ode-rk4": "ode", "ode-euler": "ode", "ode-adaptive": "ode", "sde": row.label,
            "pc": "predictor_corrector", "ald": "annealed_langevin", "heun": "heun",
            "dpm": "dpm_solver"}[row.kind]
    generator = torch.Generator().manual_seed(SEED)
    out = get_sampler(name)(model, process, (n, mixture.dim), steps, generator=generator, **options)
    return out.x, out.nfe


def _scheduler(row: Row):
    import diffusers  # noqa: PLC0415  (the bench extra; only needed for these rows)

    common = {"num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02,
              "beta_schedule": "linear", "prediction_type": "epsilon"}
    if row.kind == "peer-dpm":
        return diffusers.DPMSolverMultistepScheduler(
            algorithm_type="dpmsolver++", solver_order=2, **common, **row.options
        )
    if row.kind == "peer-heun":
        return diffusers.HeunDiscreteScheduler(**common, **row.options)
    return diffusers.EulerDiscreteScheduler(**common, **row.options)


def run_peer(row: Row, mixture: GaussianMixture, n: int, args: dict) -> tuple[Tensor, int]:
    """Drive a diffusers scheduler as its pipelines do, with an exact ε-prediction model.

    The schedulers keep k-diffusion noise levels σ_k = √((1−ᾱ)/ᾱ) and hand the model the VP state
    x_vp = x/√(σ_k²+1) (``scale_model_input``; DPM-Solver's state already is x_vp).  At that state
    α = 1/√(σ_k²+1), σ = σ_k α and the exact noise prediction is ε̂ = −σ ∇log p_{α,σ}(x_vp).  σ_k is
    the scheduler's own level for this call (``sigmas[step_index]``), i.e. the ε̂ of a perfectly
    trained continuous-time model, the peer's best case.
    """
    scheduler = _scheduler(row)
    scheduler.set_timesteps(args["steps"])
    generator = torch.Generator().manual_seed(SEED)
    x = torch.randn(n, mixture.dim, generator=generator, dtype=mixture.dtype)
    x = x * float(scheduler.init_noise_sigma)
    calls = 0

    def eps_model(x_vp: Tensor, sigma_k: float) -> Tensor:
        nonlocal calls
        calls += 1
        alpha = 1.0 / math.sqrt(sigma_k**2 + 1.0)
        sigma = sigma_k * alpha
        return -sigma * mixture.perturbed(alpha, sigma).score(x_vp)

    with torch.inference_mode():
        for i, t in enumerate(scheduler.timesteps):
            x_in = scheduler.scale_model_input(x, t)
            index = scheduler.step_index if scheduler.step_index is not None else i
            eps = eps_model(x_in, float(scheduler.sigmas[index]))
            x = scheduler.step(eps, t, x).prev_sample
    return x, calls


def measure(x: Tensor, mixture: GaussianMixture, exact: Tensor, floor: dict) -> dict:
    """``mixture_error`` with its exact-sample reference figures computed once per mixture.

    ``mixture_error(x, mixture)`` recomputes its 8 reference draws on every call; here the reference
    ``bures_exact`` comes from one call on exact samples (``floor``) and each cell then needs one
    pass: bures_excess = bures − bures_exact, total = weight_error + max(bures_excess, 0)/scale,
    exactly as ``mixture_error`` defines them.
    """
    e = mixture_error(x, mixture, reference_samples=exact)
    excess = e["bures"] - floor["bures_exact"]
    return {
        "weight_error": e["weight_error"],
        "bures": e["bures"],
        "bures_excess": excess,
        "total": e["weight_error"] + max(excess, 0.0) / e["scale"],
        "nonfinite": e["nonfinite"],
    }


def exact_floor(mixture: GaussianMixture, n: int) -> tuple[Tensor, dict]:
    """Exact samples (the per-cell reference set) and the figures of exact samples of size n."""
    g = torch.Generator().manual_seed(99)
    exact = mixture.sample(n, generator=g)
    floor = mixture_error(mixture.sample(n, generator=g), mixture)
    return exact, floor


# -- worker: one (mixture, row) task ----------------------------------------------------------------
def _init_worker() -> None:
    torch.set_num_threads(1)


def run_task(mix_name: str, row_index: int, n: int, targets: tuple[int, ...], all_1000: bool,
             adaptive: bool, exact: Tensor, floor: dict) -> list[dict]:
    mixture = MIXTURES[mix_name]()
    out = []
    if adaptive:  # the adaptive ODE row: NFE is the solver's, set by the tolerance
        row = Row("ode (adaptive dopri5)", "ours", "ode-adaptive", "EDM", "edm_rho")
        for tol in ADAPTIVE_TOLERANCES:
            start = time.perf_counter()
            opts = {"method": "adaptive", "rtol": tol, "atol": tol}
            x, nfe = run_ours(Row(row.label, "ours", "ode-adaptive", "EDM", "edm_rho", opts),
                              mixture, n, {"steps": 1})
            seconds = time.perf_counter() - start
            out.append({"mixture": mix_name, "row": -1, "label": row.label, "family": "ours",
                        "process": "EDM", "grid": f"rtol=atol={tol:g}", "target": None,
                        "nfe": nfe, "seconds": seconds, **measure(x, mixture, exact, floor)})
        return out
    row = rows()[row_index]
    for target in targets:
        if target > 100 and not (row.full_range or all_1000):
            continue
        args, expected = plan(row, target)
        start = time.perf_counter()
        runner = run_peer if row.family == "diffusers" else run_ours
        x, nfe = runner(row, mixture, n, args)
        seconds = time.perf_counter() - start
        if nfe != expected:
            raise RuntimeError(f"{row.label}: planned {expected} NFE, made {nfe}")
        out.append({"mixture": mix_name, "row": row_index, "label": row.label,
                    "family": row.family, "process": row.process, "grid": row.grid,
                    "target": target, "nfe": nfe, "seconds": seconds,
                    **measure(x, mixture, exact, floor)})
    return out


# -- report ------------------------------------------------------------------------------------------
def _cell(r: dict | None, mark: str = "") -> str:
    if r is None:
        return "—"
    bad = f", {r['nonfinite']} non-finite" if r["nonfinite"] else ""
    return f"{mark}{_num(r['total'])}{mark} ({r['weight_error']:.4f} / {_num(r['bures_excess'], '+')}{bad})"


def _num(v: float, sign: str = "") -> str:
    """4 decimals, or 2 significant digits in powers of ten once a sampler has failed (> 100)."""
    if not math.isfinite(v) or abs(v) < 100:
        return f"{v:{sign}.4f}"
    return f"{v:{sign}.1e}"


def _best(results: list[dict], family: str, target: int) -> dict | None:
    cands = [r for r in results if r["family"] == family and r["target"] == target]
    return min(cands, key=lambda r: r["total"]) if cands else None


def _name(r: dict) -> str:
    return f"{r['label']} [{r['process']}, {r['grid']}]"


def write_markdown(results: list[dict], floors: dict, targets, n: int, runtime: float,
                   score_gap: dict, path: Path) -> str:
    lines = [
        "# Samplers benchmark: error against NFE, exact mixture score",
        "",
        "Generated by `benchmarks/samplers.py` (run instructions in its docstring). "
        f"{n:,} samples per cell, float32, every sampler driven by the exact score of the mixture "
        f"(fast path checked against `score_model`: max relative gap "
        f"{max(score_gap.values()):.1e}). Total runtime {runtime / 60:.1f} min.",
        "",
        "## What the numbers are",
        "",
        "Each cell is `total (weight_error / bures_excess)` from "
        "`scorematch.metrics.mixture_error`, with r_k(x) the exact posterior component "
        "probabilities of the clean mixture:",
        "",
        "- **weight_error** = ½ Σ_k |mean_i r_k(x_i) − w_k|: total-variation distance between the "
        "mode weights the sampler produced and the true ones (0 = right mass in every mode).",
        "- **bures_excess** = Σ_k w_k BW(m_k, C_k; μ_k, Σ_k) − the same figure for exact samples of "
        "the same size: BW is the 2-Wasserstein distance between the r_k-weighted Gaussian fit "
        "(m_k, C_k) of the samples and component k; the excess over exact samples removes the "
        "finite-sample bias, so an exact sampler scores ≈ 0 (± `bures_noise`). Units of x.",
        "- **total** = weight_error + max(bures_excess, 0) / scale, scale = RMS per-coordinate "
        "component standard deviation: one unit-free figure, 0 is perfect.",
        "",
        "Noise floor (exact samples of the same size): "
        + "; ".join(
            f"{m}: weight_error {f['weight_error']:.4f}, bures_noise {f['bures_noise']:.4f} "
            f"(scale {f['scale']:.3f})"
            for m, f in floors.items()
        )
        + ". Differences below ≈ 2× the floor are not significant.",
        "",
        "## Set-ups",
        "",
        "- **ours**: `euler_maruyama`, `reverse_diffusion`, `ancestral`, `predictor_corrector` "
        "(reverse-diffusion predictor + 1 Langevin corrector, snr 0.16) on VP (β 0.1…20, "
        "t ∈ [1e-3, 1], σ̂_min = σ/α ≈ 0.0105), uniform time grid, final Tweedie denoise; "
        "`annealed_langevin` (≤ 10 geometric levels, ε = 0.2 σ_L², final denoise) on VE "
        "(σ 0.01…50) and EDM (σ 0.002…80); `heun`, `dpm_solver` (2M), `ode` on EDM "
        "(σ 0.002…80, stops at σ_min = 0.002, no final denoise) and `dpm_solver` also on VP.",
        "- **diffusers** (peers): discrete DDPM schedule, linear β 1e-4…0.02, 1000 train "
        "steps, ε-prediction: σ_k = √((1−ᾱ)/ᾱ) spans 0.01…157, and the schedulers' last step "
        "goes to σ = 0 (x̂₀). The exact ε̂ = −σ_vp ∇log p at the scheduler's own σ_k "
        "(`sigmas[step_index]`; a perfectly trained continuous-time model).",
        "- **NFE** counted as model calls (wrapper counter for the peers, `Samples.nfe` for ours). "
        "Steps are chosen for the largest NFE ≤ target: heun/HeunDiscrete 2·steps − 1, PC "
        "2·steps + 1, SDE samplers steps + 1, ALD levels·steps + 1, rk4 4·steps, the rest steps. "
        "The column `NFE used` lists the actual counts.",
        "- 1000-NFE column: run for the stochastic samplers, for `heun` [EDM, edm_rho], "
        "`dpm_solver` [EDM, log_snr] and for every peer (wiring check: each must reproduce the "
        "mixture, i.e. reach the noise floor); other deterministic rows stop at 100.",
        "",
    ]
    for mix in floors:
        res = [r for r in results if r["mixture"] == mix and r["target"] is not None]
        best_peer, best_ours = _best(res, "diffusers", 10), _best(res, "ours", 10)
        lines += [f"## {mix} mixture", ""]
        head = "| sampler | family | process | grid | NFE used | " + " | ".join(
            str(t) for t in targets) + " |"
        lines += [head, "|" + "---|" * (5 + len(targets))]
        keys = sorted({(r["row"], r["label"], r["family"], r["process"], r["grid"]) for r in res})
        for key in keys:
            cells = {r["target"]: r for r in res if r["row"] == key[0]}
            marks = []
            for t in targets:
                r = cells.get(t)
                mark = "**" if r is not None and r in (best_peer, best_ours) else ""
                marks.append(_cell(r, mark))
            used = ",".join(str(cells[t]["nfe"]) for t in targets if t in cells)
            lines.append(f"| {key[1]} | {key[2]} | {key[3]} | {key[4]} | {used} | "
                         + " | ".join(marks) + " |")
        adaptive = [r for r in results if r["mixture"] == mix and r["target"] is None]
        if adaptive:
            lines += ["", "Adaptive probability-flow ODE (torchdiffeq dopri5, EDM, ours): "
                      + "; ".join(f"{r['grid']}: NFE {r['nfe']}, {_cell(r)}" for r in adaptive)
                      + "."]
        if best_peer and best_ours:
            ratio = best_ours["total"] / best_peer["total"]
            verdict = "met" if ratio <= 0.5 else "NOT met"
            lines += ["", f"At 10 NFE (bold): best ours **{_name(best_ours)}** "
                      f"{best_ours['total']:.4f} at {best_ours['nfe']} NFE; best peer "
                      f"**{_name(best_peer)}** {best_peer['total']:.4f} at {best_peer['nfe']} NFE; "
                      f"ratio ours/peer = {ratio:.2f} (target ≤ 0.5: {verdict})."]
        peers_1000 = [r for r in res if r["family"] == "diffusers" and r["target"] == 1000]
        if peers_1000:
            lines += ["", "Peer wiring check at 1000 NFE: " + "; ".join(
                f"{_name(r)} {r['total']:.4f}" for r in peers_1000)
                + f" (exact-sample floor {floors[mix]['weight_error']:.4f})."]
        lines.append("")
    text = "\n".join(lines) + "\n"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return text


def write_plot(results: list[dict], floors: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mixes = list(floors)
    fig, axes = plt.subplots(1, len(mixes), figsize=(7.5 * len(mixes), 6), squeeze=False)
    colors = plt.get_cmap("tab20").colors
    for ax, mix in zip(axes[0], mixes):
        res = [r for r in results if r["mixture"] == mix]
        keys = sorted({(r["row"], r["label"], r["family"], r["process"], r["grid"]) for r in res})
        for i, key in enumerate(keys):
            pts = sorted((r["nfe"], max(r["total"], 1e-4)) for r in res if r["row"] == key[0]
                         and (key[0] != -1 or r["label"] == key[1]))
            style = "--" if key[2] == "diffusers" else "-"
            marker = "s" if key[2] == "diffusers" else "o"
            ax.plot(*zip(*pts), style, marker=marker, ms=3, color=colors[i % len(colors)],
                    label=f"{key[1]} [{key[3]}, {key[4]}]" if key[0] != -1 else key[1])
        ax.axhline(floors[mix]["weight_error"], color="k", lw=0.8, ls=":",
                   label="exact samples (noise floor)")
        ax.axvline(10, color="grey", lw=0.5)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("NFE (model calls)")
        ax.set_ylabel("mixture_error total")
        ax.set_title(f"{mix} mixture (dashed: diffusers peers)")
        ax.grid(True, which="both", lw=0.3)
    axes[0][-1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)
    plt.close(fig)


# -- main --------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=50_000)
    parser.add_argument("--nfe", default=",".join(map(str, NFE_TARGETS)))
    parser.add_argument("--quick", action="store_true", help="5 000 samples, NFE ≤ 100")
    parser.add_argument("--rows", default="", help="comma-separated substrings of row labels")
    parser.add_argument("--mixtures", default="2d,16d")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--all-1000", action="store_true", help="1000 NFE for every row")
    parser.add_argument("--no-adaptive", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    a = parser.parse_args(argv)
    targets = tuple(int(v) for v in a.nfe.split(","))
    n = a.samples
    if a.quick:
        n = min(n, 5000)
        targets = tuple(t for t in targets if t <= 100)
    mixes = [m for m in a.mixtures.split(",") if m]
    for m in mixes:
        if m not in MIXTURES:
            raise ValueError(f"unknown mixture {m!r}; choose from {', '.join(MIXTURES)}")
    wanted = [s for s in a.rows.split(",") if s]
    all_rows = rows()
    chosen = [i for i, r in enumerate(all_rows)
              if not wanted or any(w in f"{r.label} {r.process} {r.grid}" for w in wanted)]
    start = time.perf_counter()
    torch.set_num_threads(1)
    score_gap = {m: check_exact_score(MIXTURES[m]()) for m in mixes}
    references = {m: exact_floor(MIXTURES[m](), n) for m in mixes}
    floors = {m: references[m][1] for m in mixes}

    def cost(task):  # schedule the long tasks first
        _, i, adaptive = task
        if adaptive:
            return 400
        r = all_rows[i]
        return sum(t for t in targets if t <= 100 or r.full_range or a.all_1000)

    tasks = [(m, i, False) for m in mixes for i in chosen]
    if not a.no_adaptive and (not wanted or any(w in "ode (adaptive)" for w in wanted)):
        tasks += [(m, -1, True) for m in mixes]
    tasks.sort(key=cost, reverse=True)
    results: list[dict] = []
    with ProcessPoolExecutor(max_workers=a.jobs, mp_context=get_context("spawn"),
                             initializer=_init_worker) as pool:
        futures = [pool.submit(run_task, m, i, n, targets, a.all_1000, ad, *references[m])
                   for m, i, ad in tasks]
        for fut in futures:
            for r in fut.result():
                results.append(r)
                print(f"{r['mixture']:>4} {r['label'][:38]:38s} {r['process']:>6} "
                      f"{r['grid']:>16} NFE {r['nfe']:5d}  total {r['total']:.4f}  "
                      f"w {r['weight_error']:.4f}  b {r['bures_excess']:+.4f}  "
                      f"{r['seconds']:6.1f}s", flush=True)
    runtime = time.perf_counter() - start
    if not a.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        text = write_markdown(results, floors, targets, n, runtime, score_gap,
                              RESULTS / "samplers.md")
        write_plot(results, floors, RESULTS / "samplers.png")
        print(text)
    print(f"runtime {runtime / 60:.1f} min")


if __name__ == "__main__":
    main()
