"""Every objective side by side: what each one learns, what it costs, how noisy its gradient is.

The same residual MLP (width 64, 2 blocks; a 32-dim noise embedding for the noise-conditional
objectives) is trained on fresh exact samples of a known Gaussian mixture — benchmarks/noise_levels.py's
2-D ring of six anisotropic modes and its 10-D mixture of four modes — with

* ESM (the true score as target), ISM (exact trace, D vector-Jacobian products), SSM (one Gaussian
  projection), SSM-VR, and DSM at σ = 0.05, 0.2, 0.5 — unconditional networks s_θ(x);
* NCSN (10 geometric levels 0.01…3, λ = σ²), continuous DSM on VP (ε-prediction, λ = σ_t²) and EDM
  (preconditioned, log-normal levels) — noise-conditional networks s_θ(x, t).

Per objective and data set it reports the Fisher divergence F = E‖s − ∇log p_σ‖² on exact samples of
p_σ = p ∗ N(0, σ²I) at σ = 0 (the clean score) and σ = 0.05, 0.2, 0.5 (a noise-conditional model is
read at its level σ, on the unscaled state: s(y) = α_t s_θ(α_t y, t) with σ_t/α_t = σ, t_min for
σ = 0), the training time per step (CPU time of the one thread), and the variance of the minibatch gradient
tr Cov(∇_θ loss) over 16 fresh batches — for the unconditional objectives at one common θ (the
ESM-trained network, so only the estimator differs) and at each objective's own trained θ (the
noise-conditional losses are σ²-weighted, so compare those with each other only).  For the 2-D data it draws
each learned field beside the true one (plots.score_comparison) and an overview of the error maps.

Run (about 15 min, niced, on two busy shared cores):  python benchmarks/objectives_compare.py
(--quick: a < 1 min smoke run that writes to a temporary folder).  Writes
benchmarks/results/objectives_compare.md (+ .json) and benchmarks/results/objectives_compare/*.png.
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
import numpy as np
import torch
from matplotlib.figure import Figure
from noise_levels import mixtures
from PIL import Image

import scorematch as sm
from scorematch import plots
from scorematch.objectives import diffusion, dsm, edm, esm, ism, ncsn, ssm
from scorematch.samplers.grids import t_of_sigma

ROOT = Path(__file__).resolve().parent
SIGMAS = (0.0, 0.05, 0.2, 0.5)  # the levels every model is read at
LR, BATCH, WIDTH, DEPTH, EMBED = 2e-3, 256, 64, 2, 32


def network(dim: int, conditional: bool, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)  # MLPScore's layers draw from the global RNG
    return sm.MLPScore(dim, width=WIDTH, depth=DEPTH, time_embed_dim=EMBED if conditional else 0,
                       seed=seed)  # fmt: skip


def objectives(mix, dim: int, seed: int) -> dict[str, dict]:
    """name → model, loss(model, x, generator), process (None: unconditional), level it targets."""
    levels = sm.NoiseLevels.geometric(0.01, 3.0, n=10)
    vp = sm.VP()
    edm_process = sm.EDM(sigma_data=float(mix.covariance().diagonal().mean().sqrt()))
    out = {
        "ESM": (lambda m, x, g: esm(m, x, mix.score), None, "0"),
        "ISM": (lambda m, x, g: ism(m, x), None, "0"),
        "SSM": (lambda m, x, g: ssm(m, x, generator=g), None, "0"),
        "SSM-VR": (lambda m, x, g: ssm(m, x, variance_reduced=True, generator=g), None, "0"),
    }
    for sigma in (0.05, 0.2, 0.5):
        out[f"DSM σ={sigma}"] = (lambda m, x, g, s=sigma: dsm(m, x, s, generator=g), None, f"{sigma}")  # fmt: skip
    out["NCSN"] = (lambda m, x, g: ncsn(m, levels, x, generator=g), levels, "all, 0.01…3")
    out["DSM, VP SDE"] = (lambda m, x, g: diffusion(m, vp, x, generator=g), vp, "all t")
    out["EDM"] = (
        lambda m, x, g: edm(m, edm_process, x, generator=g),
        edm_process,
        "all, log-normal",
    )
    specs = {}
    for name, (loss, process, target) in out.items():
        net = network(dim, process is not None, seed)
        if process is None:
            model = net
        elif isinstance(process, sm.EDM):
            model = sm.EDMPrecond(net, process)
        elif isinstance(process, sm.NoiseLevels):
            model = sm.ScorePrediction(net, process)
        else:
            model = sm.EpsilonPrediction(net, process)
        specs[name] = {"model": model, "loss": loss, "process": process, "target": target}
    return specs


def train(spec: dict, mix, steps: int, seed: int) -> float:
    """Adam on fresh exact samples; returns the time per step (loss, backward and update) as process
    CPU time: with one thread it is the wall time of an idle machine, and on a shared one it does
    not count the time other processes hold the core."""
    model, loss_fn = spec["model"], spec["loss"]
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g_data, g_loss = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)
    spent = 0.0
    for _ in range(steps):
        x = mix.sample(BATCH, generator=g_data)  # drawing the data is not the objective's cost
        start = time.process_time()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model, x, g_loss)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        spent += time.process_time() - start
    return spent / steps


def read_at(spec: dict, sigma: float):
    """The model as a score of the unscaled blurred law p_σ: y ↦ α_t s_θ(α_t y, t), σ_t/α_t = σ."""
    model, process = spec["model"], spec["process"]
    if process is None:
        return model
    t = process.t_min if sigma == 0 else t_of_sigma(process, sigma)
    t = min(max(t, process.t_min), process.t_max)
    alpha = float(process.marginal(torch.tensor(t, dtype=torch.float64))[0])

    def score(y):
        return alpha * model(alpha * y, torch.full((y.shape[0],), t, dtype=y.dtype))

    return score


def evaluate(spec: dict, mix, seed: int) -> dict[str, dict[str, float]]:
    out = {}
    for sigma in SIGMAS:
        law = mix if sigma == 0 else mix.perturbed(1.0, sigma)
        fd = sm.metrics.fisher_divergence(
            read_at(spec, sigma), law, n=4000, generator=torch.Generator().manual_seed(seed + 7)
        )
        out[f"{sigma:g}"] = {k: fd[k] for k in ("fisher", "stderr", "scale", "relative")}
    return out


def grad_variance(model, loss_fn, mix, seed: int, batches: int = 16) -> float:
    """tr Cov of the minibatch gradient over ``batches`` fresh batches (data and noise)."""
    g_data, g_loss = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)
    grads = []
    for _ in range(batches):
        model.zero_grad(set_to_none=True)
        loss_fn(model, mix.sample(BATCH, generator=g_data), g_loss).backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None]))  # fmt: skip
    g = torch.stack(grads).double()
    model.zero_grad(set_to_none=True)
    return float(g.var(0).sum())


def target_level(name: str, spec: dict) -> float:
    """The level an objective is drawn at in the 'target' overview: its σ for DSM at one σ, 0.2 for
    the noise-conditional ones (they target every level), 0 for ESM, ISM and SSM."""
    if spec["process"] is not None:
        return 0.2
    return float(name.split("=")[1]) if "=" in name else 0.0


def overview(specs: dict, mix, path: Path, title: str, at_target: bool) -> None:
    """Error maps log₁₀‖s_θ − ∇log p_σ‖ with the learned arrows, one panel per objective: at σ = 0,
    or (``at_target``) at the level each objective targets."""
    names = list(specs)
    cols = 5
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(3.3 * cols, 3.3 * rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, name in zip(axes, names):
        sigma = target_level(name, specs[name]) if at_target else 0.0
        law = mix if sigma == 0 else mix.perturbed(1.0, sigma)
        sd = law.covs.diagonal(dim1=1, dim2=2).sqrt()
        lo = (law.means - 4 * sd).min(0).values.tolist()
        hi = (law.means + 4 * sd).max(0).values.tolist()
        xlim, ylim = (lo[0], hi[0]), (lo[1], hi[1])
        fn = read_at(specs[name], sigma)
        gx, gy, learned, true, log_p, fisher = plots.score_error_map(fn, law, xlim, ylim, grid=101)
        err = np.log10(np.maximum(np.linalg.norm(learned - true, axis=1), 1e-4)).reshape(gx.shape)
        ax.imshow(err, origin="lower", extent=(*xlim, *ylim), cmap="magma", vmin=-2, vmax=1.5,
                  aspect="auto")  # fmt: skip
        ax.contour(gx, gy, log_p, levels=[log_p.max() - 4.5, log_p.max() - 1.5], colors="white",
                   linewidths=0.6)  # fmt: skip
        ax_, ay_, learned_a, _, _, _ = plots.score_error_map(fn, law, xlim, ylim, grid=15)
        norm = np.linalg.norm(learned_a, axis=1, keepdims=True)
        arrows = learned_a / np.maximum(norm, 1e-12) * np.log1p(norm)
        ax.quiver(ax_.ravel(), ay_.ravel(), arrows[:, 0], arrows[:, 1], color="#79c0ff",
                  angles="xy", width=0.006)  # fmt: skip
        ax.set_title(f"{name} at σ = {sigma:g}: F = {fisher:.3g}", fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
    for ax in axes[len(names) :]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def fields(specs: dict, mix, folder: Path, seed: int) -> list[str]:
    """One plots.score_comparison per objective: at σ = 0 and, if it targets one, at its level."""
    written = []
    clock = sm.EDM(sigma_min=1e-3, sigma_max=80.0)  # α = 1, t = σ: the unscaled blurred laws
    for name, spec in specs.items():
        target = target_level(name, spec)

        def model(y, t, spec=spec):
            return read_at(spec, float(t[0]))(y)

        stem = name.lower().replace(" ", "_").replace("σ=", "sigma").replace(",", "")
        path = folder / f"{stem}.png"
        times = [0.0] + ([target] if target else [])
        plots.score_comparison(model, mix, path, process=clock, times=times, title=name)
        written.append(path.name)
    return written


def run(dim: int, mix, steps: int, seed: int, folder: Path | None, progress) -> dict:
    specs = objectives(mix, dim, seed)
    res = {}
    for name, spec in specs.items():
        per_step = train(spec, mix, steps, seed)
        spec["model"].requires_grad_(False)
        res[name] = {"target": spec["target"], "ms_per_step": 1000 * per_step,
                     "fd": evaluate(spec, mix, seed)}  # fmt: skip
        spec["model"].requires_grad_(True)
        progress(f"{dim}-D {name}: {1000 * per_step:.1f} ms/step, F(σ=0) = {res[name]['fd']['0']['fisher']:.3g}")  # fmt: skip
    common = specs["ESM"]["model"]
    for name, spec in specs.items():
        res[name]["grad_var_own"] = grad_variance(spec["model"], spec["loss"], mix, seed + 100)
        if spec["process"] is None:
            res[name]["grad_var_common"] = grad_variance(common, spec["loss"], mix, seed + 100)
    if folder is not None:
        for spec in specs.values():
            spec["model"].requires_grad_(False)
        overview(specs, mix, folder / "overview_2d.png",
                 f"2-D ring, {steps} steps: log₁₀‖s_θ − ∇log p‖ at σ = 0 (white: where the data are)",
                 at_target=False)  # fmt: skip
        overview(specs, mix, folder / "overview_2d_target.png",
                 f"2-D ring, {steps} steps: log₁₀‖s_θ − ∇log p_σ‖ at the level each objective targets",
                 at_target=True)  # fmt: skip
        res["_pictures"] = ["overview_2d.png", "overview_2d_target.png",
                            *fields(specs, mix, folder, seed)]  # fmt: skip
        for name in res["_pictures"]:
            shrink(folder / name)
    return res


def shrink(path: Path) -> None:
    """Re-save a picture with a 128-colour palette (a third of the bytes, for the repository)."""
    with Image.open(path) as im:
        rgb = im.convert("RGB")
    rgb.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)  # fmt: skip


def fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.2e}"


def report(results: dict, steps: int, seconds: float, command: str, path: Path) -> None:
    lines = [
        "# Objectives side by side: what each learns, its cost, its gradient noise",
        "",
        f"Command: `{command}` ({seconds / 60:.1f} min, {platform.processor() or platform.machine()},"
        f" torch {torch.__version__}, one thread, niced on a shared machine;"
        f" {datetime.now(timezone.utc):%Y-%m-%d}). Time per step is the thread's CPU time (loss,"
        " backward, update; not the data draw), robust to other processes on the machine.",
        f"Setup: benchmarks/objectives_compare.py's docstring. {steps} Adam steps (lr {LR}, cosine),"
        f" batch {BATCH}, fresh exact samples, width {WIDTH}, {DEPTH} blocks.",
        "F = E‖s − ∇log p_σ‖² on 4 000 exact samples of p_σ (± its standard error; in brackets F"
        " relative to E‖∇log p_σ‖², the F of the zero score). **Bold**: the best F in each column.",
        "",
    ]
    for dim, res in results.items():
        names = [n for n in res if not n.startswith("_")]
        scale = {s: res[names[0]]["fd"][f"{s:g}"]["scale"] for s in SIGMAS}
        lines += [
            f"## {dim}-D mixture",
            "",
            "E‖∇log p_σ‖² (the scale): " + ", ".join(f"σ = {s:g}: {scale[s]:.3g}" for s in SIGMAS),
            "",
            "| objective | targets σ | "
            + " | ".join(f"F at σ = {s:g}" for s in SIGMAS)
            + " | CPU ms / step | grad variance, own θ | at the ESM θ |",
            "|---|---|" + "---:|" * (len(SIGMAS) + 3),
        ]
        best = {s: min(res[n]["fd"][f"{s:g}"]["fisher"] for n in names) for s in SIGMAS}
        for n in names:
            cells = []
            for s in SIGMAS:
                f = res[n]["fd"][f"{s:g}"]
                cell = f"{fmt(f['fisher'])} ± {f['stderr']:.2g} ({f['relative']:.2g})"
                cells.append(f"**{cell}**" if f["fisher"] == best[s] else cell)
            lines.append(
                f"| {n} | {res[n]['target']} | " + " | ".join(cells)
                + f" | {res[n]['ms_per_step']:.1f} | {fmt(res[n]['grad_var_own'])} | "
                + (fmt(res[n]["grad_var_common"]) if "grad_var_common" in res[n] else "–") + " |"
            )  # fmt: skip
        lines.append("")
    lines += [
        "Gradient variance: tr Cov of the batch-256 gradient over 16 fresh batches (data and noise),",
        "at the objective's own trained θ, and for the unconditional objectives also at one common θ",
        "(the ESM-trained network: only the estimator differs). The noise-conditional losses are",
        "σ²-weighted: compare those three with each other only.",
        "",
        "Pictures (2-D), in `benchmarks/results/objectives_compare/`: `overview_2d.png` (every",
        "objective at σ = 0), `overview_2d_target.png` (at the level each targets) and one",
        "`plots.score_comparison` per objective.",
    ]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="40 steps, to a temporary folder")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--out", type=Path, default=None, help="default results/objectives_compare.md")
    args = p.parse_args()
    where = Path(tempfile.mkdtemp()) if args.quick else ROOT / "results"
    out = args.out or where / "objectives_compare.md"
    folder = out.with_suffix("")
    folder.mkdir(parents=True, exist_ok=True)
    steps = args.steps or (40 if args.quick else 2000)
    torch.set_num_threads(1)
    start = time.time()

    def progress(msg):
        print(f"{msg}  [{time.time() - start:.0f} s]", flush=True)

    mixes, results = mixtures(), {}
    for dim in (2, 10):
        results[dim] = run(dim, mixes[dim], steps, 0, folder if dim == 2 else None, progress)
    command = "python benchmarks/objectives_compare.py" + (" --quick" if args.quick else "")
    report(results, steps, time.time() - start, command, out)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    print(out.read_text())


if __name__ == "__main__":
    main()
