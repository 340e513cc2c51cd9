"""Scaling on this CPU: 1 vs 2 processes (training steps/s, sampling samples/s), the Trainer's
overhead over a bare PyTorch loop doing the same steps, fp32 vs bf16 vs torch.compile per training
step for the MLP and the U-Net, and 1 vs 2 intra-op threads.

The machine is shared with other work, so nothing here is an absolute speed: every comparison is
measured within one run, its variants interleaved (A, B, A, B, …) so that drifts of the load hit
them alike, and reported as a ratio of medians.  Per-step comparisons on one thread use the
process's CPU time (what the step costs, whoever else runs); processes and threads use wall time
(what a user waits for, which is what extra threads or processes change).

Models: the defaults of `scorematch train` — MLP (width 128, depth 3) + EDM on moons (10 000
points, batch 512) and U-Net (32 channels) + EDM on the 8×8 digits (batch 64).

Run by hand (≈10–15 min):  python benchmarks/scale.py [--rounds 5] [--quick]
Processes are started with `python -m torch.distributed.run --standalone` (gloo).
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch

from scorematch.runs import build_loss, build_process, build_score_model, configure, load_run
from scorematch.runs import train as train_run
from scorematch.training import Trainer

SETUPS = {"MLP (moons)": {"data": "moons"}, "U-Net (digits 8×8)": {"data": "digits"}}


def setup(options: dict) -> tuple[dict, Callable, Callable, torch.Tensor, int]:
    """Config, a fresh-model factory with its loss, the standardised rows and the batch size."""
    config, bundle = configure({**options, "val_fraction": 0, "steps": 1000})
    process = build_process(config)
    loss = build_loss(config, process)
    rows = bundle.standardizer.transform(bundle.train)
    return (
        config,
        (lambda: build_score_model(config, process)),
        loss,
        rows,
        config["training"]["batch_size"],
    )


def trainer(options: dict, **kw) -> Trainer:
    _, make, loss, rows, batch = setup(options)
    return Trainer(make(), loss, rows, batch_size=batch, progress=False, log_every=10**6,
                   checkpoint_every=None, first_order=True, seed=0, **kw)  # fmt: skip


def timed(fn: Callable[[], None], clock: Callable[[], float]) -> float:
    t0 = clock()
    fn()
    return clock() - t0


class BareLoop:
    """The same steps as the Trainer's, written as a plain PyTorch loop: a batch of random rows,
    the loss, backward, global-norm clipping, AdamW, the EMA lerp."""

    def __init__(self, options: dict) -> None:
        _, make, self.loss, self.rows, self.batch = setup(options)
        self.model = make()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.ema = copy.deepcopy(self.model).requires_grad_(False)
        self.opt = torch.optim.AdamW(self.params, lr=2e-3)
        self.g = torch.Generator().manual_seed(0)

    def steps(self, n: int) -> None:
        for _ in range(n):
            x = self.rows[torch.randint(0, self.rows.shape[0], (self.batch,), generator=self.g)]
            self.opt.zero_grad(set_to_none=True)
            self.loss(self.model, x, self.g).backward()
            torch.nn.utils.clip_grad_norm_(self.params, 1.0)
            self.opt.step()
            with torch.no_grad():
                for e, p in zip(self.ema.parameters(), self.model.parameters()):
                    e.lerp_(p, 1e-3)


def advance(tr: Trainer, k: int, threads: int | None = None) -> Callable[[], None]:
    """A call that trains ``tr`` for ``k`` more steps (on ``threads`` intra-op threads)."""

    def call() -> None:
        if threads is not None:
            torch.set_num_threads(threads)
        tr.fit(tr.step + k)

    return call


def interleaved(variants: dict[str, Callable[[], None]], rounds: int, clock) -> dict[str, float]:
    """Median time of each variant's call over ``rounds`` interleaved rounds."""
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            times[name].append(timed(fn, clock))
    return {k: statistics.median(v) for k, v in times.items()}


# ------------------------------------------------------------------ in-process comparisons
def overhead(rounds: int, steps: dict[str, int]) -> list[tuple]:
    rows = []
    for name, options in SETUPS.items():
        k = steps[name]
        tr, bare = trainer(options), BareLoop(options)
        tr.fit(3), bare.steps(3)  # warm-up
        variants = {"trainer": advance(tr, k), "bare": functools.partial(bare.steps, k)}
        med = interleaved(variants, rounds, time.process_time)
        rows.append((name, 1e3 * med["bare"] / k, 1e3 * med["trainer"] / k,
                     med["trainer"] / med["bare"] - 1))  # fmt: skip
    return rows


def precision_and_compile(rounds: int, steps: dict[str, int], compile_too: bool) -> list[tuple]:
    rows = []
    for name, options in SETUPS.items():
        k = steps[name]
        variants = {"fp32": trainer(options), "bf16": trainer(options, precision="bf16")}
        warmup = {}
        if compile_too:
            variants["compile"] = trainer(options, compile=True)
        for key, tr in variants.items():
            warmup[key] = timed(lambda tr=tr: tr.fit(3), time.perf_counter)
        calls = {key: advance(tr, k) for key, tr in variants.items()}
        med = interleaved(calls, rounds, time.process_time)
        rows.append((name, {key: 1e3 * v / k for key, v in med.items()}, warmup))
    return rows


def threads(rounds: int, steps: dict[str, int]) -> list[tuple]:
    rows = []
    for name, options in SETUPS.items():
        k = steps[name]
        tr = trainer(options)
        tr.fit(3)
        calls = {"1": advance(tr, k, threads=1), "2": advance(tr, k, threads=2)}
        med = interleaved(calls, rounds, time.perf_counter)
        torch.set_num_threads(1)
        rows.append((name, 1e3 * med["1"] / k, 1e3 * med["2"] / k))
    return rows


# ------------------------------------------------------------------ processes
def worker(args) -> None:
    """Under torchrun: time training steps (global batch 512, DDP) and sampling (sharded)."""
    tr = trainer(SETUPS["MLP (moons)"])
    tr.fit(5)
    t = timed(lambda: tr.fit(tr.step + args.steps), time.perf_counter)
    run = load_run(args.worker_run)
    run.sample(1000, steps=args.sample_steps)  # warm-up
    s = timed(lambda: run.sample(args.samples, steps=args.sample_steps), time.perf_counter)
    if tr.rank == 0:
        print(json.dumps({"steps_per_s": args.steps / t, "samples_per_s": args.samples / s}))


def processes(rounds: int, args) -> list[tuple]:
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        train_run({"data": "moons", "steps": 200, "val_fraction": 0, "sample_every": 0}, run,
                  progress=False, device="cpu")  # fmt: skip
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1] / "src"),
                                                           os.environ.get("PYTHONPATH", "")]))  # fmt: skip
        results: dict[int, list[dict]] = {1: [], 2: []}
        for _ in range(rounds):
            for world in (1, 2):
                cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                       f"--nproc_per_node={world}", __file__, "--worker", "--worker-run", str(run),
                       "--steps", str(args.process_steps), "--samples", str(args.samples),
                       "--sample-steps", str(args.sample_steps)]  # fmt: skip
                out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
                results[world].append(json.loads(out.stdout.strip().splitlines()[-1]))
    rows = []
    for world in (1, 2):
        rows.append((world, statistics.median(r["steps_per_s"] for r in results[world]),
                     statistics.median(r["samples_per_s"] for r in results[world])))  # fmt: skip
    return rows


# ------------------------------------------------------------------ report
def render(sections: dict, args, elapsed: float, loads: tuple) -> str:
    out = ["# Scaling on CPU: processes, Trainer overhead, precision and compile, threads", ""]
    out += [
        "No GPU was lent to this task: every figure below is from a CPU (no GPU figures). The "
        "machine was shared with other work while this ran (load average "
        f"{loads[0]:.1f} at the start, {loads[1]:.1f} at the end, on {os.cpu_count()} CPUs): "
        "absolute speeds are not reproducible, so each comparison was measured in this one run "
        "with its variants interleaved, and the ratios are the figures to read.",
        "",
    ]
    if "processes" in sections:
        rows = sections["processes"]
        base = rows[0]
        out += [
            "## 1 vs 2 processes (torchrun, gloo), wall time",
            "",
            f"MLP + EDM on moons, global batch 512 (256 per process with 2), {args.process_steps} "
            f"steps; sampling {args.samples} rows with heun ({args.sample_steps} steps) in blocks "
            "of 1000 rows split over the processes. Medians of "
            f"{args.process_rounds} interleaved launches (start-up excluded).",
            "",
            "| processes | training steps/s | × 1 process | samples/s | × 1 process |",
            "|---:|---:|---:|---:|---:|",
        ]
        for world, sps, smp in rows:
            out.append(f"| {world} | {sps:.1f} | {sps / base[1]:.2f}× | {smp:.0f} | "
                       f"{smp / base[2]:.2f}× |")  # fmt: skip
        out += [
            "",
            "Two processes on two cores that other work already keeps busy add no free compute: "
            "training pays DDP's all-reduce (gloo, every step) on top of halving the batch per "
            "process, while sampling exchanges data only once, in the final gather. The "
            "distributed path is for machines with idle cores or several GPUs; here it shows "
            "that it runs, and what it costs.",
            "",
        ]
    if "overhead" in sections:
        out += [
            "## The Trainer against a bare PyTorch loop (CPU time, 1 thread)",
            "",
            "The same steps (batch of rows, loss, backward, clipping, AdamW, EMA); the Trainer "
            "adds the data order, the learning-rate schedule, the loss/gradient-norm bookkeeping "
            "and its checks. Target: ≤ 10 %.",
            "",
            "| model | bare loop, ms/step | Trainer, ms/step | overhead |",
            "|---|---:|---:|---:|",
        ]
        for name, bare, tr, over in sections["overhead"]:
            out.append(f"| {name} | {bare:.2f} | {tr:.2f} | {100 * over:+.1f} % |")
        out.append("")
    if "precision" in sections:
        out += [
            "## fp32 vs bf16 vs torch.compile per training step (CPU time, 1 thread)",
            "",
            "`--precision bf16` (autocast of the network) and `--compile` (torch.compile, "
            "inductor), against fp32 eager. Warm-up: wall seconds of the first 3 steps (for "
            "compile: the compilation, with an empty inductor cache as on a first run).",
            "",
            "| model | fp32 ms/step | bf16 | compile | warm-up s (fp32 / bf16 / compile) |",
            "|---|---:|---:|---:|---|",
        ]
        for name, ms, warm in sections["precision"]:
            cells = [f"{ms['fp32']:.2f}"]
            for key in ("bf16", "compile"):
                cells.append(f"{ms[key]:.2f} ({ms[key] / ms['fp32']:.2f}×)" if key in ms else "–")
            w = " / ".join(f"{warm[k]:.1f}" for k in ("fp32", "bf16", "compile") if k in warm)
            out.append(f"| {name} | {' | '.join(cells)} | {w} |")
        out.append("")
        for name, ms, warm in sections["precision"]:
            if "compile" in ms and ms["compile"] < ms["fp32"]:
                saved = (ms["fp32"] - ms["compile"]) / 1e3
                out.append(f"- {name}: compiling pays back after about "
                           f"{warm['compile'] / saved:,.0f} steps (compile seconds ÷ seconds "
                           "saved per step).")  # fmt: skip
        out += [
            "- So `--compile` stays off by default on CPU; bf16 costs nothing to try (no warm-up) "
            "but saves little on a CPU; both are meant for GPUs, where no figures could be "
            "taken in this task.",
            "",
        ]
    if "threads" in sections:
        out += [
            "## 1 vs 2 intra-op threads (wall time, on this busy machine)",
            "",
            "The default of every command is `$OMP_NUM_THREADS` when set, else 1 thread "
            "(`scorematch --help`); this is the measurement behind it.",
            "",
            "| model | 1 thread, ms/step | 2 threads, ms/step | 2 threads ÷ 1 |",
            "|---|---:|---:|---:|",
        ]
        for name, one, two in sections["threads"]:
            out.append(f"| {name} | {one:.2f} | {two:.2f} | {two / one:.2f}× |")
        out.append("")
    out.append(
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"Python {platform.python_version()}. Run "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {elapsed / 60:.1f} min: "
        f"`python benchmarks/scale.py {' '.join(sys.argv[1:])}`."
    )
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds in-process")
    parser.add_argument("--process-rounds", type=int, default=3, help="launches per world size")
    parser.add_argument("--process-steps", type=int, default=200)
    parser.add_argument("--samples", type=int, default=8000)
    parser.add_argument("--sample-steps", type=int, default=18)
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--quick", action="store_true", help="few rounds and steps (a smoke test)")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "scale.md")  # fmt: skip
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker-run", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.worker:
        return worker(args)
    if args.quick:
        args.rounds, args.process_rounds, args.process_steps, args.samples = 2, 1, 30, 2000
    steps = {"MLP (moons)": 20, "U-Net (digits 8×8)": 5} if not args.quick else {
        "MLP (moons)": 5, "U-Net (digits 8×8)": 2}  # fmt: skip
    # A cold compilation, as a user's first run sees it (inductor caches compiled graphs).
    cache = os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="scale-inductor-")
    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    sections = {}
    sections["processes"] = processes(args.process_rounds, args)
    print("processes", sections["processes"], flush=True)
    sections["overhead"] = overhead(args.rounds, steps)
    print("overhead", sections["overhead"], flush=True)
    sections["precision"] = precision_and_compile(args.rounds, steps, not args.no_compile)
    print("precision", sections["precision"], flush=True)
    sections["threads"] = threads(args.rounds, steps)
    print("threads", sections["threads"], flush=True)
    shutil.rmtree(cache, ignore_errors=True)
    text = render(sections, args, time.perf_counter() - t0, (load0, os.getloadavg()[0]))
    args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
