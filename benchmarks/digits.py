"""Digits benchmark: a small U-Net trained on CPU within a time budget, sampled and scored in bits/dim.

Target (issue #4, quality target 2): on scikit-learn's 8×8 handwritten digits, a U-Net trained on
CPU for at most 15 minutes gives a grid of samples in which most digits are recognisable, and its
held-out bits/dim is reported.  Everything goes through the library API: ``load_digits_images``,
``train_test_split``, ``Standardizer``, ``UNet`` under ``EDMPrecond`` (or ε-prediction), the
``objectives.edm`` (or ``diffusion``) loss, ``Trainer``, ``sample`` and ``bits_per_dim``.

Discretisation (stated once, used for training, sampling and bits/dim).  A digit pixel is one of
17 levels k ∈ {0, …, 16}; ``load_digits_images`` returns k/16 and the image ``Standardizer`` maps it
to 2·k/16 − 1 ∈ [−1, 1].  The model is trained on, and scored on, *uniformly dequantised* pixels
x = (k + u − ½)/16 with u ~ U[0, 1): each level owns a bin of width 1/16 centred on it, so in model
space y = (k + u)/8 − 17/16 ∈ [−17/16, 17/16).  bits/dim is ``bits_per_dim(data_range=(0, 16),
scale=1/8, shift=−17/16)``: an upper bound (in expectation over u) on the code length of the
17-level data, −log₂ P(k)/64, to compare with log₂ 17 = 4.09 for a uniform guess.  (The 8-bit
convention does not apply: the data have 17 levels, not 256.)  Samples are mapped back to levels by
k = clamp(round(16·x), 0, 16) — the inverse of the dequantisation — and shown as k/16.

Budget.  Training runs in chunks of ``--chunk`` optimizer steps until ``--budget`` seconds of the
chosen clock are used (``wall``: elapsed time of the training loop; ``cpu``: CPU time of the
process, all threads) or ``--max-steps`` is reached; the learning rate is constant after a linear
warm-up, and samples come from the EMA weights.  Sampling and the likelihood are not counted.
On a shared, oversubscribed machine use ``--clock cpu --threads 1``: the wall clock then measures
the other jobs, and several OpenMP threads spin-wait for each other (a step cost ~20× more).

Run (repository root)::

    .venv/bin/python benchmarks/digits.py                  # 15-min wall budget, writes docs/ + results/
    .venv/bin/python benchmarks/digits.py --budget 900 --clock cpu
    .venv/bin/python benchmarks/digits.py --budget 60 --no-write --eval-n 64   # quick look

Writes ``docs/digits_samples.png`` (10×10 samples), ``docs/digits_data.png`` (100 held-out real
digits), ``benchmarks/results/digits.md`` (settings, times, steps, bits/dim, NFE).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import resource
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor

from scorematch.data import Standardizer, load_digits_images, train_test_split
from scorematch.likelihood import bits_per_dim
from scorematch.models import UNet
from scorematch.objectives import diffusion, edm
from scorematch.parametrization import EDMPrecond, EpsilonPrediction
from scorematch.plots import image_grid
from scorematch.processes import EDM, VP
from scorematch.samplers import sample
from scorematch.training import Trainer

ROOT = Path(__file__).resolve().parent.parent
LEVELS = 16  # pixels are integers 0 … 16 (17 levels)
SPLIT_SEED = 0
TEST_FRACTION = 0.2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    a = p.add_argument
    a("--budget", type=float, default=900.0, help="training budget in seconds (default 900)")
    a("--clock", choices=("wall", "cpu"), default="wall", help="clock the budget is measured on")
    a("--max-steps", type=int, default=100_000, help="stop earlier at this many steps")
    a("--chunk", type=int, default=25, help="steps between budget checks")
    a("--threads", type=int, default=2, help="torch.set_num_threads")
    a("--seed", type=int, default=0)
    # model
    a("--prediction", choices=("edm", "eps"), default="edm", help="EDM precond / VP ε-prediction")
    a("--channels", type=int, default=32)
    a("--channel-mult", default="1,2,2")
    a("--res-blocks", type=int, default=1)
    a("--attention", default="2", help="attention level indices, comma-separated ('' = none)")
    a("--fourier-scale", type=float, default=1.0)
    a("--dropout", type=float, default=0.0)
    a("--sigma-data", type=float, default=0.5, help="σ_data of EDM (data space [−1, 1])")
    a("--p-mean", type=float, default=-1.2, help="EDM loss: mean of ln σ")
    a("--p-std", type=float, default=1.2, help="EDM loss: std of ln σ")
    # optimisation
    a("--batch", type=int, default=128)
    a("--lr", type=float, default=2e-3)
    a("--warmup", type=int, default=200)
    a("--ema-half-life", type=float, default=300.0, help="EMA half-life in steps")
    a("--no-dequantize-train", action="store_true", help="train on the 17 levels as they are")
    # sampling and evaluation
    a("--sampler", default="heun", help="heun: stochastic (EDM churn) by default")
    a("--sample-steps", type=int, default=40)
    a("--s-churn", type=float, default=40.0, help="heun churn (0 = deterministic)")
    a("--s-tmin", type=float, default=0.05)
    a("--s-tmax", type=float, default=50.0)
    a("--s-noise", type=float, default=1.003)
    a("--n-samples", type=int, default=100)
    a("--divergence", choices=("hutchinson", "exact"), default="hutchinson")
    a("--probes", type=int, default=1)
    a("--rtol", type=float, default=1e-5)
    a("--atol", type=float, default=1e-5)
    a("--eval-n", type=int, default=None, help="score only this many test digits (default all)")
    # output
    a("--samples-png", type=Path, default=ROOT / "docs" / "digits_samples.png")
    a("--data-png", type=Path, default=ROOT / "docs" / "digits_data.png")
    a("--results", type=Path, default=ROOT / "benchmarks" / "results" / "digits.md")
    a("--no-write", action="store_true", help="print only; write nothing")
    a("--save-model", type=Path, default=None, help="save the EMA weights (safetensors) here")
    return p.parse_args(argv)


def ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def dequantize(levels: Tensor, generator: torch.Generator) -> Tensor:
    """Pixels in [0, 1] units, x = (k + u − ½)/16, u ~ U[0, 1): the bin of width 1/16 around k/16."""
    u = torch.rand(levels.shape, generator=generator, device=generator.device, dtype=levels.dtype)
    return (levels + u.to(levels.device) - 0.5) / LEVELS


def to_levels(x01: Tensor) -> Tensor:
    """Inverse of the dequantisation: the nearest level k ∈ {0, …, 16}."""
    return (x01 * LEVELS).round().clamp(0, LEVELS)


def build(args: argparse.Namespace):
    net = UNet(
        in_channels=1,
        channels=args.channels,
        channel_mult=ints(args.channel_mult),
        num_res_blocks=args.res_blocks,
        attention_levels=ints(args.attention),
        dropout=args.dropout,
        fourier_scale=args.fourier_scale,
        seed=args.seed,
    )
    if args.prediction == "edm":
        process = EDM(sigma_data=args.sigma_data)
        return EDMPrecond(net, process), process
    process = VP()
    return EpsilonPrediction(net, process), process


def make_loss(args: argparse.Namespace, standardizer: Standardizer, process):
    def loss_fn(model, levels: Tensor, generator: torch.Generator) -> Tensor:
        if args.no_dequantize_train:
            x01 = levels / LEVELS
        else:
            x01 = dequantize(levels, generator)
        y = standardizer.transform(x01)
        if args.prediction == "edm":
            return edm(model, process, y, P_mean=args.p_mean, P_std=args.p_std, generator=generator)
        return diffusion(model, process, y, generator=generator)

    return loss_fn


def train(args, model, process, standardizer, train_levels):
    trainer = Trainer(
        model,
        make_loss(args, standardizer, process),
        train_levels,
        batch_size=args.batch,
        lr=args.lr,
        warmup_steps=args.warmup,
        ema_half_life=args.ema_half_life,
        seed=args.seed,
        checkpoint_every=None,
        progress=False,
    )
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    wall0, cpu0, start = time.perf_counter(), time.process_time(), clock()
    while trainer.step < args.max_steps and clock() - start < args.budget:
        result = trainer.fit(min(trainer.step + args.chunk, args.max_steps))
        print(
            f"step {result.step:6d}  loss {result.loss:.4f}  wall {time.perf_counter() - wall0:7.1f}s"
            f"  cpu {time.process_time() - cpu0:7.1f}s  load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    return trainer, time.perf_counter() - wall0, time.process_time() - cpu0, result.loss


def independent_baseline(train_levels: Tensor, test_levels: Tensor) -> float:
    """bits/dim of a per-pixel categorical fitted on the training digits (add-one smoothing)."""
    k_train = train_levels.flatten(1).long()
    k_test = test_levels.flatten(1).long()
    counts = torch.ones(k_train.shape[1], LEVELS + 1, dtype=torch.float64)
    counts.scatter_add_(1, k_train.T, torch.ones_like(k_train.T, dtype=torch.float64))
    logp = (counts / counts.sum(1, keepdim=True)).log()
    return float(-logp.gather(1, k_test.T).mean() / math.log(2))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.threads > 1 and os.getloadavg()[0] > (os.cpu_count() or 1):
        # OpenMP threads busy-wait for each other; on an oversubscribed machine a step then
        # costs ~20× more CPU and wall time (measured: load 20, 2 threads vs 1).
        print(
            f"warning: load average {os.getloadavg()[0]:.1f} exceeds the {os.cpu_count()} CPUs; "
            "use --threads 1 (or OMP_WAIT_POLICY=PASSIVE) for a fair measurement",
            flush=True,
        )
    torch.manual_seed(args.seed)  # nothing should use it; pinned anyway

    images = load_digits_images()
    train01, test01 = train_test_split(images, TEST_FRACTION, seed=SPLIT_SEED)
    standardizer = Standardizer.fit(train01, kind="image")
    train_levels, test_levels = to_levels(train01), to_levels(test01)
    model, process = build(args)
    params = sum(p.numel() for p in model.parameters())
    print(f"train {len(train_levels)}  test {len(test_levels)}  params {params:,}", flush=True)

    load_before = os.getloadavg()
    trainer, wall, cpu, last_loss = train(args, model, process, standardizer, train_levels)
    load_after = os.getloadavg()
    ema = trainer.ema_model.eval()
    if args.save_model is not None:
        save_file(ema.state_dict(), str(args.save_model))

    gen = torch.Generator().manual_seed(args.seed + 1)
    t0 = time.perf_counter()
    churn = (
        dict(s_churn=args.s_churn, s_tmin=args.s_tmin, s_tmax=args.s_tmax, s_noise=args.s_noise)
        if args.sampler == "heun" and args.s_churn > 0
        else {}
    )
    out = sample(
        ema, process, (args.n_samples, 1, 8, 8), sampler=args.sampler, steps=args.sample_steps,
        generator=gen, **churn,
    )  # fmt: skip
    sample_seconds = time.perf_counter() - t0
    samples = to_levels(standardizer.inverse(out.x)) / LEVELS
    print(f"sampled {args.n_samples} with {args.sampler}: NFE {out.nfe}, {sample_seconds:.1f}s")

    eval_levels = test_levels if args.eval_n is None else test_levels[: args.eval_n]
    gen = torch.Generator().manual_seed(args.seed + 2)
    t0 = time.perf_counter()
    with torch.inference_mode():
        bpd, nfe = bits_per_dim(
            ema, process, eval_levels,
            data_range=(0, LEVELS), scale=2.0 / LEVELS, shift=-1.0 - 1.0 / LEVELS,
            divergence=args.divergence, probes=args.probes, rtol=args.rtol, atol=args.atol,
            generator=gen,
        )  # fmt: skip
    bpd_seconds = time.perf_counter() - t0
    mean = float(bpd.mean())
    sem = float(bpd.std() / math.sqrt(bpd.numel()))
    baseline = independent_baseline(train_levels, eval_levels)
    print(f"bits/dim {mean:.4f} ± {sem:.4f} (n={bpd.numel()}, NFE {nfe}, {bpd_seconds:.0f}s)")
    print(f"independent-pixel baseline {baseline:.4f}, uniform {math.log2(LEVELS + 1):.4f}")

    if args.no_write:
        return
    for path in (args.samples_png, args.data_png, args.results):
        path.parent.mkdir(parents=True, exist_ok=True)
    image_grid(samples, args.samples_png, nrow=10, scale=8)
    image_grid(test01[:100], args.data_png, nrow=10, scale=8)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    rows = {
        "command": "`python benchmarks/digits.py "
        + " ".join(sys.argv[1:] if argv is None else argv)
        + "`",
        "model": f"UNet(channels={args.channels}, channel_mult=({args.channel_mult}), "
        f"num_res_blocks={args.res_blocks}, attention_levels=({args.attention}), "
        f"fourier_scale={args.fourier_scale}), {params:,} parameters",
        "parametrization / loss": (
            f"EDMPrecond(σ_data={args.sigma_data}) on EDM(0.002, 80), objectives.edm "
            f"(P_mean {args.p_mean:g}, P_std {args.p_std:g})"
            if args.prediction == "edm"
            else "EpsilonPrediction on VP(0.1, 20), objectives.diffusion (σ² weighting)"
        ),
        "data": f"{len(train_levels)} train / {len(test_levels)} test digits "
        f"(train_test_split, test_fraction {TEST_FRACTION}, seed {SPLIT_SEED}); "
        + ("17 levels as is" if args.no_dequantize_train else "uniformly dequantised (width 1/16)")
        + ", Standardizer 'image' → [−1, 1]; no augmentation",
        "optimiser": f"AdamW lr {args.lr:g}, warm-up {args.warmup} steps then constant, "
        f"batch {args.batch}, grad-clip 1.0, EMA half-life {args.ema_half_life:g} steps",
        "budget": f"{args.budget:g} s of {args.clock} clock, torch threads {args.threads}",
        "steps": f"{trainer.step} ({trainer.step * args.batch / len(train_levels):.0f} epochs)",
        "training wall time": f"{wall:.0f} s ({wall / 60:.1f} min)",
        "training CPU time": f"{cpu:.0f} s ({cpu / 60:.1f} min, all threads)",
        "load average (1 min) before / after training": f"{load_before[0]:.1f} / {load_after[0]:.1f}",
        "final training loss (mean of last 25 steps)": f"{last_loss:.4f}",
        "sampler": f"{args.sampler}, {args.sample_steps} steps"
        + "".join(f", {k} {v:g}" for k, v in churn.items())
        + f", NFE {out.nfe}, seed {args.seed + 1}, "
        f"{args.n_samples} samples in {sample_seconds:.1f} s",
        "bits/dim (held-out, 17-level, dequantised)": f"**{mean:.3f}** ± {sem:.3f} (s.e.m., "
        f"n = {bpd.numel()})",
        "likelihood": f"probability-flow ODE, dopri5 rtol {args.rtol:g} atol {args.atol:g}, "
        f"{args.divergence} divergence"
        + (f" ({args.probes} Rademacher probe)" if args.divergence == "hutchinson" else "")
        + f", NFE {nfe}, {bpd_seconds:.0f} s",
        "reference: independent per-pixel categorical (train fit)": f"{baseline:.3f} bits/dim",
        "reference: uniform over 17 levels": f"{math.log2(LEVELS + 1):.3f} bits/dim",
        "peak RSS": f"{usage.ru_maxrss / 1024:.0f} MB",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}",
    }
    lines = [
        "# Digits: U-Net trained on CPU within 15 minutes",
        "",
        "Produced by `benchmarks/digits.py` (see its docstring for the discretisation). "
        "Samples: `docs/digits_samples.png`; real held-out digits: `docs/digits_data.png`.",
        "",
        "| | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in rows.items()],
        "",
    ]
    text = "\n".join(lines)
    args.results.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
