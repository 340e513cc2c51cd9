"""Imputation methods driven by the exact score: how close each gets to the exact conditional.

The 3-D, three-component mixture of tests/test_imputation.py; three rows (one coordinate known,
two known, nothing known).  Each method of ``scorematch.impute`` (``conditional``: the oracle's
exact mask-conditional score; ``replacement``: the oracle's joint score) runs with several
samplers and step counts; each row's draws are measured against ``GaussianMixture.condition``
with ``metrics.mixture_error`` (mode-weight error, excess per-mode Bures–Wasserstein distance,
and their ``total``), averaged over the three rows.

Run (repository root)::

    .venv/bin/python benchmarks/imputation_exact.py            # → results/imputation_exact.md
    .venv/bin/python benchmarks/imputation_exact.py --draws 500 --no-write

Cost: about 10 CPU-minutes with the default 2000 draws per row.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

import scorematch as sm
from scorematch.metrics import mixture_error

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_imputation import MASK, ROWS, mixture3

RESULTS = Path(__file__).resolve().parent / "results" / "imputation_exact.md"
SETTINGS = [  # (process, sampler, step counts)
    ("EDM", "heun", (5, 10, 20, 50, 100, 200)),
    ("EDM", "dpm_solver", (5, 10, 20, 50)),
    ("VP", "euler_maruyama", (20, 50, 100, 300, 1000)),
    ("VP", "ancestral", (20, 50, 100, 300)),
]


def measure(method: str, process, sampler: str, steps: int, draws: int) -> dict[str, float]:
    mix = mixture3()
    out = sm.impute(
        mix.score_model(process), process, ROWS, MASK, method=method, sampler=sampler,
        steps=steps, draws=draws, generator=torch.Generator().manual_seed(5),
    )  # fmt: skip
    figures = []
    for b in range(ROWS.shape[0]):
        known = MASK[b].nonzero().reshape(-1)
        figures.append(mixture_error(out[:, b][:, ~MASK[b]], mix.condition(known, ROWS[b, known])))
    keys = ("weight_error", "weight_error_exact", "bures_excess", "bures_noise", "total")
    return {k: sum(f[k] for f in figures) / len(figures) for k in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    processes = {"EDM": sm.EDM(), "VP": sm.VP()}
    lines = [
        "# Imputation with the exact score (benchmarks/imputation_exact.py)",
        "",
        f"`python benchmarks/imputation_exact.py` ({args.draws} draws per row, seed 5).  The 3-D "
        "three-component mixture of tests/test_imputation.py; rows: x₀ = −0.5 known, "
        "(x₁, x₂) = (0.5, −0.5) known, nothing known.  Figures of `metrics.mixture_error` "
        "against `GaussianMixture.condition`, averaged over the three rows: `weight` = mode-weight "
        "error (exact samples of this size score the `weight (exact)` column), `bures+` = excess "
        "per-mode Bures–Wasserstein distance over exact samples (≈ 0 ± `noise` for an exact "
        "sampler), `total` = weight + bures+/scale (0 is perfect).",
        "",
        "| method | process | sampler | steps | weight | weight (exact) | bures+ | noise | total |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    t0 = time.perf_counter()
    for method in ("conditional", "replacement"):
        for pname, sampler, steps_list in SETTINGS:
            for steps in steps_list:
                r = measure(method, processes[pname], sampler, steps, args.draws)
                row = (
                    f"| {method} | {pname} | {sampler} | {steps} | {r['weight_error']:.3f} | "
                    f"{r['weight_error_exact']:.3f} | {r['bures_excess']:.3f} | "
                    f"{r['bures_noise']:.3f} | {r['total']:.3f} |"
                )
                lines.append(row)
                print(row, f"({time.perf_counter() - t0:.0f} s)", flush=True)
    lines += [
        "",
        "Reading: the mask-conditional method with the exact conditional score is exact up to "
        "the sampler's own step error (its figures fall to the exact-sample noise as the steps "
        "grow, like plain sampling's in benchmarks/results/samplers.md).  Replacement is biased "
        "at every step count: its unknown coordinates follow the joint score at a noisy copy of "
        "the known values, which carries less information than the values themselves, so the "
        "draws put the wrong mass on the modes (its mode-weight error stays far above the exact "
        "noise); on the row with nothing known it is plain sampling and exact.",
        "",
    ]
    if not args.no_write:
        RESULTS.write_text("\n".join(lines), encoding="utf-8")
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
