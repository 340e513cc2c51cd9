"""Runs: the pipeline behind the command line, usable from Python.

A *run* is a directory written by :func:`train`::

    RUN/config.yaml                      resolved config: everything needed to rebuild the run
    RUN/checkpoints/step_*.safetensors   weights (raw + EMA), optimizer, RNG state (+ .json)
    RUN/metrics.csv                      step, loss, lr, grad_norm, seconds, steps_per_s
    RUN/samples/step_*.png               periodic sample plots
    RUN/evaluation.json                  written by :func:`write_evaluation` (``scorematch evaluate``)
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

The modules follow the pipeline: :mod:`.config` (options, defaults, ``build_config``; values checked by :mod:`.checks`),
:mod:`.data` (loading and splitting), :mod:`.build` (process, score model and loss from a
config), :mod:`.train`, :mod:`.run` (``Run``, ``load_run``), :mod:`.evaluation` (``Evaluation``)
and :mod:`.verdict` (the Gaussian-mixture baseline and the figures judged against it) and
:mod:`.report` (plots, ``demo``).
"""

from .build import build_loss, build_process, build_score_model, training_settings
from .config import (
    DEFAULTS,
    OBJECTIVES,
    OPTION_NAMES,
    PROCESSES,
    TIME_CONDITIONAL,
    UNCONDITIONAL,
    build_config,
    configure,
    load_config,
)
from .data import DataBundle, dataset_table, load_data, table_columns
from .evaluation import Evaluation, HeldOutNLL, SampleFigures, evaluation_path, write_evaluation
from .loading import load_run
from .report import DemoResult, demo, make_plots
from .run import Run, SampleResult
from .train import train
from .verdict import Baseline, Verdict, gmm_baseline, judge, paired_verdict

__all__ = [
    "DEFAULTS",
    "OBJECTIVES",
    "OPTION_NAMES",
    "PROCESSES",
    "TIME_CONDITIONAL",
    "UNCONDITIONAL",
    "Baseline",
    "DataBundle",
    "DemoResult",
    "Evaluation",
    "HeldOutNLL",
    "Run",
    "SampleFigures",
    "SampleResult",
    "Verdict",
    "build_config",
    "build_loss",
    "build_process",
    "build_score_model",
    "configure",
    "dataset_table",
    "demo",
    "evaluation_path",
    "gmm_baseline",
    "judge",
    "load_config",
    "load_data",
    "load_run",
    "make_plots",
    "paired_verdict",
    "table_columns",
    "train",
    "training_settings",
    "write_evaluation",
]
