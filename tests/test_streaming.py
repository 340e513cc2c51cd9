"""Issue #15, items 4–6: 16-bit images read at their depth (or refused), memory and time flat in
the row count (chunked, streamed sampling; bounded MMD/energy subsample; one likelihood bar), and
no silent NaN from the likelihood."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from _shared import write_png
from click.testing import CliRunner
from PIL import Image

from scorematch.cli import cli
from scorematch.data import image_folder_levels, load_image_folder
from scorematch.likelihood import log_likelihood
from scorematch.processes import VP
from scorematch.runs import load_run, streaming
from scorematch.runs.streaming import sample_to_file, subsample_rows

TINY = ["--width", "16", "--depth", "1", "--batch-size", "64", "--sample-every", "0"]


def invoke(*args, ok: bool = True):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


# ------------------------------------------------------------------------------------------------
# 4. Images at their bit depth
# ------------------------------------------------------------------------------------------------
def test_16_bit_greyscale_images_are_read_at_their_depth(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 65536, (6, 8, 8), dtype=np.uint16)
    pixels[0, 0, 0], pixels[0, 0, 1] = 0, 65535
    for i, p in enumerate(pixels):
        Image.fromarray(p).save(tmp_path / f"{i}.png")  # Pillow writes mode I;16 as 16-bit grey
    x = load_image_folder(tmp_path)
    assert x.shape == (6, 1, 8, 8) and image_folder_levels(tmp_path) == 65535
    torch.testing.assert_close(x[:, 0], torch.from_numpy(pixels.astype(np.float32) / 65535.0))
    assert float((x == 1.0).float().mean()) < 0.01  # the bug: convert("L") made 99.5 % of them 1
    # With an 8-bit image beside them: its k/255 lie on the 16-bit grid; one colour image → RGB.
    Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(tmp_path / "8bit.png")
    assert image_folder_levels(tmp_path) == 65535 and load_image_folder(tmp_path).shape[1] == 1
    assert load_image_folder(tmp_path, mode="RGB").shape == (7, 3, 8, 8)
    resized = load_image_folder(tmp_path, size=4)
    assert resized.shape == (7, 1, 4, 4) and torch.equal((resized * 65535).round(), resized * 65535)


def test_a_run_on_16_bit_images_dequantises_on_65536_levels(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(10):
        Image.fromarray(rng.integers(0, 65536, (8, 8), dtype=np.uint16)).save(folder / f"{i}.png")
    out = tmp_path / "r"
    args = ["--channels", "8", "--batch-size", "8", "--sample-every", "0", "--no-progress"]
    invoke("train", "--data", folder, "--out", out, "--steps", "2", *args)
    assert yaml.safe_load((out / "config.yaml").read_text())["data"]["levels"] == 65535
    run = load_run(out)
    lp, _ = run.log_likelihood(run.data.test, divergence="hutchinson", rtol=1e-2)
    assert lp.shape == (2,) and torch.isfinite(lp).all()


@pytest.mark.parametrize(
    ("bits", "colour", "shape", "fragment"),
    [
        (16, 2, (4, 4, 3), "16-bit colour PNG"),
        (16, 6, (4, 4, 4), "16-bit colour PNG"),
        (16, 4, (4, 4, 2), "16-bit colour PNG"),  # grey + alpha
    ],
)
def test_16_bit_colour_images_are_refused_in_one_line(tmp_path, bits, colour, shape, fragment):
    write_png(tmp_path / "a.png", np.full(shape, 40000), bits, colour)
    with pytest.raises(ValueError, match=fragment) as err:
        load_image_folder(tmp_path)
    assert str(tmp_path / "a.png") in str(err.value) and "\n" not in str(err.value)
    result = invoke("train", "--data", tmp_path, "--out", tmp_path / "r", ok=False)
    assert result.output.startswith("Error: ") and fragment in result.output


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_low_bit_depth_greyscale_images_load_on_the_8_bit_grid(tmp_path, bits):
    samples = np.random.default_rng(bits).integers(0, 2**bits, (5, 7))
    write_png(tmp_path / "a.png", samples, bits, 0)
    x = load_image_folder(tmp_path)
    assert x.shape == (1, 1, 5, 7) and image_folder_levels(tmp_path) == 255
    expected = samples / (2**bits - 1)  # Pillow scales 1/2/4-bit values to 0..255
    np.testing.assert_allclose(x[0, 0].numpy(), expected, atol=1 / 255)


# ------------------------------------------------------------------------------------------------
# 5. Memory and time flat in the row count
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy") / "run"
    invoke("train", "--data", "moons", "--n", "400", "--out", out, "--steps", "5", *TINY)
    return load_run(out)


def test_samples_are_drawn_in_chunks_and_streamed_to_npy_and_csv(toy, tmp_path):
    drawn = sample_to_file(toy, 250, tmp_path / "s.npy", chunk=100, steps=4, seed=3)
    x = np.load(tmp_path / "s.npy")
    assert x.shape == (250, 2) and x.dtype == np.float32 and np.isfinite(x).all()
    assert drawn.n == 250 and drawn.nfe == 3 * toy.sample(1, steps=4).nfe
    # Chunk 0 is exactly an unchunked draw with the same seed; the others are new draws.
    np.testing.assert_array_equal(x[:100], toy.sample(100, steps=4, seed=3).x.numpy())
    assert not np.array_equal(x[100:200], x[:100])
    sample_to_file(toy, 250, tmp_path / "s.csv", chunk=100, steps=4, seed=3)
    lines = (tmp_path / "s.csv").read_text().splitlines()
    assert lines[0] == "x1,x2" and len(lines) == 251
    np.testing.assert_allclose(np.loadtxt(tmp_path / "s.csv", delimiter=",", skiprows=1), x)
    kept = sample_to_file(toy, 250, tmp_path / "s.png", chunk=100, steps=4, seed=3, keep=True)
    assert torch.equal(kept.x, torch.from_numpy(x)) and not (tmp_path / "s.png").exists()
    # Small requests are one chunk: `sample` writes what it wrote before chunking existed.
    invoke("sample", toy.run_dir, "-n", "50", "--steps", "4", "--out", tmp_path / "c.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "c.npy"), toy.sample(50, steps=4).x.numpy())


def test_evaluate_subsamples_the_held_out_split_for_mmd_and_energy(toy, monkeypatch):
    ref = toy.data.test
    assert torch.equal(subsample_rows(ref, 10**6, torch.Generator()), ref)
    part = subsample_rows(ref, 30, torch.Generator().manual_seed(0))
    assert part.shape == (30, 2) and all((row == ref).all(1).any() for row in part)
    monkeypatch.setattr(streaming, "MAX_DISTANCE_ROWS", 30)
    from scorematch.runs import run as run_module

    monkeypatch.setattr(run_module, "MAX_DISTANCE_ROWS", 30)
    result = toy.evaluate(40, nll=False)
    assert result.samples.distance_rows == 30 and result.n_test == ref.shape[0] == 80
    text = invoke("evaluate", toy.run_dir, "-n", "40", "--no-nll", "--no-progress").output
    assert "random 30 of 80" in text


def test_the_likelihood_shows_one_bar_for_the_whole_job(toy, monkeypatch):
    from scorematch.runs import run as run_module

    bars = []

    class Bar:
        def __init__(self, *args, disable=False, **kwargs):
            bars.append(not disable)
            self.n = 0

        def update(self, k):
            self.n += k

        def close(self):
            pass

    monkeypatch.setattr(run_module, "tqdm", Bar)
    lp, _ = toy.log_likelihood(toy.data.test[:30], batch_size=10, rtol=1e-3, progress=True)
    assert lp.shape == (30,) and bars == [True]  # one bar, not one per batch of 10


# ------------------------------------------------------------------------------------------------
# 6. No silent NaN
# ------------------------------------------------------------------------------------------------
def test_a_non_finite_log_likelihood_is_an_error_naming_the_computation():
    def broken(x, t):
        return torch.where(t[:, None] < 0.5, -x, torch.full_like(x, float("nan")))

    with pytest.raises(ValueError, match=r"log_likelihood: 4 of 4 log-densities are NaN"):
        log_likelihood(
            broken, VP(), torch.zeros(4, 2), rtol=1e-2, solver="euler", options={"step_size": 0.1}
        )
