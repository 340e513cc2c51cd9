"""Is the time-dependent score unique?  (issue #14, part 2), measured against exact mixture scores.

(a) Continuous DSM has one minimiser, ∇log p_t: networks trained with ε-, x₀-, (unscaled)
    score-prediction and EDM preconditioning, under the σ²-, likelihood- (importance-sampled) and EDM weightings,
    are measured as training proceeds — their σ_t²-weighted distance to the exact score and to each
    other, E_{p_t} σ_t²‖s_a − s_b‖² (noise units: ‖ε̂_a − ε̂_b‖²), at several t.
(b) What is not unique: the reverse dynamics (the η family, ``euler_maruyama(eta=η)``, driven by
    the exact score: ``mixture_error`` against steps for each η, on VP, VE and EDM) and the
    process (VE/VP/EDM scores differ at the same t, but are one family up to clock and scale:
    s_VP(x, t) = s_EDM(x/α_t, σ̂_t)/α_t with σ̂ = σ_t/α_t).
(c) Where p_t ≈ 0 the score is not identified: networks of three seeds (ε-prediction, σ²
    weighting) evaluated on a grid around the data, their disagreement binned by log p_t(x).

Data: fresh exact samples (200 000 drawn once), so the only error is the network's and the
optimiser's.  Run (about 10 min on one core): python benchmarks/uniqueness.py  (--quick: < 1 min)
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.ticker
import torch

import scorematch as sm
from scorematch.objectives import diffusion, edm

ROOT = Path(__file__).resolve().parent
CHECKPOINTS = [250, 500, 1000, 2000, 4000, 8000]
TIMES = [0.01, 0.05, 0.2, 0.5]
ETAS = [0.0, 0.25, 0.5, 1.0, 1.5, 2.0]
STEP_COUNTS = [10, 20, 50, 100, 200, 1000]
BINS = [0.0, -2.0, -5.0, -10.0, -20.0, -40.0, -float("inf")]  # log p_t bin edges, decreasing


def mixture() -> sm.GaussianMixture:
    return sm.GaussianMixture(
        means=[[-2.0, 0.0], [2.0, 1.0], [0.0, -2.0]],
        covs=[[[0.5, 0.2], [0.2, 0.3]], [[0.2, 0.0], [0.0, 0.6]], [[0.3, -0.1], [-0.1, 0.3]]],
        weights=[0.5, 0.3, 0.2],
    )


def variants(process) -> dict[str, tuple]:
    """name -> (wrapper class, loss function); every network is the same MLP."""
    sig2 = lambda m, b, g: diffusion(m, process, b, generator=g)  # noqa: E731
    imp = lambda m, b, g: diffusion(m, process, b, weighting="importance", generator=g)  # noqa: E731
    edm_loss = lambda m, b, g: edm(m, process, b, generator=g)  # noqa: E731
    return {
        "ε-prediction, σ² weighting": (sm.EpsilonPrediction, sig2),
        "x₀-prediction, σ² weighting": (sm.DataPrediction, sig2),
        # score = net/σ would be ε-prediction with net ↦ −net (the same training run, mirrored),
        # so the score network here predicts the score itself, unscaled.
        "score-prediction (raw), σ² weighting": (raw_score, sig2),
        "ε-prediction, likelihood weighting": (sm.EpsilonPrediction, imp),
        "EDM preconditioning, EDM loss": (sm.EDMPrecond, edm_loss),
    }


def raw_score(net, process):
    return sm.ScorePrediction(net, process, scale_by_sigma=False)


def build(cls, process, seed: int):
    torch.manual_seed(seed)
    net = sm.MLPScore(2, width=128, depth=3, time_embed_dim=32, seed=seed)
    return cls(net, process)


def field_distances(models: dict, mix, process, n: int = 2000) -> dict:
    """Per t: each model's E σ_t²‖s − s*‖² and the mean over pairs of E σ_t²‖s_a − s_b‖²."""
    g = torch.Generator().manual_seed(7)
    exact = mix.score_model(process)
    out = {}
    for t in TIMES:
        alpha, sigma = (float(v) for v in process.marginal(torch.tensor(t)))
        x = mix.perturbed(alpha, sigma).sample(n, generator=g)
        with torch.no_grad():
            fields = {k: m(x, t) for k, m in models.items()}
            truth = exact(x, t)
        to_exact = {
            k: float(sigma**2 * (f - truth).square().sum(1).mean()) for k, f in fields.items()
        }
        pairs = [
            float(sigma**2 * (fields[a] - fields[b]).square().sum(1).mean())
            for a, b in itertools.combinations(fields, 2)
        ]
        out[t] = {"to_exact": to_exact, "pairwise": sum(pairs) / max(len(pairs), 1)}
    return out


def part_a(mix, process, data, checkpoints) -> tuple[dict, dict]:
    trainers = {}
    for name, (cls, loss) in variants(process).items():
        trainers[name] = sm.Trainer(
            build(cls, process, 0), loss, data, batch_size=256, lr=2e-3, warmup_steps=200,
            ema_half_life=200, checkpoint_every=None, log_every=250, seed=0, progress=False,
        )  # fmt: skip
    history = {}
    for step in checkpoints:
        for tr in trainers.values():
            tr.fit(step)
        history[step] = field_distances(
            {k: tr.ema_model for k, tr in trainers.items()}, mix, process
        )
        print(f"  (a) step {step}", flush=True)
    return history, {k: tr.ema_model for k, tr in trainers.items()}


def part_b(mix, n: int, step_counts) -> dict:
    out = {}
    for process in (sm.VP(), sm.VE(), sm.EDM()):
        exact = mix.score_model(process)
        rows = {}
        for eta in ETAS:
            for steps in step_counts:
                gen = torch.Generator().manual_seed(11)
                res = sm.samplers.euler_maruyama(
                    exact, process, (n, 2), steps, eta=eta, generator=gen
                )
                e = sm.metrics.mixture_error(res.x, mix)
                rows[(eta, steps)] = {k: e[k] for k in ("weight_error", "bures_excess", "bures_noise", "total")}  # fmt: skip
        out[type(process).__name__] = rows
    return out


def process_family(mix) -> dict:
    """Scores of VE/VP/EDM at the same t differ; VP's is EDM's rescaled at σ̂ = σ_t/α_t."""
    vp, ve, edm_p = sm.VP(), sm.VE(), sm.EDM()
    x = mix.sample(2000, generator=torch.Generator().manual_seed(3)).double()
    mix64 = mix.to(dtype=torch.float64)
    rows = {}
    for t in (0.05, 0.2, 0.5):
        tt = torch.tensor(t, dtype=torch.float64)
        alpha, sigma = vp.marginal(tt)
        s_vp = mix64.score_model(vp)(x, tt)
        s_ve = mix64.score_model(ve)(x, tt)
        s_edm_same_t = mix64.score_model(edm_p)(x, tt.clamp_min(edm_p.t_min))
        s_edm = mix64.score_model(edm_p)(x / alpha, sigma / alpha) / alpha
        rms = lambda a, b: float((a - b).square().sum(1).mean().sqrt())  # noqa: E731
        rows[t] = {
            "VP vs VE, same t": rms(s_vp, s_ve),
            "VP vs EDM, same t": rms(s_vp, s_edm_same_t),
            "VP vs rescaled EDM at σ̂": rms(s_vp, s_edm),
            "RMS ‖s_VP‖": float(s_vp.square().sum(1).mean().sqrt()),
        }
    return rows


def part_c(mix, process, data, first_model, steps: int) -> dict:
    cls, loss = variants(process)["ε-prediction, σ² weighting"]
    models = [first_model]
    for seed in (1, 2):
        tr = sm.Trainer(
            build(cls, process, seed), loss, data, batch_size=256, lr=2e-3, warmup_steps=200,
            ema_half_life=200, checkpoint_every=None, log_every=250, seed=seed, progress=False,
        )  # fmt: skip
        tr.fit(steps)
        models.append(tr.ema_model)
    axis = torch.linspace(-8, 8, 161)
    x = torch.cartesian_prod(axis, axis)
    exact = mix.score_model(process)
    out = {}
    for t in (0.01, 0.05, 0.2):
        _, sigma = (float(v) for v in process.marginal(torch.tensor(t)))
        with torch.no_grad():
            fields = [m(x, t) for m in models]
            truth = exact(x, t)
            logp = exact.log_prob(x, t)
        rows = []
        for hi, lo in itertools.pairwise(BINS):
            mask = (logp <= hi) & (logp > lo) if hi < 0 else logp > lo
            if not bool(mask.any()):
                continue
            pair = torch.stack([(a[mask] - b[mask]).norm(dim=1) for a, b in itertools.combinations(fields, 2)]).mean(0)  # fmt: skip
            err = torch.stack([(f[mask] - truth[mask]).norm(dim=1) for f in fields]).mean(0)
            scale = truth[mask].norm(dim=1)
            rows.append({
                "bin": (hi, lo), "points": int(mask.sum()),
                "seed disagreement σ‖Δs‖": float(sigma * pair.mean()),
                "error to exact σ‖s − s*‖": float(sigma * err.mean()),
                "relative disagreement ‖Δs‖/‖s*‖": float((pair / scale).median()),
            })  # fmt: skip
        out[t] = rows
    return out


def report(hist, etas, family, unident, seconds, command, out: Path) -> None:
    names = list(next(iter(hist.values()))[TIMES[0]]["to_exact"])
    lines = ["# Is the time-dependent score unique?", ""]
    lines += ["## (a) One minimiser: five parametrizations and weightings converge to ∇log p_t", ""]
    lines += [
        "VP process, MLP width 128 × 3 blocks, AdamW lr 2e-3, batch 256, EMA half-life 200; fresh "
        "exact samples. Distances are E_{p_t} σ_t²‖s_a − s_b‖² on 2000 exact samples of p_t "
        "(noise units; the exact score has E σ_t²‖s*‖² ≈ 2 at large t).", "",
    ]  # fmt: skip
    lines += ["| step | " + " | ".join(f"t = {t:g}: to exact (mean) | t = {t:g}: between models" for t in TIMES) + " |"]  # fmt: skip
    lines += ["|---:|" + "---:|---:|" * len(TIMES)]
    for step, per_t in hist.items():
        cells = []
        for t in TIMES:
            d = per_t[t]
            cells += [
                f"{sum(d['to_exact'].values()) / len(d['to_exact']):.4f}",
                f"{d['pairwise']:.4f}",
            ]
        lines += [f"| {step} | " + " | ".join(cells) + " |"]
    last = hist[max(hist)]
    lines += ["", "At the last step, to the exact score, per model:", "", "| model | " + " | ".join(f"t = {t:g}" for t in TIMES) + " |", "|---|" + "---:|" * len(TIMES)]  # fmt: skip
    for name in names:
        lines += [
            f"| {name} | " + " | ".join(f"{last[t]['to_exact'][name]:.4f}" for t in TIMES) + " |"
        ]
    lines += ["", "The conversions between parametrizations are exact identities: "
              "`tests/test_parametrization.py` feeds each wrapper the perfect network and recovers "
              "the exact score to 1e-10.", ""]  # fmt: skip
    lines += ["## (b) Not unique: the reverse dynamics (η) and the process", ""]
    lines += ["Euler–Maruyama on dx = [f x − ½(1 + η²) g² ∇log p_t] dt + η g dW̄ with the exact "
              "mixture score, the process's default grid, 4000 samples; `mixture_error` total "
              "(weight error + Bures excess / scale; exact samples ≈ 0.01).", ""]  # fmt: skip
    for pname, rows in etas.items():
        steps = sorted({s for _, s in rows})
        lines += [f"**{pname}**", "", "| η | " + " | ".join(f"{s} steps" for s in steps) + " |", "|---:|" + "---:|" * len(steps)]  # fmt: skip
        for eta in ETAS:
            lines += [
                f"| {eta:g} | " + " | ".join(f"{rows[(eta, s)]['total']:.3f}" for s in steps) + " |"
            ]
        lines += [""]
    lines += ["Scores of the exact mixture at the same t under different processes (RMS over "
              "2000 data points), and VP's against EDM's rescaled to VP's σ̂ = σ_t/α_t:", ""]  # fmt: skip
    keys = list(next(iter(family.values())))
    lines += ["| t | " + " | ".join(keys) + " |", "|---:|" + "---:|" * len(keys)]
    for t, r in family.items():
        lines += [f"| {t:g} | " + " | ".join(f"{r[k]:.3g}" for k in keys) + " |"]
    lines += ["", "## (c) Not identified where p_t ≈ 0: three seeds, binned by log p_t(x)", ""]
    lines += ["ε-prediction networks (σ² weighting) of seeds 0, 1, 2 on a 161 × 161 grid over "
              "[−8, 8]²; σ‖Δs‖ is the mean pairwise seed disagreement in noise units.", ""]  # fmt: skip
    for t, rows in unident.items():
        lines += [f"**t = {t:g}**", "", "| log p_t bin | points | seed disagreement σ‖Δs‖ | error to exact σ‖s − s*‖ | median ‖Δs‖/‖s*‖ |", "|---|---:|---:|---:|---:|"]  # fmt: skip
        for r in rows:
            hi, lo = r["bin"]
            label = f"> {lo:g}" if hi == 0.0 else f"({lo:g}, {hi:g}]"
            lines += [f"| {label} | {r['points']} | {r['seed disagreement σ‖Δs‖']:.3f} | {r['error to exact σ‖s − s*‖']:.3f} | {r['relative disagreement ‖Δs‖/‖s*‖']:.3f} |"]  # fmt: skip
        lines += [""]
    lines += [f"Machine: {platform.machine()}, torch {torch.__version__}, 1 thread. Run "
              f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {seconds / 60:.1f} min: `{command}`."]  # fmt: skip
    out.write_text("\n".join(lines) + "\n")


def plots(hist, etas, unident, path: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    steps = list(hist)
    for t in TIMES:
        to_exact = [
            sum(hist[s][t]["to_exact"].values()) / len(hist[s][t]["to_exact"]) for s in steps
        ]
        line = axes[0].plot(steps, to_exact, "o-", label=f"t = {t:g}: to exact")[0]
        axes[0].plot(steps, [hist[s][t]["pairwise"] for s in steps], "x--", color=line.get_color(), label="between models")  # fmt: skip
    axes[0].set(xscale="log", yscale="log", xlabel="training step", ylabel="E σ_t²‖Δs‖²",
                title="(a) five parametrizations → one field")  # fmt: skip
    axes[0].xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes[0].legend(fontsize=7, ncol=2)
    rows = etas["VP"]
    counts = sorted({s for _, s in rows})
    for eta in ETAS:
        axes[1].plot(counts, [rows[(eta, s)]["total"] for s in counts], "o-", label=f"η = {eta:g}")
    axes[1].set(xscale="log", yscale="log", xlabel="steps", ylabel="mixture_error total",
                title="(b) the η family on VP, exact score")  # fmt: skip
    axes[1].legend(fontsize=7)
    for t, rs in unident.items():
        axes[2].plot([r["bin"][1] if r["bin"][1] > -1e9 else -60 for r in rs],
                     [r["seed disagreement σ‖Δs‖"] for r in rs], "o-", label=f"t = {t:g}")  # fmt: skip
    axes[2].set(xlabel="log p_t bin (lower edge)", ylabel="σ‖s_i − s_j‖ between seeds", yscale="log",
                title="(c) seeds disagree where p_t ≈ 0")  # fmt: skip
    axes[2].invert_xaxis()
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="few steps, few samples: a smoke run")
    p.add_argument("--out", type=Path, default=None, help="default results/uniqueness.md")
    p.add_argument("--plot", type=Path, default=None, help="default docs/studies/uniqueness.png")
    p.add_argument(
        "--replot", type=Path, default=None, help="redraw the figure from a results .json"
    )
    args = p.parse_args()
    if args.replot is not None:
        raw = json.loads(args.replot.read_text())
        hist = {int(k): {float(t): d for t, d in v.items()} for k, v in raw["a"].items()}
        etas = {pn: {tuple(float(x) for x in k.split(",")): v for k, v in r.items()} for pn, r in raw["b"].items()}  # fmt: skip
        etas = {pn: {(e, int(n)): v for (e, n), v in r.items()} for pn, r in etas.items()}
        unident = {float(t): rows for t, rows in raw["c"].items()}
        plots(hist, etas, unident, args.plot or ROOT.parent / "docs" / "studies" / "uniqueness.png")
        return
    where = Path(tempfile.mkdtemp()) if args.quick else None
    args.out = args.out or (where or ROOT / "results") / "uniqueness.md"
    args.plot = args.plot or (where or ROOT.parent / "docs" / "studies") / "uniqueness.png"
    torch.set_num_threads(1)
    start, mix = time.time(), mixture()
    data = mix.sample(200_000, generator=torch.Generator().manual_seed(0))
    checkpoints = [50, 100] if args.quick else CHECKPOINTS
    hist, models = part_a(mix, sm.VP(), data, checkpoints)
    etas = part_b(mix, 500 if args.quick else 4000, [10, 100] if args.quick else STEP_COUNTS)
    print(f"  (b) {time.time() - start:.0f} s", flush=True)
    family = process_family(mix)
    first = models["ε-prediction, σ² weighting"]
    unident = part_c(mix, sm.VP(), data, first, checkpoints[-1])
    command = "python benchmarks/uniqueness.py" + (" --quick" if args.quick else "")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    report(hist, etas, family, unident, time.time() - start, command, args.out)
    raw = {"a": {str(k): v for k, v in hist.items()},
           "b": {p: {f"{e},{s}": v for (e, s), v in r.items()} for p, r in etas.items()},
           "process": family, "c": unident}  # fmt: skip
    args.out.with_suffix(".json").write_text(json.dumps(raw, indent=1, default=str))
    plots(hist, etas, unident, args.plot)
    print(args.out.read_text())


if __name__ == "__main__":
    main()
