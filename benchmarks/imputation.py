"""Imputation benchmark: scorematch's mask-conditional network against the usual imputers.

Tables: scikit-learn's wine (178 × 13), diabetes (``load_diabetes(scaled=False)``, 442 × 10) and
breast cancer (569 × 30).  One fixed 80/20 split (seed 0); 20 % of the test rows' cells hidden
completely at random (MCAR), or not at random (MNAR: in each column the test cells above the
column's 75th percentile hidden with probability 0.5).  Every imputer sees the same table — the
complete training rows and the test rows with their gaps — and fills the test gaps.  Units: the
training columns' standard deviations.

Figures: RMSE of the point imputation (scorematch: the mean of K draws), 90 % interval coverage
and CRPS from the draws (a point imputer's CRPS is its absolute error), wall time.  Peers:
column means, ``KNNImputer`` (k = 5), ``IterativeImputer`` (BayesianRidge), a MissForest-like
``IterativeImputer`` with a random forest, and ForestDiffusion's imputation (its README's
settings: ``n_t=50, duplicate_K=100, diffusion_type='vp'``, ``impute(k=5)``, mean of the 5).

scorematch (driven through the library as ``scorematch train`` will: the table defaults of
``scorematch.runs.config``): an ``MLPScore(mask_conditional=True)`` under EDM preconditioning,
trained with ``objectives.conditional`` (the masked objective) through ``Trainer`` and
``conditional.TrainingRows``; 15 % of the rows validate (the masked loss, fixed noise), the
lowest-validation step is chosen and the network retrained on every row for that many steps (as
``train`` does for tables of at most 5000 rows); ``impute`` draws with Heun (the table default).
Settings were fixed on wine/MCAR only (width × depth and a linear skip, with ``--set``; the study
is in results/imputation.md); the other tables and MNAR are reported as they come.

Run (repository root; the peers are in the ``bench`` extra)::

    .venv/bin/pip install -c constraints.txt -e ".[bench]"
    .venv/bin/python benchmarks/imputation.py                  # → results/imputation.md
    .venv/bin/python benchmarks/imputation.py --tables wine --patterns mcar --no-write
    .venv/bin/python benchmarks/imputation.py --draws-study    # RMSE against the number of draws
    .venv/bin/python benchmarks/imputation.py --tables wine --patterns mcar --set width=256
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

import scorematch as sm
from scorematch.objectives import conditional
from scorematch.runs.config import DEFAULTS, LOG_SIGMA_FOURIER_SCALE, SIGMA_DATA, scaled_defaults

RESULTS = Path(__file__).resolve().parent / "results"
TABLES = ("wine", "diabetes", "breast_cancer")
PATTERNS = ("mcar", "mnar")
HIDDEN = 0.2  # MCAR: share of the test cells hidden
MNAR_P = 0.5  # MNAR: probability of hiding a cell in its column's top quartile
SEED = 0


# -- data -------------------------------------------------------------------------------------------
def load(name: str) -> np.ndarray:
    from sklearn import datasets

    if name == "diabetes":
        return datasets.load_diabetes(scaled=False).data.astype(np.float64)
    return getattr(datasets, f"load_{name}")().data.astype(np.float64)


def split_and_hide(name: str, pattern: str) -> dict:
    """The fixed split, the hidden test cells and the training columns' mean and sd."""
    x = load(name)
    rng = np.random.default_rng(SEED)
    order = rng.permutation(len(x))
    n_test = round(0.2 * len(x))
    train, test = x[order[n_test:]], x[order[:n_test]]
    mean, sd = train.mean(0), train.std(0)
    rng = np.random.default_rng(SEED + 1)
    if pattern == "mcar":
        hidden = rng.random(test.shape) < HIDDEN
    else:
        top = test > np.quantile(test, 0.75, axis=0)
        hidden = top & (rng.random(test.shape) < MNAR_P)
    return {"train": (train - mean) / sd, "test": (test - mean) / sd, "hidden": hidden}


def with_gaps(data: dict, train_missing: float = 0.0) -> np.ndarray:
    """The table every imputer sees: training rows (optionally with MCAR gaps) and test rows
    with their hidden cells as NaN."""
    train = data["train"].copy()
    if train_missing:
        gone = np.random.default_rng(SEED + 2).random(train.shape) < train_missing
        train[gone] = np.nan
    test = np.where(data["hidden"], np.nan, data["test"])
    return np.vstack([train, test])


# -- figures ----------------------------------------------------------------------------------------
def figures(data: dict, point: np.ndarray, draws: np.ndarray | None) -> dict:
    """RMSE of the point imputation, and from draws (K, n, D) 90 % coverage and CRPS, over the
    hidden cells, in training-sd units."""
    h, truth = data["hidden"], data["test"]
    out = {"rmse": float(np.sqrt(np.mean((point[h] - truth[h]) ** 2)))}
    if draws is None:
        out.update(coverage=math.nan, crps=float(np.mean(np.abs(point[h] - truth[h]))))
        return out
    cells = draws[:, h]  # (K, cells)
    lo, hi = np.quantile(cells, [0.05, 0.95], axis=0)
    out["coverage"] = float(np.mean((truth[h] >= lo) & (truth[h] <= hi)))
    out["crps"] = float(np.mean(crps(cells, truth[h])))
    return out


def crps(samples: np.ndarray, y: np.ndarray) -> np.ndarray:
    """CRPS of the empirical law of ``samples`` (K, m) at y (m,): E|X − y| − ½ E|X − X'|
    (Gneiting & Raftery 2007), E|X − X'| from the sorted draws."""
    k = samples.shape[0]
    s = np.sort(samples, axis=0)
    spread = (2 * np.arange(1, k + 1) - k - 1) @ s * 2 / k**2
    return np.mean(np.abs(samples - y), axis=0) - 0.5 * spread


# -- peers ------------------------------------------------------------------------------------------
def peer(name: str, table: np.ndarray, n_test: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(point imputation of the test rows, draws or None) of a peer fitted on the whole table."""
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer

    if name == "forestdiffusion":
        from ForestDiffusion import ForestDiffusionModel

        model = ForestDiffusionModel(
            table, n_t=FD_NT, duplicate_K=100, bin_indexes=[], cat_indexes=[], int_indexes=[],
            diffusion_type="vp", n_jobs=2, seed=SEED,
        )  # fmt: skip
        draws = np.asarray(model.impute(k=5))[:, -n_test:]
        return draws.mean(0), draws
    imputer = {
        "mean": lambda: SimpleImputer(strategy="mean"),
        "knn": lambda: KNNImputer(n_neighbors=5),
        "iterative": lambda: IterativeImputer(max_iter=10, random_state=SEED),
        "missforest": lambda: IterativeImputer(
            estimator=RandomForestRegressor(n_estimators=100, random_state=SEED, n_jobs=1),
            max_iter=10,
            random_state=SEED,
        ),
    }[name]()
    return imputer.fit_transform(table)[-n_test:], None


PEERS = ("mean", "knn", "iterative", "missforest", "forestdiffusion")
# ForestDiffusion's README uses n_t = 50 noise levels; on this shared machine n_t = 5 already took
# more than 10 minutes per table (its cost grows linearly with n_t), so the benchmark uses 5.
FD_NT = 5


# -- scorematch -------------------------------------------------------------------------------------
SETTINGS = {  # fixed on wine/MCAR (the study in results/imputation.md); else the table defaults
    "steps": DEFAULTS["vector"]["steps"],
    "width": 128,
    "depth": 3,
    "val_fraction": 0.15,
    "validations": 30,
    "sample_steps": DEFAULTS["vector"]["sample_steps"],
    "draws": 100,
    "models": 1,
    "linear_skip": 0,
}


def train(table: np.ndarray, settings: dict, *, mask_conditional: bool = True, seed: int = SEED):
    """A score model of the table's rows (NaN = gap), trained as ``scorematch train`` trains a
    table: validation rows choose the step, then every row trains for that many steps."""
    x = torch.tensor(table, dtype=torch.float32)
    if not mask_conditional:
        x = x[torch.isfinite(x).all(1)]
    process = sm.EDM(sigma_data=SIGMA_DATA)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed + 1))
    n_val = max(int(settings["val_fraction"] * len(x)), 1)
    val, fit = x[perm[:n_val]], x[perm[n_val:]]

    def build():
        net = sm.build_model(
            "mlp", (x.shape[1],), seed=seed, width=settings["width"], depth=settings["depth"],
            fourier_scale=LOG_SIGMA_FOURIER_SCALE, mask_conditional=mask_conditional,
            linear_skip=bool(settings["linear_skip"]),
        )  # fmt: skip
        return sm.wrap(net, process, "edm", sigma_data=SIGMA_DATA)

    def fit_on(rows: torch.Tensor, steps: int, validate=None):
        scaled = scaled_defaults("vector", len(rows))
        data = sm.conditional.TrainingRows(rows)
        trainer = sm.Trainer(
            build(), data.loss(process), data.index, batch_size=scaled["batch_size"],
            lr=DEFAULTS["vector"]["lr"], ema_half_life=scaled["ema_half_life"],
            schedule=DEFAULTS["vector"]["schedule"], warmup_steps=min(100, steps // 10),
            seed=seed, progress=False, checkpoint_every=None, checkpoint_seconds=None,
            validate_fn=validate, validate_every=None if validate is None else max(steps // settings["validations"], 1),
        )  # fmt: skip
        trainer.fit(steps)
        return trainer

    def validation_loss(model, step):
        g = torch.Generator().manual_seed(12345)
        with torch.no_grad():
            losses = [float(conditional(model, process, val, generator=g)) for _ in range(20)]
        return sum(losses) / len(losses)

    t0 = time.perf_counter()
    first = fit_on(fit, settings["steps"], validation_loss)
    best = first.validation.best_step
    final = fit_on(x, best)
    return final.ema_model, process, {"best_step": best, "train_s": time.perf_counter() - t0}


def train_models(table: np.ndarray, settings: dict):
    """``settings["models"]`` networks of different seeds (an ensemble: each draws its share)."""
    models, infos = [], []
    for m in range(settings["models"]):
        model, process, info = train(table, settings, seed=SEED + 100 * m)
        models.append(model)
        infos.append(info)
    info = {
        "best_step": [i["best_step"] for i in infos],
        "train_s": sum(i["train_s"] for i in infos),
    }
    return models, process, info


def scorematch_draws(
    models, process, data: dict, settings: dict, method: str = "auto"
) -> np.ndarray:
    """Draws ``(K, n_test, D)`` of the test rows' hidden cells, K/len(models) from each model."""
    test = torch.tensor(np.where(data["hidden"], np.nan, data["test"]), dtype=torch.float32)
    share = -(-settings["draws"] // len(models))
    out = [
        sm.impute(
            model,
            process,
            test,
            torch.isfinite(test),
            method=method,
            sampler="heun",
            steps=settings["sample_steps"],
            draws=share,
            generator=torch.Generator().manual_seed(SEED + m),
        )
        for m, model in enumerate(models)
    ]
    return torch.cat(out)[: settings["draws"]].double().numpy()


# -- the report -------------------------------------------------------------------------------------
def run_table(name: str, pattern: str, settings: dict, peers: tuple[str, ...], log) -> list[dict]:
    """scorematch (both imputation methods of one network), under MCAR scorematch and
    IterativeImputer given training rows with a fifth of their cells missing too, then every peer,
    on one table/pattern."""
    data = split_and_hide(name, pattern)
    table = with_gaps(data)
    n_test = len(data["test"])
    rows = []
    t0 = time.perf_counter()
    model, process, info = train_models(table, settings)
    draws = scorematch_draws(model, process, data, settings)
    seconds = time.perf_counter() - t0
    rows.append(
        {"method": "scorematch", **figures(data, draws.mean(0), draws), "seconds": seconds, **info}
    )
    log(name, pattern, rows[-1])
    t0 = time.perf_counter()
    rep = scorematch_draws(model, process, data, settings, method="replacement")
    seconds = info["train_s"] + time.perf_counter() - t0
    rows.append(
        {"method": "scorematch, replacement", **figures(data, rep.mean(0), rep), "seconds": seconds}
    )
    log(name, pattern, rows[-1])
    if pattern == "mcar":  # training rows with gaps too
        gappy = with_gaps(data, train_missing=HIDDEN)
        for p in [q for q in ("iterative",) if q in peers]:
            t0 = time.perf_counter()
            point, _ = peer(p, gappy, n_test)
            rows.append(
                {
                    "method": f"{p}, train gaps",
                    **figures(data, point, None),
                    "seconds": time.perf_counter() - t0,
                }
            )
            log(name, pattern, rows[-1])
        t0 = time.perf_counter()
        model, process, info = train_models(gappy, settings)
        draws = scorematch_draws(model, process, data, settings)
        rows.append({"method": "scorematch, train gaps", **figures(data, draws.mean(0), draws),
                     "seconds": time.perf_counter() - t0, **info})  # fmt: skip
        log(name, pattern, rows[-1])
    for p in peers:
        t0 = time.perf_counter()
        point, draws = peer(p, table, n_test)
        rows.append(
            {"method": p, **figures(data, point, draws), "seconds": time.perf_counter() - t0}
        )
        log(name, pattern, rows[-1])
    return rows


def draws_study(settings: dict, log, counts=(1, 5, 10, 20, 50, 100, 200)) -> list[dict]:
    """RMSE, coverage and CRPS of the mean of the first K of 200 draws (wine/MCAR)."""
    data = split_and_hide("wine", "mcar")
    model, process, _ = train_models(with_gaps(data), settings)
    draws = scorematch_draws(model, process, data, {**settings, "draws": max(counts)})
    rows = []
    for k in counts:
        part = draws[:k]
        rows.append({"draws": k, **figures(data, part.mean(0), part if k > 1 else None)})
        log("wine", "mcar", rows[-1])
    return rows


def table_md(results: dict) -> list[str]:
    """One markdown table per table/pattern, with scorematch's rank against the peers."""
    lines = []
    for key, rows in results.items():
        lines += [
            f"### {key}",
            "",
            "| method | RMSE | 90 % coverage | CRPS | seconds |",
            "|---|---:|---:|---:|---:|",
        ]
        for r in rows:
            cov = "–" if math.isnan(r["coverage"]) else f"{r['coverage']:.3f}"
            sec = "–" if math.isnan(r["seconds"]) else f"{r['seconds']:.0f}"
            lines.append(f"| {r['method']} | {r['rmse']:.3f} | {cov} | {r['crps']:.3f} | {sec} |")
        ours = next(r for r in rows if r["method"] == "scorematch")
        peers = [r for r in rows if r["method"] in PEERS]
        if peers:
            best = min(peers, key=lambda r: r["rmse"])
            verdict = "better than" if ours["rmse"] < best["rmse"] else "behind"
            lines += ["", f"scorematch's RMSE is {verdict} the best peer's ({best['method']}, "
                          f"{best['rmse']:.3f}); its best steps: {ours.get('best_step')}."]  # fmt: skip
        lines.append("")
    return lines


def render() -> None:
    """Write results/imputation.md from the JSON files of the last runs (imputation.json, or the
    per-table imputation_*_*.json of parallel runs, merged)."""
    paths = [RESULTS / "imputation.json"]
    if not paths[0].exists():
        paths = [RESULTS / f"imputation_{t}_{p}.json" for t in TABLES for p in PATTERNS]
    parts = [json.loads(p.read_text(encoding="utf-8")) for p in paths if p.exists()]
    out = {"settings": parts[0]["settings"], "tables": {}}
    for part in parts:
        out["tables"].update(part["tables"])
    lines = [
        "# Imputation (benchmarks/imputation.py)",
        "",
        "Command: `python benchmarks/imputation.py` (then `--draws-study`; `--render` rewrites this "
        "file from the JSON files).  Protocol and peers: the module docstring.  RMSE and CRPS in "
        "units of the training columns' standard deviations, over the hidden test cells; "
        "coverage of the 5–95 % quantiles of the draws; point imputers have no interval (their "
        "CRPS is their mean absolute error).  Seconds are wall time on a shared 2-core machine "
        "under heavy load (other jobs running): compare them within this file only.",
        "",
        f"scorematch settings: `{json.dumps(out['settings'])}`.",
        "",
    ]
    reading = RESULTS / "imputation_reading.md"  # the hand-written reading of the figures
    if reading.exists():
        lines += [reading.read_text(encoding="utf-8"), ""]
    lines += table_md(out["tables"])
    study_path = RESULTS / "imputation_study.json"
    if study_path.exists():
        study = json.loads(study_path.read_text(encoding="utf-8"))
        lines += ["## Settings study (wine/MCAR)", "", study["note"] + ".", "",
                  "| settings | RMSE | 90 % coverage | CRPS | best step |", "|---|---:|---:|---:|---:|"]  # fmt: skip
        for r in study["runs"]:
            lines.append(f"| {r['set']} | {r['rmse']:.3f} | {r['coverage']:.3f} | {r['crps']:.3f} | "
                         f"{r['best_step']} |")  # fmt: skip
        lines.append("")
    draws_path = RESULTS / "imputation_draws.json"
    if draws_path.exists():
        study = json.loads(draws_path.read_text(encoding="utf-8"))
        lines += [
            "## How many draws (wine/MCAR)",
            "",
            "The point imputation is the mean of K draws; one draw scores about √2 times the "
            "conditional spread.",
            "",
            "| draws | RMSE | 90 % coverage | CRPS |",
            "|---:|---:|---:|---:|",
        ]
        for r in study["draws"]:
            cov = "–" if math.isnan(r["coverage"]) else f"{r['coverage']:.3f}"
            lines.append(f"| {r['draws']} | {r['rmse']:.3f} | {cov} | {r['crps']:.3f} |")
        lines.append("")
    (RESULTS / "imputation.md").write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {RESULTS / 'imputation.md'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tables", default=",".join(TABLES))
    parser.add_argument("--patterns", default=",".join(PATTERNS))
    parser.add_argument("--peers", default=",".join(PEERS))
    parser.add_argument("--set", action="append", default=[], help="override a setting, KEY=VALUE")
    parser.add_argument("--draws-study", action="store_true", help="RMSE against draws (wine/MCAR)")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--out", default="imputation.json", help="JSON file under results/")
    parser.add_argument("--render", action="store_true", help="only rewrite imputation.md")
    args = parser.parse_args()
    if args.render:
        render()
        return
    torch.set_num_threads(1)
    settings = dict(SETTINGS)
    for item in args.set:
        key, value = item.split("=")
        settings[key] = type(settings[key])(float(value))
    peers = tuple(p for p in args.peers.split(",") if p)

    def log(name, pattern, row):
        shown = {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}
        print(name, pattern, json.dumps(shown), flush=True)

    out = {"settings": settings}
    name = "imputation_draws.json" if args.draws_study else args.out

    def write() -> None:  # after every table: a long run keeps what it finished
        if not args.no_write:
            (RESULTS / name).write_text(json.dumps(out, indent=1), encoding="utf-8")

    if args.draws_study:
        out["draws"] = draws_study(settings, log)
    else:
        out["tables"] = {}
        for table in args.tables.split(","):
            for pattern in args.patterns.split(","):
                out["tables"][f"{table}/{pattern}"] = run_table(
                    table, pattern, settings, peers, log
                )
                write()
    write()


if __name__ == "__main__":
    main()
