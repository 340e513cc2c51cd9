"""Time per training step of each score-matching objective, as a ratio to DSM, in one run.

A step is forward + backward + AdamW update of an MLP score network (4 linear layers of width 256,
SiLU) on a batch of 256, at several data dimensions D.  Objectives: ESM against a fixed target,
exact ISM (``torch.func`` trace), SSM with one Gaussian projection, SSM-VR, DSM, and as a reference
the classic exact trace by a Python loop over dimensions (``autograd.grad`` per dimension with
``create_graph``).  Every measurement of an objective is bracketed by two DSM steps and reported as
its time over their mean, so slow drifts of a shared machine cancel; the table gives medians.

Targets (2-core CPU): SSM and SSM-VR ≤ 2.0× DSM at every D; exact ISM ≤ 0.7·D × DSM for D ≥ 16 and
faster than the loop at every D.

Run by hand (minutes):  python benchmarks/objectives.py [--dims 2 16 64 256 784] [--repeats 15]
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn

from scorematch.objectives import dsm, esm, ism, ssm

WIDTH, BATCH, SIGMA = 256, 256, 0.1
ORDER = ["ESM", "ISM (exact)", "SSM", "SSM-VR", "DSM", "ISM loop (reference)"]
EXPENSIVE = {"ISM (exact)", "ISM loop (reference)"}


def mlp(d: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(d, WIDTH), nn.SiLU(), nn.Linear(WIDTH, WIDTH), nn.SiLU(),
        nn.Linear(WIDTH, WIDTH), nn.SiLU(), nn.Linear(WIDTH, d),
    )  # fmt: skip


def ism_loop(score_fn: Callable, x: torch.Tensor) -> torch.Tensor:
    """The textbook exact ISM: one create_graph backward pass per dimension."""
    x = x.detach().requires_grad_(True)
    s = score_fn(x)
    trace = x.new_zeros(x.shape[0])
    for i in range(x.shape[1]):
        (row,) = torch.autograd.grad(s[:, i].sum(), x, create_graph=True)
        trace = trace + row[:, i]
    return (trace + 0.5 * s.square().sum(1)).mean()


def make_steps(d: int, seed: int) -> dict[str, Callable[[], None]]:
    """One closure per objective, each training its own copy of the same initial network."""
    torch.manual_seed(seed)
    base = mlp(d)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(BATCH, d, generator=g)
    target = -x  # the score of N(0, I), fixed
    losses = {
        "ESM": lambda f: esm(f, x, target),
        "ISM (exact)": lambda f: ism(f, x),
        "SSM": lambda f: ssm(f, x, generator=g),
        "SSM-VR": lambda f: ssm(f, x, variance_reduced=True, generator=g),
        "DSM": lambda f: dsm(f, x, SIGMA, generator=g),
        "ISM loop (reference)": lambda f: ism_loop(f, x),
    }
    steps = {}
    for name, loss_fn in losses.items():
        net = copy.deepcopy(base)
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4)

        def step(net=net, opt=opt, loss_fn=loss_fn):
            opt.zero_grad(set_to_none=True)
            loss_fn(net).backward()
            opt.step()

        steps[name] = step
    return steps


def measure(
    d: int, repeats: int, max_seconds: float, clock: Callable[[], float], seed: int
) -> tuple[dict[str, list[float]], list[float]]:
    """Ratios to DSM per objective and DSM's own times (seconds) at dimension d."""
    steps = make_steps(d, seed)

    def timed(name: str) -> float:
        start = clock()
        steps[name]()
        return clock() - start

    first = {name: timed(name) for name in ORDER}  # warm-up; also the estimate of a step's cost
    rounds = {}
    for name in ORDER:
        n = repeats
        if name in EXPENSIVE:  # a few steps only: bounded by a time budget per objective
            n = max(2, min(repeats, math.floor(max_seconds / max(first[name], 1e-9))))
        rounds[name] = n
    ratios: dict[str, list[float]] = {name: [] for name in ORDER}
    dsm_times: list[float] = []
    for r in range(max(rounds.values())):
        for name in ORDER:
            if name == "DSM" or r >= rounds[name]:
                continue
            before, t, after = timed("DSM"), timed(name), timed("DSM")
            ratios[name].append(t / (0.5 * (before + after)))
            dsm_times += [before, after]
    ratios["DSM"] = [1.0]
    return ratios, dsm_times


def render(results: dict[int, tuple[dict, list]], args, elapsed: float) -> str:
    dims = sorted(results)
    med = {d: {k: statistics.median(v) for k, v in results[d][0].items()} for d in dims}
    dsm_ms = {d: 1e3 * statistics.median(results[d][1]) for d in dims}
    n = {d: {k: len(v) for k, v in results[d][0].items()} for d in dims}
    head = "| objective | " + " | ".join(f"D = {d}" for d in dims) + " |"
    rule = "|---|" + "---:|" * len(dims)
    rows = [head, rule]
    rows.append("| DSM, ms per step | " + " | ".join(f"{dsm_ms[d]:.1f}" for d in dims) + " |")
    for name in ORDER:
        cells = []
        for d in dims:
            cell = f"{med[d][name]:.2f}×"
            if name in EXPENSIVE:
                cell += f" ({med[d][name] / d:.2f}·D, n={n[d][name]})"
            cells.append(cell)
        rows.append(f"| {name} | " + " | ".join(cells) + " |")

    checks = []
    for d in dims:
        m = med[d]
        ok_ssm = m["SSM"] <= 2.0 and m["SSM-VR"] <= 2.0
        ok_ism = m["ISM (exact)"] <= 0.7 * d if d >= 16 else True
        ok_loop = m["ISM (exact)"] < m["ISM loop (reference)"]
        checks.append(
            f"| {d} | {'yes' if ok_ssm else 'NO'} ({max(m['SSM'], m['SSM-VR']):.3f}×) | "
            + (f"{'yes' if ok_ism else 'NO'} ({m['ISM (exact)'] / d:.3f}·D)" if d >= 16 else "–")
            + f" | {'yes' if ok_loop else 'NO'} "
            f"({m['ISM loop (reference)'] / m['ISM (exact)']:.1f}× faster) |"
        )
    return "\n".join(
        [
            "# Objectives: time per training step, ratio to DSM",
            "",
            f"MLP score network (4 linear layers, width {WIDTH}, SiLU), batch {BATCH}, "
            "forward + backward + AdamW step.  Each objective's step is timed between two DSM "
            "steps and divided by their mean; cells are medians over n rounds "
            f"(n = {args.repeats} unless shown).  ISM rows also give the ratio divided by D.",
            "",
            *rows,
            "",
            "Targets: SSM and SSM-VR ≤ 2.0× DSM at every D; exact ISM ≤ 0.7·D × DSM for D ≥ 16 "
            "and faster than the loop at every D.",
            "",
            "| D | SSM, SSM-VR ≤ 2.0× | ISM ≤ 0.7·D | ISM faster than loop |",
            "|---:|---|---|---|",
            *checks,
            "",
            f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads, clock = {args.clock} "
            f"({'wall time' if args.clock == 'wall' else 'process CPU time'}), load average "
            f"{os.getloadavg()[0]:.1f} at the end (other jobs share the machine).  "
            f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {elapsed / 60:.1f} min: "
            f"`python benchmarks/objectives.py --dims {' '.join(map(str, args.dims))} "
            f"--repeats {args.repeats} --max-seconds {args.max_seconds:g} --clock {args.clock}"
            + (f" --threads {args.threads}" if args.threads else "")
            + "`.",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 16, 64, 256, 784])
    parser.add_argument("--repeats", type=int, default=15, help="rounds per objective")
    parser.add_argument(
        "--max-seconds", type=float, default=30.0,
        help="time budget per expensive objective (ISM, loop) and D; at least 2 rounds",
    )  # fmt: skip
    parser.add_argument(
        "--clock", choices=["wall", "cpu"], default="wall",
        help="wall time, or process CPU time (steadier on a shared machine)",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "objectives.md"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    start = time.perf_counter()
    results = {}
    for d in args.dims:
        results[d] = measure(d, args.repeats, args.max_seconds, clock, args.seed)
        ratios, dsm_times = results[d]
        summary = ", ".join(f"{k} {statistics.median(v):.2f}" for k, v in ratios.items())
        print(f"D={d}: DSM {1e3 * statistics.median(dsm_times):.1f} ms; {summary}", flush=True)
    text = render(results, args, time.perf_counter() - start)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(args.out)
    print(text)


if __name__ == "__main__":
    main()
