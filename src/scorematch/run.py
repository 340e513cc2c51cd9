"""Runs: the pipeline behind the command line, usable from Python.

A *run* is a directory written by :func:`train`::

    RUN/config.yaml                      resolved config: everything needed to rebuild the run
    RUN/checkpoints/step_*.safetensors   weights (raw + EMA), optimizer, RNG state (+ .json)
    RUN/metrics.csv                      step, loss, lr, grad_norm, seconds, steps_per_s
    RUN/samples/step_*.png               periodic sample plots
    RUN/evaluation.json                  written by :meth:`Run.evaluate` via the CLI
    RUN/plots/                           written by :func:`make_plots`

The flow is data → train/test split → standardisation z = T(x) → network → parametrization
(ε/x₀/score/EDM, turning the network into a score model s(z, t)) → objective → ``Trainer``.
:func:`load_run` rebuilds the EMA score model (in standardised space), the ``Standardizer`` and
the process from the directory alone; :class:`Run` samples (returned in data units, x = T⁻¹(z)),
evaluates against the held-out split and computes log-likelihoods in data units,
log p_X(x) = log p_Z(T(x)) + log|det ∂T/∂x|.

Objectives come in two families.  Time-conditional ones (``diffusion``, ``edm``, ``ncsn``) learn
s(z, t) at every noise level; they sample by reversing the process and have an exact
likelihood through the probability-flow ODE.  Unconditional ones (``dsm``, ``ssm``, ``ssm-vr``,
``ism``) learn one score s(z) — of the data perturbed at one noise level σ (σ = 0: the data
itself) — and sample by Langevin dynamics at that level; they have no likelihood.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import Tensor, nn

from . import metrics as sm_metrics
from . import plots
from .data import (
    DEFAULT_TOY_SIZE,
    TOY_DATASETS,
    Standardizer,
    list_datasets,
    load_dataset,
    train_test_split,
)
from .energy import EnergyScore
from .io import atomic_write_text
from .likelihood import bits_per_dim, log_likelihood
from .models import MODEL_NAMES, build_model, model_config
from .objectives import diffusion, dsm, edm, ism, ncsn, ssm
from .objectives.noise_conditional import WEIGHTINGS
from .parametrization import at_time, default_noise_input, wrap
from .processes import NoiseLevels, Process, make_process
from .samplers.api import DEFAULT_STEPS, SAMPLERS, sample
from .training import Trainer, TrainResult, latest_checkpoint, load_checkpoint

__all__ = [
    "OBJECTIVES",
    "PROCESSES",
    "Run",
    "build_config",
    "dataset_table",
    "demo",
    "gmm_baseline",
    "is_run_dir",
    "load_run",
    "make_plots",
    "train",
]

logger = logging.getLogger("scorematch")

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
SIGMA_DATA = 0.5  # EDM's σ_data for the standardised data (measured better than 1.0 on moons)
# Fourier scale of the noise embedding when the network sees c_noise = ¼ log σ̂ (EDM, NCSN):
# that input spans about 2.7 units instead of t ∈ [0, 1], so a smaller scale than the default 16
# keeps the embedding smooth in the noise level (on moons: same NLL, half the ODE evaluations).
LOG_SIGMA_FOURIER_SCALE = 4.0
# Options (as passed to build_config / the CLI) and what they default to when not given.
OPTION_NAMES = (
    "data",
    "n",
    "seed",
    "test_fraction",
    "image_size",
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
    "sampler",
    "sample_steps",
)


# ------------------------------------------------------------------------------------------------
# Small helpers
# ------------------------------------------------------------------------------------------------
def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def _positive_float(value: Any, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    if not (v > 0 and math.isfinite(v)):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return v


def _choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    key = str(value).lower()
    if key not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")
    return key


def _jsonable(obj: Any) -> Any:
    """Plain Python types only (tuples → lists, numpy/torch scalars → floats), for YAML/JSON."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, Tensor):
        return obj.tolist()
    return obj


def is_run_dir(path: str | Path) -> bool:
    """True when ``path`` holds a run (a ``config.yaml`` written by :func:`train`)."""
    return (Path(path) / "config.yaml").is_file()


def dataset_table() -> list[tuple[str, str, str, str]]:
    """Rows (name, kind, size, description) of the built-in data sets."""
    rows = []
    for name, desc in list_datasets().items():
        if name in TOY_DATASETS:
            rows.append((name, "2-D points", f"{DEFAULT_TOY_SIZE} (--n)", desc.split(": ", 1)[-1]))
        else:
            rows.append((name, "8×8 images", "1797", desc))
    return rows


# ------------------------------------------------------------------------------------------------
# Config
# ------------------------------------------------------------------------------------------------
@dataclass
class DataBundle:
    """The data of a run: train and test splits in data units, and the fitted standardisation."""

    train: Tensor
    test: Tensor
    standardizer: Standardizer
    kind: str  # "vector" or "image"
    levels: int | None  # number of grey levels − 1 of quantised image data (digits: 16), or None


def _data_levels(spec: str, x: Tensor) -> int | None:
    if str(spec).lower() == "digits":
        return 16
    if x.ndim == 4 and Path(str(spec)).expanduser().is_dir():
        return 255
    return None


def _load_data(data_cfg: Mapping[str, Any]) -> tuple[Tensor, str, int | None]:
    x = load_dataset(
        data_cfg["spec"],
        n=data_cfg.get("n"),
        seed=int(data_cfg.get("seed", 0)),
        image_size=data_cfg.get("image_size"),
    )
    kind = "image" if x.ndim == 4 else "vector"
    return x, kind, _data_levels(data_cfg["spec"], x)


def _split(x: Tensor, data_cfg: Mapping[str, Any]) -> tuple[Tensor, Tensor]:
    return train_test_split(x, float(data_cfg["test_fraction"]), int(data_cfg["split_seed"]))


def _max_pairwise_distance(z: Tensor, max_points: int = 2000) -> float:
    """Largest distance between training points (on an evenly strided subset): NCSN's σ_max
    (Song & Ermon 2020, "Improved techniques for training score-based generative models", §3.1)."""
    flat = z.reshape(z.shape[0], -1).double()
    flat = flat[:: max(1, flat.shape[0] // max_points)]
    return float(torch.cdist(flat, flat).max())


def build_config(options: Mapping[str, Any]) -> tuple[dict[str, Any], DataBundle]:
    """Validate ``options`` (the CLI's option names, see ``OPTION_NAMES``; ``None`` = default),
    load and split the data, fit the standardisation, and return the resolved run config with
    the data.  Every default is written out, so the config alone rebuilds the run."""
    options = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)}; valid: {', '.join(OPTION_NAMES)}"
        )
    if "data" not in options:
        raise ValueError("no data given: pass a built-in name, a .csv/.npy/.npz file or a folder")
    seed = int(options.get("seed", 0))
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    spec = str(options["data"])
    data_path = Path(spec).expanduser()
    if spec.lower() in list_datasets():
        spec = spec.lower()
    elif data_path.exists():
        spec = str(data_path.resolve())  # the run then loads from any working directory
    data_cfg: dict[str, Any] = {
        "spec": spec,
        "n": _positive_int(options["n"], "n") if "n" in options else None,
        "seed": seed,
        "image_size": (
            _positive_int(options["image_size"], "image_size") if "image_size" in options else None
        ),
        "test_fraction": float(options.get("test_fraction", 0.2)),
        "split_seed": seed,
    }
    if not 0.0 < data_cfg["test_fraction"] < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {data_cfg['test_fraction']}")
    if data_cfg["spec"] in TOY_DATASETS and data_cfg["n"] is None:
        data_cfg["n"] = DEFAULT_TOY_SIZE
    x, kind, levels = _load_data(data_cfg)
    train_x, test_x = _split(x, data_cfg)
    standardizer = Standardizer.fit(train_x, "image" if kind == "image" else "vector")
    data_cfg.update(
        kind=kind,
        shape=list(x.shape[1:]),
        levels=levels,
        n_train=int(train_x.shape[0]),
        n_test=int(test_x.shape[0]),
    )
    d = DEFAULTS[kind]
    get = lambda name: options.get(name, d.get(name))  # noqa: E731

    objective = _choice(get("objective"), "objective", OBJECTIVES)
    model_name = _choice(get("model"), "model", MODEL_NAMES)
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

    z_train = standardizer.transform(train_x)
    # ---- process and objective
    process_cfg: dict[str, Any] | None = None
    obj_cfg: dict[str, Any] = {"name": objective}
    param_cfg: dict[str, Any] | None = None
    sigma_data = SIGMA_DATA
    if objective in ("diffusion", "edm"):
        default_process = "edm" if objective == "edm" else d["process"]
        pname = _choice(options.get("process", default_process), "process", PROCESSES)
        if pname == "edm":
            process_cfg = make_process("edm", sigma_data=sigma_data).config()
        else:
            process_cfg = make_process(pname).config()
        if objective == "diffusion":
            obj_cfg["weighting"] = _choice(
                options.get("weighting", d["weighting"]), "weighting", WEIGHTINGS
            )
        else:
            obj_cfg.update(P_mean=-1.2, P_std=1.2)
        default_pred = {"vp": "eps", "subvp": "eps", "ve": "score", "edm": "edm"}[pname]
        pred = _choice(options.get("prediction", default_pred), "prediction", PREDICTIONS)
        param_cfg = {"prediction": pred}
        if pred == "edm":
            param_cfg["sigma_data"] = sigma_data
    elif objective == "ncsn":
        sigma_max = max(_max_pairwise_distance(z_train), 0.02)
        ens = NoiseLevels.geometric(0.01, sigma_max, 10)
        process_cfg = ens.config()
        param_cfg = {"prediction": "score"}
    else:
        default_sigma = 0.1 if objective == "dsm" else 0.0
        sigma = float(options.get("sigma", default_sigma))
        if not (math.isfinite(sigma) and sigma >= 0):
            raise ValueError(f"sigma must be a finite number >= 0, got {sigma}")
        if objective == "dsm" and sigma <= 0:
            raise ValueError(f"dsm needs a positive noise level --sigma, got {sigma}")
        obj_cfg["sigma"] = sigma
        if objective.startswith("ssm"):
            obj_cfg.update(n_projections=1, projection="rademacher")

    # ---- model
    shape = tuple(x.shape[1:])
    kwargs: dict[str, Any] = {}
    for name in ("width", "depth"):
        if name in options:
            if model_name == "unet":
                raise ValueError(f"--{name} applies to MLP models; use --channels for the unet")
            kwargs[name] = _positive_int(options[name], name)
    if "channels" in options:
        if model_name != "unet":
            raise ValueError("--channels applies to the unet; use --width/--depth for MLPs")
        kwargs["channels"] = _positive_int(options["channels"], "channels")
    if unconditional:
        kwargs["time_embed_dim"] = 0
    elif param_cfg["prediction"] == "edm" or default_noise_input(_process_of(process_cfg)) != "t":
        kwargs["fourier_scale"] = LOG_SIGMA_FOURIER_SCALE
    net = build_model(model_name, shape, seed=seed, **kwargs)  # validates the options
    model_cfg = model_config(net)

    # ---- training and sampling
    training = {
        "steps": _positive_int(get("steps"), "steps"),
        "batch_size": _positive_int(get("batch_size"), "batch_size"),
        "lr": _positive_float(get("lr"), "lr"),
        "ema_half_life": _positive_float(get("ema_half_life"), "ema_half_life"),
        # Warm-up: the default 100 steps, but at most a tenth of a short run.
        "warmup_steps": int(
            options.get(
                "warmup_steps", min(d["warmup_steps"], _positive_int(get("steps"), "steps") // 10)
            )
        ),
        "schedule": _choice(get("schedule"), "schedule", ("constant", "cosine")),
        "grad_clip": _positive_float(options.get("grad_clip", 1.0), "grad_clip"),
        # Both default to four times per run; sample_every = 0 writes no sample plots.
        "checkpoint_every": _positive_int(
            options.get("checkpoint_every", max(_positive_int(get("steps"), "steps") // 4, 1)),
            "checkpoint_every",
        ),
        "sample_every": _count(
            options.get("sample_every", max(_positive_int(get("steps"), "steps") // 4, 1)),
            "sample_every",
        ),
        "seed": seed,
    }
    if training["warmup_steps"] < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {training['warmup_steps']}")
    if unconditional or objective == "ncsn":
        default_sampler, default_steps = "annealed_langevin", 100 if objective == "ncsn" else 1000
    else:
        default_sampler, default_steps = d["sampler"], d["sample_steps"]
    sampler = _choice(options.get("sampler", default_sampler), "sampler", tuple(SAMPLERS))
    sampling: dict[str, Any] = {
        "sampler": sampler,
        "steps": _positive_int(options.get("sample_steps", default_steps), "sample_steps"),
    }
    if unconditional:
        if sampler != "annealed_langevin":
            raise ValueError(
                f"objective {objective!r} learns one score s(x); sample it with annealed_langevin, "
                f"not {sampler!r}"
            )
        # Langevin at one level: step ε = 0.2 σ² (NCSN's ε/σ_L²), σ at least 0.1 data stds.
        level = max(obj_cfg["sigma"], 0.1)
        sampling.update(level=level, step_size=0.2 * level**2)

    config = {
        "config_version": CONFIG_VERSION,
        "data": data_cfg,
        "standardizer": standardizer.to_dict(),
        "model": model_cfg,
        "parametrization": param_cfg,
        "process": process_cfg,
        "objective": obj_cfg,
        "training": training,
        "sampling": sampling,
    }
    return _jsonable(config), DataBundle(train_x, test_x, standardizer, kind, levels)


def _read_yaml(path: Path) -> Any:
    """A YAML file's content; a one-line ValueError naming the file when it does not parse."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML options file (for ``train --config``): a mapping of option names to values."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"config file not found: {p}")
    loaded = _read_yaml(p)
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{p}: expected a mapping of option names to values")
    return {str(k).replace("-", "_"): v for k, v in loaded.items()}


# ------------------------------------------------------------------------------------------------
# Building models, processes and losses from a config
# ------------------------------------------------------------------------------------------------
class _Unconditional(nn.Module):
    """An unconditional score network used as a score model: ``model(x, t)`` ignores t."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor, t: Tensor | float | None = None) -> Tensor:
        return self.net(x)


def _process_of(cfg: Mapping[str, Any]) -> Process:
    cfg = dict(cfg)
    name = cfg.pop("name")
    if name == "NoiseLevels":
        return NoiseLevels(cfg["sigmas"])
    return make_process(name, **cfg)


def _process(config: Mapping[str, Any]) -> Process | None:
    cfg = config.get("process")
    if cfg is None:
        if config["objective"]["name"] in UNCONDITIONAL:
            # One-level "process" for Langevin sampling at the learned noise level.
            return NoiseLevels([config["sampling"]["level"]])
        return None
    return _process_of(cfg)


def _score_model(config: Mapping[str, Any], process: Process | None) -> nn.Module:
    spec = dict(config["model"])
    net = build_model(spec.pop("name"), tuple(spec.pop("shape")), **spec)
    if config["objective"]["name"] in UNCONDITIONAL:
        return EnergyScore(net) if config["model"]["name"] == "energy-mlp" else _Unconditional(net)
    options = {k: v for k, v in config["parametrization"].items() if k != "prediction"}
    return wrap(net, process, config["parametrization"]["prediction"], **options)


def _loss_fn(config: Mapping[str, Any], process: Process | None):
    obj = dict(config["objective"])
    name = obj.pop("name")
    if name == "diffusion":
        weighting = obj["weighting"]
        return lambda m, b, g: diffusion(m, process, b, weighting=weighting, generator=g)
    if name == "edm":
        return lambda m, b, g: edm(m, process, b, generator=g, **obj)
    if name == "ncsn":
        return lambda m, b, g: ncsn(m, process, b, generator=g)
    sigma = float(obj.pop("sigma"))
    if name == "dsm":
        return lambda m, b, g: dsm(m, b, sigma, generator=g)

    def perturbed(b: Tensor, g: torch.Generator) -> Tensor:
        if sigma == 0:
            return b
        eps = torch.randn(b.shape, generator=g, dtype=b.dtype, device=g.device).to(b.device)
        return b + sigma * eps

    if name == "ism":
        return lambda m, b, g: ism(m, perturbed(b, g))
    return lambda m, b, g: ssm(
        m, perturbed(b, g), variance_reduced=name == "ssm-vr", generator=g, **obj
    )


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------
def _sample_plotter(config: Mapping[str, Any], bundle: DataBundle, process: Process | None):
    """Trainer callback: a sample plot at ``RUN/samples/step_XXXXXXXX.png``."""
    n = 64 if bundle.kind == "image" else 1000

    def sample_fn(ema_model: nn.Module, step: int, out_dir: Path | None) -> None:
        if out_dir is None:
            return
        folder = Path(out_dir) / "samples"
        folder.mkdir(parents=True, exist_ok=True)
        run = Run(config, ema_model, process, bundle.standardizer, step=step, data=bundle)
        x = run.sample(n, seed=step).x
        path = folder / f"step_{step:08d}.png"
        if bundle.kind == "image":
            plots.image_grid(x.clamp(0, 1), path, nrow=8)
        else:
            plots.samples_vs_data(x, bundle.train, path, title=f"step {step}")

    return sample_fn


def train(
    options: Mapping[str, Any] | None,
    out_dir: str | Path,
    *,
    resume: bool = False,
    steps: int | None = None,
    checkpoint_every: int | None = None,
    sample_every: int | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train a run into ``out_dir``.

    Fresh run: ``options`` as for :func:`build_config`; ``out_dir`` must not hold a run.  Resume
    (``resume=True``): the run's ``config.yaml`` is used, ``options`` must be None or empty, and
    ``steps`` (the new total) may extend the run; ``checkpoint_every`` / ``sample_every`` may
    change.  Returns the trainer's ``TrainResult``.
    """
    out = Path(out_dir).expanduser()
    if resume:
        if options:
            names = ", ".join(sorted(options))
            raise ValueError(
                f"cannot change {names} when resuming: the run's config.yaml fixes them"
            )
        if not is_run_dir(out):
            raise FileNotFoundError(f"no run to resume in {out} (no config.yaml)")
        config = _read_run_config(out)
        bundle = _bundle(config)
        if steps is not None:
            config["training"]["steps"] = _positive_int(steps, "steps")
    else:
        if out.exists() and (is_run_dir(out) or latest_checkpoint(out / "checkpoints")):
            raise ValueError(
                f"{out} already holds a run; pass --resume to continue it or choose a new --out"
            )
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out} exists and is not a directory")
        if out.is_dir() and any(out.iterdir()):
            raise ValueError(f"--out {out} is not empty; choose a new or empty directory")
        options = dict(options or {})
        if steps is not None:
            options["steps"] = steps
        if checkpoint_every is not None:
            options["checkpoint_every"] = checkpoint_every
        if sample_every is not None:
            options["sample_every"] = sample_every
        config, bundle = build_config(options)
    tr = config["training"]
    if resume:
        if checkpoint_every is not None:
            tr["checkpoint_every"] = _positive_int(checkpoint_every, "checkpoint_every")
        if sample_every is not None:
            tr["sample_every"] = _count(sample_every, "sample_every")
    process = _process(config)
    model = _score_model(config, process)
    z_train = bundle.standardizer.transform(bundle.train)
    out.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(
        model,
        _loss_fn(config, process),
        z_train,
        out_dir=out,
        batch_size=min(tr["batch_size"], z_train.shape[0]),
        lr=tr["lr"],
        warmup_steps=tr["warmup_steps"],
        schedule=tr["schedule"],
        total_steps=tr["steps"] if tr["schedule"] == "cosine" else None,
        grad_clip=tr["grad_clip"],
        ema_half_life=tr["ema_half_life"],
        seed=tr["seed"],
        checkpoint_every=tr["checkpoint_every"],
        sample_every=tr["sample_every"] or None,
        sample_fn=_sample_plotter(config, bundle, process) if tr["sample_every"] else None,
        progress=progress,
        config=config,
    )
    if resume:
        if latest_checkpoint(out / "checkpoints") is not None:
            trainer.resume(expected_changes=_RESUMABLE)
        else:  # killed before its first checkpoint: start again from step 0
            logger.info("%s holds no checkpoint yet; training from step 0", out)
        if trainer.step >= tr["steps"]:
            raise ValueError(
                f"{out} is already at step {trainer.step}; pass --steps above {trainer.step} to "
                "train longer"
            )
    return trainer.fit(tr["steps"], resume=resume)


# Config keys that ``train --resume`` may change (the trainer also reports them as settings).
_RESUMABLE = ("training.steps", "training.checkpoint_every", "training.sample_every")


# ------------------------------------------------------------------------------------------------
# Loading a run
# ------------------------------------------------------------------------------------------------
def _read_run_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no config.yaml)")
    config = _read_yaml(path)
    needed = ("data", "standardizer", "model", "objective", "training", "sampling")
    if not isinstance(config, dict) or any(k not in config for k in needed):
        raise ValueError(f"{path} is not a scorematch run config (needs keys {', '.join(needed)})")
    return config


def _bundle(config: Mapping[str, Any]) -> DataBundle:
    x, kind, levels = _load_data(config["data"])
    train_x, test_x = _split(x, config["data"])
    return DataBundle(train_x, test_x, Standardizer.from_dict(config["standardizer"]), kind, levels)


@dataclass
class SampleResult:
    """Samples in data units, the NFE, and (when asked) the trajectory in data units."""

    x: Tensor
    nfe: int
    trajectory: list[Tensor] | None = field(default=None, repr=False)
    seconds: float = 0.0


class Run:
    """A trained run: the EMA score model in standardised space, its process and standardisation.

    Build it with :func:`load_run`.  ``model(z, t)`` is the score of the standardised data
    z = T(x); ``sample``, ``log_likelihood`` and ``evaluate`` work in data units.
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
    ) -> None:
        self.config = config
        self.model = model
        self.process = process
        self.standardizer = standardizer
        self.step = step
        self.run_dir = run_dir
        self._data = data

    # -- basic facts
    @property
    def objective(self) -> str:
        return self.config["objective"]["name"]

    @property
    def time_conditional(self) -> bool:
        return self.objective in TIME_CONDITIONAL

    @property
    def kind(self) -> str:
        return self.config["data"]["kind"]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.config["data"]["shape"])

    @property
    def data(self) -> DataBundle:
        """Train and test splits in data units (loaded on first use)."""
        if self._data is None:
            self._data = _bundle(self.config)
        return self._data

    def _device_dtype(self) -> tuple[torch.device, torch.dtype]:
        for tensor in (*self.model.parameters(), *self.model.buffers()):
            if tensor.is_floating_point():
                return tensor.device, tensor.dtype
        return torch.device("cpu"), torch.get_default_dtype()

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
    ) -> SampleResult:
        """Draw ``n`` samples (data units) with the run's sampler or ``sampler``/``steps``.

        ``churn`` > 0 makes ``heun`` stochastic: EDM's S_churn (Karras et al. 2022, Alg. 2), noise
        added back at every step, whatever σ.  (The README's digits grid used 40 only within EDM's
        σ window 0.05–50: ``benchmarks/digits.py``.)
        """
        n = _positive_int(n, "n")
        cfg = self.config["sampling"]
        name = _choice(sampler or cfg["sampler"], "sampler", tuple(SAMPLERS))
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
            steps = cfg["steps"] if name == cfg["sampler"] else DEFAULT_STEPS[name]
        steps = _positive_int(steps, "steps")
        device, dtype = self._device_dtype()
        gen = torch.Generator(device=device).manual_seed(int(seed))
        options: dict[str, Any] = {"s_churn": float(churn)} if churn else {}
        shape_or_x: Any = (n, *self.shape)
        if name == "annealed_langevin":
            # the run's steps count Langevin steps per level; the levels are the process's own
            options["langevin_steps"], steps = steps, None
        if not self.time_conditional:
            # Langevin at the learned level, started from the standardised data's scale.
            options.update(
                step_size=cfg["step_size"], denoise=self.config["objective"]["sigma"] > 0
            )
            init_std = 1.0 if self.kind == "vector" else 0.5
            shape_or_x = init_std * torch.randn(
                (n, *self.shape), generator=gen, device=device, dtype=dtype
            )
        t0 = time.perf_counter()
        self.model.eval()
        out = sample(
            self.model,
            self.process,
            shape_or_x,
            sampler=name,
            steps=steps,
            generator=gen,
            progress=progress,
            return_trajectory=trajectory,
            **options,
        )
        x = self.standardizer.inverse(out.x.detach())
        traj = None
        if trajectory and out.trajectory is not None:
            traj = [self.standardizer.inverse(s.detach()) for s in out.trajectory]
        return SampleResult(x, out.nfe, traj, time.perf_counter() - t0)

    # -- likelihood
    def _require_likelihood(self) -> None:
        if not self.time_conditional:
            raise ValueError(
                f"likelihood needs a time-conditional objective (diffusion, edm or ncsn); this run "
                f"was trained with {self.objective!r}, which learns one score s(x) without a density"
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
        images (levels known): the discrete log-probability bound of uniform dequantization,
        log P(x) ≥ log p_Z(2(k + u − ½)/L − 1) + D log(2/L) with k = L·x the grey level
        (see :func:`scorematch.bits_per_dim`).

        ``t_min`` (process clock, default the process's own) sets the density scored: p_{t_min},
        the model's density blurred by the forward process up to t_min — for the EDM process
        Gaussian noise of σ = t_min in standardised units, a bandwidth that can be chosen on
        validation data (docs/api.md).  It must lie in [process.t_min, process.t_max).
        """
        self._require_likelihood()
        self._check_t_min(t_min)
        if not isinstance(x, Tensor):
            raise ValueError(f"x must be a tensor, got {type(x).__name__}")
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(
                f"data rows must have shape {self.shape} like the training data, got "
                f"{tuple(x.shape[1:])}"
            )
        device, dtype = self._device_dtype()
        gen = torch.Generator(device=device).manual_seed(int(seed))
        levels = self.config["data"].get("levels")
        dim = math.prod(self.shape)
        self.model.eval()
        out, nfe = [], 0
        for start in range(0, x.shape[0], batch_size):
            xb = x[start : start + batch_size].to(device=device, dtype=dtype)
            kw = dict(
                divergence=divergence,
                probes=probes,
                rtol=rtol,
                atol=rtol,
                t_min=t_min,
                progress=progress,
            )
            if levels:
                k = (xb * levels).round().clamp(0, levels)
                # Bins of width 1 in level units, centred on the training values 2k/L − 1.
                bpd, n_eval = bits_per_dim(
                    self.model,
                    self.process,
                    k,
                    data_range=(0, levels),
                    scale=2.0 / levels,
                    shift=-1.0 - 1.0 / levels,
                    generator=gen,
                    **kw,
                )
                lp = -bpd.double() * dim * math.log(2.0)
            else:
                z = self.standardizer.transform(xb)
                lp_z, n_eval = log_likelihood(self.model, self.process, z, generator=gen, **kw)
                lp = lp_z.double() + self.standardizer.log_abs_det()
            out.append(lp.cpu())
            nfe += n_eval
        return torch.cat(out), nfe

    # -- evaluation
    def evaluate(
        self,
        n: int = 2000,
        *,
        seed: int = 0,
        nll: bool = True,
        divergence: str | None = None,
        max_nll_points: int = 2000,
        rtol: float = 1e-5,
        t_min: float | None = None,
        keep_log_prob: bool = False,
        progress: bool = False,
    ) -> dict[str, Any]:
        """Distances between ``n`` samples and the held-out split (data units) and the held-out
        NLL (nats/sample and bits/dim) of p_{t_min} (see :meth:`log_likelihood`).  Returns a
        JSON-able dict; with ``keep_log_prob`` it also holds the per-sample log-likelihoods as a
        tensor under ``"_log_prob"`` (keys starting with "_" are not written by
        :func:`write_evaluation`)."""
        n = _positive_int(n, "n")
        self._check_t_min(t_min)  # here too, so that a bad t_min fails before the sampling
        test = self.data.test
        t0 = time.perf_counter()
        drawn = self.sample(n, seed=seed, progress=progress)
        x = drawn.x.double().cpu()
        ref = test.double()
        gen = torch.Generator().manual_seed(int(seed))
        result: dict[str, Any] = {
            "run": str(self.run_dir) if self.run_dir else None,
            "step": self.step,
            "objective": self.objective,
            "n_samples": n,
            "n_test": int(ref.shape[0]),
            "sampler": self.config["sampling"]["sampler"],
            "sampler_nfe": drawn.nfe,
            "sample_seconds": round(drawn.seconds, 3),
            "nonfinite_samples": int((~torch.isfinite(x.reshape(n, -1))).any(1).sum()),
        }
        x = torch.nan_to_num(x, nan=0.0, posinf=1e6, neginf=-1e6)
        result["sliced_wasserstein"] = float(
            sm_metrics.sliced_wasserstein(x, ref, projections=256, generator=gen)
        )
        result["mmd"] = float(sm_metrics.mmd(x, ref))
        result["energy_distance"] = float(sm_metrics.energy_distance(x, ref))
        result["nll"] = result["nll_stderr"] = result["bits_per_dim"] = None
        if nll and self.time_conditional:
            pts = ref[:max_nll_points]
            div = divergence or ("exact" if math.prod(self.shape) <= 16 else "hutchinson")
            t1 = time.perf_counter()
            lp, nfe = self.log_likelihood(
                pts, divergence=div, seed=seed, rtol=rtol, t_min=t_min, progress=progress
            )
            stats = sm_metrics.heldout_nll(lp, dims=math.prod(self.shape))
            if keep_log_prob:
                result["_log_prob"] = lp
            result.update(
                nll=stats["nll"],
                nll_stderr=stats["stderr"],
                bits_per_dim=stats["bits_per_dim"],
                nll_points=stats["n"],
                nll_divergence=div,
                nll_rtol=rtol,
                nll_t_min=self.process.t_min if t_min is None else t_min,
                nll_nfe=nfe,
                nll_seconds=round(time.perf_counter() - t1, 3),
                nll_convention=(
                    f"discrete {self.config['data']['levels'] + 1}-level data, uniform dequantization"
                    if self.config["data"].get("levels")
                    else "continuous density in data units"
                ),
            )
        elif nll:
            result["nll_note"] = f"no likelihood for the unconditional objective {self.objective!r}"
        result["seconds"] = round(time.perf_counter() - t0, 3)
        return result


def load_run(
    run_dir: str | Path, *, device: torch.device | str | None = None, ema: bool = True
) -> Run:
    """Rebuild a run from its directory: config.yaml + the newest checkpoint (EMA weights by
    default).  ``FileNotFoundError`` when the directory, its config or its checkpoint is missing."""
    path = Path(run_dir).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"run directory not found: {path}")
    config = _read_run_config(path)
    if latest_checkpoint(path / "checkpoints") is None:
        raise FileNotFoundError(f"{path} holds no checkpoint yet (train it first)")
    process = _process(config)
    model = _score_model(config, process)
    ckpt = load_checkpoint(path, model, ema=ema, device=device)
    if device is not None:
        model = model.to(device)
    model.requires_grad_(False).eval()
    standardizer = Standardizer.from_dict(config["standardizer"])
    return Run(config, model, process, standardizer, step=ckpt.step, run_dir=path)


# ------------------------------------------------------------------------------------------------
# Baseline, plots, demo
# ------------------------------------------------------------------------------------------------
def gmm_baseline(
    train_x: Tensor, test_x: Tensor, *, max_components: int = 20, seed: int = 0
) -> dict[str, Any]:
    """scikit-learn ``GaussianMixture`` (full covariances) with the number of components chosen by
    BIC over 1 … ``max_components`` on ``train_x``; held-out NLL (nats/sample) on ``test_x``."""
    from sklearn.mixture import GaussianMixture
    from threadpoolctl import threadpool_limits

    tr = train_x.reshape(train_x.shape[0], -1).double().numpy()
    te = test_x.reshape(test_x.shape[0], -1).double().numpy()
    t0 = time.perf_counter()
    best = None
    # One BLAS thread: these matrices are tiny, and extra threads only contend on a busy machine.
    with threadpool_limits(1):
        for k in range(1, min(max_components, tr.shape[0]) + 1):
            gm = GaussianMixture(k, covariance_type="full", random_state=seed).fit(tr)
            bic = gm.bic(tr)
            if best is None or bic < best[0]:
                best = (bic, k, gm)
    _, k, gm = best
    lp = torch.from_numpy(gm.score_samples(te))
    stats = sm_metrics.heldout_nll(lp, dims=tr.shape[1])
    return {
        "components": k,
        "nll": stats["nll"],
        "nll_stderr": stats["stderr"],
        "bits_per_dim": stats["bits_per_dim"],
        "log_prob": lp,
        "seconds": round(time.perf_counter() - t0, 3),
    }


def make_plots(
    run: Run, out_dir: str | Path | None = None, *, n: int = 2000, seed: int = 0
) -> list[Path]:
    """Write the run's pictures into ``out_dir`` (default ``RUN/plots``) and return their paths:
    samples beside data (or an image grid), the learned score field and a sampling-trajectory
    GIF (2-D data), and the loss curve."""
    if out_dir is None:
        if run.run_dir is None:
            raise ValueError("make_plots needs an out_dir for a run without a directory")
        out_dir = run.run_dir / "plots"
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    two_d = run.kind == "vector" and run.shape == (2,)
    if run.kind == "image":
        drawn = run.sample(64, seed=seed)
        paths.append(plots.image_grid(drawn.x.clamp(0, 1), folder / "samples.png", nrow=8))
        paths.append(plots.image_grid(run.data.test[:64], folder / "data.png", nrow=8))
    else:
        drawn = run.sample(n, seed=seed, trajectory=two_d)
        paths.append(
            plots.samples_vs_data(
                drawn.x,
                run.data.test,
                folder / "samples.png",
                title=f"{run.objective}, step {run.step}",
            )
        )
        if two_d:
            paths.append(_score_field(run, folder / "score_field.png"))
            if drawn.trajectory is not None and len(drawn.trajectory) > 1:
                paths.append(
                    plots.trajectory_gif(
                        drawn.trajectory, folder / "trajectory.gif", data=run.data.test
                    )
                )
    if run.run_dir is not None and (run.run_dir / "metrics.csv").is_file():
        with contextlib.suppress(ValueError):  # a run with no logged row yet has no curve
            paths.append(plots.loss_curve(run.run_dir / "metrics.csv", folder / "loss.png"))
    return paths


def _score_field(run: Run, path: Path) -> Path:
    """The learned score in data units, ∇ₓ log p(x) = (∇_z log p(z)) / s, at a small noise level."""
    std = run.standardizer
    if run.time_conditional:
        # The level where the scaled noise is 0.1 data standard deviations (inside the range).
        t = float(run.process.t_of_log_snr(torch.tensor(-2 * math.log(0.1), dtype=torch.float64)))
        t = min(max(t, run.process.t_min), run.process.t_max)
        score_z = at_time(run.model, t)
        title = f"learned score at noise 0.1 std (t = {t:.3g})"
    else:
        score_z = lambda z: run.model(z, None)  # noqa: E731
        title = f"learned score ({run.objective})"
    dtype = run._device_dtype()[1]

    def score_x(x: Tensor) -> Tensor:
        z = std.transform(x.to(dtype))
        with torch.no_grad():
            s = score_z(z)
        return (s / std.std.to(s)) if std.kind == "vector" else s

    return plots.score_field(score_x, run.data.test, path, title=title)


@dataclass
class DemoResult:
    run: Run
    evaluation: dict[str, Any]
    baseline: dict[str, Any] | None
    plots: list[Path]
    timings: dict[str, float]


# What the demo changes from the training defaults, by data kind (normal, --quick).
DEMO_SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    "vector": {"normal": {}, "quick": {"steps": 300, "n": 2000}},
    "image": {
        "normal": {"steps": 1500, "batch_size": 64, "channels": 16},
        "quick": {"steps": 30, "batch_size": 32, "channels": 8},
    },
}


def _data_kind(spec: str) -> str:
    if str(spec).lower() in TOY_DATASETS:
        return "vector"
    if str(spec).lower() == "digits":
        return "image"
    return "image" if load_dataset(spec).ndim == 4 else "vector"


def demo(
    data: str = "moons",
    out_dir: str | Path = "runs/demo",
    *,
    steps: int | None = None,
    quick: bool = False,
    progress: bool = True,
) -> DemoResult:
    """Train on ``data`` into ``out_dir`` (replacing an earlier run there), sample, evaluate against
    the held-out split (and a BIC-selected Gaussian mixture for vector data), and plot.

    The held-out NLL uses the exact divergence for vectors and Hutchinson's estimate for images,
    with ODE tolerances 1e-4 (on moons the NLL moves by about 2e-4 nats from 1e-5 to 1e-4).
    """
    out = Path(out_dir).expanduser()
    if out.exists():
        if is_run_dir(out):
            shutil.rmtree(out)
        elif not (out.is_dir() and not any(out.iterdir())):
            raise ValueError(
                f"{out} exists and is not a scorematch run; choose another --out for the demo"
            )
    kind = _data_kind(data)
    options: dict[str, Any] = {"data": data, **DEMO_SETTINGS[kind]["quick" if quick else "normal"]}
    if steps is not None:
        options["steps"] = steps
    options["sample_every"] = options.get("steps", DEFAULTS[kind]["steps"])  # one, at the end
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    train(options, out, progress=progress)
    timings["train"] = time.perf_counter() - t0
    run = load_run(out)
    t1 = time.perf_counter()
    if kind == "vector":
        n, nll_points = (500, 500) if quick else (2000, 2000)
    else:
        n, nll_points = (16, 16) if quick else (256, 200)
    evaluation = run.evaluate(
        n, max_nll_points=nll_points, rtol=1e-4, keep_log_prob=True, progress=progress
    )
    write_evaluation(run, evaluation)
    timings["evaluate"] = time.perf_counter() - t1
    baseline = None
    if kind == "vector":
        t2 = time.perf_counter()
        held_out = run.data.test[: evaluation.get("nll_points") or None]
        baseline = gmm_baseline(run.data.train, held_out, seed=0)
        timings["baseline"] = time.perf_counter() - t2
    t3 = time.perf_counter()
    paths = make_plots(run, n=n)
    timings["plots"] = time.perf_counter() - t3
    timings["total"] = time.perf_counter() - t0
    return DemoResult(run, evaluation, baseline, paths, timings)


def _json_text(obj: Any) -> str:
    return json.dumps(_jsonable(obj), indent=2) + "\n"


def write_evaluation(
    run: Run, evaluation: Mapping[str, Any], path: str | Path | None = None
) -> Path:
    """Write an evaluation dict as JSON atomically (default ``RUN/evaluation.json``)."""
    if path is None:
        if run.run_dir is None:
            raise ValueError("write_evaluation needs a path for a run without a directory")
        path = run.run_dir / "evaluation.json"
    public = {k: v for k, v in evaluation.items() if not k.startswith("_")}
    return atomic_write_text(Path(path), _json_text(public))
