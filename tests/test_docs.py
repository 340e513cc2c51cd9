"""The documentation stays true: the defaults that docs/guide.md quotes are the ones a run gets, the
command lines in README.md and the guide name real commands and options, and the README's Python
block runs (at tiny sizes)."""

from __future__ import annotations

import inspect
import re
import shlex
from pathlib import Path

import pytest
import torch

from scorematch.cli import cli
from scorematch.runs import configure, demo

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
GUIDE = (ROOT / "docs" / "guide.md").read_text(encoding="utf-8")
TUTORIAL = (ROOT / "docs" / "tutorial.md").read_text(encoding="utf-8")


def _flat(text: str) -> str:
    """Text with every run of whitespace made one space (quotes may wrap across lines)."""
    return " ".join(text.split())


def _quoted(pattern: str, text: str = GUIDE) -> tuple[str, ...]:
    """The groups of the one match of ``pattern`` in the flattened text (fails when it is gone)."""
    found = re.findall(pattern, _flat(text))
    assert len(found) == 1, f"expected one match of {pattern!r} in the docs, found {len(found)}"
    return found[0] if isinstance(found[0], tuple) else (found[0],)


def _code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


@pytest.fixture(scope="module")
def configs():
    """Resolved configs of small runs with default settings: vectors (edm and diffusion) and images."""
    small = {"n": 200, "width": 8, "depth": 1}
    return {
        "vector": configure({"data": "moons", **small})[0],
        "vector-diffusion": configure({"data": "moons", "objective": "diffusion", **small})[0],
        "image": configure({"data": "digits", "n": 40, "channels": 8})[0],
        "image-diffusion": configure(
            {"data": "digits", "n": 40, "channels": 8, "objective": "diffusion"}
        )[0],
    }


def test_guide_quotes_the_training_defaults(configs):
    (objective,) = _quoted(r"Objectives: `([\w-]+)` \(default")
    (process,) = _quoted(r"for the default process, (\w+),")
    (sigma_data,) = _quoted(r"EDM process, σ_data ([\d.]+)\)")
    (diffusion_process,) = _quoted(r"`diffusion` \(`--process [\w|]+`, default `(\w+)`")
    vector_weighting, image_weighting = _quoted(
        r"default `(\w+)` for vectors and `(\w+)` for images"
    )
    for kind in ("vector", "image"):
        config = configs[kind]
        assert config["objective"]["name"] == objective
        assert config["process"]["name"] == process.upper() == "EDM"
        assert config["process"]["sigma_data"] == float(sigma_data)
        assert config["parametrization"] == {"prediction": "edm", "sigma_data": float(sigma_data)}
        assert configs[f"{kind}-diffusion"]["process"]["name"] == diffusion_process.upper()
    assert configs["vector-diffusion"]["objective"]["weighting"] == vector_weighting
    assert configs["image-diffusion"]["objective"]["weighting"] == image_weighting


def test_guide_quotes_the_data_sampling_and_output_defaults(configs):
    (fraction,) = _quoted(r"\(`--test-fraction`, default ([\d.]+)\)")
    (sampler,) = _quoted(r"Samplers: `(\w+)` \(default\)")
    (per_run,) = _quoted(r"samples/\*\.png sample plots, (\d+) per run by default \(--sample-every")
    for config in configs.values():
        data = config["data"]
        assert data["test_fraction"] == float(fraction)
        assert data["n_test"] == round(float(fraction) * (data["n_train"] + data["n_test"]))
        assert config["sampling"]["sampler"] == sampler
        training = config["training"]
        assert training["sample_every"] == training["steps"] // int(per_run) > 0
    (demo_out,) = _quoted(r"An earlier `([^`]+)` is replaced")
    assert inspect.signature(demo).parameters["out_dir"].default == demo_out
    (out_option,) = [p for p in cli.commands["demo"].params if p.name == "out"]
    assert out_option.default == Path(demo_out)
    # "scorematch demo  # moons: …" and the README's "two-moons": the demo's default data.
    assert inspect.signature(demo).parameters["data"].default == "moons"
    assert "two-moons data set" in README and "scorematch demo                 # moons:" in GUIDE


def _documented_command_lines() -> list[list[str]]:
    lines = []
    for text in (README, GUIDE, TUTORIAL):
        for block in _code_blocks(text, "bash"):
            for line in block.splitlines():
                line = line.split("#", 1)[0].strip()
                if line.startswith("scorematch "):
                    lines.append(shlex.split(line))
    return lines


def test_documented_command_lines_name_real_commands_and_options():
    lines = _documented_command_lines()
    assert len(lines) > 15
    global_options = {o for p in cli.params for o in p.opts}
    for args in lines:
        words = [a for a in args[1:] if a not in global_options]
        command = cli.commands.get(words[0])
        assert command is not None, f"unknown command in the docs: {' '.join(args)}"
        known = {o for p in command.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
        for word in words[1:]:
            if word.startswith("-") and not re.fullmatch(r"-?\d+(\.\d+)?(e-?\d+)?", word):
                assert word in known, f"{word} is no option of `{words[0]}`: {' '.join(args)}"


# The README's sizes, and the tiny ones the test runs it at.
README_SIZES = {
    "20_000": "400",  # training points
    ".fit(4000)": ".fit(3)",  # optimizer steps
    "(5000, 2)": "(16, 2)",  # samples
    "x[:1000]": "x[:8]",  # points whose likelihood is computed
}


def test_readme_python_block_runs(tmp_path, monkeypatch):
    (block,) = _code_blocks(README, "python")
    for big, tiny in README_SIZES.items():
        assert big in block, (
            f"the README's API block no longer contains {big!r}; update README_SIZES"
        )
        block = block.replace(big, tiny)
    monkeypatch.chdir(tmp_path)  # the block writes its run into runs/api
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    samples, log_p = namespace["samples"], namespace["log_p"]
    assert samples.x.shape == (16, 2) and torch.isfinite(samples.x).all()
    assert log_p.shape == (8,) and torch.isfinite(log_p).all() and namespace["nfe"] > 0
    assert (tmp_path / "runs" / "api" / "metrics.csv").is_file()


def test_guide_model_selection_numbers_are_the_configs():
    """The guide's account of what `train` does with a table quotes the real settings."""
    from scorematch.runs.config import PATIENCE, REFIT_MAX_ROWS, TEST_FRACTION, VAL_FRACTION
    from scorematch.runs.selection import T_MIN_CANDIDATES

    text = " ".join((ROOT / "docs" / "guide.md").read_text(encoding="utf-8").split())
    section = text[text.index("### What `train` does with your table") :]
    section = section[: section.index("A run directory holds")]
    assert f"{round(TEST_FRACTION * 100)} % of the rows are held out" in section
    assert f"{round(VAL_FRACTION['vector'] * 100)} % of the remaining training rows" in section
    assert f"({round(VAL_FRACTION['image'] * 100)} % for images" in section
    assert f"stops after {PATIENCE['vector']} validations" in section
    assert f"at most {REFIT_MAX_ROWS:,}".replace(",", " ") in section
    assert f"tries {len(T_MIN_CANDIDATES) + 1} values" in section


def test_guide_quotes_the_known_density_settings():
    """§3 and §4's account of esm, SSM's projections and the comparison with a known law."""
    from scorematch.data import TOY_MIXTURES
    from scorematch.runs.config import SLICED_DEFAULTS
    from scorematch.runs.oracle import FISHER_POINTS, NOISE_LEVELS

    a, b = _quoted(r"the built-in mixture sets `(\w+)` and `(\w+)` \(elsewhere it is refused")
    assert (a, b) == TOY_MIXTURES
    (kind,) = _quoted(r"--projection gaussian\|rademacher\|sphere` \(default `(\w+)`\)")
    (count,) = _quoted(r"`--projections K` directions per sample \(default (\d+)\)")
    config = configure({"data": "moons", "n": 200, "objective": "ssm", "width": 8})[0]
    assert config["objective"]["projection"] == kind == SLICED_DEFAULTS["projection"]
    assert config["objective"]["n_projections"] == int(count) == SLICED_DEFAULTS["n_projections"]
    low, high = _quoted(r"where σ_t/α_t = ([\d.]+) and ([\d.]+) \(`ncsn`")
    assert (float(low), float(high)) == NOISE_LEVELS
    (points,) = _quoted(r"\(over (\d+) exact samples of p_t")
    assert int(points) == FISHER_POINTS
    c, d = _quoted(r"The built-in sets `(\w+)` and `(\w+)` are Gaussian mixtures whose exact")
    assert (c, d) == TOY_MIXTURES
    for name in ("mixture_score_comparison.png",):
        assert (ROOT / "docs" / name).is_file() and f"]({name})" in GUIDE
        assert f'<img src="docs/{name}"' in README
    assert f"at noise {NOISE_LEVELS[0]} and {NOISE_LEVELS[1]} the field" in _flat(README)
    tutorial = _flat(TUTORIAL)
    assert f"σ_t/α_t = {NOISE_LEVELS[0]} and {NOISE_LEVELS[1]}:" in tutorial
    from scorematch.runs import DEFAULTS

    assert f"the command line's defaults ({DEFAULTS['vector']['steps']} steps)" in tutorial


def test_guide_quotes_scorematch_tune_and_its_measured_gain():
    """§4's `scorematch tune`: its defaults, and the gain measured on trained runs
    (benchmarks/results/samplers_trained.jsonl, benchmarks/samplers_trained.py's rule)."""
    import importlib.util
    import json

    from scorematch.runs.tuning import DRAWS, EVALUATIONS_PER_TIME, REFERENCE_STEPS

    vectors, images = _quoted(r"from (\d+) prior draws \((\d+) for images\)")
    assert (int(vectors), int(images)) == (DRAWS["vector"], DRAWS["image"])
    (reference,) = _quoted(r"as possible to a (\d+)-step solution of the probability-flow ODE")
    assert int(reference) == REFERENCE_STEPS
    runs, image_runs = _quoted(r"in at most (\d+) sampler runs per level \((\d+) for images\)")
    assert (int(runs), int(image_runs)) == (
        EVALUATIONS_PER_TIME["vector"],
        EVALUATIONS_PER_TIME["image"],
    )
    spec = importlib.util.spec_from_file_location(
        "samplers_trained", ROOT / "benchmarks" / "samplers_trained.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = [json.loads(line) for line in bench.RAW.read_text().splitlines() if line.strip()]

    def disc(name: str, label: str) -> str:
        (row,) = [r for r in rows if r["set"] == name and r["label"] == label and r["target"] == 10]
        return f"{row['disc']:.2g}"

    a, b, c, d = _quoted(
        r"NFE cut that discrepancy from ([\d.]+) to ([\d.]+) \(mixture\) and from ([\d.]+) to "
        r"([\d.]+) \(breast_cancer\)"
    )
    assert (a, b) == (disc("mixture", "dpm_solver auto"), disc("mixture", "dpm_solver tuned"))
    assert (c, d) == (
        disc("breast_cancer", "dpm_solver auto"),
        disc("breast_cancer", "dpm_solver tuned"),
    )
    sets = [*bench.CHOOSE, *bench.REPORT]  # the sets of the decision (digits is measured apart)

    def holds(label: str, target: int) -> int:
        return sum(
            bench.candidate_holds([r for r in rows if r["set"] == s], label, target) for s in sets
        )

    (n_sets,) = _quoted(r"in held-out distances on all (\d+) sets measured")
    assert int(n_sets) == len(sets) == holds("dpm_solver tuned", 10)
    held, total = _quoted(r"`dpm_solver` at 20 calls was as close on (\d+) of the (\d+) sets only")
    assert (int(held), int(total)) == (holds("dpm_solver auto", 20), len(sets))
    from scorematch.runs import DEFAULTS

    assert DEFAULTS["vector"]["sampler"] == "heun" and DEFAULTS["vector"]["sample_steps"] == 50
    assert "(`heun`, 50 steps, 101 calls)" in _flat(GUIDE)


def test_guide_quotes_the_imputation_and_label_defaults():
    """§5's "Missing cells" and "Conditional samples" quote the real defaults."""
    from scorematch.conditional import POINT_DRAWS
    from scorematch.runs.conditional import LABEL_DROPOUT, MASKS_DEFAULT
    from scorematch.runs.imputation import INTERVAL

    (draws,) = _quoted(r"A number gets the mean of (\d+) draws from the model's conditional law")
    assert int(draws) == POINT_DRAWS
    low, high, level = _quoted(
        r"the (\d+) % and (\d+) % quantiles of the draws \(a (\d+) % interval\)"
    )
    assert (int(low), int(high), int(level)) == (5, 95, round(INTERVAL * 100))
    (dropout,) = _quoted(r"A share of the rows \(default ([\d.]+), `--label-dropout`\)")
    assert float(dropout) == LABEL_DROPOUT
    assert "A table without gaps trains a plain network unless asked with `--conditional`" in (
        _flat(GUIDE)
    )
    assert MASKS_DEFAULT == {"vector": False, "image": False}
