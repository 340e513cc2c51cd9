"""Data: built-in sets, digits, file and image-folder loaders, standardisation, split."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from scorematch.data import (
    TOY_DATASETS,
    TOY_MIXTURES,
    Standardizer,
    list_datasets,
    load_dataset,
    load_digits_images,
    load_image_folder,
    load_table,
    toy_dataset,
    toy_mixture,
    toy_mixture_params,
    train_test_split,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- toy sets ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", TOY_DATASETS)
def test_toy_shape_determinism_and_scale(name):
    x = toy_dataset(name, 2000, generator=_gen(0))
    assert x.shape == (2000, 2) and x.dtype == torch.float32
    assert torch.isfinite(x).all()
    assert torch.equal(x, toy_dataset(name, 2000, generator=_gen(0)))
    assert not torch.equal(x, toy_dataset(name, 2000, generator=_gen(1)))
    # roughly unit scale: inside [-6, 6], spread between 0.5 and 3 per axis, centred near 0
    assert x.abs().max() < 6
    std = x.std(0)
    assert (std > 0.5).all() and (std < 3).all()
    assert x.mean(0).abs().max() < 1.0
    assert toy_dataset(name, 1, generator=_gen(0)).shape == (1, 2)


def test_toy_errors_and_listing():
    with pytest.raises(ValueError, match=r"unknown toy data set 'spiral'.*moons"):
        toy_dataset("spiral", 10)
    with pytest.raises(ValueError, match="positive integer"):
        toy_dataset("moons", 0)
    listing = list_datasets()
    assert set(listing) == {*TOY_DATASETS, "digits"}
    assert all(isinstance(v, str) and v for v in listing.values())
    assert toy_dataset("MOONS", 5, generator=_gen(0)).shape == (5, 2)


def test_checkerboard_support():
    """Every checkerboard point lies on a 'black' 2×2 square: floor(x/2) + floor(y/2) is even."""
    x = toy_dataset("checkerboard", 5000, generator=_gen(0))
    cells = torch.floor(x / 2).sum(1)
    assert (cells.remainder(2) == 0).all()
    assert x.min() >= -4 and x.max() <= 4


def test_mixture_matches_its_parameters():
    """Samples of "mixture" follow GaussianMixture(*toy_mixture_params()).

    Under the mixture, E[r_k(x)] = w_k for the responsibilities r_k, and the sample mean/covariance
    estimate the exact mixture moments; with n = 40000 the standard errors are below 0.003
    (weights) and 0.015 (moments), so 5σ tolerances are 0.015 and 0.08.
    """
    from scorematch.distributions import GaussianMixture

    means, covs, weights = toy_mixture_params()
    assert means.shape == (5, 2) and covs.shape == (5, 2, 2) and weights.shape == (5,)
    assert means.dtype == covs.dtype == weights.dtype == torch.float64
    torch.testing.assert_close(weights.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert (torch.linalg.eigvalsh(covs) > 0).all()
    mix = GaussianMixture(means, covs, weights)
    x = toy_dataset("mixture", 40_000, generator=_gen(0)).double()
    resp = mix.responsibilities(x).mean(0)
    assert (resp - weights).abs().max() < 0.015
    mean = weights @ means
    second = torch.einsum("k,kij->ij", weights, covs + means[:, :, None] * means[:, None, :])
    assert (x.mean(0) - mean).abs().max() < 0.08
    assert (torch.cov(x.T) - (second - mean[:, None] * mean[None, :])).abs().max() < 0.08


@pytest.mark.parametrize("name", TOY_MIXTURES)
def test_toy_mixture_is_the_law_the_set_samples(name):
    """toy_mixture(name) is the exact law of toy_dataset(name): the mean responsibilities of
    20 000 samples match the weights within 5 standard errors (√(w(1 − w)/n) ≤ 0.0036), their
    moments the mixture's, and each mode's Bures error is that of exact samples (4 noise sds)."""
    from scorematch.metrics import mixture_error

    mix = toy_mixture(name)
    assert mix.dtype == torch.float64 and mix.dim == 2
    x = toy_dataset(name, 20_000, generator=_gen(1)).double()
    resp = mix.responsibilities(x).mean(0)
    assert (resp - mix.weights).abs().max() < 5 * 0.0036
    assert (x.mean(0) - mix.mean()).abs().max() < 0.08
    assert (torch.cov(x.T) - mix.covariance()).abs().max() < 0.1
    err = mixture_error(x, mix, reference_draws=4)
    assert abs(err["bures_excess"]) < 4 * err["bures_noise"]
    assert set(TOY_MIXTURES) == {"mixture", "8gaussians"}  # the built-in sets with a known density
    means, covs, weights = toy_mixture_params()
    exact = toy_mixture("mixture")
    for got, want in ((exact.means, means), (exact.covs, covs), (exact.weights, weights)):
        torch.testing.assert_close(got, want)
    with pytest.raises(
        ValueError, match="known for the built-in mixture sets: mixture, 8gaussians"
    ):
        toy_mixture("moons")


# -- digits ------------------------------------------------------------------------------------
def test_digits():
    x, y = load_digits_images(return_labels=True)
    assert x.shape == (1797, 1, 8, 8) and x.dtype == torch.float32
    assert x.min() == 0 and x.max() == 1
    # pixels are counts k/16
    torch.testing.assert_close(x * 16, (x * 16).round(), rtol=0, atol=1e-5)
    assert y.shape == (1797,) and set(y.tolist()) == set(range(10))
    assert torch.equal(load_dataset("digits"), x)
    sub = load_dataset("digits", n=100, seed=1)
    assert sub.shape == (100, 1, 8, 8)
    assert torch.equal(sub, load_dataset("digits", n=100, seed=1))
    with pytest.raises(ValueError, match="more than the 1797"):
        load_dataset("digits", n=5000)


# -- tables ------------------------------------------------------------------------------------
def test_csv_with_and_without_header(tmp_path):
    (tmp_path / "h.csv").write_text("x, y\n1, 2\n3.5,-4e-1\n\n5,6\n")
    x = load_table(tmp_path / "h.csv")
    assert x.dtype == torch.float32
    torch.testing.assert_close(x, torch.tensor([[1, 2], [3.5, -0.4], [5, 6]]))
    (tmp_path / "n.csv").write_text("1,2,3\n4,5,6\n")
    torch.testing.assert_close(
        load_table(tmp_path / "n.csv"), torch.tensor([[1.0, 2, 3], [4, 5, 6]])
    )
    (tmp_path / "t.tsv").write_text("a\tb\n1\t2\n")
    torch.testing.assert_close(load_table(tmp_path / "t.tsv"), torch.tensor([[1.0, 2.0]]))
    np.savetxt(tmp_path / "s.txt", np.array([[1.5, -2.0], [3.0, 4.25]]))  # space-separated
    torch.testing.assert_close(
        load_table(tmp_path / "s.txt"), torch.tensor([[1.5, -2.0], [3, 4.25]])
    )
    (tmp_path / "one.csv").write_text("v\n1\n2\n3\n")
    assert load_table(tmp_path / "one.csv").shape == (3, 1)


def test_csv_errors(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("x,y\n1,2\n3,abc\n")
    with pytest.raises(ValueError, match=r"bad\.csv: row 3, column 2 \('y'\).*'abc'"):
        load_table(p)
    p.write_text("1,2\n3,\n")
    with pytest.raises(ValueError, match=r"row 2, column 2.*empty cell"):
        load_table(p)
    p.write_text("1,2\n3,4,5\n")
    with pytest.raises(ValueError, match="row 2 has 3 columns, expected 2"):
        load_table(p)
    p.write_text("1,2\nnan,4\ninf,1\n")
    with pytest.raises(ValueError, match=r"bad\.csv: 2 value\(s\) are NaN or infinite"):
        load_table(p)
    p.write_text("")
    with pytest.raises(ValueError, match=r"bad\.csv: the file is empty"):
        load_table(p)
    p.write_text("x,y\n")
    with pytest.raises(ValueError, match="no data rows"):
        load_table(p)
    p.write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(ValueError, match=r"bad\.csv: not a UTF-8"):
        load_table(p)
    with pytest.raises(FileNotFoundError, match=r"missing\.csv"):
        load_table(tmp_path / "missing.csv")
    (tmp_path / "data.json").write_text("{}")
    with pytest.raises(ValueError, match=r"unsupported file type '\.json'"):
        load_table(tmp_path / "data.json")


def test_npy_and_npz(tmp_path):
    a = np.arange(12, dtype=np.float64).reshape(6, 2)
    np.save(tmp_path / "a.npy", a)
    torch.testing.assert_close(load_table(tmp_path / "a.npy"), torch.tensor(a, dtype=torch.float32))
    np.save(tmp_path / "v.npy", np.arange(5))
    assert load_table(tmp_path / "v.npy").shape == (5, 1)
    np.save(tmp_path / "img3.npy", np.zeros((4, 8, 8), dtype=np.float32))
    assert load_table(tmp_path / "img3.npy").shape == (4, 1, 8, 8)
    u8 = np.full((3, 2, 4, 4), 255, dtype=np.uint8)
    np.save(tmp_path / "u8.npy", u8)
    loaded = load_table(tmp_path / "u8.npy")
    assert loaded.shape == (3, 2, 4, 4) and float(loaded.max()) == 1.0
    np.savez(tmp_path / "one.npz", whatever=a)
    torch.testing.assert_close(
        load_table(tmp_path / "one.npz"), torch.tensor(a, dtype=torch.float32)
    )
    np.savez(tmp_path / "keyed.npz", x=a, labels=np.arange(6))
    assert load_table(tmp_path / "keyed.npz").shape == (6, 2)
    np.savez(tmp_path / "pos.npz", a, np.arange(3))  # arr_0, arr_1
    assert load_table(tmp_path / "pos.npz").shape == (6, 2)


def test_npy_npz_errors(tmp_path):
    np.savez(tmp_path / "amb.npz", foo=np.zeros((2, 2)), bar=np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"amb\.npz: holds several arrays \(foo, bar\)"):
        load_table(tmp_path / "amb.npz")
    bad = np.zeros((3, 2))
    bad[0, 0], bad[2, 1] = np.nan, np.inf
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(ValueError, match=r"nan\.npy: 2 value\(s\) are NaN"):
        load_table(tmp_path / "nan.npy")
    (tmp_path / "broken.npy").write_bytes(b"\x93NUMPY garbage" * 3)
    with pytest.raises(ValueError, match=r"broken\.npy: could not read"):
        load_table(tmp_path / "broken.npy")
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ValueError, match=r"broken\.npz: could not read"):
        load_table(tmp_path / "broken.npz")
    np.save(tmp_path / "str.npy", np.array(["a", "b"]))
    with pytest.raises(ValueError, match="non-numeric dtype"):
        load_table(tmp_path / "str.npy")
    np.save(tmp_path / "empty.npy", np.zeros((0, 3)))
    with pytest.raises(ValueError, match="empty"):
        load_table(tmp_path / "empty.npy")
    np.save(tmp_path / "scalar.npy", np.float64(3.0))
    with pytest.raises(ValueError, match="single number"):
        load_table(tmp_path / "scalar.npy")


# -- image folders -----------------------------------------------------------------------------
def _write_images(folder, specs):
    folder.mkdir(parents=True, exist_ok=True)
    for name, mode, size, value in specs:
        Image.new(mode, size, value).save(folder / name)


def test_image_folder_grey_and_rgb(tmp_path):
    d = tmp_path / "grey"
    _write_images(d, [("b.png", "L", (6, 4), 255), ("a.png", "L", (6, 4), 51)])
    _write_images(d / "sub", [("c.png", "L", (6, 4), 0)])
    (d / "notes.txt").write_text("ignored")
    x = load_image_folder(d)
    assert x.shape == (3, 1, 4, 6) and x.dtype == torch.float32
    # sorted by relative path: a.png, b.png, sub/c.png; PNG is lossless so values are exact
    torch.testing.assert_close(x[:, 0, 0, 0], torch.tensor([0.2, 1.0, 0.0]))
    rgb = load_image_folder(d, mode="RGB")
    assert rgb.shape == (3, 3, 4, 6)
    torch.testing.assert_close(rgb[:, 0], x[:, 0])

    c = tmp_path / "colour"
    _write_images(c, [("a.png", "RGB", (8, 8), (255, 0, 0)), ("b.png", "L", (8, 8), 128)])
    y = load_image_folder(c)  # one colour image → everything RGB
    assert y.shape == (2, 3, 8, 8)
    torch.testing.assert_close(y[0, :, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.equal(load_dataset(str(c)), y)


def test_image_folder_mixed_sizes_and_jpeg(tmp_path):
    d = tmp_path / "mixed"
    _write_images(
        d,
        [("a.png", "RGB", (10, 6), (0, 128, 255)), ("b.jpg", "RGB", (5, 5), (200, 200, 200))],
    )
    with pytest.raises(ValueError, match=r"different sizes.*image size"):
        load_image_folder(d)
    x = load_image_folder(d, size=4)
    assert x.shape == (2, 3, 4, 4)
    # constant images stay constant after crop + resize (JPEG within a few levels of 200/255)
    torch.testing.assert_close(
        x[0, :, 1, 1], torch.tensor([0.0, 128 / 255, 1.0]), atol=2e-2, rtol=0
    )
    assert (x[1] - 200 / 255).abs().max() < 0.03
    assert load_dataset(str(d), image_size=4, mode="L").shape == (2, 1, 4, 4)


def test_image_folder_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no images found"):
        load_image_folder(empty)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_image_folder(tmp_path / "nowhere")
    d = tmp_path / "bad"
    _write_images(d, [("ok.png", "L", (4, 4), 0)])
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    assert load_image_folder(d).shape == (1, 1, 4, 4)  # skipped, said (tests/test_image_folders.py)
    (d / "ok.png").unlink()
    with pytest.raises(ValueError, match=r"cannot read image .*broken\.png"):
        load_image_folder(d)
    with pytest.raises(ValueError, match="mode"):
        load_image_folder(d, mode="CMYK")


# -- load_dataset ------------------------------------------------------------------------------
def test_load_dataset_dispatch(tmp_path):
    x = load_dataset("moons", n=300, seed=3)
    assert torch.equal(x, toy_dataset("moons", 300, generator=_gen(3)))
    assert load_dataset("8gaussians").shape == (10_000, 2)
    np.save(tmp_path / "d.npy", np.random.default_rng(0).normal(size=(50, 3)))
    assert load_dataset(str(tmp_path / "d.npy")).shape == (50, 3)
    sub = load_dataset(tmp_path / "d.npy", n=10, seed=0)
    assert sub.shape == (10, 3)
    with pytest.raises(ValueError, match=r"unknown data set 'mnist'.*digits"):
        load_dataset("mnist")
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        load_dataset(str(tmp_path / "nope.csv"))
    with pytest.raises(ValueError, match="image folders only"):
        load_dataset("moons", image_size=8)


# -- Standardizer ------------------------------------------------------------------------------
def test_standardizer_vector_roundtrip_and_log_det():
    g = _gen(0)
    x = torch.randn(500, 3, generator=g, dtype=torch.float64) * torch.tensor([2.0, 0.1, 5.0])
    x = x + torch.tensor([1.0, -3.0, 0.0])
    x[:, 2] = 7.0  # constant column → std 1
    s = Standardizer.fit(x)
    z = s.transform(x)
    torch.testing.assert_close(z[:, :2].mean(0), torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(z[:, :2].std(0, correction=0), torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(z[:, 2], torch.zeros(500, dtype=torch.float64))
    torch.testing.assert_close(s.inverse(z), x)
    # log|det ∂T/∂x| against the autograd Jacobian of one sample
    jac = torch.autograd.functional.jacobian(lambda v: s.transform(v[None])[0], x[0])
    assert s.log_abs_det() == pytest.approx(float(torch.linalg.slogdet(jac).logabsdet), abs=1e-12)
    # change of variables: a Gaussian fitted in z-space gives the right density in x-space
    normal = torch.distributions.Normal(0.0, 1.0)
    xs = x[:5, :2]
    s2 = Standardizer.fit(x[:, :2])
    log_px = normal.log_prob(s2.transform(xs)).sum(1) + s2.log_abs_det()
    direct = torch.distributions.Normal(s2.mean, s2.std).log_prob(xs).sum(1)
    torch.testing.assert_close(log_px, direct)


def test_standardizer_image_and_json_roundtrip():
    import json

    x = torch.rand(4, 1, 3, 5, generator=_gen(0), dtype=torch.float64)
    s = Standardizer.fit(x)
    assert s.kind == "image"
    z = s.transform(x)
    assert z.min() >= -1 and z.max() <= 1
    torch.testing.assert_close(s.inverse(z), x)
    jac = torch.autograd.functional.jacobian(lambda v: s.transform(v[None])[0], x[0])
    logdet = float(torch.linalg.slogdet(jac.reshape(15, 15)).logabsdet)
    assert s.log_abs_det() == pytest.approx(logdet, abs=1e-12)
    assert s.log_abs_det((3, 8, 8)) == pytest.approx(192 * math.log(2))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Standardizer.fit(x * 16)
    for fitted in (s, Standardizer.fit(torch.randn(20, 2)), Standardizer.fit(x, "identity")):
        restored = Standardizer.from_dict(json.loads(json.dumps(fitted.to_dict())))
        assert restored.kind == fitted.kind and restored.event_shape == fitted.event_shape
        sample = torch.rand(3, *fitted.event_shape, dtype=torch.float64)
        torch.testing.assert_close(restored.transform(sample), fitted.transform(sample))
        if fitted.kind == "vector":  # exactly, in float64: a saved run reloads the same map
            assert torch.equal(restored.mean, fitted.mean) and torch.equal(restored.std, fitted.std)
    with pytest.raises(ValueError, match="shape"):
        Standardizer.fit(torch.randn(20, 2)).transform(torch.randn(3, 3))
    vec = Standardizer.fit(torch.randn(20, 2))
    assert vec.transform(torch.randn(2, 2, dtype=torch.float64)).dtype == torch.float64


def test_standardizer_affine_is_its_map():
    """``affine()`` gives T as a·x + b for every kind: exactly the transform, and the image map is
    the fixed z = 2x − 1 whatever the data."""
    vec_x = torch.randn(50, 3, generator=_gen(1), dtype=torch.float64) * 3 + 2
    img_x = torch.rand(6, 1, 2, 3, generator=_gen(2), dtype=torch.float64)
    for std, x in (
        (Standardizer.fit(vec_x), vec_x),
        (Standardizer.fit(img_x), img_x),
        (Standardizer.fit(vec_x, "identity"), vec_x),
    ):
        a, b = std.affine()
        torch.testing.assert_close(a * x + b, std.transform(x), rtol=0, atol=1e-12)
        assert std.log_abs_det() == pytest.approx(float(a.abs().log().expand(x.shape[1:]).sum()))
    a, b = Standardizer.fit(img_x).affine()
    assert (float(a), float(b)) == (2.0, -1.0)


# -- split -------------------------------------------------------------------------------------
def test_train_test_split():
    x = torch.arange(100.0)[:, None]
    train, test = train_test_split(x, 0.2, seed=0)
    assert train.shape == (80, 1) and test.shape == (20, 1)
    assert sorted(torch.cat([train, test])[:, 0].tolist()) == list(range(100))  # disjoint cover
    again = train_test_split(x, 0.2, seed=0)
    assert torch.equal(again[0], train) and torch.equal(again[1], test)
    assert not torch.equal(train_test_split(x, 0.2, seed=1)[1], test)
    tr, te = train_test_split(torch.arange(3.0)[:, None], 0.01)
    assert len(te) == 1 and len(tr) == 2
    with pytest.raises(ValueError, match="test_fraction"):
        train_test_split(x, 1.0)
    with pytest.raises(ValueError, match="at least 2"):
        train_test_split(x[:1])
