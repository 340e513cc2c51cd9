"""Is the model good?  The verdict of an evaluation on vector data (tables and point sets): each
figure of the model's samples beside the same figure for a Gaussian mixture fitted on the same
training rows and for the training rows themselves (the floor: what real data reach), with one
sentence per figure — better than, level with, or worse than the mixture.

**The mixture** (:func:`gmm_baseline`): scikit-learn's ``GaussianMixture`` with full covariances
and the number of components chosen by BIC (Schwarz 1978), fitted in the model's own coordinates
(a table's one-hot columns and transforms, dequantised as the model's training rows are, then
standardised) and decoded like the model's samples (argmax, inverse transform, rounding), so that
its NLL is the same kind of number as the model's: log p(x) = log p_gmm(z) + log|det ∂z/∂x| +
the dequantisation's correction (:meth:`scorematch.data.ColumnCodec.dequantise`).

**Comparison units.** Distances are in standardised units, whatever the columns' units: every
numeric column centred and divided by the training rows' standard deviation, every categorical
column one-hot × 1/√2 (two labels 1 apart).  Coverage uses the ForestDiffusion paper's Gower
units instead (numbers min–max scaled, labels one-hot ÷ 2, L1 distances).

**Figures** (:data:`FIGURES`), each on the same held-out rows for all three:

- held-out NLL (nats/row) — lower is better (no floor: training rows have no density);
- Wasserstein-1 (:func:`scorematch.metrics.wasserstein1`, exact, by assignment) — lower;
- energy distance (:func:`scorematch.metrics.energy_distance`, the unbiased U-statistic: it is
  ≈ 0 when no difference is measurable and may then fall slightly below 0) — lower;
- coverage (:func:`scorematch.metrics.coverage`) — higher;
- train on synthetic, test on real (``target``): a gradient-boosted tree model (scikit-learn's
  ``HistGradientBoosting*``) fitted on the rows to predict the target column from the others,
  scored on the held-out rows by R² (a numeric target) or macro F1 (a categorical or binary one),
  as in the ForestDiffusion paper (which averages four models) — higher.

**The rule** (:func:`paired_verdict`, the demo's): a difference model − mixture is called better
or worse when it is at least ``SIGNIFICANCE`` = 2 standard errors from 0, else level.  The
standard errors are paired over the held-out rows: the NLL's and the distances' from their
per-row terms (each row's log-likelihood; its transport cost; its mean distance to the samples;
whether it is covered), the target model's by a bootstrap over the held-out rows.  They treat the
samples as fixed, so they are a guide, not a test.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..data import ColumnCodec, Standardizer, from_model
from ..data.table import resolve_columns
from ..metrics import Memorisation, coverage, heldout_nll, wasserstein1

__all__ = [
    "FIGURES",
    "MAX_BASELINE_ROWS",
    "MAX_VERDICT_ROWS",
    "SIGNIFICANCE",
    "Baseline",
    "Figure",
    "Verdict",
    "explain_memorisation",
    "gmm_baseline",
    "judge",
    "paired_verdict",
    "target_column",
]

SIGNIFICANCE = 2.0  # standard errors a paired difference needs before one model is called better
MAX_VERDICT_ROWS = 1000  # held-out rows the figures compare (a random subset beyond)
MAX_VERDICT_SAMPLES = 2000  # rows per source (samples, the mixture's, training rows)
MAX_TRANSPORT = 1000  # points per side of W1's assignment (O(points³))
MAX_BASELINE_ROWS = 5000  # training rows the mixture is fitted on (a random subset beyond)
BIC_PATIENCE = 3  # the verdict's mixture: stop adding components 3 past the BIC's best
TSTR_BOOTSTRAP = 200  # resamples of the held-out rows for the target model's standard error
# key: (label, lower is better)
FIGURES = {
    "nll": ("held-out NLL (nats/row)", True),
    "wasserstein1": ("Wasserstein-1", True),
    "energy_distance": ("energy distance", True),
    "coverage": ("coverage", False),
    "tstr": ("train on synthetic", False),
}


# ------------------------------------------------------------------------------------------------
# The mixture
# ------------------------------------------------------------------------------------------------
@dataclass
class Baseline:
    """A fitted scikit-learn ``GaussianMixture``: its held-out NLL (nats/sample, bits/dim; NaN
    without held-out rows) and the mixture itself (``mixture``, to sample with :meth:`sample`)."""

    components: int
    nll: float
    nll_stderr: float
    bits_per_dim: float
    log_prob: Tensor = field(repr=False)  # per held-out row
    seconds: float
    mixture: Any = field(default=None, repr=False)  # sklearn.mixture.GaussianMixture

    def sample(self, n: int, seed: int = 0) -> Tensor:
        """``n`` draws (float64) in the coordinates the mixture was fitted in."""
        import numpy as np

        mixture = self.mixture
        rng = np.random.default_rng(seed)
        counts = rng.multinomial(n, mixture.weights_)
        parts = [
            rng.multivariate_normal(mean, cov, size=int(k))
            for mean, cov, k in zip(mixture.means_, mixture.covariances_, counts)
            if k
        ]
        draws = np.concatenate(parts)[rng.permutation(n)]
        return torch.from_numpy(draws)


def gmm_baseline(
    train_x: Tensor,
    test_x: Tensor | None = None,
    *,
    max_components: int = 20,
    patience: int | None = None,
    seed: int = 0,
) -> Baseline:
    """scikit-learn ``GaussianMixture`` (full covariances) with the number of components chosen by
    BIC over 1 … ``max_components`` on ``train_x`` (with ``patience``: stopping once that many
    more components than the best so far were tried); held-out NLL (nats/sample) on ``test_x``."""
    from sklearn.mixture import GaussianMixture  # a second or so to import: only when asked
    from threadpoolctl import threadpool_limits

    tr = train_x.reshape(train_x.shape[0], -1).double().numpy()
    t0 = time.perf_counter()
    best = None
    # One BLAS thread: these matrices are tiny, and extra threads only contend on a busy machine.
    with threadpool_limits(1):
        for k in range(1, min(max_components, tr.shape[0]) + 1):
            gm = GaussianMixture(k, covariance_type="full", random_state=seed).fit(tr)
            bic = gm.bic(tr)
            if best is None or bic < best[0]:
                best = (bic, k, gm)
            elif patience is not None and k >= best[1] + patience:
                break
    _, k, gm = best
    if test_x is None:
        lp, stats = torch.empty(0, dtype=torch.float64), {}
    else:
        lp = torch.from_numpy(
            gm.score_samples(test_x.reshape(test_x.shape[0], -1).double().numpy())
        )
        stats = heldout_nll(lp, dims=tr.shape[1])
    return Baseline(
        components=k,
        nll=stats.get("nll", math.nan),
        nll_stderr=stats.get("stderr", math.nan),
        bits_per_dim=stats.get("bits_per_dim", math.nan),
        log_prob=lp,
        seconds=round(time.perf_counter() - t0, 3),
        mixture=gm,
    )


def paired_verdict(mean: float, stderr: float, threshold: float = SIGNIFICANCE) -> str:
    """``"better"`` / ``"worse"`` when the paired NLL difference (model − baseline) is at least
    ``threshold`` standard errors below / above 0, else ``"not significantly different"``: a
    difference of about one standard error is what two equally good models show by chance."""
    if math.isfinite(stderr) and abs(mean) >= threshold * stderr and mean != 0:
        return "better" if mean < 0 else "worse"
    return "not significantly different"


# ------------------------------------------------------------------------------------------------
# The verdict
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Figure:
    """One figure for the model, the mixture and the training rows (``floor``; None where it has
    no meaning), the paired difference model − mixture with its standard error, the verdict
    (``"better"``, ``"level"``, ``"worse"``) and its sentence."""

    key: str
    label: str
    model: float
    mixture: float
    floor: float | None
    difference: float
    stderr: float
    lower_is_better: bool
    verdict: str
    sentence: str


@dataclass(frozen=True)
class Verdict:
    """The figures of :func:`judge` (module doc) and what they were computed on."""

    figures: tuple[Figure, ...]
    rows: int  # held-out rows compared (the NLL's: its own rows)
    samples: int  # samples per source in the distances
    mixture_components: int
    mixture_rows: int  # training rows the mixture was fitted on
    units: str
    target: str | None = None
    tstr_metric: str | None = None  # "R²" or "macro F1"
    memorisation: str | None = None  # the memorisation ratio in words

    def figure(self, key: str) -> Figure | None:
        return next((f for f in self.figures if f.key == key), None)

    @property
    def summary(self) -> str:
        """The verdict in one line: better than / level with / worse than the mixture overall
        (better on some figures and worse on none: better; the reverse: worse; both: mixed),
        naming the figures of each kind."""
        said = {v: [f.label for f in self.figures if f.verdict == v]
                for v in ("better", "level", "worse")}  # fmt: skip
        if said["better"] and not said["worse"]:
            head = "better than"
        elif said["worse"] and not said["better"]:
            head = "worse than"
        elif said["better"]:
            head = "mixed against"
        else:
            head = "level with"
        parts = [f"{v} on {', '.join(labels)}" for v, labels in said.items() if labels]
        return (
            f"the model is {head} a Gaussian mixture fitted on the same training rows "
            f"({'; '.join(parts)}; {SIGNIFICANCE:g} paired standard errors decide)"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: the settings, the one-line :attr:`summary` and one mapping per figure."""
        record = asdict(self)
        record["summary"] = self.summary
        record["figures"] = {f.key: {k: v for k, v in asdict(f).items() if k != "key"}
                             for f in self.figures}  # fmt: skip
        return record


def target_column(names: list[str], target: str) -> int:
    """The index of ``--target`` (a column name, or a 1-based index) among ``names``."""
    (index,) = resolve_columns(names, [str(target)], "--target")
    return index


def judge(
    samples: Tensor,
    train: Tensor,
    test: Tensor,
    *,
    standardizer: Standardizer,
    columns: ColumnCodec | None = None,
    log_prob: Tensor | None = None,
    memorised: Memorisation | None = None,
    target: str | None = None,
    seed: int = 0,
    announce: Callable[[str], None] | None = None,
) -> Verdict:
    """The verdict on ``samples`` of a model trained on ``train``, against the held-out ``test``
    rows (all in data units; a table's columns as ``columns`` encodes them): the module doc's
    figures for the model, a BIC Gaussian mixture fitted on at most ``MAX_BASELINE_ROWS`` training
    rows, and the training rows.  ``log_prob``: the model's log-likelihood of the first held-out
    rows (its NLL figure; none without).  ``target``: the column of the train-on-synthetic figure.
    ``announce(line)`` is told what each phase does."""
    say = announce or (lambda line: None)
    names = columns.names if columns is not None else [f"x{j + 1}" for j in range(train.shape[1])]
    target_index = None if target is None else target_column(names, target)
    gen = torch.Generator().manual_seed(int(seed))
    train, test, samples = (v.double().cpu() for v in (train, test, samples))
    fit = _subset(train, MAX_BASELINE_ROWS, gen)
    say(f"fitting a Gaussian mixture (BIC) on {fit.shape[0]} training rows")
    z_fit, _ = _model_points(fit, columns, standardizer, gen)
    baseline = gmm_baseline(z_fit, patience=BIC_PATIENCE, seed=seed)
    # Every source brings as many rows (sample size moves W1 and coverage): at most the
    # training rows the model saw, and MAX_VERDICT_SAMPLES.
    size = min(samples.shape[0], train.shape[0], MAX_VERDICT_SAMPLES)
    rows = min(test.shape[0], MAX_VERDICT_ROWS)
    held = _subset(test, rows, gen)
    draws = _decode(baseline.sample(size, seed=seed), columns, standardizer)
    sources = {"model": samples[:size], "mixture": draws, "floor": _subset(train, size, gen)}
    figures = []
    if log_prob is not None:
        scored = test[: log_prob.shape[0]]
        z, correction = _model_points(scored, columns, standardizer, gen)
        lp_mix = torch.from_numpy(baseline.mixture.score_samples(z.numpy()))
        lp_mix = lp_mix + standardizer.log_abs_det() + correction
        figures.append(_figure("nll", -log_prob.double(), -lp_mix, None))
    say(f"distances of {size} rows per source to {rows} held-out rows (standardised units)")
    unit = _standard_units(train, columns)
    h = unit(held)
    per_row = {k: _transport_costs(h, unit(v)) for k, v in sources.items()}
    figures.append(_figure("wasserstein1", *per_row.values()))
    per_row = {k: _energy_terms(h, unit(v)) for k, v in sources.items()}
    figures.append(_figure("energy_distance", *per_row.values()))
    gower = _gower_units(train, columns)
    per_row = {k: coverage(gower(held), gower(v), reduction="none") for k, v in sources.items()}
    figures.append(_figure("coverage", *per_row.values()))
    metric = None
    if target_index is not None:
        classify = columns is not None and columns.columns[target_index].kind in (
            "categorical",
            "binary",
        )
        metric = "macro F1" if classify else "R²"
        say(f"train on synthetic, test on real: predicting {names[target_index]!r} ({metric})")

        def units(x: Tensor, keep: list[int]) -> Tensor:
            return _standard_units(train, columns, keep)(x)

        figures.append(_tstr_figure(sources, test, units, target_index, classify, seed, names))
    return Verdict(
        figures=tuple(figures),
        rows=rows,
        samples=size,
        mixture_components=baseline.components,
        mixture_rows=int(fit.shape[0]),
        units=(
            "standardised: numeric columns centred and divided by the training rows' standard "
            "deviation, categorical columns one-hot × 1/√2; coverage in Gower units"
        ),
        target=None if target_index is None else names[target_index],
        tstr_metric=metric,
        memorisation=None if memorised is None else explain_memorisation(memorised),
    )


def explain_memorisation(m: Memorisation) -> str:
    """The memorisation ratio in plain words, values above 1 included."""
    r, se = m.ratio, m.ratio_stderr
    head = (
        f"memorisation ratio {r:.2f}: a sample's closest training row is on median {r:.2f}× as "
        "far as a held-out row's"
    )
    if m.looks_like_copying:
        return head + " — the samples look like copies of training rows (see the warning)"
    if abs(r - 1) <= max(0.05, SIGNIFICANCE * (se if math.isfinite(se) else 0.0)):
        return head + ", as for new data from the same source: no sign of copying"
    if r > 1:
        return (
            head + ". Above 1 is not copying: the samples lie farther from the training rows "
            "than new data do — more spread out than the data, or in regions the data leave "
            "empty (the Wasserstein-1 and coverage lines say which)"
        )
    return (
        head + ". Somewhat below 1: the samples keep a little closer to the training rows than "
        "new data do — short of copying, which is flagged below 0.8 or with near-copies"
    )


# -- helpers -------------------------------------------------------------------------------------
def _subset(x: Tensor, n: int, gen: torch.Generator) -> Tensor:
    """At most ``n`` rows of ``x``, a random subset beyond."""
    if x.shape[0] <= n:
        return x
    return x[torch.randperm(x.shape[0], generator=gen)[:n].sort().values]


def _model_points(
    x: Tensor, columns: ColumnCodec | None, standardizer: Standardizer, gen: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Rows in the model's standardised coordinates, dequantised with one draw, and the
    log-likelihood's correction per row (0 without a codec)."""
    if columns is None:
        return standardizer.transform(x), torch.zeros(x.shape[0], dtype=torch.float64)
    y, correction = columns.dequantise(x, gen)
    return standardizer.transform(y.double()), correction.double()


def _decode(z: Tensor, columns: ColumnCodec | None, standardizer: Standardizer) -> Tensor:
    return from_model(columns, standardizer.inverse(z)).double()


def _labels(columns: ColumnCodec | None, keep: list[int]) -> dict[int, int]:
    """Position among ``keep`` → label count, for the categorical columns among ``keep``."""
    if columns is None:
        return {}
    kinds = columns.columns
    return {i: len(kinds[j].labels or ()) for i, j in enumerate(keep)
            if kinds[j].kind == "categorical"}  # fmt: skip


def _encoder(
    train: Tensor, labels: dict[int, int], scale: Callable[[Tensor], tuple[Tensor, Tensor]],
    label_width: float,
) -> Callable[[Tensor], Tensor]:  # fmt: skip
    """Rows → numeric columns as (x − shift)/size (``scale`` of the training rows), categorical
    codes (``labels``: column → label count) one-hot × ``label_width``."""
    numeric = [j for j in range(train.shape[1]) if j not in labels]
    shift, size = scale(train[:, numeric])
    size = torch.where(size > 1e-12, size, torch.ones_like(size))

    def encode(x: Tensor) -> Tensor:
        parts = [(x[:, numeric] - shift) / size]
        for j, k in labels.items():
            codes = x[:, j].round().clamp(0, k - 1).long()
            parts.append(torch.nn.functional.one_hot(codes, k).double() * label_width)
        return torch.cat(parts, 1)

    return encode


def _standard_units(
    train: Tensor, columns: ColumnCodec | None, keep: list[int] | None = None
) -> Callable[[Tensor], Tensor]:
    """The comparison units of the columns ``keep`` (default all) of data-unit rows."""
    keep = list(range(train.shape[1])) if keep is None else keep
    encode = _encoder(train[:, keep], _labels(columns, keep),
                      lambda v: (v.mean(0), v.std(0, correction=0)), 2**-0.5)  # fmt: skip
    return lambda x: encode(x[:, keep])


def _gower_units(train: Tensor, columns: ColumnCodec | None) -> Callable[[Tensor], Tensor]:
    def span(v: Tensor) -> tuple[Tensor, Tensor]:
        lo = v.min(0).values
        return lo, v.max(0).values - lo

    return _encoder(train, _labels(columns, list(range(train.shape[1]))), span, 0.5)


def _transport_costs(held: Tensor, x: Tensor) -> Tensor:
    """Per held-out row, its mean transport cost in the exact W1 between the held-out rows and
    rows ``x``: each held-out row split into c equal parts (c·m ≤ ``MAX_TRANSPORT`` and ≤ the
    rows of ``x``) matched one to one with c·m rows of ``x`` — the optimal transport between the
    two empirical laws (mass 1/m against 1/(c·m))."""
    m = held.shape[0]
    if x.shape[0] < m:  # fewer rows than held-out ones: that many of each
        held, m = held[: x.shape[0]], x.shape[0]
    copies = max(1, min(MAX_TRANSPORT // m, x.shape[0] // m))
    cost = wasserstein1(held.repeat_interleave(copies, 0), x[: copies * m], reduction="none")
    return cost.reshape(m, copies).mean(1)


def _energy_terms(held: Tensor, x: Tensor) -> Tensor:
    """Per held-out row i: 2·mean_j ‖hᵢ − x_j‖ − mean_{i'≠i} ‖hᵢ − h_i'‖ − E‖X − X'‖, whose mean is
    the unbiased energy distance between ``x`` and ``held``."""
    m, n = held.shape[0], x.shape[0]
    to_x = torch.cdist(held, x).mean(1)
    within = torch.cdist(held, held).sum(1) / (m - 1)
    xx = float(torch.cdist(x, x).sum()) / (n * (n - 1))
    return 2 * to_x - within - xx


def _judged(difference: float, stderr: float, lower_is_better: bool) -> str:
    said = paired_verdict(difference if lower_is_better else -difference, stderr)
    return "level" if said == "not significantly different" else said


def _figure(key: str, model: Tensor, mixture: Tensor, floor: Tensor | None) -> Figure:
    """A figure from per-held-out-row terms (its value: their mean)."""
    diff = (model - mixture).double()
    se = float(diff.std() / math.sqrt(diff.numel())) if diff.numel() > 1 else math.nan
    return _make(key, float(model.mean()), float(mixture.mean()),
                 None if floor is None else float(floor.mean()), float(diff.mean()), se)  # fmt: skip


def _make(key: str, model: float, mixture: float, floor: float | None, diff: float, se: float):
    label, lower = FIGURES[key]
    verdict = _judged(diff, se, lower)
    said = {"better": "better than", "level": "level with", "worse": "worse than"}[verdict]
    sentence = (
        f"{label}: {said} the mixture (model − mixture {diff:+.3g} ± {se:.2g}, a paired standard "
        "error; " + ("lower" if lower else "higher") + " is better)"
    )
    if floor is not None:
        sentence += f"; real training rows reach {floor:.4g}"
    return Figure(key, label, model, mixture, floor, diff, se, lower, verdict, sentence)


def _tstr_figure(
    sources: dict[str, Tensor],
    test: Tensor,
    unit: Callable[[Tensor, list[int]], Tensor],
    target: int,
    classify: bool,
    seed: int,
    names: list[str],
) -> Figure:
    """Train on each source's rows, test on the held-out rows: R² or macro F1 (bootstrap SE)."""
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.metrics import f1_score, r2_score
    from threadpoolctl import threadpool_limits

    others = [j for j in range(test.shape[1]) if j != target]

    def features(x: Tensor) -> np.ndarray:
        if not others:  # a one-column table: nothing to predict from
            return np.zeros((x.shape[0], 1))
        return unit(x, others).numpy()

    y_test = test[:, target].numpy()
    x_test = features(test)

    def score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        if classify:
            return float(f1_score(y_true, y_pred, average="macro"))
        return float(r2_score(y_true, y_pred))

    predictions = {}
    with threadpool_limits(1):
        for name, rows in sources.items():
            y = rows[:, target].numpy()
            if classify:
                y = y.round()
                if np.unique(y).size < 2:  # one class generated: every prediction is that class
                    predictions[name] = np.full(y_test.shape, y[0])
                    continue
                model = HistGradientBoostingClassifier(random_state=seed)
            else:
                model = HistGradientBoostingRegressor(random_state=seed)
            predictions[name] = model.fit(features(rows), y).predict(x_test)
    y_true = y_test.round() if classify else y_test
    values = {k: score(y_true, p) for k, p in predictions.items()}
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(TSTR_BOOTSTRAP):
        i = rng.integers(0, len(y_true), len(y_true))
        boots.append(score(y_true[i], predictions["model"][i]) -
                     score(y_true[i], predictions["mixture"][i]))  # fmt: skip
    diff = values["model"] - values["mixture"]
    figure = _make("tstr", values["model"], values["mixture"], values["floor"], diff,
                   float(np.std(boots, ddof=1)))  # fmt: skip
    metric = "macro F1" if classify else "R²"
    label = f"train on synthetic, test on real: {metric} of {names[target]!r}"
    return Figure(**{**asdict(figure), "label": label,
                     "sentence": figure.sentence.replace(figure.label, label, 1)})  # fmt: skip
