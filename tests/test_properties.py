"""Property-based tests (hypothesis) of every reader of user input: tables (.csv/.tsv/.txt with
any delimiter, header, encoding, NaN/Inf placement), arrays (.npy/.npz of any dtype and shape,
damaged bytes, members that are not arrays), image folders (any mode, bit depth and size, damaged
files) and the config readers (YAML option files with any content and tags, run configs, option
values of any type).

The property is the same for all: an input either loads into finite data of the documented shape,
or raises the tool's own ``ValueError`` / ``FileNotFoundError`` in one line naming the file —
never a ``TypeError``, ``KeyError``, ``AttributeError`` or a traceback from deep inside.
"""

from __future__ import annotations

import io
import math
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from _shared import write_png
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from scorematch.data import load_image_folder, load_table
from scorematch.run_dir import RunDir
from scorematch.runs import configure, load_config

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
USER_ERRORS = (ValueError, FileNotFoundError)


def _one_line(err: BaseException, *names: object) -> None:
    text = str(err)
    assert text and "\n" not in text, text
    assert any(str(n) in text for n in names), (text, names)


def _loads_or_refuses(load, path: Path, *names: object) -> torch.Tensor | None:
    try:
        x = load(path)
    except USER_ERRORS as err:
        _one_line(err, path, *names)
        return None
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float32
    assert x.ndim >= 2 and x.shape[0] >= 1 and bool(torch.isfinite(x).all())
    return x


# ------------------------------------------------------------------------------------------------
# Tables
# ------------------------------------------------------------------------------------------------
NUMBER = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr),
    st.floats(-1e6, 1e6).map(lambda v: f"{v:.3e}"),
)
ODD_CELL = st.sampled_from(
    ["", "nan", "NaN", "inf", "-inf", "1e999", "abc", "1,5", '"3"', "ä", "  ", "0x10", "True"]
)


@st.composite
def tables(draw):
    rows, cols = draw(st.integers(1, 6)), draw(st.integers(1, 5))
    odd = draw(st.floats(0, 1)) < 0.5
    cells = [
        [draw(ODD_CELL if odd and draw(st.floats(0, 1)) < 0.15 else NUMBER) for _ in range(cols)]
        for _ in range(rows)
    ]
    words = st.lists(st.text("abcxyzé _", min_size=1), min_size=cols, max_size=cols)
    header = draw(st.one_of(st.none(), words))
    delimiter = draw(st.sampled_from([",", "\t", ";", " "]))
    suffix = draw(st.sampled_from([".csv", ".tsv", ".txt"]))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    lines = ([delimiter.join(header)] if header else []) + [delimiter.join(r) for r in cells]
    if draw(st.booleans()):
        lines.insert(draw(st.integers(0, len(lines))), "")  # a blank line somewhere
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1"]))
    data = (newline.join(lines) + draw(st.sampled_from(["", newline]))).encode(encoding, "replace")
    cut = draw(st.integers(0, 9)) == 0
    if cut:
        data = data[: draw(st.integers(0, len(data)))]  # truncated anywhere
    plain = not odd and not header and not cut and encoding.startswith("utf-8")
    plain = plain and (suffix != ".tsv" or delimiter == "\t")  # .tsv means tabs: else refused
    return data, suffix, cells if plain else None


@SETTINGS
@given(tables())
def test_tables_load_finite_rows_or_refuse_in_one_line(table):
    data, suffix, plain = table
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"t{suffix}"
        path.write_bytes(data)
        x = _loads_or_refuses(load_table, path)
    if plain is not None:  # numbers only: every row, every value (as float32) exactly
        expected = np.array([[float(c) for c in r] for r in plain], dtype=np.float32)
        assert x is not None and x.shape == expected.shape
        np.testing.assert_array_equal(x.numpy(), expected)


# ------------------------------------------------------------------------------------------------
# Arrays: .npy and .npz
# ------------------------------------------------------------------------------------------------
DTYPES = [
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "complex64", "U3", "S2", "object", "datetime64[s]",
]  # fmt: skip


@st.composite
def arrays(draw):
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = tuple(draw(st.lists(st.integers(0, 4), min_size=0, max_size=5)))
    size = math.prod(shape)
    if dtype.kind in "biu":
        low, high = (0, 1) if dtype.kind == "b" else (np.iinfo(dtype).min, np.iinfo(dtype).max)
        ints = st.integers(max(int(low), -(10**9)), min(int(high), 10**9))
        values = np.array(draw(st.lists(ints, min_size=size, max_size=size)), np.int64).astype(
            dtype
        )
    elif dtype.kind == "f":
        floats = draw(st.lists(st.floats(-1e5, 1e5), min_size=size, max_size=size))
        with np.errstate(over="ignore"):  # beyond float16's range: inf, refused like any inf
            values = np.array(floats, dtype=dtype)
        if size and draw(st.booleans()):
            flat = values.reshape(-1)
            with np.errstate(
                over="ignore"
            ):  # 1e39 is inf in float16 and float32: that is the point
                flat[draw(st.integers(0, size - 1))] = draw(
                    st.sampled_from([np.nan, np.inf, -np.inf, 1e39])
                )
    elif dtype.kind == "O":
        values = np.array([{"a": 1}] * size, dtype=object)
    else:
        values = np.zeros(size, dtype=dtype)
    return values.reshape(shape)


def _expected_shape(arr: np.ndarray) -> tuple[int, ...]:
    if arr.ndim == 1:
        return (arr.shape[0], 1)
    if arr.ndim == 3:
        return (arr.shape[0], 1, *arr.shape[1:])
    return arr.shape


def _check_array_load(x: torch.Tensor | None, arr: np.ndarray) -> None:
    numeric = arr.dtype.kind in "biuf" and arr.ndim >= 1 and arr.size > 0
    finite = numeric and bool(np.isfinite(arr.astype(np.float64)).all())
    finite = finite and bool((np.abs(arr.astype(np.float64)) < 3.4e38).all())
    assert (x is not None) == finite, (arr.dtype, arr.shape)
    if x is not None:
        assert tuple(x.shape) == _expected_shape(arr)
        want = torch.as_tensor(arr.astype(np.float64), dtype=torch.float32).reshape(x.shape)
        if arr.dtype == np.uint8 and arr.ndim >= 3:
            want = want / 255.0
        assert torch.equal(x, want)


@SETTINGS
@given(arrays(), st.integers(0, 3))
def test_npy_files_load_finite_arrays_of_the_documented_shape_or_refuse(arr, damage):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "a.npy"
        np.save(path, arr, allow_pickle=True)  # an object array is written; reading must refuse it
        if damage == 1:
            path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
        elif damage == 2:
            path.write_bytes(b"\x93NUMPY garbage" + bytes(range(50)))
        x = _loads_or_refuses(load_table, path)
    if damage == 0:
        _check_array_load(x, arr)
    elif damage == 2:
        assert x is None


@SETTINGS
@given(
    st.dictionaries(st.sampled_from(["x", "data", "arr_0", "y", "meta"]), arrays(), max_size=3),
    st.lists(st.sampled_from(["notes.txt", "x.npy", "readme"]), max_size=2, unique=True),
)
def test_npz_archives_load_one_array_or_refuse(members, extra):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "a.npz"
        buffer = io.BytesIO()
        np.savez(buffer, **members)
        with zipfile.ZipFile(path, "w") as z:
            with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as src:
                for info in src.infolist():
                    if info.filename[:-4] not in extra and info.filename not in extra:
                        z.writestr(info, src.read(info))
            for name in extra:
                if name not in z.namelist():
                    z.writestr(name, "not an array")  # a member that is not a .npy file
        x = _loads_or_refuses(load_table, path)
    keys = [k for k in members if f"{k}.npy" not in extra] + [e.removesuffix(".npy") for e in extra]
    if x is not None:
        chosen = keys[0] if len(keys) == 1 else next(k for k in ("x", "data", "arr_0") if k in keys)
        _check_array_load(x, members[chosen])


# ------------------------------------------------------------------------------------------------
# Image folders
# ------------------------------------------------------------------------------------------------
@st.composite
def images(draw):
    kind = draw(
        st.sampled_from(
            ["L", "RGB", "RGBA", "LA", "P", "1", "I;16", "raw16rgb", "raw4", "jpeg", "junk"]
        )
    )
    w, h = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    seed = draw(st.integers(0, 2**16))
    return kind, w, h, seed


def _write_image(path: Path, kind: str, w: int, h: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    if kind == "junk":
        path.write_bytes(rng.integers(0, 256, 40, dtype=np.uint8).tobytes())
    elif kind == "raw16rgb":
        write_png(path, rng.integers(0, 65536, (h, w, 3)), 16, 2)
    elif kind == "raw4":
        write_png(path, rng.integers(0, 16, (h, w)), 4, 0)
    elif kind == "I;16":
        Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16)).save(path)
    elif kind == "jpeg":
        path = path.with_suffix(".jpg")
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path, quality=80)
    else:
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(kind).save(path)
    return path


@SETTINGS
@given(
    st.lists(images(), min_size=1, max_size=4),
    st.one_of(st.none(), st.integers(1, 6)),
    st.sampled_from([None, "L", "RGB"]),
)
def test_image_folders_load_into_0_1_or_refuse_in_one_line(specs, size, mode):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = [_write_image(root / f"{i}.png", *spec) for i, spec in enumerate(specs)]
        x = _loads_or_refuses(lambda p: load_image_folder(p, size=size, mode=mode), root, *files)
    # Files that cannot be read are skipped (issue #20); a folder of only such files is refused.
    good = [spec for spec in specs if spec[0] not in ("junk", "raw16rgb")]
    if not good:
        assert x is None
    sizes = {(w, h) for _, w, h, _ in good}
    if x is not None:
        assert x.shape[0] == len(good) and x.shape[1] in (1, 3)
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
        if size is not None:
            assert tuple(x.shape[2:]) == (size, size)
    elif good:
        assert size is None and len(sizes) > 1  # the only other refusal: mixed sizes


# ------------------------------------------------------------------------------------------------
# Config readers
# ------------------------------------------------------------------------------------------------
YAML_TEXT = st.one_of(
    st.text(max_size=60),
    st.sampled_from([
        "!!python/object/apply:os.system ['true']", "a: !!python/name:os.system", "- 1\n- 2",
        "steps: 10\nsteps: 20", "a: [1, 2", "{a: 1}", "batch-size: 8\nlr: 1e-3", "null", "3",
        "key: !custom 1", "\t- bad indent", "a:\n  - b: [c, {d: e}]", "~: 1", "1: 2",
    ]),
    st.dictionaries(st.text("abc-_", min_size=1, max_size=8), st.one_of(st.integers(), st.text(max_size=5), st.none())).map(yaml.safe_dump),
)  # fmt: skip


@SETTINGS
@given(YAML_TEXT, st.sampled_from(["utf-8", "utf-16", "latin-1"]))
def test_option_files_read_as_a_mapping_or_refuse_in_one_line(text, encoding):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_bytes(text.encode(encoding, errors="replace"))
        try:
            options = load_config(path)
        except USER_ERRORS as err:
            _one_line(err, path)
            return
        assert isinstance(options, dict) and all(isinstance(k, str) for k in options)
        config_dir = Path(tmp) / "run"
        config_dir.mkdir()
        (config_dir / "config.yaml").write_bytes(path.read_bytes())
        with pytest.raises(USER_ERRORS) as err:  # not a run config: refused, in one line
            RunDir(config_dir).read_config()
        _one_line(err.value, config_dir)


VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 40), st.floats(allow_nan=True), st.text(max_size=6),
    st.lists(st.integers(0, 3), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)  # fmt: skip
OPTIONS = ["n", "seed", "test_fraction", "objective", "process", "model", "prediction", "weighting",
           "sigma", "width", "depth", "steps", "batch_size", "lr", "ema_half_life", "warmup_steps",
           "schedule", "grad_clip", "checkpoint_every", "sample_every", "sampler", "sample_steps"]  # fmt: skip


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.dictionaries(st.sampled_from(OPTIONS), VALUE, max_size=3))
def test_option_values_of_any_type_build_a_config_or_refuse_in_one_line(options):
    try:
        config, bundle = configure({"data": "moons", "width": 4, "depth": 1, "n": 60, **options})
    except USER_ERRORS as err:
        _one_line(err, *options, *(str(v) for v in options.values()), "must", "unknown", "choose")
        return
    assert (
        config["data"]["n_train"] + config["data"]["n_test"]
        == bundle.train.shape[0] + bundle.test.shape[0]
    )
    assert yaml.safe_load(yaml.safe_dump(config)) == config  # what config.yaml will hold
