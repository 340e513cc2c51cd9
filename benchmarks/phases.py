"""The phases after training on a large table (issue #20, item 8): choosing the likelihood's t_min
on the validation rows, and ``evaluate`` with its defaults, timed phase by phase.

The table is a diamonds-like one drawn here with a fixed seed (50 000 rows: a log-normal carat,
price, depth, table and three sizes rounded as the real file rounds them, and three categorical
grades — 27 model coordinates after the one-hot boxes).  It is trained with the tool's defaults
except ``--steps`` (training time is not what is measured), then, on the run's model:

- ``choose_t_min`` (``scorematch.runs.selection``) on the run's validation rows, as ``train``
  calls it: the seconds, the chosen value and its validation NLL;
- ``Run.evaluate`` with ``scorematch evaluate``'s defaults (2000 samples, NLL on 2000 held-out
  rows, the verdict): wall and CPU seconds per phase ([name, wall, CPU]), as ``evaluate``
  announces them.

The machine is shared (2 cores, other work running): the load average is recorded with the
times, with the process's CPU seconds beside the wall seconds (one thread: the CPU seconds are
what an idle core would take).

    nice -n 10 .venv/bin/python benchmarks/phases.py --label after   # → benchmarks/results/phases.json
    nice -n 10 .venv/bin/python benchmarks/phases.py --run R --tolerances --no-write  # R: reuse
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "phases.json"


def write_table(path: Path, n: int, seed: int = 7) -> Path:
    rng = np.random.default_rng(seed)
    cut = rng.choice(["Fair", "Good", "Very Good", "Premium", "Ideal"], n,
                     p=[0.03, 0.09, 0.22, 0.26, 0.40])  # fmt: skip
    color = rng.choice(list("DEFGHIJ"), n)
    clarity = rng.choice(["I1", "SI2", "SI1", "VS2", "VS1", "VVS2", "VVS1", "IF"], n)
    carat = np.round(rng.lognormal(-0.4, 0.5, n), 2)
    depth = np.round(rng.normal(61.7, 1.4, n), 1)
    table = np.round(rng.normal(57.4, 2.2, n), 0)
    price = np.round(np.exp(8.5 + 1.7 * np.log(carat) + rng.normal(0, 0.25, n))).astype(int)
    x = np.round(6.5 * carat ** (1 / 3) + rng.normal(0, 0.05, n), 2)
    y = np.round(x + rng.normal(0, 0.05, n), 2)
    z = np.round(0.62 * x + rng.normal(0, 0.03, n), 2)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["carat", "cut", "color", "clarity", "depth", "table", "price", "x", "y", "z"])
        w.writerows(zip(carat, cut, color, clarity, depth, table, price, x, y, z))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--label", default="current", help="the name of this measurement")
    parser.add_argument("--run", type=Path, help="reuse this run folder (trained by this script)")
    parser.add_argument(
        "--tolerances",
        action="store_true",
        help="also the held-out NLL of 500 rows at ODE tolerances 1e-5, 1e-4, 1e-3",
    )
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    from scorematch.runs import load_run, train
    from scorematch.runs.selection import choose_t_min

    torch.set_num_threads(1)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.run
        if run_dir is None or not (run_dir / "config.yaml").exists():
            run_dir = run_dir or Path(tmp) / "run"
            data = write_table(Path(tmp) / "diamonds_like.csv", args.rows)
            print(f"training {args.steps} steps on {args.rows} rows …", flush=True)
            t0 = time.perf_counter()
            train({"data": str(data), "steps": args.steps}, run_dir, progress=False)
            print(f"  {time.perf_counter() - t0:.0f} s (t_min chosen inside)", flush=True)
        run = load_run(run_dir)
        print(f"choose_t_min on {run.data.val.shape[0]} validation rows …", flush=True)
        t0, c0 = time.perf_counter(), time.process_time()
        chosen = choose_t_min(run, run.data.val)
        t_min_seconds, t_min_cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"  {t_min_seconds:.1f} s: t_min {chosen['value']:.4g}", flush=True)

        phases: list[list] = []
        last = [time.perf_counter(), time.process_time(), "start"]

        def announce(line: str) -> None:
            now, cpu = time.perf_counter(), time.process_time()
            phases.append([last[2], round(now - last[0], 2), round(cpu - last[1], 2)])
            print(f"  [{now - last[0]:6.1f} s, {cpu - last[1]:5.1f} s CPU] {last[2]}", flush=True)
            last[:] = [now, cpu, line]

        tolerances = []
        for rtol in (1e-5, 1e-4, 1e-3) if args.tolerances else ():
            c0 = time.process_time()
            lp, nfe = run.log_likelihood(run.data.test[:500], divergence="hutchinson", rtol=rtol)
            tolerances.append([rtol, float(-lp.mean()), nfe, round(time.process_time() - c0, 2)])
            print(f"  rtol {rtol:g}: NLL {tolerances[-1][1]:.4f}, {nfe} calls", flush=True)
        print("evaluate (defaults) …", flush=True)
        t0, c0 = time.perf_counter(), time.process_time()
        result = run.evaluate(2000, max_nll_points=2000, announce=announce)
        announce("end")
        evaluate_seconds, evaluate_cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"  {evaluate_seconds:.1f} s", flush=True)
    shown = {k: v for k, v in vars(args).items() if v is not None and k not in ("no_write", "run")}
    command = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in shown.items())
    record = {
        "label": args.label,
        "date": stamp,
        "rows": args.rows,
        "steps": args.steps,
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "tolerances": tolerances,  # [rtol, NLL of 500 held-out rows, network calls, CPU s]
        "t_min": {**chosen, "seconds": round(t_min_seconds, 2), "cpu_seconds": round(t_min_cpu, 2)},
        "evaluate": {
            "seconds": round(evaluate_seconds, 2),
            "cpu_seconds": round(evaluate_cpu, 2),
            "phases": phases[1:],
            "nll": None if result.likelihood is None else result.likelihood.nll,
            "nll_rows": None if result.likelihood is None else result.likelihood.points,
            "summary": None if result.verdict is None else result.verdict.summary,
        },
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
        "command": "nice -n 10 .venv/bin/python benchmarks/phases.py " + command,
        "reused_run": args.run is not None,
    }
    print(json.dumps(record, indent=1))
    if not args.no_write:
        old = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
        old = [r for r in old if r["label"] != args.label] + [record]
        RESULTS.write_text(json.dumps(old, indent=1) + "\n")
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
