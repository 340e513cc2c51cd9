"""Score-matching objectives: time per training step against DSM, and what a hollow network buys.

Three parts, each writing its own section of ``benchmarks/results/objectives.md``:

``timing`` — a step is forward + backward + AdamW update of a score network on a batch of 256, at
several data dimensions D.  (a) An MLP (4 linear layers of width 256, SiLU): ESM against a fixed
target, exact ISM (``torch.func`` trace), SSM with one Gaussian projection, SSM-VR, DSM, and as a
reference the classic exact trace by a Python loop over dimensions.  (b) The hollow network
(``build_model("hollow", (D,))``, unconditional): DSM, ISM with its one-pass exact trace, ISM the
slow way (the same network behind a plain function: D vector-Jacobian products), SSM, and DSM on
the MLP of (a) for scale.  Every measurement is bracketed by two DSM steps of the same network and
reported as its time over their mean, so slow drifts of a shared machine cancel; cells are medians.
Targets: SSM and SSM-VR ≤ 2.0× DSM; exact ISM ≤ 0.7·D × DSM for D ≥ 16 and faster than the loop;
ISM with the hollow network ≤ 3× DSM at every D.

``quality`` — the price of the hollow restriction: a plain MLP and a hollow network, trained the
same way (EDM process and preconditioning, EDM loss, AdamW with cosine decay, EMA) for the same
number of steps, on the 2-D toy sets and on scikit-learn's digits as a 64-column table (pixel levels
dequantised, columns standardised).  Held-out NLL by the exact probability-flow likelihood (the
hollow network's trace in one pass) and distances between generated and held-out samples.

``ism-vs-ssm`` — exact ISM with the hollow network against SSM (MLP and hollow) and exact ISM on the
MLP, each trained for the same CPU time on Gaussian mixtures in D = 2, 16, 64 perturbed at σ = 0.1,
scored by the Fisher divergence ½E‖s_θ − ∇log p_σ‖² to the exact score on held-out points.

Run by hand (nice, minutes each; on the shared machine use ``--clock cpu --threads 1``):

    python benchmarks/objectives.py --part timing [--dims 2 16 64 256 784] [--repeats 15]
    python benchmarks/objectives.py --part quality [--steps 2000]
    python benchmarks/objectives.py --part ism-vs-ssm [--budget 40]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import re
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn

import scorematch as sm
from scorematch.likelihood import log_likelihood
from scorematch.metrics import energy_distance, mmd, sliced_wasserstein
from scorematch.models import build_model
from scorematch.objectives import dsm, edm, esm, ism, ssm
from scorematch.parametrization import wrap

F64 = torch.float64
WIDTH, BATCH, SIGMA = 256, 256, 0.1
ORDER = ["ESM", "ISM (exact)", "SSM", "SSM-VR", "DSM", "ISM loop (reference)"]
EXPENSIVE = {"ISM (exact)", "ISM loop (reference)"}
HOLLOW_ORDER = ["DSM", "ISM (one pass)", "ISM (D vjps)", "SSM", "DSM on the MLP"]
HOLLOW_EXPENSIVE = {"ISM (D vjps)"}
SLOW_WAY_UP_TO = 64  # "ISM (D vjps)" on the hollow network is timed up to this D only
OUT = Path(__file__).parent / "results" / "objectives.md"
DIGITS_PROBES = 8


def mlp(d: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(d, WIDTH),
        nn.SiLU(),
        nn.Linear(WIDTH, WIDTH),
        nn.SiLU(),
        nn.Linear(WIDTH, WIDTH),
        nn.SiLU(),
        nn.Linear(WIDTH, d),
    )


def ism_loop(score_fn: Callable, x: torch.Tensor) -> torch.Tensor:
    """The textbook exact ISM: one create_graph backward pass per dimension."""
    x = x.detach().requires_grad_(True)
    s = score_fn(x)
    trace = x.new_zeros(x.shape[0])
    for i in range(x.shape[1]):
        (row,) = torch.autograd.grad(s[:, i].sum(), x, create_graph=True)
        trace = trace + row[:, i]
    return (trace + 0.5 * s.square().sum(1)).mean()


def _steps(nets: dict[str, nn.Module], losses: dict[str, Callable]) -> dict[str, Callable]:
    """One closure per objective, each training its own copy of its network."""
    steps = {}
    for name, loss_fn in losses.items():
        net = copy.deepcopy(nets[name])
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4)

        def step(net=net, opt=opt, loss_fn=loss_fn):
            opt.zero_grad(set_to_none=True)
            loss_fn(net).backward()
            opt.step()

        steps[name] = step
    return steps


def make_steps(d: int, seed: int) -> dict[str, Callable[[], None]]:
    """The MLP's objectives, each training its own copy of the same initial network."""
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
    return _steps(dict.fromkeys(losses, base), losses)


def hollow_net(d: int, seed: int) -> nn.Module:
    """The hollow network with its defaults for D, unconditional, off its zero read-out."""
    net = build_model("hollow", (d,), seed=seed, time_embed_dim=0)
    with torch.no_grad():
        net.out.weight.normal_(0.0, 0.1, generator=torch.Generator().manual_seed(seed))
    return net


def make_hollow_steps(d: int, seed: int) -> dict[str, Callable[[], None]]:
    """The hollow network's objectives; "DSM on the MLP" trains the MLP of ``make_steps``."""
    torch.manual_seed(seed)
    base, plain = hollow_net(d, seed), mlp(d)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(BATCH, d, generator=g)
    losses = {
        "DSM": lambda f: dsm(f, x, SIGMA, generator=g),
        "ISM (one pass)": lambda f: ism(f, x),
        "ISM (D vjps)": lambda f: ism(lambda z: f(z), x),  # the offer hidden: D backward passes
        "SSM": lambda f: ssm(f, x, generator=g),
        "DSM on the MLP": lambda f: dsm(f, x, SIGMA, generator=g),
    }
    if d > SLOW_WAY_UP_TO:
        del losses["ISM (D vjps)"]
    nets = {name: plain if name == "DSM on the MLP" else base for name in losses}
    return _steps(nets, losses)


def measure(
    steps: dict[str, Callable[[], None]],
    order: list[str],
    expensive: set[str],
    repeats: int,
    max_seconds: float,
    clock: Callable[[], float],
) -> tuple[dict[str, list[float]], list[float]]:
    """Ratios to DSM per objective and DSM's own times (seconds)."""
    order = [name for name in order if name in steps]

    def timed(name: str) -> float:
        start = clock()
        steps[name]()
        return clock() - start

    first = {name: timed(name) for name in order}  # warm-up; also the estimate of a step's cost
    rounds = {}
    for name in order:
        n = repeats
        if name in expensive:  # a few steps only: bounded by a time budget per objective
            n = max(2, min(repeats, math.floor(max_seconds / max(first[name], 1e-9))))
        rounds[name] = n
    ratios: dict[str, list[float]] = {name: [] for name in order}
    dsm_times: list[float] = []
    for r in range(max(rounds.values())):
        for name in order:
            if name == "DSM" or r >= rounds[name]:
                continue
            before, t, after = timed("DSM"), timed(name), timed("DSM")
            ratios[name].append(t / (0.5 * (before + after)))
            dsm_times += [before, after]
    ratios["DSM"] = [1.0]
    return ratios, dsm_times


def _table(results, order, expensive, per_d: bool) -> tuple[list[str], dict]:
    dims = sorted(results)
    med = {d: {k: statistics.median(v) for k, v in results[d][0].items()} for d in dims}
    dsm_ms = {d: 1e3 * statistics.median(results[d][1]) for d in dims}
    n = {d: {k: len(v) for k, v in results[d][0].items()} for d in dims}
    rows = [
        "| objective | " + " | ".join(f"D = {d}" for d in dims) + " |",
        "|---|" + "---:|" * len(dims),
        "| DSM, ms per step | " + " | ".join(f"{dsm_ms[d]:.1f}" for d in dims) + " |",
    ]
    for name in order:
        cells = []
        for d in dims:
            if name not in med[d]:
                cells.append("–")
                continue
            cell = f"{med[d][name]:.2f}×"
            if name in expensive:
                cell += (
                    f" ({med[d][name] / d:.2f}·D, n={n[d][name]})"
                    if per_d
                    else f" (n={n[d][name]})"
                )
            cells.append(cell)
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return rows, med


def render_timing(mlp_results, hollow_results, args, elapsed: float) -> str:
    rows, med = _table(mlp_results, ORDER, EXPENSIVE, per_d=True)
    checks = []
    for d in sorted(mlp_results):
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
    h_rows, h_med = _table(hollow_results, HOLLOW_ORDER, HOLLOW_EXPENSIVE, per_d=False)
    sizes = ", ".join(
        f"D = {d}: width {hollow_net(d, 0).config['width']}, {hollow_net(d, 0).config['features']}"
        " features"
        for d in sorted(hollow_results)
    )
    h_checks = []
    for d in sorted(hollow_results):
        m = h_med[d]
        mlp_dsm = m["DSM on the MLP"]
        one_pass, slow = m["ISM (one pass)"], m.get("ISM (D vjps)")
        gain = f"{slow / one_pass:.1f}×" if slow else "–"
        h_checks.append(
            f"| {d} | {'yes' if one_pass <= 3.0 else 'NO'} ({one_pass:.2f}×) | {gain} "
            f"| {m['SSM']:.2f}× "
            f"| {m['ISM (one pass)'] / mlp_dsm:.1f}× | {1 / mlp_dsm:.1f}× |"
        )
    command = (
        f"`python benchmarks/objectives.py --part timing --dims {' '.join(map(str, args.dims))} "
        f"--repeats {args.repeats} --max-seconds {args.max_seconds:g} --clock {args.clock}"
        + (f" --threads {args.threads}" if args.threads else "")
        + "`"
    )
    return "\n".join(
        [
            "## Time per training step, ratio to DSM",
            "",
            f"### (a) MLP score network (4 linear layers, width {WIDTH}, SiLU), batch {BATCH}",
            "",
            "Forward + backward + AdamW step.  Each objective's step is timed between two DSM "
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
            f'### (b) Hollow network (`build_model("hollow", (D,))`, unconditional), batch {BATCH}',
            "",
            f"Default sizes: {sizes}; 2 conditioner and 2 transformer blocks.  Ratios to DSM on "
            'the same hollow network, timed the same way.  "ISM (D vjps)": the same network '
            "behind a plain function, so `ism` cannot see its one-pass trace and takes D "
            f"vector-Jacobian products (timed up to D = {SLOW_WAY_UP_TO}).  "
            '"DSM on the MLP": the MLP of (a), for scale.',
            "",
            *h_rows,
            "",
            "| D | ISM (one pass) ≤ 3× DSM | one pass faster than D vjps by | SSM / DSM "
            "| ISM (one pass) / DSM on the MLP | hollow DSM step / MLP DSM step |",
            "|---:|---|---:|---:|---:|---:|",
            *h_checks,
            "",
            f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads, clock = {args.clock} "
            f"({'wall time' if args.clock == 'wall' else 'process CPU time'}), load average "
            f"{os.getloadavg()[0]:.1f} at the end (other jobs share the machine).  "
            f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {elapsed / 60:.1f} min: "
            f"{command}.",
        ]
    )


def part_timing(args, clock) -> str:
    start = time.perf_counter()
    mlp_results, hollow_results = {}, {}
    for d in args.dims:
        mlp_results[d] = measure(
            make_steps(d, args.seed), ORDER, EXPENSIVE, args.repeats, args.max_seconds, clock
        )
        hollow_results[d] = measure(
            make_hollow_steps(d, args.seed),
            HOLLOW_ORDER,
            HOLLOW_EXPENSIVE,
            args.repeats,
            args.max_seconds,
            clock,
        )
        for label, (ratios, dsm_times) in (("MLP", mlp_results[d]), ("hollow", hollow_results[d])):
            summary = ", ".join(f"{k} {statistics.median(v):.2f}" for k, v in ratios.items())
            print(
                f"D={d} {label}: DSM {1e3 * statistics.median(dsm_times):.1f} ms; {summary}",
                flush=True,
            )
    return render_timing(mlp_results, hollow_results, args, time.perf_counter() - start)


# -- quality: hollow against MLP as diffusion models ------------------------------------------------

TOY_SETS = (
    "moons",
    "swissroll",
    "circles",
    "8gaussians",
    "checkerboard",
    "pinwheel",
    "2spirals",
    "rings",
)
RECIPE = dict(lr=2e-3, batch=256, ema=0.999, warmup=100, t_min=0.002, sampler_steps=30)


def train_diffusion(name: str, z: torch.Tensor, steps: int, seed: int, clock, **sizes) -> tuple:
    """A network ``name`` ("mlp" or "hollow", ``sizes`` overriding its defaults) trained by the
    EDM loss under EDM preconditioning (σ_d = 1, the data being standardised); returns the EMA
    score model, its process and the training time."""
    process = sm.EDM(sigma_min=RECIPE["t_min"], sigma_max=80.0, sigma_data=1.0)
    net = build_model(name, tuple(z.shape[1:]), seed=seed, **sizes)
    model = wrap(net, process, "edm", sigma_data=1.0)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=RECIPE["lr"])
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda i: min(1.0, (i + 1) / RECIPE["warmup"]) * 0.5 * (1 + math.cos(math.pi * i / steps)),
    )
    g = torch.Generator().manual_seed(seed)
    start = clock()
    for _ in range(steps):
        batch = z[torch.randint(0, z.shape[0], (RECIPE["batch"],), generator=g)]
        loss = edm(model, process, batch, generator=g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), model.parameters(), strict=True):
                pe.lerp_(p, 1 - RECIPE["ema"])
    return ema.eval(), process, clock() - start


def evaluate(
    model,
    process,
    z_test,
    mean,
    std,
    seed: int,
    *,
    n_samples: int,
    log_bin: float,
    tol: float,
    **divergence,
):
    """Held-out NLL (nats per row, data units, + ``log_bin``) per row, NFE, and sample distances
    against the test rows (data units)."""
    start = time.perf_counter()
    out = log_likelihood(
        model, process, z_test, rtol=tol, atol=tol, t_min=RECIPE["t_min"], **divergence
    )
    nll = -(out.log_prob.double() - std.log().sum()) + log_bin
    seconds = time.perf_counter() - start
    g = torch.Generator().manual_seed(seed)
    z = sm.sample(
        model, process, (n_samples, *z_test.shape[1:]), steps=RECIPE["sampler_steps"], generator=g
    ).x
    x, x_test = z * std + mean, z_test * std + mean
    return dict(
        nll=nll,
        nfe=out.nfe_per_sample.double().mean().item(),
        nll_seconds=seconds,
        sw=sliced_wasserstein(x, x_test, generator=torch.Generator().manual_seed(seed)).item(),
        energy=energy_distance(x, x_test).item(),
        mmd=mmd(x, x_test).item(),
    )


def standardise(train: torch.Tensor, *others: torch.Tensor):
    mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
    return mean, std, [(t - mean) / std for t in (train, *others)]


def load_set(data: str) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(train, test, log_bin) in data units: the 2-D toys, or digits as a dequantised table."""
    from scorematch.data import load_digits_images, toy_dataset

    if data != "digits":
        train = toy_dataset(data, 10_000, generator=torch.Generator().manual_seed(0)).double()
        test = toy_dataset(data, 2_000, generator=torch.Generator().manual_seed(1)).double()
        return train, test, 0.0
    levels = (load_digits_images().reshape(-1, 64) * 16).round().double()
    perm = torch.randperm(levels.shape[0], generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    # y = (k + u)/16 spreads level k over its bin: log P(k) ≥ E_u log p(y) − 64 log 16.
    train, test = (
        (levels[i] + torch.rand(levels[i].shape, generator=g, dtype=F64)) / 16
        for i in (perm[360:], perm[:360])
    )
    return train, test, 64 * math.log(16)


def quality_set(data: str, args, clock) -> dict:
    """Train and score every network on one data set; summaries only (JSON-ready)."""
    train, test, log_bin = load_set(data)
    digits = data == "digits"
    mean, std, (z_train, z_test) = standardise(train, test)
    nets = [("mlp", "mlp", {}), ("hollow", "hollow", {})]
    if digits:  # also a hollow network of about the MLP's cost per row
        nets.append(("hollow, width 64", "hollow", {"width": 64, "features": 16}))
    out, nll = {}, {}
    for label, name, sizes in nets:
        steps = args.steps_digits if digits else args.steps
        model, process, seconds = train_diffusion(
            name, z_train.float(), steps, args.seed, clock, **sizes
        )
        divergence = {}
        if digits and name == "mlp":  # 64 backward passes per evaluation: Hutchinson instead
            divergence = dict(
                divergence="hutchinson",
                probes=DIGITS_PROBES,
                generator=torch.Generator().manual_seed(args.seed),
            )
        res = evaluate(
            model.double(),
            process,
            z_test,
            mean,
            std,
            args.seed,
            n_samples=z_test.shape[0],
            log_bin=log_bin,
            tol=1e-3 if digits else 1e-4,
            **divergence,
        )
        nll[label] = res.pop("nll")
        res.update(
            steps=steps,
            train_seconds=seconds,
            params=sum(p.numel() for p in model.parameters()),
            nll=nll[label].mean().item(),
            nll_se=(nll[label].std() / math.sqrt(nll[label].numel())).item(),
            divergence=divergence.get("divergence", "exact"),
        )
        if label != "mlp":
            diff = nll[label] - nll["mlp"]
            res.update(
                delta=diff.mean().item(), delta_se=(diff.std() / math.sqrt(diff.numel())).item()
            )
        out[label] = res
        print(
            f"{data} {label}: NLL {res['nll']:.3f} SW {res['sw']:.3f} E {res['energy']:.4f} "
            f"train {seconds:.0f}s NLL {res['nll_seconds']:.0f}s",
            flush=True,
        )
    return out


def quality_cache(out: Path) -> Path:
    """The per-set results behind the quality table, next to the results file."""
    return out.with_name(f"{out.stem}_quality.json")


def quality_results(args, clock) -> tuple[dict, float]:
    """Per data set, from the cache file, recomputing the sets in ``args.sets``."""
    start = time.perf_counter()
    cache = quality_cache(args.out)
    results = json.loads(cache.read_text()) if cache.exists() else {}
    for data in [s for s in (*TOY_SETS, "digits") if s in args.sets]:
        results[data] = quality_set(data, args, clock)
        tmp = cache.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(results, indent=1))
        tmp.replace(cache)
    return results, time.perf_counter() - start


def render_quality(results: dict, args, elapsed: float) -> str:
    out = [
        "## Quality: hollow network against the plain MLP (diffusion models)",
        "",
        "Both trained identically: EDM process (σ 0.002…80), EDM preconditioning with σ_d = 1 on "
        "standardised data, the EDM loss, AdamW lr 2e-3 with warm-up and cosine decay, batch 256, "
        "EMA 0.999, gradient clipping 1, default sizes of `build_model` for the data's D, the same "
        'number of steps (so the hollow network trains longer: see "train s").  NLL: '
        "probability-flow likelihood of p_{t_min} (t_min = 0.002, per-sample dopri5, tol 1e-4 in "
        "2-D, 1e-3 on digits), nats per row in data units, mean ± standard error over the test "
        "rows; Δ = network − MLP with the standard error of the paired difference.  Distances "
        "(data units): sliced Wasserstein-2, energy distance, MMD² (RBF, median bandwidth) "
        "between as many generated samples (Heun, 30 steps) as test rows and the test rows.  "
        "2-D sets: 10 000 training and 2 000 test points.  Digits: 1 437 training and 360 test "
        "rows, 64 columns of 17 pixel levels dequantised as (k + u)/16, NLL as the discrete "
        "bound −log P(k) ≤ −log p((k + u)/16) + 64 log 16, also in bits per pixel; the MLP's "
        f"divergence there is Hutchinson's with {DIGITS_PROBES} probes (unbiased; its exact trace "
        "takes 64 backward passes per evaluation, and one exact run passed 40 CPU-minutes "
        "unfinished), the hollow networks' the exact one-pass trace; besides the default hollow "
        "network (width 32, 8 features) one of width 64 with 16 features.",
        "",
        "| data | network | parameters | steps | train s | NLL | Δ NLL vs MLP | NLL s "
        "| sliced W₂ | energy dist. | MMD² | NFE / row |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    gaps = {}
    for data, nets in results.items():
        for name, r in nets.items():
            nll_cell = f"{r['nll']:.3f} ± {r['nll_se']:.3f}"
            if data == "digits":
                nll_cell += f" ({r['nll'] / (64 * math.log(2)):.3f} bits/px)"
            if r["divergence"] != "exact":
                nll_cell += f" ({r['divergence']})"
            delta = f"{r['delta']:+.3f} ± {r['delta_se']:.3f}" if "delta" in r else ""
            if name == "hollow":
                gaps[data] = r["delta"]
            out.append(
                f"| {data} | {name} | {r['params']:,} | {r['steps']} | {r['train_seconds']:.0f} "
                f"| {nll_cell} | {delta} | {r['nll_seconds']:.0f} | {r['sw']:.3f} "
                f"| {r['energy']:.4f} | {r['mmd']:.4f} | {r['nfe']:.0f} |"
            )
    toy = {k: v for k, v in gaps.items() if k != "digits"}
    if toy:
        out += [
            "",
            f"Hollow − MLP held-out NLL on the {len(toy)} 2-D sets: mean {statistics.mean(toy.values()):+.3f} "
            f"nats per point (from {min(toy.values()):+.3f} to {max(toy.values()):+.3f}; negative: "
            "the hollow network is better)"
            + (f"; on digits {gaps['digits']:+.2f} nats per row." if "digits" in gaps else "."),
        ]
    out += [
        "",
        f"Per-set results are kept in `{quality_cache(args.out).name}`; `--sets` re-runs only those "
        "named.  "
        f"Load average {os.getloadavg()[0]:.1f} at the end; {elapsed / 60:.1f} min for the sets of "
        f"this run: `python benchmarks/objectives.py --part quality --steps {args.steps} "
        f"--steps-digits {args.steps_digits} --clock {args.clock}"
        + (f" --threads {args.threads}" if args.threads else "")
        + "`.",
    ]
    return "\n".join(out)


# -- ISM with the hollow network against SSM at equal time ------------------------------------------


def mixture(d: int, seed: int) -> sm.GaussianMixture:
    """4 components in D dimensions, random orientations, stds log-uniform in [0.2, 1]."""
    g = torch.Generator().manual_seed(seed)
    k = 4
    means = 2.0 * torch.randn(k, d, generator=g, dtype=F64)
    q, _ = torch.linalg.qr(torch.randn(k, d, d, generator=g, dtype=F64))
    stds = torch.exp(torch.empty(k, d, dtype=F64).uniform_(math.log(0.2), 0.0, generator=g))
    return sm.GaussianMixture(means, q @ torch.diag_embed(stds**2) @ q.transpose(-1, -2))


def ism_vs_ssm_rows(args, clock) -> tuple[list[dict], float]:
    start = time.perf_counter()
    rows = []
    for d in args.ism_dims:
        noisy = mixture(d, d).perturbed(1.0, SIGMA)  # the law of x + σε
        train = noisy.sample(20_000, generator=torch.Generator().manual_seed(0)).float()
        test = noisy.sample(2_000, generator=torch.Generator().manual_seed(1))
        target = noisy.score(test)
        scale = 0.5 * target.square().sum(1).mean().item()
        configs = [
            ("hollow", "ISM (one pass)", lambda f, b, g: ism(f, b)),
            ("hollow", "SSM", lambda f, b, g: ssm(f, b, generator=g)),
            ("mlp", "SSM", lambda f, b, g: ssm(f, b, generator=g)),
            ("mlp", "ISM (exact, D vjps)", lambda f, b, g: ism(f, b)),
        ]
        for net_name, objective, loss_fn in configs:
            net = build_model(net_name, (d,), seed=args.seed, time_embed_dim=0)
            opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
            g = torch.Generator().manual_seed(args.seed)
            steps, used = 0, 0.0
            t0 = clock()
            while used < args.budget:
                batch = train[torch.randint(0, train.shape[0], (BATCH,), generator=g)]
                opt.zero_grad(set_to_none=True)
                loss_fn(net, batch, g).backward()
                opt.step()
                steps += 1
                used = clock() - t0
            with torch.no_grad():
                fisher = 0.5 * (net.double()(test) - target).square().sum(1).mean().item()
            rows.append(
                dict(
                    d=d,
                    net=net_name,
                    objective=objective,
                    steps=steps,
                    seconds=used,
                    fisher=fisher,
                    relative=fisher / scale,
                )
            )
            print(
                f"D={d} {net_name} {objective}: {steps} steps, Fisher {fisher:.4f} "
                f"({fisher / scale:.3f} of ½E‖s‖²)",
                flush=True,
            )
    return rows, time.perf_counter() - start


def ism_vs_ssm_findings(rows: list[dict]) -> list[str]:
    """Per D: the most accurate run in the budget, and hollow ISM against the best SSM run."""
    out = []
    for d in sorted({r["d"] for r in rows}):
        at_d = [r for r in rows if r["d"] == d]
        best = min(at_d, key=lambda r: r["fisher"])
        hollow = next(r for r in at_d if r["net"] == "hollow" and r["objective"].startswith("ISM"))
        ssm_best = min((r for r in at_d if r["objective"] == "SSM"), key=lambda r: r["fisher"])
        out.append(
            f"- D = {d}: best {best['net']} {best['objective']} ({best['relative']:.3f}); hollow "
            f"ISM {hollow['relative']:.3f} against the better SSM ({ssm_best['net']}) "
            f"{ssm_best['relative']:.3f} (SSM's error {ssm_best['fisher'] / hollow['fisher']:.2f}× "
            "hollow ISM's)."
        )
    return out


def render_ism_vs_ssm(rows: list[dict], args, elapsed: float) -> str:
    out = [
        "## Exact ISM with the hollow network against SSM at equal training time",
        "",
        f"Unconditional score networks (`build_model(..., time_embed_dim=0)`, default sizes) "
        f"trained on samples of a 4-component Gaussian mixture perturbed by N(0, {SIGMA}²), "
        f"batch {BATCH}, AdamW lr 1e-3, each for {args.budget:g} s of {args.clock} time.  Score: "
        "Fisher divergence ½E‖s_θ − ∇log p_σ‖² on 2 000 held-out points against the exact score, "
        "and relative to ½E‖∇log p_σ‖² (0 is perfect, 1 is as bad as s = 0).",
        "",
        "| D | network | objective | steps in the budget | Fisher divergence | relative |",
        "|---:|---|---|---:|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r['d']} | {r['net']} | {r['objective']} | {r['steps']} | {r['fisher']:.4f} "
            f"| {r['relative']:.3f} |"
        )
    out += ["", *ism_vs_ssm_findings(rows)]
    out += [
        "",
        f"Load average {os.getloadavg()[0]:.1f} at the end; {elapsed / 60:.1f} min: "
        f"`python benchmarks/objectives.py --part ism-vs-ssm --budget {args.budget:g} "
        f"--ism-dims {' '.join(map(str, args.ism_dims))} --clock {args.clock}"
        + (f" --threads {args.threads}" if args.threads else "")
        + "`.",
    ]
    return "\n".join(out)


# -- the results file: one section per part, each rewritten by its own run ---------------------------

PARTS = ("timing", "quality", "ism-vs-ssm")
TITLE = "# Objectives: time per training step, and the hollow network"


def write_section(part: str, text: str, out: Path) -> None:
    """Replace (or add) ``part``'s section of the results file, atomically."""
    sections = {}
    if out.exists():
        found = re.findall(r"<!-- part: ([\w-]+) -->\n(.*?)\n<!-- /part -->", out.read_text(), re.S)
        sections = dict(found)
    sections[part] = text
    body = [TITLE, ""]
    for name in PARTS:
        if name in sections:
            body += [f"<!-- part: {name} -->", sections[name], "<!-- /part -->", ""]
    tmp = out.with_suffix(".md.tmp")
    tmp.write_text("\n".join(body), encoding="utf-8")
    tmp.replace(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=[*PARTS, "all"], default="timing")
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 16, 64, 256, 784])
    parser.add_argument("--repeats", type=int, default=15, help="rounds per objective")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=30.0,
        help="time budget per expensive objective (ISM, loop) and D; at least 2 rounds",
    )
    parser.add_argument("--steps", type=int, default=2000, help="training steps, 2-D sets")
    parser.add_argument("--steps-digits", type=int, default=3000, help="training steps, digits")
    parser.add_argument("--sets", nargs="+", default=[*TOY_SETS, "digits"])
    parser.add_argument("--budget", type=float, default=40.0, help="seconds per ISM/SSM run")
    parser.add_argument("--ism-dims", type=int, nargs="+", default=[2, 16, 64])
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall time, or process CPU time (steadier on a shared machine)",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for part in PARTS if args.part == "all" else (args.part,):
        if part == "timing":
            text = part_timing(args, clock)
        elif part == "quality":
            results, elapsed = quality_results(args, clock)
            text = render_quality(results, args, elapsed)
        else:
            rows, elapsed = ism_vs_ssm_rows(args, clock)
            text = render_ism_vs_ssm(rows, args, elapsed)
        write_section(part, text, args.out)
        print(text, flush=True)


if __name__ == "__main__":
    main()
