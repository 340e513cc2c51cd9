"""Categorical columns without a false order (issue #20, item 4): one-hot boxes against the codes
0 … K−1 on one line that the tool used before, on the Palmer penguins (R's export, 333 complete
rows: species, island and sex categorical; 5 numeric columns).

Each variant trains with the tool's defaults (``scorematch.runs.train``, as ``scorematch train
--data tests/data/penguins.csv --drop-missing``) for each seed (the seed sets the split and the
initialisation) and draws 5000 samples.  Variants:

- ``codes``: every categorical column one coordinate of codes (the labels sorted, dequantised on
  one line, rounded back) and no column transform: the tool's encoding before this change
  (ablation: ``column_kinds.ONE_HOT_MIN_LABELS`` raised above any K);
- ``one-hot``: the defaults (K ≥ 3 labels one-hot, each in a box inside its argmax region; Yeo–Johnson on the
  continuous column, here bill length with λ ≈ 0.95);
- ``one-hot, no transform``: one-hot with ``--transform none``, to isolate the encoding.

Figures, against all 333 complete rows: the share of samples whose species × island pair never
occurs in the data (Chinstrap only lives on Dream, Gentoo only on Biscoe), the total-variation
distance ½ Σ |p̂ − p| per categorical column and per pair of them, and the held-out NLL.  The
floor: the same TV of the run's training rows against all rows.

    .venv/bin/python benchmarks/categorical.py            # → benchmarks/results/categorical.md
    .venv/bin/python benchmarks/categorical.py --seeds 1 --no-write
    .venv/bin/python benchmarks/categorical.py --variants one-hot --label "one-hot (x)"

Results accumulate in ``results/categorical.json`` (a run replaces the entries of its variant
labels), and the table is written from all of them (a variant measured at another commit keeps
its label, e.g. the argmax regions of the unit cube tried at d8912b6).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "penguins.csv"
CATEGORICAL = ("species", "island", "sex")
SAMPLES = 5000
VARIANTS = ("codes", "one-hot", "one-hot, no transform")


def shares(codes: np.ndarray, sizes: tuple[int, ...]) -> np.ndarray:
    """The joint share of each combination of codes (columns of ``codes``)."""
    flat = np.ravel_multi_index(tuple(codes.T.astype(np.int64)), sizes)
    return np.bincount(flat, minlength=math.prod(sizes)) / len(flat)


def tv(a: np.ndarray, b: np.ndarray) -> float:
    return float(0.5 * np.abs(a - b).sum())


def figures(x: np.ndarray, ref: np.ndarray, index: dict[str, int], sizes: dict[str, int]) -> dict:
    """Impossible species × island share and TV per categorical column and pair."""
    out: dict[str, float] = {}
    pair = [index["species"], index["island"]]
    size = (sizes["species"], sizes["island"])
    seen = shares(ref[:, pair], size) > 0
    out["impossible species×island"] = float(shares(x[:, pair], size)[~seen].sum())
    for name in CATEGORICAL:
        j = index[name]
        out[f"TV {name}"] = tv(
            shares(x[:, [j]], (sizes[name],)), shares(ref[:, [j]], (sizes[name],))
        )
    for a, b in itertools.combinations(CATEGORICAL, 2):
        cols, size = [index[a], index[b]], (sizes[a], sizes[b])
        out[f"TV {a}×{b}"] = tv(shares(x[:, cols], size), shares(ref[:, cols], size))
    return out


def run_variant(variant: str, seed: int, folder: Path) -> dict:
    from scorematch.data import column_kinds
    from scorematch.runs import load_run, train

    column_kinds.ONE_HOT_MIN_LABELS = 2**31 if variant == "codes" else 3
    options = {"data": str(DATA), "drop_missing": True, "seed": seed}
    if variant != "one-hot":
        options["transform"] = "none"
    out = folder / f"{variant.replace(', ', '_').replace(' ', '_')}_{seed}"
    t0 = time.perf_counter()
    train(options, out, progress=False)
    seconds = time.perf_counter() - t0
    run = load_run(out)
    codec = run.columns
    index = {name: codec.names.index(name) for name in CATEGORICAL}
    sizes = {name: len(codec.columns[index[name]].labels) for name in CATEGORICAL}
    x = run.sample(SAMPLES, seed=seed).x.double().numpy()
    everything = np.concatenate([run.data.train.numpy(), run.data.test.numpy()])
    result = figures(x, everything, index, sizes)
    floor = figures(run.data.train.numpy(), everything, index, sizes)
    lp, _ = run.log_likelihood(run.data.test)
    result.update(nll=float(-lp.mean()), nll_se=float(lp.std() / math.sqrt(len(lp))),
                  seconds=seconds, dim=codec.dim)  # fmt: skip
    column_kinds.ONE_HOT_MIN_LABELS = 3
    return {"variant": variant, "seed": seed, "figures": result, "floor": floor}


def write_markdown(results: list[dict], seeds: list[int], minutes: float) -> str:
    variants = list(dict.fromkeys(r["variant"] for r in results))
    keys = list(results[0]["figures"])
    keys = [k for k in keys if k not in ("nll", "nll_se", "seconds", "dim")]
    lines = [
        "# Categorical columns: one-hot boxes against codes on a line (penguins)",
        "",
        "Generated by `benchmarks/categorical.py` (method in its docstring): Palmer penguins, "
        f"333 complete rows, the tool's defaults, {SAMPLES} samples per run, seeds "
        f"{', '.join(map(str, seeds))} (mean over seeds, min–max in brackets). Impossible "
        "pairs: species × island combinations with no row in the data (the data: 0 %). "
        "TV: total variation ½ Σ |p̂ − p| against all complete rows; the floor is the run's "
        "training rows against all rows.",
        "",
        f"Machine: {platform.machine()}, 2 shared cores, torch {torch.__version__}; total "
        f"{minutes:.1f} min.",
        "",
        "Command: `python benchmarks/categorical.py`",
        "",
        "| figure | " + " | ".join(variants) + " | floor (training rows) |",
        "|---|" + "---:|" * (len(variants) + 1),
    ]

    def cell(values: list[float], percent: bool) -> str:
        m = float(np.mean(values))
        f = (lambda v: f"{100 * v:.1f} %") if percent else (lambda v: f"{v:.3f}")
        return f"{f(m)} [{f(min(values))}–{f(max(values))}]" if len(values) > 1 else f(m)

    for key in [*keys, "nll", "dim", "seconds"]:
        row = [key if key != "nll" else "held-out NLL (nats/row)"]
        for variant in variants:
            values = [r["figures"][key] for r in results if r["variant"] == variant]
            row.append(cell(values, key.startswith("impossible")))
        floors = [r["floor"][key] for r in results if key in r["floor"]]
        row.append(cell(floors, key.startswith("impossible")) if floors else "")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--label", help="the name of the variant in the results (one variant)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = list(range(args.seeds))
    t0 = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for variant in args.variants.split(","):
                r = run_variant(variant, seed, Path(tmp))
                r["variant"] = args.label or variant
                f = r["figures"]
                print(f"seed {seed} {variant:22s} impossible {100 * f['impossible species×island']:.1f} %"
                      f"  TV species×island {f['TV species×island']:.3f}  NLL {f['nll']:.3f}"
                      f"  ({f['seconds']:.0f} s)", flush=True)  # fmt: skip
                results.append(r)
    folder = ROOT / "benchmarks" / "results"
    stored = folder / "categorical.json"
    labels = {r["variant"] for r in results}
    if stored.exists() and not args.no_write:
        results = [
            r for r in json.loads(stored.read_text()) if r["variant"] not in labels
        ] + results
    text = write_markdown(results, seeds, (time.perf_counter() - t0) / 60)
    print(text)
    if not args.no_write:
        (folder / "categorical.md").write_text(text)
        stored.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
