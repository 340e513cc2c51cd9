"""Run configs: the option names, their defaults, and :func:`build_config`.

``build_config`` turns options (the CLI's names, ``None`` = default) into the resolved config that
a run directory stores as ``config.yaml``, every default written out so that the config alone
rebuilds the run.  It has one function per section — data, process, objective, model (with its
parametrization), training, sampling — and validates each option once.  Reading YAML files is
:mod:`.config_files`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..data import DEFAULT_TOY_SIZE, TOY_DATASETS, Standardizer, list_datasets, to_model
from ..models import MODEL_NAMES, build_model, model_config
from ..objectives.noise_conditional import WEIGHTINGS
from ..parametrization import default_noise_input
from ..processes import NoiseLevels, make_process
from ..samplers import SAMPLERS
from .checks import choice, count, fraction, pixel_levels, positive_float, positive_int, seed_value
from .data import DataBundle, fit_columns, load_split, source_section, validation_index

__all__ = [
    "CONFIG_VERSION",
    "DEFAULTS",
    "OBJECTIVES",
    "OPTION_NAMES",
    "PROCESSES",
    "TIME_CONDITIONAL",
    "UNCONDITIONAL",
    "build_config",
    "jsonable",
]

TIME_CONDITIONAL = ("diffusion", "edm", "ncsn")
UNCONDITIONAL = ("dsm", "ssm", "ssm-vr", "ism")
OBJECTIVES = TIME_CONDITIONAL + UNCONDITIONAL
PROCESSES = ("vp", "ve", "subvp", "edm")
PREDICTIONS = ("eps", "x0", "score", "edm")
CONFIG_VERSION = 1

# Defaults by data kind.  The vector ones were chosen by measuring the held-out NLL on `moons`
# (10 000 points, exact probability-flow likelihood) against a Gaussian mixture with its number of
# components chosen by BIC; at equal CPU, EDM (σ_data = 0.5, ¼ log σ embedded with Fourier scale 4)
# beat VP + importance-weighted DSM, and σ_data = 0.5 beat 1.0.  "process"/"weighting" are the
# defaults of --objective diffusion.
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
TEST_FRACTION = 0.2
# Model selection (issue #13): a share of the training rows validates — the checkpoint with the
# lowest validation loss is the run's model, training stops after PATIENCE validations without
# improvement, and the likelihood's bandwidth t_min is chosen on these rows.  A table of at most
# REFIT_MAX_ROWS training rows is then trained again on all its rows for the chosen number of steps.
VAL_FRACTION = {"vector": 0.15, "image": 0.1}
PATIENCE = {"vector": 8, "image": None}
# Validations per run: one of a U-Net's costs about 12 of its training steps (digits, CPU).
VALIDATIONS = {"vector": 100, "image": 20}
REFIT_MAX_ROWS = 5_000
SIGMA_DATA = 0.5  # EDM's σ_data for the standardised data (measured better than 1.0 on moons)
# Fourier scale of the noise embedding when the network sees c_noise = ¼ log σ̂ (EDM, NCSN):
# that input spans about 2.7 units instead of t ∈ [0, 1], so a smaller scale than the default 16
# keeps the embedding smooth in the noise level (on moons: same NLL, half the ODE evaluations).
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
def build_config(options: Mapping[str, Any]) -> tuple[dict[str, Any], DataBundle]:
    """Validate ``options`` (names in ``OPTION_NAMES``; ``None`` = default), load and split the
    data, fit the standardisation, and return the resolved run config with the data."""
    options = _given(options)
    data_cfg, bundle = data_section(options)
    d = DEFAULTS[bundle.kind]
    objective = choice(options.get("objective", d["objective"]), "objective", OBJECTIVES)
    model_name = choice(options.get("model", d["model"]), "model", MODEL_NAMES)
    _check_options_apply(options, objective, model_name, bundle.kind)
    # Three defaults of the training section derive from the number of steps: check it once.
    steps = positive_int(options.get("steps", d["steps"]), "steps")
    z_train = bundle.standardised(bundle.train)

    process_cfg = process_section(options, objective, bundle.kind, z_train)
    objective_cfg = objective_section(options, objective, bundle.kind)
    model_cfg, param_cfg = model_section(
        options, model_name, objective, process_cfg, tuple(data_cfg["shape"]), data_cfg["seed"]
    )
    config = {
        "config_version": CONFIG_VERSION,
        "data": data_cfg,
        "standardizer": bundle.standardizer.to_dict(),
        "model": model_cfg,
        "parametrization": param_cfg,
        "process": process_cfg,
        "objective": objective_cfg,
        "training": training_section(options, bundle, steps, data_cfg["seed"]),
        "sampling": sampling_section(options, objective_cfg, bundle.kind),
    }
    return jsonable(config), bundle


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


def data_section(options: Mapping[str, Any]) -> tuple[dict[str, Any], DataBundle]:
    """Where the data comes from and how it is split; loads it and fits the standardisation."""
    seed = seed_value(options.get("seed", 0))
    spec = str(options["data"])
    path = Path(spec).expanduser()
    if spec.lower() in list_datasets():
        spec = spec.lower()
    elif path.exists():
        spec = str(path.resolve())  # the run then loads from any working directory
    image_size = options.get("image_size")
    data_cfg: dict[str, Any] = {
        "spec": spec,
        "n": positive_int(options["n"], "n") if "n" in options else None,
        "seed": seed,
        "image_size": None if image_size is None else positive_int(image_size, "image_size"),
        "pixel_levels": None if "levels" not in options else pixel_levels(options["levels"]),
        "test_fraction": fraction(options.get("test_fraction", TEST_FRACTION), "test_fraction"),
        "split_seed": seed,
    }
    if not 0.0 < data_cfg["test_fraction"] < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {data_cfg['test_fraction']}")
    val_fraction = options.get("val_fraction")
    if val_fraction is not None and not 0.0 <= float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if spec in TOY_DATASETS and data_cfg["n"] is None:
        data_cfg["n"] = DEFAULT_TOY_SIZE
    data_cfg.update(source_section(spec, options))  # a table's columns (docs/guide.md), …
    train, test, kind, levels = load_split(data_cfg)
    columns = fit_columns(data_cfg, train, options.get("transform"))  # on the training rows
    standardizer = Standardizer.fit(to_model(columns, train), kind)
    val_fraction = float(VAL_FRACTION[kind] if val_fraction is None else val_fraction)
    val_index = validation_index(train.shape[0], val_fraction, seed + 1)
    data_cfg.update(
        kind=kind,
        shape=[columns.dim] if columns is not None else list(train.shape[1:]),  # the model's
        levels=levels,
        n_train=int(train.shape[0]),
        n_test=int(test.shape[0]),
        # 0 when the training rows are too few to spare validation rows
        val_fraction=val_fraction if val_index is not None else 0.0,
        val_seed=seed + 1,
        n_val=0 if val_index is None else int(val_index.numel()),
    )
    return data_cfg, DataBundle(train, test, standardizer, kind, levels, val_index, columns)


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
    if "sigma" in options and not unconditional:
        raise ValueError(
            f"--sigma (the noise level of an unconditional objective) does not apply to {objective!r}"
        )


def _max_pairwise_distance(z: Tensor, max_points: int = 2000) -> float:
    """Largest distance between training points (on an evenly strided subset): NCSN's σ_max
    (Song & Ermon 2020, "Improved techniques for training score-based generative models", §3.1)."""
    flat = z.reshape(z.shape[0], -1).double()
    flat = flat[:: max(1, flat.shape[0] // max_points)]
    return float(torch.cdist(flat, flat).max())


def process_section(
    options: Mapping[str, Any], objective: str, kind: str, z_train: Tensor
) -> dict[str, Any] | None:
    """The forward process's config (``make_process(**config)`` rebuilds it); None for the
    unconditional objectives, which learn one score at one noise level."""
    if objective in ("diffusion", "edm"):
        default = "edm" if objective == "edm" else DEFAULTS[kind]["process"]
        name = choice(options.get("process", default), "process", PROCESSES)
        extra = {"sigma_data": SIGMA_DATA} if name == "edm" else {}
        return make_process(name, **extra).config()
    if objective == "ncsn":
        sigma_max = max(_max_pairwise_distance(z_train), 0.02)
        return NoiseLevels.geometric(0.01, sigma_max, 10).config()
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
            cfg.update(n_projections=1, projection="rademacher")
    return cfg


def model_section(
    options: Mapping[str, Any],
    model_name: str,
    objective: str,
    process_cfg: Mapping[str, Any] | None,
    shape: tuple[int, ...],
    seed: int,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The network's config and the parametrization that reads it as a score (None for the
    unconditional objectives, whose network is the score s(x))."""
    param_cfg: dict[str, Any] | None = None
    if objective in ("diffusion", "edm"):
        default = DEFAULT_PREDICTION[process_cfg["name"].lower()]
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
            kwargs[name] = positive_int(options[name], name)
    if "channels" in options:
        if model_name != "unet":
            raise ValueError("--channels applies to the unet; use --width/--depth for MLPs")
        kwargs["channels"] = positive_int(options["channels"], "channels")
    if param_cfg is None:
        kwargs["time_embed_dim"] = 0
    elif (
        param_cfg["prediction"] == "edm" or default_noise_input(make_process(**process_cfg)) != "t"
    ):
        kwargs["fourier_scale"] = LOG_SIGMA_FOURIER_SCALE
    net = build_model(model_name, shape, seed=seed, **kwargs)  # validates the options
    return model_config(net), param_cfg


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


def training_section(
    options: Mapping[str, Any], bundle: DataBundle, steps: int, seed: int
) -> dict[str, Any]:
    """Optimizer, schedule, EMA, model selection and how often to checkpoint and plot samples."""
    kind = bundle.kind
    d = DEFAULTS[kind]
    validated = bundle.val_index is not None
    scaled = scaled_defaults(kind, bundle.fit.shape[0])
    # Early stopping guards small tables against memorising their rows (see "model" below).
    small_data = bundle.train.shape[0] <= REFIT_MAX_ROWS
    default_patience = PATIENCE[kind] if small_data and "steps" not in options else None
    patience = options.get("patience", default_patience)
    validate_every = None
    if validated:
        every = options.get("validate_every", min(max(steps // VALIDATIONS[kind], 10), 100))
        validate_every = positive_int(every, "validate_every")
    fixed = "steps" in options  # a run of exactly --steps steps: its model is the last step
    small = kind == "vector" and bundle.train.shape[0] <= REFIT_MAX_ROWS and not fixed
    refit = bool(options.get("refit", small)) and validated
    training = {
        "steps": steps,
        "batch_size": positive_int(options.get("batch_size", scaled["batch_size"]), "batch_size"),
        "lr": positive_float(options.get("lr", d["lr"]), "lr"),
        "ema_half_life": positive_float(
            options.get("ema_half_life", scaled["ema_half_life"]), "ema_half_life"
        ),
        "validate_every": validate_every,
        "patience": None if not validated or not patience else positive_int(patience, "patience"),
        "refit": refit,
        # The lowest validation loss picks a small table's model; on moons (8000 rows) it fell at
        # step 900 of 3000 while the held-out NLL kept improving (2.421 there, 2.397 at the end).
        "model": "best" if validated and not fixed and small_data else "last",
        # Warm-up: the default 100 steps, but at most a tenth of a short run.
        "warmup_steps": int(options.get("warmup_steps", min(d["warmup_steps"], steps // 10))),
        "schedule": choice(
            options.get("schedule", d["schedule"]), "schedule", ("constant", "cosine")
        ),
        "grad_clip": positive_float(options.get("grad_clip", 1.0), "grad_clip"),
        # Both default to four times per run; sample_every = 0 writes no sample plots.
        "checkpoint_every": positive_int(
            options.get("checkpoint_every", max(steps // 4, 1)), "checkpoint_every"
        ),
        "sample_every": count(options.get("sample_every", max(steps // 4, 1)), "sample_every"),
        "seed": seed,
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
        "steps": positive_int(options.get("sample_steps", default_steps), "sample_steps"),
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
