"""The command line and the run pipeline behind it (tiny settings: a few dozen steps, small nets).

What is checked: every command works end to end on a toy set, a CSV file and an image folder and
writes valid files; resume continues a run from its folder alone; user mistakes end with exit
code ≠ 0 and one line "Error: …"; and the two conversions the pipeline adds on top of the library
are exact — likelihoods in data units (the standardisation's log-determinant) and samples in data
units (the inverse standardisation) — against a Gaussian mixture whose noised density is known.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from PIL import Image

from scorematch import __version__
from scorematch.cli import cli
from scorematch.data import Standardizer, list_datasets, toy_mixture_params
from scorematch.distributions import GaussianMixture
from scorematch.processes import VP
from scorematch.runs import OBJECTIVES, PROCESSES, Run, configure, load_run
from scorematch.runs.config import PATIENCE, REFIT_MAX_ROWS, VAL_FRACTION

TINY = [
    "--steps",
    "30",
    "--width",
    "16",
    "--depth",
    "1",
    "--batch-size",
    "64",
    "--sample-every",
    "0",
    "--no-progress",
]

TINY_UNET = ["--channels", "8", "--batch-size", "8", "--sample-every", "0", "--no-progress"]


def invoke(*args: str, ok: bool = True):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def is_png(path) -> bool:
    with Image.open(path) as im:
        return im.format == "PNG" and min(im.size) > 8


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "moons"
    invoke(
        "train",
        "--data",
        "moons",
        "--n",
        "250",
        "--out",
        out,
        *TINY,
        "--checkpoint-every",
        "10",
        "--sample-every",
        "30",  # the last --sample-every wins over TINY's 0
    )
    return out


# ------------------------------------------------------------------------------------------------
# Help and listing
# ------------------------------------------------------------------------------------------------
COMMANDS = (
    "datasets",
    "demo",
    "ensemble",
    "evaluate",
    "impute",
    "inpaint",
    "likelihood",
    "plot",
    "sample",
    "train",
    "tune",
)


def test_every_command_is_registered_and_runs_as_a_module():
    """Each command module is added to the group, its --help is its own, and `python -m
    scorematch` is the same program as the `scorematch` script."""
    text = invoke("--help").output
    listed = re.findall(r"^  ([a-z]+)  ", text.split("Commands:", 1)[1], flags=re.M)
    assert tuple(listed) == COMMANDS
    for name in COMMANDS:
        usage = invoke(name, "--help").output.splitlines()[0]
        assert re.fullmatch(rf"Usage: \S+ {name} \[OPTIONS\].*", usage), usage
    for module in ("scorematch", "scorematch.cli"):
        proc = subprocess.run(
            [sys.executable, "-m", module, "--version"], capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0 and proc.stdout == f"scorematch, version {__version__}\n"


def test_load_run_is_public_at_top_level_and_imported_on_first_use():
    import scorematch as sm

    assert sm.load_run is load_run and "load_run" in sm.__all__
    # `import scorematch` alone leaves the run pipeline (and its plotting library) unloaded.
    code = (
        "import sys, scorematch; "
        "print(sorted(m for m in ('scorematch.runs', 'matplotlib') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and proc.stdout == "[]\n", proc.stderr


def _help(*command: str) -> str:
    """A command's help with whitespace runs made one space (click wraps the option texts)."""
    return " ".join(invoke(*command, "--help").output.split())


def _one(pattern: str, text: str) -> tuple[str, ...]:
    found = re.findall(pattern, text)
    assert len(found) == 1, f"expected one match of {pattern!r} in the help, found {len(found)}"
    return found[0] if isinstance(found[0], tuple) else (found[0],)


@pytest.fixture(scope="module")
def default_configs():
    """Resolved configs with every training option left at its default, per objective (moons),
    for the diffusion objective on each process, and for images (digits)."""
    small = {"data": "moons", "n": 200, "width": 8, "depth": 1}
    # esm needs the true score: a built-in mixture set
    known = {"data": "mixture"}
    configs = {
        o: configure({**small, "objective": o, **(known if o == "esm" else {})})[0]
        for o in OBJECTIVES
    }
    for process in ("vp", "subvp", "ve", "edm"):
        configs[f"diffusion-{process}"] = configure(
            {**small, "objective": "diffusion", "process": process}
        )[0]
    configs["moons"] = configure({"data": "moons"})[0]
    digits = {"data": "digits", "n": 40, "channels": 8}
    configs["image"] = configure(digits)[0]
    configs["image-diffusion"] = configure({**digits, "objective": "diffusion"})[0]
    return configs


def test_train_help_quotes_the_defaults_a_run_gets(default_configs):
    text = _help("train")
    c = default_configs
    vector, image = c["edm"], c["image"]  # all defaults but the data size and the MLP's size
    (objective,) = _one(r"Training objective \(default: ([\w-]+)\)\.", text)
    assert vector["objective"]["name"] == image["objective"]["name"] == objective
    edm_process, diffusion_process = _one(
        r"\(default: (\w+) for --objective edm, (\w+) for --objective diffusion\)", text
    )
    assert c["edm"]["process"]["name"] == edm_process.upper()
    assert c["diffusion"]["process"]["name"] == diffusion_process.upper()
    vector_model, image_model = _one(r"Network \(default: ([\w-]+) for vectors, ([\w-]+) for", text)
    assert (vector["model"]["name"], image["model"]["name"]) == (vector_model, image_model)
    predictions = _one(r"\(default: (\w+) on vp/subvp, (\w+) on ve, (\w+) on edm\)", text)
    by_process = {p: c[f"diffusion-{p}"]["parametrization"]["prediction"] for p in PROCESSES}
    assert by_process == dict(zip(("vp", "subvp", "ve", "edm"), (predictions[0], *predictions)))
    weightings = _one(
        r"Loss weighting of --objective diffusion \(default: (\w+) for vectors, (\w+) for images\)",
        text,
    )
    assert (
        c["diffusion"]["objective"]["weighting"],
        c["image-diffusion"]["objective"]["weighting"],
    ) == weightings
    (dsm_sigma,) = _one(r"\(dsm default ([\d.]+)\)", text)
    assert (
        c["dsm"]["objective"]["sigma"] == float(dsm_sigma) and c["ism"]["objective"]["sigma"] == 0
    )
    (n,) = _one(r"Toy sets: points to draw \(default (\d+)\)", text)
    assert c["moons"]["data"]["n"] == int(n)
    (fraction,) = _one(r"Held-out fraction \(default ([\d.]+)\)", text)
    assert vector["data"]["test_fraction"] == float(fraction)
    checkpoints, samples = (
        _one(rf"{name} every N steps \(default: (\d+) per run", text)[0]
        for name in ("Save a checkpoint", "Write samples/step_N.png")
    )
    for config in (vector, image):
        tr = config["training"]
        assert (tr["checkpoint_every"], tr["sample_every"]) == (
            tr["steps"] // int(checkpoints),
            tr["steps"] // int(samples),
        )
    # The block "Defaults by data kind": every number in it is what a default run gets.
    (sigma_data,) = _one(r"\(EDM: process edm, EDM preconditioning, σ_data ([\d.]+)\)", text)
    assert vector["process"]["sigma_data"] == image["process"]["sigma_data"] == float(sigma_data)
    kinds = {
        "vectors": _one(
            r"vectors ([\w-]+) \+ ([\w-]+), at most (\d+) steps, batch a quarter of the rows "
            r"within (\d+)–(\d+), lr ([\de.-]+) \((cosine) decay\), EMA half-life ten epochs "
            r"within (\d+)–(\d+) steps, (\w+) sampler \((\d+) steps\); --objective diffusion "
            r"defaults to --process (\w+) with (\w+)-sampled likelihood weighting",
            text,
        ),
        "images": _one(
            r"images ([\w-]+) \+ ([\w-]+), (\d+) steps, batch (\d+), lr ([\de.-]+), EMA half-life "
            r"(\d+) steps, (\w+) sampler \((\d+) steps\); --objective diffusion defaults to "
            r"--process (\w+), (\w+) weighting",
            text,
        ),
    }
    # Vectors: the numbers are the rule's bounds; the rule itself is scaled_defaults, checked
    # against a run's config on the small set and the full moons set.
    (
        model,
        objective,
        steps,
        b_lo,
        b_hi,
        lr,
        decay,
        h_lo,
        h_hi,
        sampler,
        sample_steps,
        process,
        weighting,
    ) = kinds["vectors"]
    tr = vector["training"]
    assert [model, objective, int(steps), float(lr), decay, sampler, int(sample_steps)] == [
        vector["model"]["name"],
        vector["objective"]["name"],
        tr["steps"],
        tr["lr"],
        tr["schedule"],
        vector["sampling"]["sampler"],
        vector["sampling"]["steps"],
    ]
    assert [process, weighting] == [
        c["diffusion"]["process"]["name"].lower(),
        c["diffusion"]["objective"]["weighting"],
    ]
    for config in (vector, c["moons"]):
        n_fit = config["data"]["n_train"] - config["data"]["n_val"]
        batch = min(max(n_fit // 4, int(b_lo)), int(b_hi))
        assert config["training"]["batch_size"] == batch
        half_life = min(max(10 * n_fit / batch, float(h_lo)), float(h_hi))
        assert config["training"]["ema_half_life"] == pytest.approx(half_life)
    (kind, config, diffusion) = ("images", image, c["image-diffusion"])
    tr, sampling = config["training"], config["sampling"]
    actual = [
        config["model"]["name"],
        config["objective"]["name"],
        str(tr["steps"]),
        str(tr["batch_size"]),
        float(tr["lr"]),
        str(round(tr["ema_half_life"])),
        sampling["sampler"],
        str(sampling["steps"]),
        diffusion["process"]["name"].lower(),
        diffusion["objective"]["weighting"],
    ]
    quoted = list(kinds[kind])
    quoted[4] = float(quoted[4])
    assert quoted == actual, kind
    assert (
        vector["training"]["schedule"] == "cosine" and image["training"]["schedule"] == "constant"
    )
    # The model-selection paragraph: its numbers are the config's.
    flat = " ".join(text.split())
    val_t, val_i, refit, patience = _one(
        r"\((\d+)% of a table's training rows, (\d+)% of images; .* a table of up to (\d+) "
        r"training rows takes .* stops after (\d+) validations without improvement",
        flat,
    )
    assert (
        float(val_t) / 100 == VAL_FRACTION["vector"] and float(val_i) / 100 == VAL_FRACTION["image"]
    )
    assert int(patience) == PATIENCE["vector"] and int(refit) == REFIT_MAX_ROWS
    assert vector["training"]["patience"] == PATIENCE["vector"]  # 160 training rows
    assert c["moons"]["training"]["patience"] is None  # 8000 rows: trains all its steps
    assert (vector["training"]["model"], c["moons"]["training"]["model"]) == ("best", "last")


def test_train_help_says_which_objectives_have_a_likelihood(default_configs):
    """The help's two claims about objectives, against what build_config does with them."""
    text = _help("train")
    (unconditional,) = _one(
        r"clean data\) ([\w, -]+) learn one unconditional score s\(x\) and are sampled by Langevin",
        text,
    )
    unconditional = re.split(r", | and ", unconditional)
    (conditional,) = _one(r"need a time-conditional objective \(([\w, ]+)\)", text)
    conditional = re.split(r", | or ", conditional)
    assert sorted(unconditional + conditional) == sorted(OBJECTIVES)
    for name in OBJECTIVES:
        config = default_configs[name]
        # A likelihood needs a process to integrate the probability flow of; Langevin is the only
        # sampler of the unconditional objectives.
        assert (config["process"] is not None) == (name in conditional), name
        if name in unconditional:
            assert config["sampling"]["sampler"] == "annealed_langevin"
    (energy,) = _one(
        r"--model energy-mlp \(an energy E\(x\) with s = −∇E\) works with ([\w, -]+)\.", text
    )
    energy = re.split(r", | and ", energy)
    assert energy == unconditional
    for name in OBJECTIVES:
        data = "mixture" if name == "esm" else "moons"  # esm needs a known score
        options = {"data": data, "n": 100, "objective": name, "model": "energy-mlp", "width": 8}
        if name in energy:
            configure(options)
        else:
            with pytest.raises(ValueError, match="energy-mlp"):
                configure(options)
    # What `likelihood` and `evaluate` ask of a loaded run.
    for name in OBJECTIVES:
        run = Run(default_configs[name], torch.nn.Identity(), None, Standardizer("identity", (2,)))
        if name in conditional:
            run.require_likelihood()
        else:
            with pytest.raises(ValueError, match="time-conditional"):
                run.require_likelihood()


def test_datasets_lists_every_builtin_and_file_formats():
    text = invoke("datasets").output
    for name in list_datasets():
        assert name in text
    assert "digits" in text and ".csv" in text and ".npy" in text and "FOLDER" in text


# ------------------------------------------------------------------------------------------------
# A toy run end to end
# ------------------------------------------------------------------------------------------------
def test_train_writes_the_run_directory(toy_run):
    config = yaml.safe_load((toy_run / "config.yaml").read_text())
    assert config["data"]["spec"] == "moons" and config["data"]["n"] == 250
    assert config["data"]["n_train"] + config["data"]["n_test"] == 250
    assert config["model"]["name"] == "mlp" and config["model"]["width"] == 16
    assert config["objective"]["name"] == "edm" and config["process"]["name"] == "EDM"
    assert (
        config["parametrization"]["prediction"] == "edm" and config["model"]["fourier_scale"] == 4
    )
    assert config["standardizer"]["kind"] == "vector" and config["training"]["steps"] == 30
    steps = sorted(p.name for p in (toy_run / "checkpoints").glob("*.safetensors"))
    assert steps[-1] == "step_00000030.safetensors"
    rows = (toy_run / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,loss") and rows[-1].startswith("30,")
    assert is_png(toy_run / "samples" / "step_00000030.png")


def test_sample_writes_npy_csv_png_and_gif_in_data_units(toy_run, tmp_path):
    invoke("sample", toy_run, "-n", "200", "--out", tmp_path / "s.npy", "--no-progress")
    invoke("sample", toy_run, "-n", "200", "--out", tmp_path / "s.csv", "--no-progress")
    invoke(
        "sample", toy_run, "-n", "50", "--out", tmp_path / "s.png", "--trajectory", "--no-progress"
    )
    x = np.load(tmp_path / "s.npy")
    assert x.shape == (200, 2) and np.isfinite(x).all()
    # The same seed gives the same samples, whatever the file format.
    np.testing.assert_allclose(
        np.loadtxt(tmp_path / "s.csv", delimiter=",", skiprows=1), x, rtol=1e-6, atol=1e-6
    )
    assert is_png(tmp_path / "s.png")
    with Image.open(tmp_path / "s.gif") as im:
        assert im.format == "GIF" and im.n_frames > 2


def test_sample_churn_makes_heun_stochastic(toy_run, tmp_path):
    def draw(name: str, *extra: str) -> np.ndarray:
        invoke("sample", toy_run, "-n", "64", "--out", tmp_path / name, "--no-progress", *extra)
        return np.load(tmp_path / name)

    plain = draw("a.npy", "--sampler", "heun", "--steps", "8")
    np.testing.assert_array_equal(
        draw("b.npy", "--sampler", "heun", "--steps", "8", "--churn", "0"), plain
    )
    churned = draw("c.npy", "--sampler", "heun", "--steps", "8", "--churn", "10")
    assert np.isfinite(churned).all() and not np.allclose(churned, plain)
    # The same seed gives the same churned samples.
    np.testing.assert_array_equal(
        draw("d.npy", "--sampler", "heun", "--steps", "8", "--churn", "10"), churned
    )
    result = invoke(
        "sample",
        toy_run,
        "-n",
        "4",
        "--out",
        tmp_path / "e.npy",
        "--sampler",
        "ode",
        "--churn",
        "5",
        ok=False,
    )
    assert_one_line_error(result, "churn applies to the heun sampler only")
    assert not (tmp_path / "e.npy").exists()


def test_evaluate_and_likelihood_agree(toy_run, tmp_path):
    result = invoke(
        "evaluate", toy_run, "-n", "100", "--json", tmp_path / "e.json", "--no-progress"
    )
    assert "sliced Wasserstein" in result.output and "NLL" in result.output
    saved = json.loads((toy_run / "evaluation.json").read_text())
    assert saved == json.loads((tmp_path / "e.json").read_text())
    for key in (
        "sliced_wasserstein",
        "mmd",
        "energy_distance",
        "nll",
        "nll_stderr",
        "bits_per_dim",
    ):
        assert math.isfinite(saved[key]), key
    assert saved["n_samples"] == 100 and saved["n_test"] == 50 and saved["step"] == 30
    invoke("likelihood", toy_run, "--out", tmp_path / "lp.npy", "--no-progress")
    lp = np.load(tmp_path / "lp.npy")  # one log-likelihood per row: shape (N,) (issue 13)
    assert lp.shape == (50,)
    # Both use the exact divergence on the same held-out points: the same numbers.
    assert -lp.mean() == pytest.approx(saved["nll"], rel=1e-6)
    assert saved["bits_per_dim"] == pytest.approx(saved["nll"] / (2 * math.log(2)))
    # By default both read the density at the t_min chosen on the validation rows.
    chosen = load_run(toy_run).t_min
    assert saved["nll_t_min"] == chosen
    # --t-min scores another blurred density p_{t_min}: both commands again agree, and it differs.
    other = "0.05" if chosen != 0.05 else "0.1"
    invoke(
        "evaluate",
        toy_run,
        "-n",
        "100",
        "--t-min",
        other,
        "--json",
        tmp_path / "b.json",
        "--no-progress",
    )
    at = json.loads((tmp_path / "b.json").read_text())
    assert at["nll_t_min"] == float(other)
    # Another setting gets its own file: the default evaluation.json is kept.
    assert json.loads((toy_run / f"evaluation_tmin-{float(other):g}.json").read_text()) == at
    assert json.loads((toy_run / "evaluation.json").read_text()) == saved
    invoke("likelihood", toy_run, "--t-min", other, "--out", tmp_path / "b.npy", "--no-progress")
    assert -np.load(tmp_path / "b.npy").mean() == pytest.approx(at["nll"], rel=1e-6)
    assert abs(at["nll"] - saved["nll"]) > 1e-4


def test_likelihood_of_a_file(toy_run, tmp_path):
    rows = load_run(toy_run).data.test[:7].numpy()
    np.savetxt(tmp_path / "pts.csv", rows, delimiter=",")
    result = invoke(
        "likelihood",
        toy_run,
        tmp_path / "pts.csv",
        "--hutchinson",
        "--probes",
        "2",
        "--out",
        tmp_path / "lp.csv",
        "--no-progress",
    )
    assert "7 samples" in result.output
    assert np.loadtxt(tmp_path / "lp.csv", delimiter=",", skiprows=1).shape == (7,)


def test_plot_writes_valid_pictures(toy_run):
    paths = invoke("plot", toy_run, "-n", "100").stdout.split()  # stderr: the checkpoint line
    names = {p.rsplit("/", 1)[-1] for p in paths}
    assert names == {"samples.png", "score_field.png", "trajectory.gif", "loss.png"}
    for p in paths:
        with Image.open(p) as im:
            assert im.format in ("PNG", "GIF")


def test_out_into_a_missing_folder_creates_it(toy_run, tmp_path):
    """Every command that writes a file or folder makes its missing parents (issue #20), and a
    file standing where a folder should be is a one-line error."""
    new = tmp_path / "new" / "deeper"
    invoke("sample", toy_run, "-n", "20", "--out", new / "s.csv", "--no-progress")
    invoke("likelihood", toy_run, "--out", new / "lp.npy", "--no-progress")
    invoke("evaluate", toy_run, "-n", "50", "--no-nll", "--json", new / "e.json", "--no-progress")
    invoke("train", "--data", "moons", "--n", "100", "--out", new / "run", *TINY)
    for path in ("s.csv", "lp.npy", "e.json", "run/config.yaml"):
        assert (new / path).is_file(), path
    (tmp_path / "file").write_text("x")
    blocked = invoke("sample", toy_run, "-n", "5", "--out", tmp_path / "file" / "s.csv", ok=False)
    assert_one_line_error(blocked, "is a file")


def test_resume_continues_from_the_folder_alone(tmp_path):
    out = tmp_path / "r"
    invoke("train", "--data", "8gaussians", "--n", "200", "--out", out, *TINY)
    before = yaml.safe_load((out / "config.yaml").read_text())
    result = invoke("train", "--resume", "--out", out, "--steps", "45", "--no-progress")
    assert "step 45" in result.output and "different config" not in result.output
    after = yaml.safe_load((out / "config.yaml").read_text())
    assert after["training"].pop("steps") == 45 and before["training"].pop("steps") == 30
    assert after == before
    assert load_run(out).step == 45
    assert (out / "metrics.csv").read_text().splitlines()[-1].startswith("45,")
    # A run killed before its first checkpoint resumes from step 0.
    invoke("train", "--data", "8gaussians", "--n", "100", "--out", tmp_path / "k", *TINY)
    for f in (tmp_path / "k" / "checkpoints").iterdir():
        f.unlink()
    invoke("train", "--resume", "--out", tmp_path / "k", "--no-progress")
    assert load_run(tmp_path / "k").step == 30
    # Options that would change the run are refused; so is resuming a finished run.
    assert_one_line_error(invoke("train", "--resume", "--out", out, "--lr", "1", ok=False), "--lr")
    assert_one_line_error(invoke("train", "--resume", "--out", out, ok=False), "already at step 45")


def test_config_file_gives_options_and_flags_win(tmp_path):
    (tmp_path / "c.yaml").write_text(
        "data: 8gaussians\nn: 120\nwidth: 8\ndepth: 1\nsteps: 10\nbatch-size: 32\nlr: 0.01\nsample-every: 0\n"
    )
    invoke(
        "train",
        "--config",
        tmp_path / "c.yaml",
        "--out",
        tmp_path / "r",
        "--steps",
        "12",
        "--no-progress",
    )
    config = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert config["data"]["n"] == 120 and config["model"]["width"] == 8
    assert config["training"]["steps"] == 12 and config["training"]["lr"] == 0.01
    assert config["training"]["batch_size"] == 32


def test_csv_data_trains_and_samples(tmp_path):
    g = torch.Generator().manual_seed(0)
    table = torch.randn(150, 3, generator=g) * torch.tensor([1.0, 5.0, 0.1]) + 10
    np.savetxt(tmp_path / "d.csv", table.numpy(), delimiter=",", header="a,b,c", comments="")
    invoke("train", "--data", tmp_path / "d.csv", "--out", tmp_path / "r", *TINY)
    invoke("sample", tmp_path / "r", "-n", "20", "--out", tmp_path / "s.csv", "--no-progress")
    s = np.loadtxt(tmp_path / "s.csv", delimiter=",", skiprows=1)
    assert s.shape == (20, 3) and np.isfinite(s).all()
    invoke("evaluate", tmp_path / "r", "-n", "20", "--no-progress")


def test_image_folder_trains_a_tiny_unet(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "r"
    invoke("train", "--data", folder, "--out", out, "--steps", "4", *TINY_UNET)
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["model"]["name"] == "unet" and config["data"]["levels"] == 255
    invoke("sample", out, "-n", "4", "--out", tmp_path / "s.png", "--steps", "3", "--no-progress")
    assert is_png(tmp_path / "s.png")
    invoke("evaluate", out, "-n", "4", "--rtol", "1e-2", "--no-progress")
    saved = json.loads((out / "evaluation.json").read_text())
    assert saved["nll_divergence"] == "hutchinson" and math.isfinite(saved["bits_per_dim"])
    assert "dequantization" in saved["nll_convention"]
    assert {p.rsplit("/", 1)[-1] for p in invoke("plot", out, "-n", "4").stdout.split()} == {
        "samples.png",
        "data.png",
        "loss.png",
    }


def test_digits_train_and_sample_in_pixel_units(tmp_path):
    out = tmp_path / "d"
    invoke("train", "--data", "digits", "--n", "40", "--out", out, "--steps", "2", *TINY_UNET)
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["data"]["levels"] == 16 and config["standardizer"]["kind"] == "image"
    assert config["sampling"]["steps"] == 18 and config["data"]["shape"] == [1, 8, 8]
    invoke("sample", out, "-n", "3", "--steps", "2", "--out", tmp_path / "s.npy", "--no-progress")
    assert np.load(tmp_path / "s.npy").shape == (3, 1, 8, 8)


def test_unconditional_objectives_sample_by_langevin_and_have_no_likelihood(tmp_path):
    out = tmp_path / "dsm"
    invoke("train", "--data", "moons", "--n", "100", "--objective", "dsm", "--out", out, *TINY)
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["process"] is None and config["sampling"]["sampler"] == "annealed_langevin"
    invoke("sample", out, "-n", "10", "--steps", "20", "--out", tmp_path / "s.npy", "--no-progress")
    assert np.isfinite(np.load(tmp_path / "s.npy")).all()
    assert_one_line_error(invoke("likelihood", out, ok=False), "time-conditional")
    assert_one_line_error(
        invoke(
            "sample", out, "-n", "5", "--sampler", "heun", "--out", tmp_path / "h.npy", ok=False
        ),
        "annealed_langevin",
    )
    # An energy network trained by sliced score matching.
    invoke(
        "train",
        "--data",
        "moons",
        "--n",
        "100",
        "--objective",
        "ssm",
        "--model",
        "energy-mlp",
        "--out",
        tmp_path / "e",
        *TINY,
    )
    invoke(
        "sample",
        tmp_path / "e",
        "-n",
        "10",
        "--steps",
        "5",
        "--out",
        tmp_path / "e.npy",
        "--no-progress",
    )
    assert np.isfinite(np.load(tmp_path / "e.npy")).all()


# ------------------------------------------------------------------------------------------------
# User mistakes
# ------------------------------------------------------------------------------------------------
def test_user_mistakes_end_with_one_clear_line(toy_run, tmp_path):
    nan_csv = tmp_path / "nan.csv"
    nan_csv.write_text("1,2\n3,nan\n" + "".join(f"{i},{i % 7}\n" for i in range(30)))
    inf_csv = tmp_path / "inf.csv"
    inf_csv.write_text("a,b\n" + "".join(f"{i},{2 * i}\n" for i in range(40)) + "3,inf\n")
    cases = [
        (["train", "--data", tmp_path / "missing.csv", "--out", tmp_path / "a"], "not found"),
        (["train", "--data", "no-such-set", "--out", tmp_path / "a"], "unknown data set"),
        # "nan" is a missing-value marker: a gap, which trains with the masked objective (issue
        # #21), so an objective without it is refused with the way on
        (
            ["train", "--data", nan_csv, "--out", tmp_path / "a", "--objective", "ssm"],
            "a table with gaps trains a mask-conditional network",
        ),
        (
            ["train", "--data", nan_csv, "--out", tmp_path / "a", "--objective", "ssm"],
            "or pass --drop-missing",
        ),
        # an infinite number is named by its row (the file's line) and column (issue #20)
        (["train", "--data", inf_csv, "--out", tmp_path / "a"], "row 42, column 2 ('b')"),
        (
            [
                "train",
                "--data",
                "moons",
                "--objective",
                "ncsn",
                "--process",
                "vp",
                "--out",
                tmp_path / "a",
            ],
            "ncsn",
        ),
        (
            [
                "train",
                "--data",
                "moons",
                "--objective",
                "dsm",
                "--process",
                "ve",
                "--out",
                tmp_path / "a",
            ],
            "process",
        ),
        (
            ["train", "--data", "moons", "--model", "energy-mlp", "--out", tmp_path / "a"],
            "energy-mlp",
        ),
        (["train", "--data", "moons", "--objective", "bogus", "--out", tmp_path / "a"], "bogus"),
        (["train", "--data", "moons", "--out", toy_run], "--resume"),
        (["train", "--data", "moons", "--out", toy_run / "checkpoints"], "not empty"),
        (["train", "--resume", "--out", tmp_path / "b"], "no run to resume"),
        (["train", "--data", "moons", "--out", tmp_path / "a", "--steps", "0"], "steps"),
        (["sample", tmp_path, "-n", "5", "--out", tmp_path / "s.npy"], "config.yaml"),
        (["sample", toy_run, "-n", "0", "--out", tmp_path / "s.npy"], "-n"),
        (["sample", toy_run, "-n", "-3", "--out", tmp_path / "s.npy"], "-n"),
        (["sample", toy_run, "-n", "5", "--out", tmp_path / "s.txt"], "unsupported"),
        (["sample", toy_run, "-n", "5", "--out", tmp_path / "s.npy", "--steps", "0"], "steps"),
        (["evaluate", tmp_path / "nowhere"], "not found"),
        (["evaluate", toy_run, "-n", "0"], "-n"),
        (["likelihood", toy_run, tmp_path / "missing.csv"], "not found"),
        (["likelihood", toy_run, "--t-min", "1e-9"], "t_min"),
        (["evaluate", toy_run, "--t-min", "1e9"], "t_min"),
    ]
    for args, fragment in cases:
        assert_one_line_error(invoke(*args, ok=False), fragment)
    assert not (tmp_path / "a").exists()  # nothing half-made by a refused command


def test_installed_script_reports_errors_in_one_line(tmp_path):
    script = Path(sys.executable).with_name("scorematch")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "scorematch.cli"]
    missing = tmp_path / "none"
    proc = subprocess.run(
        [*command, "sample", str(missing), "-n", "3", "--out", str(tmp_path / "s.npy")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.splitlines() == [f"Error: run directory not found: {missing}"]


# ------------------------------------------------------------------------------------------------
# The pipeline's own conversions, against an exact oracle
# ------------------------------------------------------------------------------------------------
def _oracle_run():
    """A Run whose score is the exact noised score of a known mixture in standardised space."""
    means, covs, weights = toy_mixture_params()
    mix_x = GaussianMixture(means, covs, weights)
    x = mix_x.sample(4000, generator=torch.Generator().manual_seed(1))
    std = Standardizer.fit(x)  # z = (x − m)/s: the law of z is again a Gaussian mixture
    m, s = std.mean, std.std
    mix_z = GaussianMixture((means - m) / s, covs / (s[:, None] * s[None, :]), weights)
    process = VP()
    config = {
        "objective": {"name": "diffusion", "weighting": "sigma2"},
        "data": {"kind": "vector", "shape": [2], "levels": None},
        "sampling": {"sampler": "heun", "steps": 40},
    }
    return Run(config, mix_z.score_model(process), process, std), mix_x, x


def test_log_likelihood_in_data_units_is_exact():
    run, _, x = _oracle_run()
    pts = x[:64]
    lp, nfe = run.log_likelihood(pts)
    z = run.standardizer.transform(pts)
    # log p_X(x) = log p_Z(z) + log|det ∂z/∂x|, with the exact noised density at t_min.
    exact = run.model.log_prob(z, run.process.t_min) - torch.log(run.standardizer.std).sum()
    torch.testing.assert_close(lp, exact.double(), rtol=0, atol=2e-3)  # ODE tolerance 1e-5
    assert nfe > 0
    # A larger t_min scores the more blurred density p_{t_min}, again exactly.
    lp, _ = run.log_likelihood(pts, t_min=0.1)
    exact = run.model.log_prob(z, 0.1) - torch.log(run.standardizer.std).sum()
    torch.testing.assert_close(lp, exact.double(), rtol=0, atol=2e-3)
    for bad in (0.0, run.process.t_max, "0.1"):
        with pytest.raises(ValueError, match="t_min must lie in"):
            run.log_likelihood(pts, t_min=bad)


class _Flat(torch.nn.Module):
    """A vector score model read on images of shape (1, 2, 2): flatten, score, reshape."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.inner = model

    def forward(self, x, t):
        return self.inner(x.flatten(1), t).reshape(x.shape)

    def log_prob(self, x, t):
        return self.inner.log_prob(x.flatten(1), t)


def test_log_likelihood_of_quantised_images_is_exact():
    """Grey levels k ∈ {0 … L} (pixels x = k/L): the run dequantises to v = k + u and scores
    y = T((v − ½)/L) = 2(k + u − ½)/L − 1, so that bin k is centred on the training value T(k/L);
    log P(k) ≥ log p_Z(y) + D·log(2/L).  With the exact noised density of a known mixture in
    z-space this holds exactly (up to the ODE tolerance) for the u the run draws from its seed."""
    levels, shape = 16, (1, 2, 2)
    g = torch.Generator().manual_seed(0)
    # Centred components: VP's prior N(0, I) then matches p_{t_max} to second order in α_{t_max}.
    means = torch.zeros(2, 4, dtype=torch.float64)
    covs = torch.stack([s * torch.eye(4, dtype=torch.float64) for s in (0.05, 0.3)])
    mix_z = GaussianMixture(means, covs, torch.tensor([0.3, 0.7], dtype=torch.float64))
    process = VP()
    model = _Flat(mix_z.score_model(process))
    config = {
        "objective": {"name": "diffusion", "weighting": "sigma2"},
        "data": {"kind": "image", "shape": list(shape), "levels": levels},
        "sampling": {"sampler": "heun", "steps": 18},
    }
    run = Run(config, model, process, Standardizer("image", shape))
    k = torch.randint(0, levels + 1, (32, *shape), generator=g).double()
    lp, _ = run.log_likelihood(k / levels, seed=3)
    # The dequantisation noise is the first draw from the run's generator (seeded with `seed`).
    u = torch.rand(k.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    y = 2 * (k + u - 0.5) / levels - 1
    exact = model.log_prob(y, process.t_min) + 4 * math.log(2 / levels)
    torch.testing.assert_close(lp, exact, rtol=0, atol=1e-3)  # a bin off by half: 0.46 nats


def test_samples_are_returned_in_data_units():
    run, mix_x, _ = _oracle_run()
    x = run.sample(4000, seed=0).x.double()
    mean, cov = mix_x.mean(), mix_x.covariance()
    # Exact score, 40 Heun steps: the moments match up to Monte Carlo error (≈ 3 standard errors).
    se = (torch.diagonal(cov) / x.shape[0]).sqrt()
    assert ((x.mean(0) - mean).abs() < 4 * se).all(), (x.mean(0), mean)
    torch.testing.assert_close(torch.cov(x.T), cov, rtol=0.08, atol=0.08)


def test_demo_quick_runs_end_to_end_and_replaces_an_old_run(tmp_path):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "config.yaml").write_text("old: run\n")  # an earlier run: the demo may replace it
    (out / "stale.txt").write_text("x")
    text = invoke("demo", "--quick", "--steps", "20", "--out", out, "--no-progress").output
    assert "held-out NLL" in text and "GaussianMixture" in text and "paired std. error" in text
    assert not (out / "stale.txt").exists()
    saved = json.loads((out / "evaluation.json").read_text())
    assert math.isfinite(saved["nll"]) and saved["nll_points"] == 400  # the whole held-out split
    assert all((out / "plots" / f).is_file() for f in ("samples.png", "trajectory.gif"))
    # A folder that is not a run is never deleted.
    other = tmp_path / "mine"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    assert_one_line_error(
        invoke("demo", "--quick", "--out", other, ok=False), "not a scorematch run"
    )
    assert (other / "keep.txt").exists()
