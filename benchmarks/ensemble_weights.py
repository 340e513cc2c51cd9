"""How well ScoreEnsemble.fit's affine weights are determined, and whether a ridge should be the default.

The held-out ISM of Σ wⱼ sⱼ is ½wᵀGw + wᵀb (G = E[sⱼ·s_k], b = E[tr ∇sⱼ]) estimated on N validation
rows.  Denoising members at neighbouring σ are nearly collinear, so G is ill-conditioned and the
affine minimiser moves far along its flat direction with the Monte Carlo error of (G, b).  A relative
ridge ρ·mean(diag G)·I damps that direction (it pulls w towards the minimum-norm affine weights).

Part A (where ρ is chosen): the 2-D mixture of docs/examples/averaging.py with *exact* blurred
scores at σ = 0.1, 0.2, 0.4 as members (bias only); 10 validation draws at N = 1 000, 5 000,
25 000; the Fisher divergence ½E‖ŝ − ∇log p‖² of each fitted ensemble on 50 000 exact samples.
ρ* = the grid value with the lowest geometric mean over N of the mean Fisher divergence.

Part B (where ρ* is judged, not chosen): *trained* DSM networks (benchmarks/noise_levels.py's
members: residual MLP, σ ∈ {0.02, …, 1}, 5 000 training points, 1 500 steps) on that study's 2-D
ring and 10-D mixture, two seeds each; 10 fresh validation draws at N = 250, 1 250, 5 000; the
same Fisher divergence on 5 000 test samples.  Compared: ρ = 1e-10 (the old default), ρ*, the
simplex, the best single member by held-out ISM, and the oracle affine weights (fitted with the
true score on the test set: the best the members' span allows).

Run (16 min niced on a loaded, shared 2-core machine):  python benchmarks/ensemble_weights.py   (--quick: < 1 min smoke run)
Writes benchmarks/results/ensemble_weights.md (+ .json).
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

import torch
from noise_levels import SIGMAS, mixtures, train_dsm

import scorematch as sm
from scorematch.ensemble import solve_weights

ROOT = Path(__file__).resolve().parent
RIDGES = (1e-10, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2)
F64 = torch.float64


def fisher_quadratic(outs: torch.Tensor, truth: torch.Tensor):
    """(B, c, e) with ½E‖Σwⱼsⱼ − s*‖² = ½wᵀBw − wᵀc + e for member outputs (J, n, D)."""
    n = truth.shape[0]
    big = torch.einsum("jnd,knd->jk", outs, outs) / n
    c = torch.einsum("jnd,nd->j", outs, truth) / n
    e = float(0.5 * truth.square().sum(1).mean())
    return big, c, e


def fd(w: torch.Tensor, quad) -> float:
    big, c, e = quad
    return float(0.5 * w @ big @ w - w @ c + e)


def fits(members, x_val: torch.Tensor) -> dict[str, torch.Tensor]:
    gram, lin = sm.ScoreEnsemble.ism_quadratic(members, x_val)
    out = {f"affine ρ={r:g}": solve_weights(gram, lin, "affine", ridge=r) for r in RIDGES}
    out["simplex"] = solve_weights(gram, lin, "simplex")
    single = torch.zeros(len(members), dtype=F64)
    single[int((0.5 * gram.diagonal() + lin).argmin())] = 1.0
    out["best single by held-out ISM"] = single
    return out


def sweep(members, quad, draw, sizes, draws) -> dict:
    """Per N: every method's Fisher divergences and weights over ``draws`` validation draws."""
    res = {}
    for n in sizes:
        rows = {}
        for r in range(draws):
            for name, w in fits(members, draw(n, r)).items():
                rows.setdefault(name, {"fd": [], "w": []})
                rows[name]["fd"].append(fd(w, quad))
                rows[name]["w"].append(w.tolist())
        res[n] = rows
    return res


def part_a(sizes, draws) -> dict:
    mix = sm.GaussianMixture([[-2.0, 0.0], [2.0, 1.0]], [[0.5, 0.3], [0.2, 0.6]], [0.6, 0.4], dtype=F64)  # fmt: skip
    sigmas = (0.1, 0.2, 0.4)
    members = [mix.perturbed(1.0, s).score for s in sigmas]
    x_test = mix.sample(50_000, generator=torch.Generator().manual_seed(7))
    quad = fisher_quadratic(torch.stack([m(x_test) for m in members]), mix.score(x_test))
    oracle = solve_weights(quad[0], -quad[1], "affine")

    def draw(n, r):
        return mix.sample(n, generator=torch.Generator().manual_seed(1000 + r))

    return {
        "sigmas": sigmas,
        "members": [fd(torch.eye(3, dtype=F64)[j], quad) for j in range(3)],
        "oracle": {"w": oracle.tolist(), "fd": fd(oracle, quad)},
        "sweep": sweep(members, quad, draw, sizes, draws),
    }


def choose(a: dict) -> float:
    def score(r):
        return sum(math.log(sum(a["sweep"][n][f"affine ρ={r:g}"]["fd"])) for n in a["sweep"])

    return min(RIDGES, key=score)


def part_b(dims, seeds, steps, n_train, sizes, draws, progress) -> list[dict]:
    mixes, out = mixtures(), []
    for dim in dims:
        mix = mixes[dim]
        x_test = mix.sample(5000, generator=torch.Generator().manual_seed(10_000 + dim))
        truth = mix.score(x_test).double()
        for seed in seeds:
            x_train = mix.sample(n_train, generator=torch.Generator().manual_seed(100 * dim + seed))
            members = [train_dsm(x_train, s, seed, steps) for s in SIGMAS]
            for m in members:
                m.requires_grad_(False)
            with torch.no_grad():
                outs = torch.stack([m(x_test).double() for m in members])
            quad = fisher_quadratic(outs, truth)
            oracle = solve_weights(quad[0], -quad[1], "affine")

            def draw(n, r, dim=dim, seed=seed, mix=mix):
                g = torch.Generator().manual_seed(50_000 + 1000 * dim + 100 * seed + r)
                return mix.sample(n, generator=g)

            out.append({
                "dim": dim, "seed": seed,
                "members": [fd(torch.eye(len(SIGMAS), dtype=F64)[j], quad) for j in range(len(SIGMAS))],
                "oracle": {"w": oracle.tolist(), "fd": fd(oracle, quad)},
                "cond": float(torch.linalg.cond(quad[0])),
                "sweep": sweep(members, quad, draw, sizes, draws),
            })  # fmt: skip
            progress(f"B: {dim}-D seed {seed}")
    return out


def mean(v) -> float:
    return sum(v) / len(v)


def sd(v) -> float:
    m = mean(v)
    return math.sqrt(sum((x - m) ** 2 for x in v) / max(len(v) - 1, 1))


def report(a: dict, rho: float, b: list[dict], seconds: float, command: str, path: Path) -> None:
    sizes_a = list(a["sweep"])
    lines = [
        "# Affine ensemble weights: how well held-out ISM determines them, and a ridge default",
        "",
        f"Command: `{command}` ({seconds / 60:.1f} min, {platform.processor() or platform.machine()},"
        f" torch {torch.__version__}, one thread; {datetime.now(timezone.utc):%Y-%m-%d}).",
        "What is measured: see the docstring of benchmarks/ensemble_weights.py. Fisher divergence",
        "FD = ½E‖ŝ − ∇log p‖² against the exact score; mean (max) over the validation draws.",
        "",
        "## A. Exact blurred scores at σ = 0.1, 0.2, 0.4 (the data ρ is chosen on)",
        "",
        "Members' FD: " + ", ".join(f"{v:.5f}" for v in a["members"]) + "; oracle affine weights "
        + "(" + ", ".join(f"{v:.3f}" for v in a["oracle"]["w"]) + f"), FD {a['oracle']['fd']:.2e}.",
        "",
        "| method | " + " | ".join(f"N = {n}: FD mean (max)" for n in sizes_a) + " | "
        + " | ".join(f"N = {n}: weight sd" for n in sizes_a) + " |",
        "|---|" + "---:|" * (2 * len(sizes_a)),
    ]  # fmt: skip
    for name in a["sweep"][sizes_a[0]]:
        cells = [
            f"{mean(a['sweep'][n][name]['fd']):.2e} ({max(a['sweep'][n][name]['fd']):.2e})"
            for n in sizes_a
        ]
        spread = []
        for n in sizes_a:
            ws = torch.tensor(a["sweep"][n][name]["w"])
            spread.append(", ".join(f"{v:.2f}" for v in ws.std(0).tolist()))
        lines.append(f"| {name} | " + " | ".join(cells + spread) + " |")
    lines += [
        "",
        f"Chosen on A: **ρ* = {rho:g}** (lowest geometric mean over N of the mean FD).",
        "",
    ]
    sizes_b = list(b[0]["sweep"]) if b else []
    lines += [
        "## B. Trained DSM networks (the data ρ* is judged on)",
        "",
        "| setting | best member FD | oracle affine FD | cond(G) | method | "
        + " | ".join(f"N = {n}: FD mean (max)" for n in sizes_b)
        + " |",
        "|---|---:|---:|---:|---|" + "---:|" * len(sizes_b),
    ]
    shown = ["affine ρ=1e-10", f"affine ρ={rho:g}", "simplex", "best single by held-out ISM"]
    for rec in b:
        for k, name in enumerate(shown):
            head = (
                f"{rec['dim']}-D seed {rec['seed']} | {min(rec['members']):.3f} | "
                f"{rec['oracle']['fd']:.3f} | {rec['cond']:.1e}"
                if k == 0
                else " | | |"
            )
            cells = [
                f"{mean(rec['sweep'][n][name]['fd']):.3f} ({max(rec['sweep'][n][name]['fd']):.3f})"
                for n in sizes_b
            ]
            lines.append(f"| {head} | {name} | " + " | ".join(cells) + " |")
    wins = []
    for rec in b:
        for n in sizes_b:
            old = mean(rec["sweep"][n]["affine ρ=1e-10"]["fd"])
            new = mean(rec["sweep"][n][f"affine ρ={rho:g}"]["fd"])
            wins.append(new / old)
    if wins:
        geo = math.exp(mean([math.log(w) for w in wins]))
        lines += [
            "",
            f"ρ* against ρ = 1e-10 on B: FD ratio (mean over draws) {min(wins):.2f}–{max(wins):.2f}, "
            f"geometric mean {geo:.2f}, lower in {sum(w < 1 for w in wins)} of {len(wins)} "
            "(setting, N) cells.",
        ]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes, 150 steps, one seed")
    p.add_argument("--out", type=Path, default=None, help="default results/ensemble_weights.md")
    args = p.parse_args()
    where = Path(tempfile.mkdtemp()) if args.quick else ROOT / "results"
    out = args.out or where / "ensemble_weights.md"
    torch.set_num_threads(1)
    start = time.time()

    def progress(msg):
        print(f"{msg}: {time.time() - start:.0f} s", flush=True)

    if args.quick:
        a = part_a((500, 2000), 3)
        rho = choose(a)
        b = part_b([2], [0], 150, 1000, (250, 1000), 3, progress)
    else:
        a = part_a((1000, 5000, 25_000), 10)
        rho = choose(a)
        progress(f"A done, ρ* = {rho:g}")
        b = part_b([2, 10], [0, 1], 1500, 5000, (250, 1250, 5000), 10, progress)
    command = "python benchmarks/ensemble_weights.py" + (" --quick" if args.quick else "")
    out.parent.mkdir(parents=True, exist_ok=True)
    report(a, rho, b, time.time() - start, command, out)
    out.with_suffix(".json").write_text(json.dumps({"a": a, "rho": rho, "b": b}, indent=1))
    print(out.read_text())


if __name__ == "__main__":
    main()
