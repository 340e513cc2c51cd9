"""Run configs: the option names, their defaults, and :func:`build_config`.

``build_config(options, data)`` turns options (the CLI's names, ``None`` = default) and the
loaded data (``runs.data.load_data``: the one place that reads it) into the resolved config that
a run directory stores as ``config.yaml``, every default written out so that the config alone
rebuilds the run.  It is pure — it reads no file and builds no network (``models.model_spec``
resolves the network's arguments); ``runs.build`` builds the objects, once.  It has one function
per section — process, objective, model (with its parametrization), training, sampling — and
validates each option once.  :func:`configure` is the two steps together; :func:`load_config`
reads an options file (``train --config``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from .._checks import check_count, check_positive_int
from ..data import TOY_MIXTURES
from ..io import read_yaml
from ..models import MODEL_NAMES, model_spec
from ..objectives import PROJECTIONS
from ..objectives.noise_conditional import WEIGHTINGS
from ..parametrization import default_noise_input
from ..processes import SIGMA_DATA, NoiseLevels, Process, make_process
from ..samplers import SAMPLERS
from .checks import choice, positive_float
from .conditional import conditioning_section
from .data import TEST_FRACTION, VAL_FRACTION, DataBundle, load_data

__all__ = [
    "CONFIG_VERSION",
    "DEFAULTS",
    "OBJECTIVES",
    "OPTION_NAMES",
    "PROCESSES",
    "TEST_FRACTION",
    "TIME_CONDITIONAL",
    "UNCONDITIONAL",
    "VAL_FRACTION",
    "build_config",
    "configure",
    "jsonable",
    "load_config",
    "require_known_score",
]

TIME_CONDITIONAL = ("diffusion", "edm", "ncsn")
UNCONDITIONAL = ("dsm", "ssm", "ssm-vr", "ism", "esm")
OBJECTIVES = TIME_CONDITIONAL + UNCONDITIONAL
PROCESSES = ("vp", "ve", "subvp", "edm")
PREDICTIONS = ("eps", "x0", "score", "edm")
CONFIG_VERSION = 1

# Defaults by data kind.  The vector ones were chosen on the held-out NLL of `moons` against a
# BIC-chosen Gaussian mixture (benchmarks/results/design_choices.md).  "process"/"weighting" are the defaults of
# --objective diffusion.
DEFAULTS: dict[str, dict[str, Any]] = {
    "vector": {
        "model": "mlp",
        "objective": "edm",
        "process": "vp",
        "weighting": "importance",
        "steps": 3000,
        "batch_size": 512,
        "lr": 2e-3,
        "ema_half_life": 200.0,
        "warmup_steps": 100,
        "schedule": "cosine",
        "sampler": "heun",
        "sample_steps": 50,
    },
    "image": {
        "model": "unet",
        "objective": "edm",
        "process": "vp",
        "weighting": "sigma2",
        "steps": 2000,
        "batch_size": 64,
        "lr": 1e-3,
        "ema_half_life": 200.0,
        "warmup_steps": 100,
        "schedule": "constant",
        "sampler": "heun",
        "sample_steps": 18,
    },
}
# Model selection on the validation rows (VAL_FRACTION, ``runs.data``): on data of at most
# REFIT_MAX_ROWS training rows (unless --steps fixes the length) the checkpoint with the lowest
# validation loss is the run's model and training stops after PATIENCE validations without
# improvement; a table is then trained again on all its rows for the chosen number of steps.
PATIENCE = {"vector": 8, "image": None}
# Validations per run: fewer for images, whose validation costs several training steps
# (benchmarks/results/design_choices.md).
VALIDATIONS = {"vector": 100, "image": 20}
REFIT_MAX_ROWS = 5_000
# Fourier scale of the noise embedding when the network sees c_noise = ¼ log σ̂ (EDM, NCSN):
# that input spans about 2.7 units instead of t ∈ [0, 1], so a smaller scale than the default 16
# keeps the embedding smooth in the noise level (benchmarks/results/design_choices.md).
LOG_SIGMA_FOURIER_SCALE = 4.0
# What the network predicts by default on each process of diffusion/edm.
DEFAULT_PREDICTION = {"vp": "eps", "subvp": "eps", "ve": "score", "edm": "edm"}
# Options (as passed to build_config / the CLI); absent or None means the default.
OPTION_NAMES = (
    "data",
    "n",
    "seed",
    "test_fraction",
    "val_fraction",
    "image_size",
    "levels",
    "objective",
    "process",
    "model",
    "prediction",
    "weighting",
    "sigma",
    "projection",
    "projections",
    "width",
    "depth",
    "channels",
    "steps",
    "batch_size",
    "lr",
    "ema_half_life",
    "warmup_steps",
    "schedule",
    "grad_clip",
    "checkpoint_every",
    "sample_every",
    "validate_every",
    "patience",
    "refit",
    "sampler",
    "sample_steps",
    *("categorical", "continuous", "keep", "na_values", "drop_missing", "transform"),
    "image_channels",
    *("conditional", "labels", "label_dropout"),  # runs.conditional
)


def jsonable(obj: Any) -> Any:
    """Plain Python types only (tuples → lists, numpy/torch scalars → floats), for YAML/JSON."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, Tensor):
        return obj.tolist()
    return obj


# ------------------------------------------------------------------------------------------------
# build_config and its sections
# ------------------------------------------------------------------------------------------------
def configure(options: Mapping[str, Any]) -> tuple[dict[str, Any], DataBundle]:
    """Load the data ``options`` name (``load_data``) and resolve the run config
    (``build_config``): what ``train`` does with a fresh run's options."""
    given = _given(options)
    data = load_data(given)
    return build_config(given, data), data


def build_config(options: Mapping[str, Any], data: DataBundle) -> dict[str, Any]:
    """The resolved run config of ``options`` (names in ``OPTION_NAMES``; ``None`` = default)
    for the loaded ``data``: every default written out, every option checked.  Reads no file and
    builds no network."""
    options = _given(options)
    d = DEFAULTS[data.kind]
    objective = choice(options.get("objective", d["objective"]), "objective", OBJECTIVES)
    model_name = choice(options.get("model", d["model"]), "model", MODEL_NAMES)
    _check_options_apply(options, objective, model_name, data.kind)
    if objective == "esm":  # it regresses onto the true score: refuse it where that is unknown
        require_known_score(data.section["spec"])
    # Three defaults of the training section derive from the number of steps: check it once.
    steps = check_positive_int(options.get("steps", d["steps"]), "steps")
    process = process_section(options, objective, data)
    process_cfg = None if process is None else process.config()
    objective_cfg = objective_section(options, objective, data.kind)
    conditioning = conditioning_section(
        options, objective, model_name, data, time_conditional=objective in TIME_CONDITIONAL
    )
    if conditioning["label_dropout"] is not None:
        objective_cfg["label_dropout"] = conditioning["label_dropout"]
    model_cfg, param_cfg = model_section(
        options, model_name, objective, process, data, conditioning=conditioning
    )
    config = {
        "config_version": CONFIG_VERSION,
        "data": dict(data.section),
        "standardizer": data.standardizer.to_dict(),
        "model": model_cfg,
        "parametrization": param_cfg,
        "process": process_cfg,
        "objective": objective_cfg,
        "training": training_section(options, data, steps),
        "sampling": sampling_section(options, objective_cfg, data.kind),
    }
    return jsonable(config)


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML options file (for ``train --config``): a mapping of option names to values
    (``batch-size`` and ``batch_size`` both name the option ``batch_size``)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"config file not found: {p}")
    loaded = read_yaml(p)
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{p}: expected a mapping of option names to values")
    return {str(k).replace("-", "_"): v for k, v in loaded.items()}


def _given(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options that were given (not None), all of them known, ``data`` among them."""
    given = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(given) - set(OPTION_NAMES))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)}; valid: {', '.join(OPTION_NAMES)}"
        )
    if "data" not in given:
        raise ValueError("no data given: pass a built-in name, a .csv/.npy/.npz file or a folder")
    return given


def _check_options_apply(
    options: Mapping[str, Any], objective: str, model_name: str, kind: str
) -> None:
    """Refuse options that the chosen objective or model would silently ignore."""
    unconditional = objective in UNCONDITIONAL
    if model_name == "energy-mlp" and not unconditional:
        raise ValueError(
            f"model 'energy-mlp' is trained with an unconditional objective "
            f"({', '.join(UNCONDITIONAL)}), not {objective!r}"
        )
    if model_name == "unet" and kind != "image":
        raise ValueError("model 'unet' needs image data (N, C, H, W); use --model mlp for tables")
    for name in ("process", "prediction", "weighting"):
        if name in options and objective not in ("diffusion", "edm"):
            raise ValueError(
                f"--{name} does not apply to objective {objective!r}: "
                + (
                    "it learns one score s(x) at a fixed noise level (no process)"
                    if unconditional
                    else "ncsn uses its own geometric noise levels"
                )
            )
    if "weighting" in options and objective != "diffusion":
        raise ValueError(f"--weighting applies to objective 'diffusion' only, not {objective!r}")
    for name in ("projection", "projections"):
        if name in options and not objective.startswith("ssm"):
            raise ValueError(
                f"--{name} (SSM's random directions) applies to ssm and ssm-vr, not {objective!r}"
            )
    if "sigma" in options and not unconditional:
        raise ValueError(
            f"--sigma (the noise level of an unconditional objective) does not apply to {objective!r}"
        )


def require_known_score(spec: str) -> None:
    """Refuse, in one line, ``--objective esm`` on data whose true score is not known."""
    if str(spec) not in TOY_MIXTURES:
        raise ValueError(
            f"esm needs the true score; it is known for the built-in mixture sets: "
            f"{', '.join(TOY_MIXTURES)} (not for {spec!r}); use ism, ssm or dsm"
        )


def process_section(options: Mapping[str, Any], objective: str, data: DataBundle) -> Process | None:
    """The forward process (a value: its ``config()`` is the section, with every default); None
    for the unconditional objectives, which learn one score at one noise level."""
    if objective in ("diffusion", "edm"):
        default = "edm" if objective == "edm" else DEFAULTS[data.kind]["process"]
        name = choice(options.get("process", default), "process", PROCESSES)
        # EDM's own σ_data suits the standardised data (benchmarks/results/design_choices.md).
        extra = {"sigma_data": SIGMA_DATA} if name == "edm" else {}
        return make_process(name, **extra)
    if objective == "ncsn":
        return NoiseLevels.geometric(0.01, max(data.max_distance, 0.02), 10)
    return None


def objective_section(options: Mapping[str, Any], objective: str, kind: str) -> dict[str, Any]:
    """The loss: its name and settings (the weighting of diffusion, EDM's log-normal σ, the noise
    level σ of an unconditional objective, SSM's projections)."""
    cfg: dict[str, Any] = {"name": objective}
    if objective == "diffusion":
        weighting = options.get("weighting", DEFAULTS[kind]["weighting"])
        cfg["weighting"] = choice(weighting, "weighting", WEIGHTINGS)
    elif objective == "edm":
        cfg.update(P_mean=-1.2, P_std=1.2)
    elif objective in UNCONDITIONAL:
        sigma = float(options.get("sigma", 0.1 if objective == "dsm" else 0.0))
        if not (math.isfinite(sigma) and sigma >= 0):
            raise ValueError(f"sigma must be a finite number >= 0, got {sigma}")
        if objective == "dsm" and sigma <= 0:
            raise ValueError(f"dsm needs a positive noise level --sigma, got {sigma}")
        cfg["sigma"] = sigma
        if objective.startswith("ssm"):
            cfg.update(sliced_section(options))
    return cfg


# SSM's random directions unless told: one Rademacher vector per sample (of all v with
# E[vvᵀ] = I, the one whose trace estimate vᵀAv has the least variance: Hutchinson 1989).
SLICED_DEFAULTS = {"projection": "rademacher", "n_projections": 1}


def sliced_section(options: Mapping[str, Any]) -> dict[str, Any]:
    """SSM's projections: their distribution (``--projection``) and number (``--projections``)."""
    return {
        "n_projections": check_positive_int(
            options.get("projections", SLICED_DEFAULTS["n_projections"]), "projections"
        ),
        "projection": choice(
            options.get("projection", SLICED_DEFAULTS["projection"]), "projection", PROJECTIONS
        ),
    }


def model_section(
    options: Mapping[str, Any],
    model_name: str,
    objective: str,
    process: Process | None,
    data: DataBundle,
    *,
    conditioning: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The network's config (``models.model_spec``) and the parametrization that reads it as a
    score (None for the unconditional objectives, whose network is the score s(x)); with
    ``conditioning`` (``runs.conditional.conditioning_section``) a mask-conditional and/or
    class-conditional network."""
    param_cfg: dict[str, Any] | None = None
    if objective in ("diffusion", "edm"):
        default = DEFAULT_PREDICTION[process.config()["name"].lower()]
        prediction = choice(options.get("prediction", default), "prediction", PREDICTIONS)
        param_cfg = {"prediction": prediction}
        if prediction == "edm":
            param_cfg["sigma_data"] = SIGMA_DATA
    elif objective == "ncsn":
        param_cfg = {"prediction": "score"}
    kwargs: dict[str, Any] = {}
    for name in ("width", "depth"):
        if name in options:
            if model_name == "unet":
                raise ValueError(f"--{name} applies to MLP models; use --channels for the unet")
            kwargs[name] = check_positive_int(options[name], name)
    if "channels" in options:
        if model_name != "unet":
            raise ValueError("--channels applies to the unet; use --width/--depth for MLPs")
        kwargs["channels"] = check_positive_int(options["channels"], "channels")
    if param_cfg is None:
        kwargs["time_embed_dim"] = 0
    elif param_cfg["prediction"] == "edm" or default_noise_input(process) != "t":
        kwargs["fourier_scale"] = LOG_SIGMA_FOURIER_SCALE
    if conditioning and conditioning["masks"]:
        kwargs["mask_conditional"] = True
    if conditioning and conditioning["num_classes"]:
        kwargs["num_classes"] = conditioning["num_classes"]
    shape = tuple(data.section["shape"])
    return model_spec(model_name, shape, seed=data.section["seed"], **kwargs), param_cfg


def scaled_defaults(kind: str, n_rows: int) -> dict[str, Any]:
    """Batch size and EMA half-life for ``n_rows`` training rows: tables get a batch of a quarter
    of their rows (32 … 512) and an EMA over about ten epochs (half-life 50 … 200 steps), so that a
    small table is not seen as one repeated batch and the average follows its short training."""
    d = DEFAULTS[kind]
    if kind != "vector":
        return {"batch_size": d["batch_size"], "ema_half_life": d["ema_half_life"]}
    batch = int(min(max(n_rows // 4, 32), d["batch_size"]))
    half_life = float(min(max(10 * n_rows / batch, 50.0), d["ema_half_life"]))
    return {"batch_size": batch, "ema_half_life": half_life}


def selects_on_validation(options: Mapping[str, Any], data: DataBundle) -> bool:
    """The small-data rule: data of at most ``REFIT_MAX_ROWS`` training rows, whose length
    ``--steps`` does not fix, take their model, their length (``PATIENCE``) and — tables — a refit
    from the validation rows."""
    return data.train.shape[0] <= REFIT_MAX_ROWS and "steps" not in options


def training_section(options: Mapping[str, Any], data: DataBundle, steps: int) -> dict[str, Any]:
    """Optimizer, schedule, EMA, model selection and how often to checkpoint and plot samples."""
    kind = data.kind
    d = DEFAULTS[kind]
    validated = data.val_index is not None
    scaled = scaled_defaults(kind, data.fit.shape[0])
    # Early stopping guards small data against memorising their rows.
    selects = selects_on_validation(options, data)
    patience = options.get("patience", PATIENCE[kind] if selects else None)
    refit = bool(options.get("refit", selects and kind == "vector")) and validated
    # Validate only when something reads the figure: the model choice, early stopping, the
    # refit's length, or an explicit --validate-every (a fixed --steps alone validates nothing).
    validate_every = None
    if validated and (selects or refit or patience or "validate_every" in options):
        every = options.get("validate_every", min(max(steps // VALIDATIONS[kind], 10), 100))
        validate_every = check_positive_int(every, "validate_every")
    training = {
        "steps": steps,
        "batch_size": check_positive_int(
            options.get("batch_size", scaled["batch_size"]), "batch_size"
        ),
        "lr": positive_float(options.get("lr", d["lr"]), "lr"),
        "ema_half_life": positive_float(
            options.get("ema_half_life", scaled["ema_half_life"]), "ema_half_life"
        ),
        "validate_every": validate_every,
        "patience": (
            None if not validated or not patience else check_positive_int(patience, "patience")
        ),
        "refit": refit,
        # The lowest validation loss picks a small run's model (benchmarks/results/tables.md:
        # on larger tables the held-out NLL kept improving after the validation minimum).
        "model": "best" if validated and selects else "last",
        # Warm-up: the default 100 steps, but at most a tenth of a short run.
        "warmup_steps": int(options.get("warmup_steps", min(d["warmup_steps"], steps // 10))),
        "schedule": choice(
            options.get("schedule", d["schedule"]), "schedule", ("constant", "cosine")
        ),
        "grad_clip": positive_float(options.get("grad_clip", 1.0), "grad_clip"),
        # Both default to four times per run; sample_every = 0 writes no sample plots.
        "checkpoint_every": check_positive_int(
            options.get("checkpoint_every", max(steps // 4, 1)), "checkpoint_every"
        ),
        "sample_every": check_count(
            options.get("sample_every", max(steps // 4, 1)), "sample_every"
        ),
        "seed": data.section["seed"],
    }
    if training["warmup_steps"] < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {training['warmup_steps']}")
    return training


def sampling_section(
    options: Mapping[str, Any], objective_cfg: Mapping[str, Any], kind: str
) -> dict[str, Any]:
    """The sampler a run uses by default, and for one-level objectives Langevin's level and step."""
    objective = objective_cfg["name"]
    if objective in UNCONDITIONAL or objective == "ncsn":
        default_sampler, default_steps = "annealed_langevin", 100 if objective == "ncsn" else 1000
    else:
        default_sampler, default_steps = DEFAULTS[kind]["sampler"], DEFAULTS[kind]["sample_steps"]
    sampler = choice(options.get("sampler", default_sampler), "sampler", tuple(SAMPLERS))
    sampling: dict[str, Any] = {
        "sampler": sampler,
        "steps": check_positive_int(options.get("sample_steps", default_steps), "sample_steps"),
    }
    if objective in UNCONDITIONAL:
        if sampler != "annealed_langevin":
            raise ValueError(
                f"objective {objective!r} learns one score s(x); sample it with annealed_langevin, "
                f"not {sampler!r}"
            )
        # Langevin at one level: step ε = 0.2 σ² (NCSN's ε/σ_L²), σ at least 0.1 data stds.
        level = max(objective_cfg["sigma"], 0.1)
        sampling.update(level=level, step_size=0.2 * level**2)
    return sampling
