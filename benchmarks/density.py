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
  (``log_likelihood(divergence="exact")``, dopri5, rtol = atol = 1e-4) of the density it defines at
  the process's smallest noise level.  In data units
  log p_X(x) = log p_Z(T(x)) + log|det ∂T/∂x| (``Standardizer.log_abs_det``), so
  NLL_X = NLL_Z − log_abs_det.

The recipe of "ours" (found on moons / checkerboard / pinwheel, one recipe for every set, see
``RECIPE``): EDM process (σ 0.002 … 80), EDM preconditioning with σ_d = 1 (the data are
standardised), the EDM loss (ln σ ~ N(−1.2, 1.2²)), ``MLPScore`` width 256, depth 4, Fourier scale 1
for the noise embedding, AdamW lr 2e-3 with cosine decay, batch 512, EMA 0.999.

A set counts as a win when ours has a lower held-out NLL than both baselines; target ≥ 6 of 8.
The table also gives the paired standard error of (ours − best baseline) over the test points.

Run from the repository root::

    .venv/bin/python benchmarks/density.py                       # all 8 sets → results/density.md
    .venv/bin/python benchmarks/density.py --sets moons,rings --steps 1000
    .venv/bin/python benchmarks/density.py --quick                # smaller budget, no file written

Options: ``--sets`` comma-separated names, ``--steps`` training steps, ``--quick`` (fewer steps,
smaller test set, for a smoke test; does not overwrite the results file unless ``--out`` is given),
``--jobs`` worker processes (default 2: each handles whole sets with one thread), ``--out`` path.
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
TRAIN_SEED, TEST_SEED = 0, 1
OUT = Path(__file__).resolve().parent / "results" / "density.md"

GMM_COARSE = (1, 2, 3, 4, 6, 8, 11, 16, 22, 30, 40, 50)
KDE_COARSE = np.geomspace(0.01, 0.5, 9)

RECIPE: dict = {
    "process": "EDM(sigma_min=0.002, sigma_max=80, sigma_data=1)",
    "parametrization": "EDMPrecond(sigma_data=1)",
    "objective": "objectives.edm (P_mean -1.2, P_std 1.2)",
    "width": 256,
    "depth": 4,
    "fourier_scale": 1.0,
    "batch_size": 512,
    "lr": 2e-3,
    "schedule": "cosine",
    "warmup_steps": 100,
    "ema_decay": 0.999,
    "steps": 4000,
    "eval": "dopri5, rtol=atol=1e-4, exact divergence, t_min=0.002",
}


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
    final_loss: float = math.nan

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
    return None


# ------------------------------------------------------------------------------------------------
# Baselines
# ------------------------------------------------------------------------------------------------
def fit_gmm(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, int]:
    """GaussianMixture (full covariances) with K chosen by BIC; returns per-point test NLL and K."""
    from sklearn.mixture import GaussianMixture

    fits: dict[int, tuple[float, GaussianMixture]] = {}

    def fit(k: int) -> None:
        if k not in fits:
            g = GaussianMixture(k, covariance_type="full", random_state=0).fit(train)
            fits[k] = (g.bic(train), g)

    for k in GMM_COARSE:
        fit(k)
    best = min(fits, key=lambda k: fits[k][0])
    i = GMM_COARSE.index(best)
    lo, hi = GMM_COARSE[max(i - 1, 0)], GMM_COARSE[min(i + 1, len(GMM_COARSE) - 1)]
    for k in range(lo, hi + 1, max(1, math.ceil(best / 10))):
        fit(k)
    best = min(fits, key=lambda k: fits[k][0])
    return -fits[best][1].score_samples(test), best


def fit_kde(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, float]:
    """Gaussian KernelDensity, bandwidth by 5-fold GridSearchCV (coarse, then refined)."""
    from sklearn.model_selection import GridSearchCV
    from sklearn.neighbors import KernelDensity

    def search(grid: np.ndarray) -> float:
        # rtol bounds the relative error of each density in the tree sum (1e-4 → ≤ 1e-4 nats).
        cv = GridSearchCV(KernelDensity(kernel="gaussian", rtol=1e-4), {"bandwidth": grid}, cv=5)
        return float(cv.fit(train).best_params_["bandwidth"])

    best = search(KDE_COARSE)
    ratio = KDE_COARSE[1] / KDE_COARSE[0]
    best = search(np.geomspace(best / ratio, best * ratio, 7))
    kde = KernelDensity(kernel="gaussian", bandwidth=best).fit(train)
    return -kde.score_samples(test), best


# ------------------------------------------------------------------------------------------------
# Ours
# ------------------------------------------------------------------------------------------------
def fit_ours(
    train: torch.Tensor,
    test: torch.Tensor,
    steps: int,
    seed: int = 0,
    input_features: int = 0,
    input_scale: float = 0.5,
) -> tuple[np.ndarray, dict]:
    """Train the diffusion recipe on standardised data; per-point test NLL in data units."""
    from scorematch import objectives
    from scorematch.data import Standardizer
    from scorematch.likelihood import log_likelihood
    from scorematch.models import build_model
    from scorematch.parametrization import wrap
    from scorematch.processes import EDM
    from scorematch.training import Trainer

    standardizer = Standardizer.fit(train)
    z_train, z_test = standardizer(train), standardizer(test)
    process = EDM(sigma_min=0.002, sigma_max=80.0, sigma_data=1.0)
    net = build_model(
        "mlp",
        (2,),
        seed=seed,
        width=RECIPE["width"],
        depth=RECIPE["depth"],
        fourier_scale=RECIPE["fourier_scale"],
        input_features=input_features,
        input_scale=input_scale,
    )
    model = wrap(net, process, "edm", sigma_data=1.0)

    def loss_fn(m, batch, generator):
        return objectives.edm(m, batch, process, generator=generator)

    trainer = Trainer(
        model,
        loss_fn,
        z_train,
        batch_size=RECIPE["batch_size"],
        lr=RECIPE["lr"],
        schedule=RECIPE["schedule"],
        warmup_steps=RECIPE["warmup_steps"],
        ema_decay=RECIPE["ema_decay"],
        seed=seed,
        checkpoint_every=None,
        log_every=100,
        progress=False,
    )
    t0, c0 = time.perf_counter(), time.process_time()
    result = trainer.fit(steps)
    info = {"train": time.perf_counter() - t0, "train_cpu": time.process_time() - c0}
    info["final_loss"] = result.loss
    t0 = time.perf_counter()
    log_p, nfe = log_likelihood(
        trainer.ema_model, process, z_test, divergence="exact", rtol=1e-4, atol=1e-4
    )
    info["eval"] = time.perf_counter() - t0
    info["nfe"] = nfe
    nll = -(log_p.double() + standardizer.log_abs_det())
    return nll.numpy(), info


# ------------------------------------------------------------------------------------------------
# One set, end to end (runs in a worker process)
# ------------------------------------------------------------------------------------------------
def run_set(name: str, steps: int, n_test: int, features: tuple[int, float] = (0, 0.5)) -> Result:
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
    ours_nll, info = fit_ours(
        train, test, steps, input_features=features[0], input_scale=features[1]
    )
    res.seconds["train"], res.seconds["eval"] = info["train"], info["eval"]
    res.train_cpu, res.nfe, res.final_loss = info["train_cpu"], info["nfe"], info["final_loss"]
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
        "exact mixture).",
        "",
        "| set | ours NLL | GMM (BIC) NLL (K) | KDE (CV) NLL (bandwidth) | win | Δ ± s.e. | ref "
        "| train s (CPU s) | eval s (NFE) | GMM s | KDE s |",
        "|---|---:|---:|---:|:-:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        best = min(r.gmm, r.kde)
        ref = "—" if r.reference is None else f"{r.reference:.3f}"
        lines.append(
            f"| {r.name} | **{r.ours:.3f}** | {r.gmm:.3f} ({r.k}) | {r.kde:.3f} "
            f"({r.bandwidth:.3g}) | {'✓' if r.win else '✗'} | {r.ours - best:+.3f} ± "
            f"{r.se_diff:.3f} | {ref} | {r.seconds['train']:.0f} ({r.train_cpu:.0f}) | "
            f"{r.seconds['eval']:.0f} ({r.nfe}) | {r.seconds['gmm']:.0f} | {r.seconds['kde']:.0f} |"
        )
    lines += [
        "",
        f"**Wins: {wins} of {len(results)}** (target: ≥ 6 of 8).",
        "",
        "Settings of ours (one recipe for every set): "
        + ", ".join(
            f"{k} = {v}"
            for k, v in {
                **RECIPE,
                "steps": args.steps,
                "input_features": args.input_features,
                "input_scale": args.input_scale,
            }.items()
        )
        + ".",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated set names")
    parser.add_argument("--steps", type=int, default=None, help="training steps of ours")
    parser.add_argument("--quick", action="store_true", help="600 steps, 1000 test points")
    parser.add_argument(
        "--input-features", type=int, default=0, help="MLPScore input Fourier features (0 = none)"
    )
    parser.add_argument("--input-scale", type=float, default=0.5, help="their frequency scale")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (one set each)")
    parser.add_argument("--out", type=Path, default=None, help=f"report path (default {OUT})")
    raw = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(raw)
    args.argv = raw
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = [s for s in sets if s not in SETS]
    if unknown:
        parser.error(f"unknown set(s) {', '.join(unknown)}; choose from {', '.join(SETS)}")
    if args.steps is None:
        args.steps = 600 if args.quick else RECIPE["steps"]
    args.n_test = 1000 if args.quick else N_TEST
    out = args.out if args.out is not None else (None if args.quick else OUT)

    start = time.perf_counter()
    results: dict[str, Result] = {}
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn")) as pool:
        futures = {
            pool.submit(
                run_set, s, args.steps, args.n_test, (args.input_features, args.input_scale)
            ): s
            for s in sets
        }
        for fut in as_completed(futures):
            r = fut.result()
            results[r.name] = r
            print(
                f"{r.name:>12}: ours {r.ours:.3f}  gmm {r.gmm:.3f} (K={r.k})  kde {r.kde:.3f} "
                f"(bw={r.bandwidth:.3g})  {'WIN' if r.win else 'loss'}  "
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
