"""Averaging denoising score models over noise levels (issue #14, part 1), against exact scores.

On Gaussian mixtures with exact scores (2-D and 10-D), train DSM networks at a sweep of noise
levels σ, several seeds and data sizes N, and measure each against the exact clean score ∇log p
and the exact σ-blurred score ∇log p_σ (Fisher divergences ½E‖s − s*‖² on fresh exact samples):

* per σ: the Fisher divergence to the clean score, split over seeds into bias² = ½E‖s̄ − ∇log p‖²
  and variance = ½E mean_i‖s_i − s̄‖² (s̄ the mean over seeds; FD = bias² + variance exactly), and
  the Fisher divergence to the blurred score (the estimation error of what DSM targets);
* the best single σ chosen by the truth and by held-out ISM (each seed on its own validation
  split); the uniform average over σ; ``ScoreEnsemble.fit`` (affine and simplex) on the validation
  split; the affine weights that minimise the *true* Fisher divergence on the test set (an
  oracle bound: what the span of the members allows); NCSN's multi-scale network (trained on
  the same data, at the sweep's levels plus 2 and 5 for annealing) read at its smallest level;
* samples: annealed Langevin whose levels above σ_f = 0.1 use the NCSN network (the same for
  every arm) and whose final level uses each arm's estimate of the clean score, measured with
  ``metrics.mixture_error``.

Every network sees N training points and a validation split of N/4 more (used only for choosing:
ISM, weights).  A seed changes the data, the initialisation and the noise.

Run (about 12 min on one core):  python benchmarks/noise_levels.py   (--quick: a < 1 min smoke run)
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from torch import nn

import scorematch as sm
from scorematch.objectives import dsm, ncsn

ROOT = Path(__file__).resolve().parent
SIGMAS = [0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
SIZES = [500, 5000, 50000]
STEPS = {500: 1000, 5000: 1500, 50000: 2000}  # DSM steps per size (NCSN: 2×), batch 256
SEEDS = [0, 1, 2]
ANNEAL_ONLY = [
    2.0,
    5.0,
]  # NCSN levels above the sweep, so annealed Langevin starts at the data scale
N_TEST, N_SAMPLES, SIGMA_FINAL, LANGEVIN_STEPS = 5000, 2000, 0.1, 200


def mixtures() -> dict[int, sm.GaussianMixture]:
    """A 2-D ring of 6 anisotropic modes and a 10-D mixture of 4 modes with diagonal covariances."""
    g = torch.Generator().manual_seed(2024)
    angles = torch.arange(6, dtype=torch.float64) * (2 * math.pi / 6)
    means2 = 2.0 * torch.stack([angles.cos(), angles.sin()], 1)
    covs2 = []
    for a in angles.tolist():
        c, s = math.cos(a), math.sin(a)
        r = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
        covs2.append(r @ torch.diag(torch.tensor([0.12, 0.03], dtype=torch.float64)) @ r.T)
    two = sm.GaussianMixture(means2, torch.stack(covs2), [0.25, 0.1, 0.2, 0.15, 0.1, 0.2])
    means10 = 1.5 * torch.randn(4, 10, generator=g, dtype=torch.float64)
    covs10 = (0.2 + 0.6 * torch.rand(4, 10, generator=g, dtype=torch.float64)) ** 2
    ten = sm.GaussianMixture(means10, covs10, [0.4, 0.3, 0.2, 0.1])
    return {2: two.to(dtype=torch.float32), 10: ten.to(dtype=torch.float32)}


class AtSigma(nn.Module):
    """An unconditional DSM network at one level, s(x) = net(x)/σ (the output scaling of NCSN++)."""

    def __init__(self, dim: int, sigma: float, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.sigma = float(sigma)
        self.net = sm.MLPScore(dim, width=64, depth=2, time_embed_dim=0, seed=seed)

    def forward(self, x, t=None):
        return self.net(x) / self.sigma


def train(model: nn.Module, loss_fn, data, steps: int, seed: int) -> nn.Module:
    trainer = sm.Trainer(
        model, loss_fn, data, batch_size=256, lr=2e-3, warmup_steps=100, ema_half_life=100,
        checkpoint_every=None, log_every=max(steps, 1), seed=seed, progress=False,
    )  # fmt: skip
    trainer.fit(steps)
    return trainer.ema_model


def train_dsm(data, sigma: float, seed: int, steps: int) -> nn.Module:
    # σ²·DSM = ½‖σ s + ε‖²: the same minimiser as DSM, an O(1) loss at every σ.
    def loss(m, batch, g):
        return sigma**2 * dsm(m, batch, sigma, generator=g)

    return train(AtSigma(data.shape[1], sigma, seed), loss, data, steps, seed)


def train_ncsn(data, levels: sm.NoiseLevels, seed: int, steps: int) -> nn.Module:
    torch.manual_seed(seed)
    net = sm.MLPScore(data.shape[1], width=64, depth=2, time_embed_dim=32, seed=seed)
    model = sm.ScorePrediction(net, levels)  # s = net(x, ¼ log σ)/σ

    def loss(m, batch, g):
        return ncsn(m, levels, batch, generator=g)

    return train(model, loss, data, steps, seed)


def fisher(s, target) -> float:
    return float(0.5 * (s - target).double().square().sum(1).mean())


def study(dim: int, mix, n: int, seeds, steps: int) -> dict:
    """Everything for one mixture and data size: per-seed models and all figures."""
    g_test = torch.Generator().manual_seed(10_000 + dim)
    x_test = mix.sample(N_TEST, generator=g_test)
    s_true = mix.score(x_test)
    blur = {}
    for sig in SIGMAS:
        xt = x_test + sig * torch.randn(x_test.shape, generator=g_test)
        blur[sig] = (xt, mix.perturbed(1.0, sig).score(xt))
    levels = sm.NoiseLevels(SIGMAS + ANNEAL_ONLY)
    per_seed, fields = [], {sig: [] for sig in SIGMAS}
    for seed in seeds:
        g = torch.Generator().manual_seed(1000 * dim + 10 * n + seed)
        x_train, x_val = mix.sample(n, generator=g), mix.sample(max(n // 4, 50), generator=g)
        models = [train_dsm(x_train, sig, seed, steps) for sig in SIGMAS]
        net = train_ncsn(x_train, levels, seed, 2 * steps)
        with torch.no_grad():
            outs = [m(x_test) for m in models]
        for sig, o in zip(SIGMAS, outs):
            fields[sig].append(o)
        gram, lin = sm.ScoreEnsemble.ism_quadratic(models, x_val)
        ism_single = (0.5 * gram.diagonal() + lin).tolist()
        w_aff = sm.ensemble.solve_weights(gram, lin, "affine")
        w_simp = sm.ensemble.solve_weights(gram, lin, "simplex")
        flat = torch.stack([o.double() for o in outs])  # (J, n, D): the true-FD quadratic
        g_test_q = torch.einsum("jnd,knd->jk", flat, flat) / N_TEST
        c_test = torch.einsum("jnd,nd->j", flat, s_true.double()) / N_TEST
        w_oracle = sm.ensemble.solve_weights(g_test_q, -c_test, "affine")
        with torch.no_grad():
            ncsn_small = sm.at_time(net, SIGMAS[0])(x_test)
        combos = {
            "uniform": torch.full((len(SIGMAS),), 1.0 / len(SIGMAS), dtype=torch.float64),
            "affine": w_aff, "simplex": w_simp, "oracle affine": w_oracle,
        }  # fmt: skip
        rec = {
            "seed": seed,
            "fd_clean": [fisher(o, s_true) for o in outs],
            "fd_blur": [fisher(m(blur[s][0]).detach(), blur[s][1]) for m, s in zip(models, SIGMAS)],
            "ism_val": ism_single,
            "weights": {k: v.tolist() for k, v in combos.items()},
            "fd_combo": {
                k: fisher(torch.einsum("j,jnd->nd", w, flat), s_true.double())
                for k, w in combos.items()
            },
            "fd_ncsn_small": fisher(ncsn_small, s_true),
        }
        rec["best_by_ism"] = int(torch.tensor(ism_single).argmin())
        if seed == seeds[0]:
            rec["samples"] = sample_arms(mix, models, net, combos, rec["best_by_ism"], seed)
        per_seed.append(rec)
    bias2, var = [], []
    for sig in SIGMAS:
        stack = torch.stack(fields[sig]).double()  # (S, n, D)
        mean = stack.mean(0)
        bias2.append(fisher(mean, s_true))
        var.append(float(0.5 * (stack - mean).square().sum(2).mean()))
    return {"dim": dim, "n": n, "steps": steps, "per_seed": per_seed, "bias2": bias2, "var": var}


class FinalLevel(nn.Module):
    """Annealed Langevin's model: NCSN at its levels, the arm's clean-score estimate at σ_f."""

    def __init__(self, ncsn_model, final) -> None:
        super().__init__()
        self.ncsn, self.final = ncsn_model, final

    def forward(self, x, t):
        if float(t.reshape(-1)[0]) <= SIGMA_FINAL * (1 + 1e-6):
            return self.final(x)
        return self.ncsn(x, t)


def sample_arms(mix, models, net, combos, best: int, seed: int) -> dict:
    exact = mix.score
    arms = {
        "exact clean score": exact,
        f"best single σ by ISM ({SIGMAS[best]:g})": models[best],
        "uniform": sm.ScoreEnsemble(models, combos["uniform"]),
        "fitted simplex": sm.ScoreEnsemble(models, combos["simplex"]),
        "fitted affine": sm.ScoreEnsemble(models, combos["affine"]),
        f"NCSN at σ = {SIGMAS[0]:g}": sm.at_time(net, SIGMAS[0]),
    }
    above = [s for s in sorted(SIGMAS + ANNEAL_ONLY, reverse=True) if s > SIGMA_FINAL]
    grid = torch.tensor([*above, SIGMA_FINAL])
    out = {}
    for name, score in arms.items():
        gen = torch.Generator().manual_seed(seed + 77)
        res = sm.samplers.annealed_langevin(
            FinalLevel(net, score), net.process, (N_SAMPLES, mix.dim), grid=grid,
            langevin_steps=LANGEVIN_STEPS, denoise=False, generator=gen,
        )  # fmt: skip
        err = sm.metrics.mixture_error(res.x, mix)
        out[name] = {k: err[k] for k in ("weight_error", "bures_excess", "bures_noise", "total")}
    return out


def mean_sd(values) -> str:
    t = torch.tensor(values, dtype=torch.float64)
    return f"{float(t.mean()):.3g} ± {float(t.std()):.2g}" if t.numel() > 1 else f"{float(t):.3g}"


def summary(res: dict) -> dict[str, list[float]]:
    """Per-seed Fisher divergence to the clean score of each way of choosing."""
    ps = res["per_seed"]
    mean_fd = torch.tensor([r["fd_clean"] for r in ps]).mean(0)
    best_truth = int(mean_fd.argmin())
    rows = {
        f"best single σ by truth ({SIGMAS[best_truth]:g})": [r["fd_clean"][best_truth] for r in ps],
        "best single σ by held-out ISM": [r["fd_clean"][r["best_by_ism"]] for r in ps],
        "uniform average": [r["fd_combo"]["uniform"] for r in ps],
        "fitted simplex": [r["fd_combo"]["simplex"] for r in ps],
        "fitted affine": [r["fd_combo"]["affine"] for r in ps],
        "oracle affine (true FD, bound)": [r["fd_combo"]["oracle affine"] for r in ps],
        f"NCSN read at σ = {SIGMAS[0]:g}": [r["fd_ncsn_small"] for r in ps],
    }
    return rows


def report(results: list[dict], mixes, seconds: float, command: str, out: Path) -> None:
    lines = ["# Noise levels: one σ, or an average over σ?", ""]
    lines += [
        "DSM networks (residual MLP, width 64, depth 2, s = net(x)/σ, AdamW lr 2e-3, batch 256, "
        "EMA half-life 100) at σ ∈ {" + ", ".join(f"{s:g}" for s in SIGMAS) + "}, "
        f"{len(results[0]['per_seed'])} seeds; N training points plus N/4 validation points; "
        "Fisher divergences ½E‖s − s*‖² on 5000 fresh exact samples. Mean ± standard deviation "
        "over seeds.", "",
    ]  # fmt: skip
    lines += ["## Headline: Fisher divergence to the clean score ∇log p", ""]
    for dim in sorted({r["dim"] for r in results}):
        rs = [r for r in results if r["dim"] == dim]
        names = list(summary(rs[0]))
        lines += [f"### {dim}-D (½E‖∇log p‖² = {float(0.5 * mixes[dim].score(mixes[dim].sample(20000, generator=torch.Generator().manual_seed(1))).double().square().sum(1).mean()):.3g})", ""]  # fmt: skip
        lines += [
            "| choice | " + " | ".join(f"N = {r['n']} ({r['steps']} steps)" for r in rs) + " |"
        ]
        lines += ["|---|" + "---:|" * len(rs)]
        sums = [summary(r) for r in rs]
        for name in names:
            cells = [
                mean_sd(s[k]) for s in sums for k in s if k.split(" (")[0] == name.split(" (")[0]
            ]
            label = name if "truth" not in name else "best single σ by truth (σ per column below)"
            lines += [f"| {label} | " + " | ".join(cells) + " |"]
        best = [next(k for k in s if "truth" in k).split("(")[1].rstrip(")") for s in sums]
        lines += ["| (best σ by truth) | " + " | ".join(best) + " |", ""]
    lines += [
        "## Per σ: Fisher divergence (clean), bias², variance, Fisher divergence (blurred)",
        "",
    ]
    for r in results:
        ps = r["per_seed"]
        lines += [f"**{r['dim']}-D, N = {r['n']}**", ""]
        lines += [
            "| σ | FD to ∇log p | bias² | variance | FD to ∇log p_σ | held-out ISM | picked by ISM |"
        ]
        lines += ["|---:|---:|---:|---:|---:|---:|---:|"]
        for j, sig in enumerate(SIGMAS):
            picks = sum(p["best_by_ism"] == j for p in ps)
            lines += [
                f"| {sig:g} | {mean_sd([p['fd_clean'][j] for p in ps])} | {r['bias2'][j]:.3g} | "
                f"{r['var'][j]:.3g} | {mean_sd([p['fd_blur'][j] for p in ps])} | "
                f"{mean_sd([p['ism_val'][j] for p in ps])} | {picks}/{len(ps)} |"
            ]
        w = torch.tensor([p["weights"]["affine"] for p in ps]).mean(0).tolist()
        ws = torch.tensor([p["weights"]["simplex"] for p in ps]).mean(0).tolist()
        lines += ["", "mean fitted weights over σ — affine: [" + ", ".join(f"{v:.2f}" for v in w) + "], simplex: [" + ", ".join(f"{v:.2f}" for v in ws) + "]", ""]  # fmt: skip
    lines += ["## Samples: annealed Langevin, final level from each arm (seed 0)", ""]
    lines += [
        f"NCSN levels {{{', '.join(f'{s:g}' for s in sorted(SIGMAS + ANNEAL_ONLY, reverse=True) if s > SIGMA_FINAL)}}} "
        f"then a final level σ_f = {SIGMA_FINAL:g} (step 0.2 σ_f²) driven by the arm's clean-score "
        f"estimate; {LANGEVIN_STEPS} Langevin steps per level, {N_SAMPLES} samples, no final "
        "denoising. `mixture_error`: weight error (TV of mode weights) and Bures excess over exact "
        "samples (noise: the figure's standard deviation for exact samples).", "",
    ]  # fmt: skip
    for r in results:
        smp = r["per_seed"][0]["samples"]
        lines += [f"**{r['dim']}-D, N = {r['n']}**", "", "| final-level score | weight error | Bures excess (noise) | total |", "|---|---:|---:|---:|"]  # fmt: skip
        for name, e in smp.items():
            lines += [f"| {name} | {e['weight_error']:.3f} | {e['bures_excess']:.3f} ({e['bures_noise']:.3f}) | {e['total']:.3f} |"]  # fmt: skip
        lines += [""]
    lines += [
        f"Machine: {platform.machine()}, torch {torch.__version__}, 1 thread. "
        f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {seconds / 60:.1f} min: `{command}`."
    ]
    out.write_text("\n".join(lines) + "\n")


def plots(results: list[dict], path: Path) -> None:
    dims = sorted({r["dim"] for r in results})
    fig, axes = plt.subplots(len(dims), 2, figsize=(11, 4 * len(dims)), squeeze=False)
    for row, dim in enumerate(dims):
        rs = [r for r in results if r["dim"] == dim]
        ax, bx = axes[row]
        for r, colour in zip(rs, ("C0", "C1", "C2")):
            fd = torch.tensor([p["fd_clean"] for p in r["per_seed"]]).mean(0)
            ax.plot(SIGMAS, fd, "o-", color=colour, label=f"FD, N = {r['n']}")
            ax.plot(SIGMAS, r["bias2"], "--", color=colour, alpha=0.7, label="bias²")
            ax.plot(SIGMAS, r["var"], ":", color=colour, alpha=0.9, label="variance")
            aff = torch.tensor([p["fd_combo"]["affine"] for p in r["per_seed"]]).mean()
            ax.axhline(float(aff), color=colour, lw=0.8, alpha=0.6)
        ax.set(xscale="log", yscale="log", xlabel="σ", ylabel="½E‖s − ∇log p‖²",
               title=f"{dim}-D: U-curve over σ (lines: fitted affine ensemble)")  # fmt: skip
        ax.legend(fontsize=7, ncol=3)
        names = list(summary(rs[0]))
        for k, name in enumerate(names):
            vals = [torch.tensor(list(summary(r).values())[k]).mean() for r in rs]
            bx.plot([r["n"] for r in rs], vals, "o-", label=name)
        bx.set(xscale="log", yscale="log", xlabel="N", ylabel="FD to ∇log p",
               title=f"{dim}-D: ways of choosing, against data size")  # fmt: skip
        bx.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one small size, two seeds, 150 steps")
    p.add_argument("--dims", type=int, nargs="+", default=[2, 10])
    p.add_argument("--out", type=Path, default=None, help="default results/noise_levels.md")
    p.add_argument("--plot", type=Path, default=None, help="default docs/studies/noise-levels.png")
    args = p.parse_args()
    # A --quick run never overwrites the committed results unless told where to write.
    where = Path(tempfile.mkdtemp()) if args.quick else None
    args.out = args.out or (where or ROOT / "results") / "noise_levels.md"
    args.plot = args.plot or (where or ROOT.parent / "docs" / "studies") / "noise-levels.png"
    torch.set_num_threads(1)
    global N_TEST, N_SAMPLES, LANGEVIN_STEPS
    sizes, seeds = (SIZES, SEEDS) if not args.quick else ([500], [0, 1])
    if args.quick:
        N_TEST, N_SAMPLES, LANGEVIN_STEPS = 1000, 500, 20
    mixes, results, start = mixtures(), [], time.time()
    for dim in args.dims:
        for n in sizes:
            steps = 150 if args.quick else STEPS[n]
            results.append(study(dim, mixes[dim], n, seeds, steps))
            print(f"{dim}-D N={n}: {time.time() - start:.0f} s", flush=True)
    command = "python benchmarks/noise_levels.py" + (" --quick" if args.quick else "")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    report(results, mixes, time.time() - start, command, args.out)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    plots(results, args.plot)
    print(args.out.read_text())


if __name__ == "__main__":
    main()
