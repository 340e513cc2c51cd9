"""A trained run: :func:`~.loading.load_run` rebuilds it from its directory, and :class:`Run`
samples it, computes log-likelihoods and evaluates it against the held-out split — all in data
units."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._checks import check_positive_int, model_device
from ..data import ColumnCodec, Standardizer, from_model, to_model
from ..data.missing import without_gaps
from ..distributions import GaussianMixture
from ..likelihood import bits_per_dim, log_likelihood
from ..metrics import (
    Memorisation,
    energy_distance,
    heldout_nll,
    memorisation,
    mmd,
    sliced_wasserstein,
)
from ..processes import Process
from ..samplers.api import DEFAULT_STEPS, SAMPLERS, sample
from .checks import choice, seed_value
from .conditional import guided
from .config import TIME_CONDITIONAL
from .data import DataBundle, load_run_data, run_columns
from .evaluation import Evaluation, HeldOutNLL, SampleFigures, likelihood_convention
from .oracle import compare_with_mixture, describe_source, known_mixture
from .sharding import block_seed, map_blocks
from .streaming import MAX_DISTANCE_ROWS, subsample_rows
from .tuning import choose_grid
from .verdict import judge, target_column

__all__ = ["EVALUATE_RTOL", "EXACT_DIVERGENCE_MAX_DIM", "Run", "SampleResult"]

# Up to this many dimensions the likelihood's divergence is exact by default (D backward passes
# per ODE step are cheap there); above it, Hutchinson's estimate.
EXACT_DIVERGENCE_MAX_DIM = 16
MAX_MEMORISATION_ROWS = 2000  # held-out rows the memorisation figures compare at most
# The likelihood's ODE tolerance in `evaluate` and the CLI's `likelihood`: the NLL moves by
# ~0.003 nats/row from 1e-5's at 2.4× fewer network calls (benchmarks/results/phases.md), far
# inside its standard error.
EVALUATE_RTOL = 1e-4
LANGEVIN_STEPS = 100  # annealed Langevin steps per level when a run samples with it unasked (NCSN)


@dataclass
class SampleResult:
    """Samples in data units, the NFE, and (when asked) the trajectory in data units;
    ``tuned_grid`` says whether a grid fitted by ``scorematch tune`` was used and ``grid_note`` is
    one line about the grid for the user (None: the default grid, nothing to say)."""

    x: Tensor
    nfe: int
    trajectory: list[Tensor] | None = field(default=None, repr=False)
    seconds: float = 0.0
    tuned_grid: bool = False
    grid_note: str | None = None


class Run:
    """A trained run: the EMA score model in standardised space, its process and standardisation.

    Build it with :func:`load_run`.  ``model(z, t)`` is the score of the standardised data
    z = T(x); ``sample``, ``log_likelihood`` and ``evaluate`` work in data units.  With ``ranks``
    = (world size, rank) of torchrun's process group (``load_run`` sets them), ``sample`` and
    ``log_likelihood`` are collective: each rank computes its share of the row blocks and every
    rank returns all rows (``sharding``), equal row for row to the single-process result.
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        model: nn.Module,
        process: Process | None,
        standardizer: Standardizer,
        *,
        step: int = 0,
        run_dir: Path | None = None,
        data: DataBundle | None = None,
        selection: Mapping[str, Any] | None = None,
        ranks: tuple[int, int] = (1, 0),
    ) -> None:
        self.config = config
        self.model = model
        self.process = process
        self.standardizer = standardizer
        self.step = step
        self.run_dir = run_dir
        self._data = data
        self.selection = selection  # RUN/selection.json: best step and t_min chosen on validation
        self.world_size, self.rank = ranks

    @property
    def is_main(self) -> bool:
        """Rank 0 (always, without torchrun): the process that writes files and prints."""
        return self.rank == 0

    # -- basic facts
    @property
    def objective(self) -> str:
        return self.config["objective"]["name"]

    @property
    def time_conditional(self) -> bool:
        """True when the model learned s(z, t) at every noise level (and so has a likelihood)."""
        return self.objective in TIME_CONDITIONAL

    @property
    def kind(self) -> str:
        return self.config["data"]["kind"]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.config["data"]["shape"])

    @property
    def data_shape(self) -> tuple[int, ...]:
        """The shape of one row in data units: a table's columns ``(D,)`` (its model sees
        :attr:`shape`, one-hot columns counting K), else :attr:`shape`."""
        return (len(self.columns),) if self.columns is not None else self.shape

    @property
    def data(self) -> DataBundle:
        """Train and test splits in data units (loaded on first use)."""
        if self._data is None:
            self._data = load_run_data(self.config)
        return self._data

    @cached_property
    def columns(self) -> ColumnCodec | None:
        """The table's column codec (kinds, grids, labels; :mod:`scorematch.data.columns`), or
        None for data that is not a user's table."""
        return run_columns(self.config["data"])

    @property
    def device(self) -> torch.device:
        """Where the model's weights live (CPU for a model without any)."""
        return model_device(self.model)[0]

    @property
    def dtype(self) -> torch.dtype:
        """The model's floating-point dtype (torch's default for a model without weights)."""
        return model_device(self.model)[1]

    @property
    def default_divergence(self) -> str:
        """The likelihood's divergence unless told: ``"exact"`` up to 16 dimensions or when the
        model offers its exact divergence in one pass (``value_and_divergence``: a hollow
        network), else ``"hutchinson"``."""
        cheap = callable(getattr(self.model, "value_and_divergence", None))
        small = math.prod(self.shape) <= EXACT_DIVERGENCE_MAX_DIM
        return "exact" if small or cheap else "hutchinson"

    # -- sampling
    def sample(
        self,
        n: int,
        *,
        sampler: str | None = None,
        steps: int | None = None,
        seed: int = 0,
        churn: float = 0.0,
        trajectory: bool = False,
        progress: bool = False,
        grid: str = "auto",
        label: int | None = None,
        guidance: float = 0.0,
    ) -> SampleResult:
        """Draw ``n`` samples (data units) with the run's sampler or ``sampler``/``steps``;
        ``label`` (a class code of a run trained with labels) draws from that class, guided with
        weight ``guidance`` (:class:`scorematch.Guided`: classifier-free guidance).

        ``grid``: ``"auto"`` samples on the grid ``scorematch tune`` fitted to this checkpoint for
        this sampler and NFE when ``grids.json`` holds one, else on the sampler's default grid;
        ``"tuned"`` insists on the tuned grid; ``"default"`` ignores it (:mod:`.tuning`).

        ``churn`` > 0 makes ``heun`` stochastic: EDM's S_churn (Karras et al. 2022, Alg. 2), noise
        added back at every step, whatever σ.  (The README's digits grid used 40 only within EDM's
        σ window 0.05–50: ``benchmarks/digits.py``.)
        """
        n, seed = check_positive_int(n, "n"), seed_value(seed)
        cfg = self.config["sampling"]
        name = choice(sampler or cfg["sampler"], "sampler", tuple(SAMPLERS))
        if not (isinstance(churn, (int, float)) and math.isfinite(churn) and churn >= 0):
            raise ValueError(f"churn must be a number >= 0, got {churn!r}")
        if churn and name != "heun":
            raise ValueError(f"churn applies to the heun sampler only, not {name!r}")
        if not self.time_conditional and name != "annealed_langevin":
            raise ValueError(
                f"this run learned one score s(x) ({self.objective}); only annealed_langevin "
                f"applies, not {name!r}"
            )
        if steps is None:
            steps = cfg["steps"] if name == cfg["sampler"] else None
        if steps is None:  # another sampler than the run's: its own default
            steps = LANGEVIN_STEPS if name == "annealed_langevin" else DEFAULT_STEPS[name]
        steps = check_positive_int(steps, "steps")
        chosen = choose_grid(self, name, steps, grid)
        device, dtype = model_device(self.model)
        options: dict[str, Any] = {"s_churn": float(churn)} if churn else {}
        if name == "annealed_langevin":
            # A run's steps count Langevin steps per level (NCSN's T); the levels are the
            # process's own (NCSN, unconditional runs) or 10 geometric ones.
            options["langevin_steps"], steps = steps, None
        if not self.time_conditional:
            # Langevin at the learned level, started from the standardised data's scale.
            options.update(
                step_size=cfg["step_size"], denoise=self.config["objective"]["sigma"] > 0
            )
        init_std = 1.0 if self.kind == "vector" else 0.5
        model = self.model if label is None else guided(self, label, guidance)

        def draw(block: int, start: int, stop: int) -> tuple[Tensor, int, list | None]:
            # Rows in blocks of 1000, each with its own seed: the same rows on any number of ranks.
            gen = torch.Generator(device=device).manual_seed(block_seed(seed, block))
            shape_or_x: Any = (stop - start, *self.shape)
            if not self.time_conditional:
                shape_or_x = init_std * torch.randn(
                    shape_or_x, generator=gen, device=device, dtype=dtype
                )
            out = sample(
                model,
                self.process,
                shape_or_x,
                sampler=name,
                steps=None if chosen.times is not None else steps,
                grid="auto" if chosen.times is None else chosen.times,
                generator=gen,
                progress=progress and self.is_main,
                return_trajectory=trajectory,
                **options,
            )
            return out.x.detach(), out.nfe, out.trajectory

        t0 = time.perf_counter()
        self.model.eval()
        blocks = map_blocks(draw, n, world_size=self.world_size, rank=self.rank)
        # A table's coordinates back to its columns: one-hot by argmax, transforms inverted,
        # discrete columns onto their values.
        x = from_model(self.columns, self.standardizer.inverse(torch.cat([b[0] for b in blocks])))
        traj = None
        if trajectory and blocks[0][2] is not None:
            steps_of_blocks = zip(*(b[2] for b in blocks))
            traj = [from_model(self.columns, self.standardizer.inverse(torch.cat(s).detach()))
                    for s in steps_of_blocks]  # fmt: skip
        seconds = time.perf_counter() - t0
        return SampleResult(x, blocks[0][1], traj, seconds, chosen.tuned, chosen.line)

    # -- likelihood
    def require_likelihood(self) -> None:
        """Raise a one-line ValueError when the run has no likelihood (unconditional objective)."""
        if not self.time_conditional:
            raise ValueError(
                f"likelihood needs a time-conditional objective (diffusion, edm or ncsn); this run "
                f"was trained with {self.objective!r}, which learns one score s(x) without a density"
            )

    @property
    def refitted(self) -> bool:
        """True when the run's model was trained again on all its training rows (a small table):
        then it saw the validation rows too."""
        return bool((self.selection or {}).get("refit"))

    @property
    def t_min(self) -> float:
        """The t_min the likelihood is read at unless told: the one chosen on the validation rows
        (``selection.json``) when the run made that choice, else the process's own."""
        chosen = (self.selection or {}).get("t_min")
        return float(chosen["value"]) if chosen else float(self.process.t_min)

    @property
    def t_min_reason(self) -> str:
        """Why :attr:`t_min` is what it is, in words."""
        chosen = (self.selection or {}).get("t_min")
        if not chosen:
            return "the process's own t_min"
        return (
            f"chosen on {chosen['rows']} validation rows: the lowest validation NLL "
            f"({chosen['validation_nll']:.4g}) among {len(chosen['candidates'])} values"
        )

    def _check_t_min(self, t_min: float | None) -> None:
        if t_min is None:
            return
        lo, hi = self.process.t_min, self.process.t_max
        if isinstance(t_min, bool) or not (isinstance(t_min, int | float) and lo <= t_min < hi):
            raise ValueError(
                f"t_min must lie in [{lo:g}, {hi:g}), the range the model was trained on; "
                f"got {t_min}"
            )

    def _level_map(self, levels: int) -> tuple[float, float]:
        """(a, b) sending a dequantised grey level v = k + u ∈ [k, k+1) to the model's space:
        y = T((v − ½)/L), so that bin k is centred on the training value T(k/L)."""
        a, b = self.standardizer.affine()
        if a.numel() != 1 or b.numel() != 1:
            raise ValueError(
                "quantised data need a standardisation that is the same for every value"
            )
        a, b = float(a), float(b)
        return a / levels, b - a / (2 * levels)

    def log_likelihood(
        self,
        x: Tensor,
        *,
        divergence: str = "exact",
        probes: int = 1,
        seed: int = 0,
        batch_size: int = 1000,
        rtol: float = 1e-5,
        t_min: float | None = None,
        progress: bool = False,
    ) -> tuple[Tensor, int]:
        """log-density of data-unit rows ``x`` (float64, shape ``(N,)``) and the total NFE.

        Vector data: the continuous density, log p_X(x) = log p_Z(T(x)) + log|det ∂T/∂x|, with
        log p_Z from the probability-flow ODE (:func:`scorematch.log_likelihood`).  Quantised
        images (L + 1 levels known): the discrete log-probability bound of uniform
        dequantization, log P(x) ≥ log p_Z(y) + D log(a/L) with y = T((k + u − ½)/L), k = L·x the
        grey level, T(x) = a·x + b the standardisation (see :func:`scorematch.bits_per_dim`).

        ``t_min`` (process clock, default :attr:`t_min`: chosen on validation) sets the density scored: p_{t_min},
        the model's density blurred by the forward process up to t_min — for the EDM process
        Gaussian noise of σ = t_min in standardised units, a bandwidth that can be chosen on
        validation data (docs/api.md).  It must lie in [process.t_min, process.t_max).
        """
        self.require_likelihood()
        self._check_t_min(t_min)
        t_min = self.t_min if t_min is None else t_min
        if not isinstance(x, Tensor):
            raise ValueError(f"x must be a tensor, got {type(x).__name__}")
        if tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(
                f"data rows must have shape {self.data_shape} like the training data, got "
                f"{tuple(x.shape[1:])}"
            )
        device, dtype = model_device(self.model)
        seed = seed_value(seed)
        levels = self.config["data"].get("levels")
        dim = math.prod(self.shape)
        options = dict(
            divergence=divergence,
            probes=probes,
            rtol=rtol,
            atol=rtol,
            t_min=t_min,
            progress=False,  # one bar for the whole job below, not one per batch
        )
        self.model.eval()
        bar = tqdm(
            total=x.shape[0], unit="row", desc="likelihood", disable=not (progress and self.is_main)
        )

        def score(block: int, start: int, stop: int) -> tuple[Tensor, int]:
            # Blocks of batch_size rows, each seeded alone: the same rows on any number of ranks.
            gen = torch.Generator(device=device).manual_seed(block_seed(seed, block))
            xb = x[start:stop].to(device=device, dtype=dtype)
            if levels:
                scale, shift = self._level_map(levels)
                k = (xb * levels).round().clamp(0, levels)
                bpd, n_eval = bits_per_dim(
                    self.model,
                    self.process,
                    k,
                    data_range=(0, levels),
                    scale=scale,
                    shift=shift,
                    generator=gen,
                    **options,
                )
                lp = -bpd.double() * dim * math.log(2.0)
            else:
                # A table: its model coordinates, each discrete value spread over its bin, and
                # the correction Σ log w + Σ log T'(x) (ColumnCodec.dequantise; the first draws
                # from the generator, none for continuous tables).
                log_bin = 0.0
                if self.columns is not None:
                    xb, log_bin = self.columns.dequantise(xb, gen)
                z = self.standardizer.transform(xb)
                lp_z, n_eval = log_likelihood(self.model, self.process, z, generator=gen, **options)
                lp = lp_z.double() + self.standardizer.log_abs_det() + log_bin
            bar.update(stop - start)
            return lp.cpu(), n_eval

        blocks = map_blocks(
            score, x.shape[0], block_rows=batch_size, world_size=self.world_size, rank=self.rank
        )
        bar.close()
        return torch.cat([b[0] for b in blocks]), sum(b[1] for b in blocks)

    def standardised(self, x: Tensor) -> Tensor:
        """Data-unit rows in the model's standardised coordinates, z = T(to_model(x)) (a table's
        columns through its codec: one-hot, transforms)."""
        return self.standardizer.transform(to_model(self.columns, x))

    # -- evaluation
    def memorisation(self, x: Tensor, *, seed: int = 0) -> Memorisation:
        """Whether samples ``x`` (data units) copy training rows: distances to the closest
        training row against those of the held-out rows, in the standardised units the model
        sees (:func:`scorematch.metrics.memorisation`)."""
        gen = torch.Generator().manual_seed(int(seed))
        # The held-out side is a median too: MAX_MEMORISATION_ROWS rows pin it as well as 10 000
        # (each costs a search of every training row; benchmarks/results/phases.md).
        test = subsample_rows(self.data.test, MAX_MEMORISATION_ROWS, gen)
        rows = [self.standardised(v.to(torch.float64)) for v in (x, self.data.train_complete, test)]
        return memorisation(*rows, standardize=False, generator=gen)

    def evaluate(
        self,
        n: int = 2000,
        *,
        seed: int = 0,
        nll: bool = True,
        divergence: str | None = None,
        max_nll_points: int = 2000,
        rtol: float = EVALUATE_RTOL,
        t_min: float | None = None,
        progress: bool = False,
        mixture: GaussianMixture | None = None,
        grid: str = "auto",
        verdict: bool = True,
        target: str | None = None,
        announce: Callable[[str], None] | None = None,
    ) -> Evaluation:
        """Distances between ``n`` samples and the held-out split (data units) and the held-out
        NLL (nats/sample and bits/dim) of p_{t_min} (see :meth:`log_likelihood`) on at most
        ``max_nll_points`` rows, with ``divergence`` (default :attr:`default_divergence`); the
        samples come from the run's sampler on ``grid`` (see :meth:`sample`).

        Vector data (``verdict``): also the verdict (``Evaluation.verdict``,
        :func:`~.verdict.judge`) — the figures in standardised units beside a BIC Gaussian
        mixture fitted on the same training rows and the training rows themselves, with the
        train-on-synthetic figure for the column ``target``.  ``announce(line)`` is told what each
        phase does.  Where the law of the data is known — a built-in mixture set, or ``mixture``
        (a ``GaussianMixture`` in data units) — also the comparison with it
        (``Evaluation.oracle``: :func:`~.oracle.compare_with_mixture`)."""
        n = check_positive_int(n, "n")
        seed_value(seed)  # a bad seed fails before the first phase is announced
        self._check_t_min(t_min)  # here too, so that a bad t_min fails before the sampling
        judged = verdict and self.kind == "vector"
        names = self.columns.names if self.columns is not None else None
        if target is not None:
            if not judged:
                raise ValueError("--target needs the verdict of vector data (a table)")
            target_column(names or [f"x{j + 1}" for j in range(self.shape[0])], target)
        say = (announce if self.is_main else None) or (lambda line: None)
        truth = known_mixture(self.config, mixture)
        test = self.data.test
        t0 = time.perf_counter()
        say(f"drawing {n} samples ({self.config['sampling']['sampler']})")
        drawn = self.sample(n, seed=seed, progress=progress, grid=grid)
        x = drawn.x.double().cpu()
        ref = test.double()
        gen = torch.Generator().manual_seed(int(seed))
        nonfinite = int((~torch.isfinite(x.reshape(n, -1))).any(1).sum())
        x = torch.nan_to_num(x, nan=0.0, posinf=1e6, neginf=-1e6)
        # MMD and energy distance cost O(rows²): on a bounded random subset of the held-out rows.
        pairs = subsample_rows(ref, MAX_DISTANCE_ROWS, torch.Generator().manual_seed(int(seed)))
        samples = SampleFigures(
            sampler=self.config["sampling"]["sampler"],
            nfe=drawn.nfe,
            seconds=round(drawn.seconds, 3),
            n=n,
            nonfinite=nonfinite,
            sliced_wasserstein=float(sliced_wasserstein(x, ref, projections=256, generator=gen)),
            mmd=float(mmd(x, pairs)),
            energy_distance=float(energy_distance(x, pairs)),
            distance_rows=int(pairs.shape[0]),
            grid="tuned" if drawn.tuned_grid else "default",
            grid_note=drawn.grid_note,
        )
        likelihood, note, lp = None, None, None
        if nll and self.time_conditional:
            div = divergence or self.default_divergence
            rows = min(max_nll_points, ref.shape[0])
            say(f"held-out NLL of {rows} rows (probability-flow ODE, {div} divergence)")
            t1 = time.perf_counter()
            lp, nfe = self.log_likelihood(
                ref[:max_nll_points],
                divergence=div,
                seed=seed,
                rtol=rtol,
                t_min=t_min,
                progress=progress,
            )
            stats = heldout_nll(lp, dims=math.prod(self.data_shape))
            likelihood = HeldOutNLL(
                nll=stats["nll"],
                stderr=stats["stderr"],
                bits_per_dim=stats["bits_per_dim"],
                points=stats["n"],
                divergence=div,
                rtol=rtol,
                t_min=self.t_min if t_min is None else t_min,
                nfe=nfe,
                seconds=round(time.perf_counter() - t1, 3),
                convention=likelihood_convention(self.config["data"].get("levels"), self.columns),
                log_bin_volume=None if self.columns is None else self.columns.log_bin_volume,
            )
        elif nll:
            note = f"no likelihood for the unconditional objective {self.objective!r}"
        say("memorisation: distances to the closest training row")
        memorised = self.memorisation(x, seed=seed)
        judgement = None
        if judged and self.is_main:
            # The rows the model was fitted on: without the validation rows unless refitted.
            fitted = self.data.train if self.refitted else self.data.fit
            # A table with gaps: the mixture and the floor are fitted on its complete rows.
            fitted = without_gaps(fitted)
            judgement = judge(
                x,
                fitted,
                ref,
                standardizer=self.standardizer,
                columns=self.columns,
                log_prob=lp,
                memorised=memorised,
                target=target,
                seed=seed,
                announce=say,
            )
        oracle = None
        if truth is not None:
            oracle = compare_with_mixture(
                truth,
                self.config,
                self.model,
                self.process,
                self.standardizer,
                drawn.x,
                log_prob=lp,
                rows=None if lp is None else ref[: lp.shape[0]],
                t_min=None if likelihood is None else likelihood.t_min,
                source=describe_source(self.config, given=mixture is not None),
                seed=seed,
            )
        return Evaluation(
            run=str(self.run_dir) if self.run_dir else None,
            step=self.step,
            objective=self.objective,
            n_test=int(ref.shape[0]),
            samples=samples,
            likelihood=likelihood,
            nll_note=note,
            memorisation=memorised,
            seconds=round(time.perf_counter() - t0, 3),
            log_prob=lp,
            oracle=oracle,
            verdict=judgement,
        )
