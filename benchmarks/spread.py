"""Why are a table's samples narrower than its rows? (issue #20, item 5; benchmarks/results/skew.md
found every breast-cancer column's samples too narrow, median sd ratio 0.91, and wine, diabetes
and Boston at 0.93-0.95.)

Each table is written as a CSV and trained with the tool's defaults (``scorematch.runs.train``, as
``scorematch train --data T.csv``) or one changed setting (``--variants``); 2000 samples are then
drawn with the run's sampler and with alternatives (``--samplers``).  Figures per run and sampler:

- sd ratio: per continuous column, the samples' standard deviation over the training rows' (the
  target: every column within 0.9-1.1): median [min, max];
- energy distance (unbiased, ``scorematch.metrics.energy_distance``) of the samples to the
  held-out rows, in units standardised by the training rows;
- the run's held-out NLL (nats/row, data units), best step and training seconds.

Training variants: ``default``; ``sigma_data=1`` (EDM's σ_data set to the standardised data's
standard deviation instead of 0.5); ``steps=3000`` (a fixed length: no early stopping, no refit,
the last step); ``no-refit`` (the early-stopped model itself, trained without the validation
rows); ``ema=H`` (EMA half-life H steps).  Sampler variants: ``heun`` (the run's: 50 steps),
``heun-200``, ``heun-nodenoise``, ``sde-500`` (Euler-Maruyama on the reverse SDE, 500 steps).
Also ``oracle``: the same sampler driven by the exact score of a 3-component Gaussian mixture
fitted to the standardised training rows, against that mixture's own draws — the sampler's own
bias, free of any network.

    .venv/bin/python benchmarks/spread.py --tables wine,diabetes --variants default,sigma_data=1
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from skew import write_table  # noqa: E402

SAMPLES = 2000
SAMPLERS = {
    "heun": {},
    "heun-200": {"steps": 200},
    "heun-nodenoise": {"denoise": False},
    "sde-500": {"sampler": "euler_maruyama", "steps": 500},
}


def standardised(train: np.ndarray, *rows: np.ndarray) -> list[np.ndarray]:
    m, s = train.mean(0), train.std(0)
    s = np.where(s > 0, s, 1.0)
    return [(r - m) / s for r in (train, *rows)]


def train_variant(table: Path, variant: str, seed: int, out: Path) -> float:
    from scorematch.runs import config as config_module
    from scorematch.runs import train

    options: dict = {"data": str(table), "seed": seed}
    saved = config_module.SIGMA_DATA
    if variant.startswith("sigma_data="):
        config_module.SIGMA_DATA = float(variant.split("=")[1])
    elif variant.startswith("steps="):
        options["steps"] = int(variant.split("=")[1])
    elif variant == "no-refit":
        options["refit"] = False
    elif variant.startswith("ema="):
        options["ema_half_life"] = float(variant.split("=")[1])
    elif variant != "default":
        raise ValueError(f"unknown variant {variant!r}")
    t0 = time.perf_counter()
    try:
        train(options, out, progress=False)
    finally:
        config_module.SIGMA_DATA = saved
    return time.perf_counter() - t0


def draw(run, how: dict, seed: int) -> np.ndarray:
    """Samples in data units with the run's model and process, the sampler changed as ``how``."""
    from scorematch.data import from_model
    from scorematch.samplers.api import sample

    cfg = run.config["sampling"]
    gen = torch.Generator().manual_seed(seed)
    out = sample(
        run.model,
        run.process,
        (SAMPLES, *run.shape),
        sampler=how.get("sampler", cfg["sampler"]),
        steps=how.get("steps", cfg["steps"]),
        denoise=how.get("denoise", True),
        generator=gen,
    )
    return from_model(run.columns, run.standardizer.inverse(out.x)).double().numpy()


def oracle_ratio(run, how: dict, seed: int) -> list[float]:
    """sd ratio of the sampler driven by an exact mixture score (fitted in the model's space)."""
    from sklearn.mixture import GaussianMixture as SkMixture

    from scorematch import GaussianMixture
    from scorematch.samplers.api import sample

    z = run.data.standardised(run.data.fit).double().numpy()
    gm = SkMixture(3, covariance_type="full", random_state=seed, reg_covar=1e-3).fit(z)
    mix = GaussianMixture(
        torch.from_numpy(gm.means_),
        torch.from_numpy(gm.covariances_),
        torch.from_numpy(gm.weights_),
    )
    gen = torch.Generator().manual_seed(seed)
    exact = mix.sample(SAMPLES, generator=gen).numpy()
    cfg = run.config["sampling"]
    x_init = run.process.prior_sample((SAMPLES, z.shape[1]), generator=gen, dtype=torch.float64)
    out = sample(
        mix.score_model(run.process),
        run.process,
        x_init,
        sampler=how.get("sampler", cfg["sampler"]),
        steps=how.get("steps", cfg["steps"]),
        denoise=how.get("denoise", True),
        generator=gen,
    )
    return (out.x.numpy().std(0) / exact.std(0)).tolist()


def measure(name: str, variant: str, seed: int, samplers: list[str], folder: Path) -> list[dict]:
    from scorematch.metrics import energy_distance
    from scorematch.runs import load_run

    table = write_table(name, folder)
    out = folder / f"{name}_{variant}_{seed}".replace("=", "-")
    seconds = train_variant(table, variant, seed, out)
    run = load_run(out)
    tr, te = run.data.train.double().numpy(), run.data.test.double().numpy()
    continuous = [j for j, c in enumerate(run.columns.columns) if c.kind == "continuous"]
    lp, _ = run.log_likelihood(run.data.test)
    selection = run.selection or {}
    rows = []
    for label in samplers:
        x = draw(run, SAMPLERS[label], seed)
        ratio = x[:, continuous].std(0) / tr[:, continuous].std(0)
        z_tr, z_te, z_x = (torch.from_numpy(a) for a in standardised(tr, te, x))
        rows.append({
            "table": name, "variant": variant, "sampler": label, "seed": seed,
            "seconds": seconds, "best_step": selection.get("best_step"), "step": run.step,
            "sd_ratio": ratio.tolist(),
            "energy": float(energy_distance(z_x, z_te)),
            "energy_train": float(energy_distance(z_tr, z_te)),
            "nll": float(-lp.mean()), "nll_se": float(lp.std() / math.sqrt(len(lp))),
        })  # fmt: skip
    return rows


def summary(ratio: list[float]) -> str:
    r = np.asarray(ratio)
    return f"{np.median(r):.3f} [{r.min():.2f}, {r.max():.2f}]" if r.size else "—"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", default="wine,diabetes")
    parser.add_argument("--variants", default="default")
    parser.add_argument("--samplers", default="heun")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--oracle", action="store_true", help="also the sampler on an exact score")
    parser.add_argument("--out", default=None, help="append results to benchmarks/results/OUT.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.tables.split(","):
            for seed in range(args.seeds):
                for variant in args.variants.split(","):
                    rows = measure(name, variant, seed, args.samplers.split(","), Path(tmp))
                    for r in rows:
                        print(
                            f"{name} seed {seed} {variant:14s} {r['sampler']:15s} sd "
                            f"{summary(r['sd_ratio'])}  energy {r['energy']:.4f} (train rows "
                            f"{r['energy_train']:.4f})  NLL {r['nll']:.3f} ± {r['nll_se']:.3f}  "
                            f"step {r['step']} (best {r['best_step']})  {r['seconds']:.0f} s",
                            flush=True,
                        )
                    results += rows
                    if args.oracle and variant == args.variants.split(",")[0]:
                        from scorematch.runs import load_run

                        out = Path(tmp) / f"{name}_{variant}_{seed}".replace("=", "-")
                        run = load_run(out)
                        for label in args.samplers.split(","):
                            ratio = oracle_ratio(run, SAMPLERS[label], seed)
                            print(f"{name} seed {seed} oracle {label:15s} sd {summary(ratio)}",
                                  flush=True)  # fmt: skip
                            results.append({"table": name, "variant": "oracle", "seed": seed,
                                            "sampler": label, "sd_ratio": ratio})  # fmt: skip
    if args.out:
        path = ROOT / "benchmarks" / "results" / f"{args.out}.json"
        old = json.loads(path.read_text()) if path.exists() else []
        meta = {"machine": f"{platform.machine()}, torch {torch.__version__}"}
        path.write_text(json.dumps(old + [dict(r, **meta) for r in results], indent=1))


if __name__ == "__main__":
    main()
