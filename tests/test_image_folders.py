"""Image folders as users bring them (issue #20, item 9): unreadable and truncated files skipped
with a count and their names, mixed sizes and modes listed with the options that fix them, the
majority's mode by default with the conversion said, and a preview of a folder."""

from __future__ import annotations

import io
import logging

import pytest
from PIL import Image

from scorematch.data import load_image_folder, scan_image_folder


def _png(mode: str, size: tuple[int, int], value) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, value).save(buffer, format="PNG")
    return buffer.getvalue()


def _folder(root, specs):
    root.mkdir(parents=True, exist_ok=True)
    for name, data in specs:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def _messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records]


def test_truncated_and_damaged_files_are_skipped_with_a_count_and_their_names(tmp_path, caplog):
    grey = _png("L", (8, 8), 7)
    noisy = Image.effect_noise((64, 64), 60).convert("L")
    buffer = io.BytesIO()
    noisy.save(buffer, format="PNG")
    truncated = buffer.getvalue()[: len(buffer.getvalue()) // 2]
    specs = [(f"d{i}.png", grey) for i in range(4)]
    specs += [("t1.png", truncated), ("t2.png", truncated), ("t3.png", b"\x89PNG\r\n\x1a\nno")]
    specs += [("t4.jpg", b"not a jpeg")]
    d = _folder(tmp_path / "f", specs)
    with caplog.at_level(logging.WARNING, logger="scorematch"):
        x = load_image_folder(d)
    assert x.shape == (4, 1, 8, 8)  # on main, one truncated PNG aborted the run
    (line,) = [m for m in _messages(caplog) if "skipped" in m]
    assert "skipped 4 of 8 image files that cannot be read: t1.png (" in line
    assert "t2.png (" in line and "t3.png (" in line and line.endswith(", …")
    assert "t4.jpg" not in line  # the first few are named
    folder = scan_image_folder(d)
    assert len(folder.files) == 4 and [f.name for f, _ in folder.unreadable] == [
        "t1.png",
        "t2.png",
        "t3.png",
        "t4.jpg",
    ]


def test_mixed_sizes_and_modes_are_listed_with_the_options_that_fix_them(tmp_path):
    specs = [(f"a{i}.png", _png("L", (8, 8), 0)) for i in range(5)]
    specs += [("big.png", _png("RGB", (16, 12), (1, 2, 3))), ("wide.png", _png("L", (10, 8), 0))]
    d = _folder(tmp_path / "m", specs)
    with pytest.raises(ValueError) as err:
        load_image_folder(d)
    text = str(err.value)
    assert "images have different sizes: 5 8×8, 1 16×12, 1 10×8" in text
    assert "(not 8×8: big.png, wide.png)" in text
    assert "modes: 6 greyscale, 1 colour (--image-channels 1 or 3 picks one)" in text
    assert text.endswith("pass an image size (--image-size S) to crop and resize them all to S×S")


def test_the_majority_mode_is_the_default_and_the_conversion_is_said(tmp_path, caplog):
    specs = [(f"g{i}.png", _png("L", (8, 8), 40)) for i in range(5)]
    specs += [(f"c{i}.png", _png("RGB", (8, 8), (255, 0, 0))) for i in range(2)]
    d = _folder(tmp_path / "g", specs)
    with caplog.at_level(logging.WARNING, logger="scorematch"):
        x = load_image_folder(d)
    # On main, 2 colour files turned 5 greyscale images into 3-channel ones, silently.
    assert x.shape == (7, 1, 8, 8)
    (line,) = [m for m in _messages(caplog) if "converted" in m]
    assert line.endswith(
        "2 of 7 images are colour and are converted to greyscale, the mode of most images "
        "(colour on a tie; --image-channels 3 keeps them as they are)"
    )
    assert load_image_folder(d, mode="RGB").shape == (7, 3, 8, 8)
    lines = scan_image_folder(d).lines()
    assert lines[0].endswith("g: 7 readable image(s)")
    assert "  sizes: 7 8×8" in lines and "  modes: 5 greyscale, 2 colour" in lines
    assert any("greyscale (1 channel)" in line and "--image-channels 3" in line for line in lines)


def test_the_preview_names_class_sub_folders_only_when_every_image_is_in_one(tmp_path):
    specs = [(f"{c}/{i}.png", _png("L", (8, 8), 10 * i)) for c in ("cat", "dog") for i in range(3)]
    lines = scan_image_folder(_folder(tmp_path / "pets", specs)).lines()
    assert "  classes: 2 sub-folders (cat, dog); train --labels class learns each, sample --label " \
        "NAME draws one" in lines  # fmt: skip
    loose = _folder(tmp_path / "mixed", [*specs, ("top.png", _png("L", (8, 8), 5))])
    assert not any("classes:" in line for line in scan_image_folder(loose).lines())


def test_train_records_the_image_channels_it_was_told(tmp_path):
    from scorematch.runs import configure

    specs = [(f"g{i}.png", _png("L", (8, 8), 10 * i)) for i in range(12)]
    specs += [(f"c{i}.png", _png("RGB", (8, 8), (200, 0, i))) for i in range(12)]
    d = _folder(tmp_path / "mixed", specs)  # a tie: colour by default
    config, _ = configure({"data": str(d)})
    assert config["data"]["shape"] == [3, 8, 8] and "image_mode" not in config["data"]
    config, _ = configure({"data": str(d), "image_channels": 1})
    assert config["data"]["image_mode"] == "L" and config["data"]["shape"] == [1, 8, 8]
    with pytest.raises(ValueError, match="image_channels"):
        configure({"data": str(d), "image_channels": 2})
    with pytest.raises(ValueError, match="apply to image folders only, not to 'moons'"):
        configure({"data": "moons", "image_channels": 1})
