"""Folders of images: :func:`load_image_folder` reads PNG/JPEG files as ``(N, C, H, W)`` in
[0, 1], skipping the files that cannot be read (counted and named); :func:`scan_image_folder` says
what a folder holds (sizes, modes, depths, unreadable files) for ``scorematch datasets FOLDER/``."""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .table import IMAGE_SUFFIXES, shown

__all__ = [
    "ImageFolder",
    "image_folder_levels",
    "load_image_folder",
    "read_image_folder",
    "scan_image_folder",
]

logger = logging.getLogger(__name__)


def _center_square_resize(img, size: int):
    from PIL import Image

    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side))
    if side != size:
        img = img.resize((size, size), Image.Resampling.BICUBIC)
    return img


# Pillow's modes of 16-bit greyscale images; 16-bit colour PNGs it reads as 8-bit RGB(A).
_GREY16 = ("I;16", "I;16B", "I;16L", "I;16N")
_GREY_MODES = ("1", "L", "LA", *_GREY16)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SHOWN_FILES = 3  # unreadable or odd files named in a message


def _bit_depth(f: Path, im) -> int:
    """8 or 16: the depth an image is read at, or a one-line ValueError for one that would be
    read wrongly (16-bit colour PNGs, which Pillow truncates to 8 bits; 32-bit and float pixels)."""
    with open(f, "rb") as fh:
        head = fh.read(26)
    if head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR" and head[24] == 16 and head[25] != 0:
        raise ValueError(
            f"{shown(f)}: a 16-bit colour PNG, which can only be read at 8 bits here; save it as "
            "8-bit colour or 16-bit greyscale"
        )
    if im.mode in _GREY16:
        return 16
    if im.mode in ("I", "F"):
        raise ValueError(
            f"{shown(f)}: {im.mode}-mode (32-bit) pixels are not read; use 8- or 16-bit images"
        )
    return 8


def _image_files(root: Path) -> list[Path]:
    return sorted(
        (f for f in root.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda f: f.relative_to(root).as_posix(),
    )


def image_folder_levels(path: str | Path) -> int:
    """Grey levels − 1 of the images under ``path``: 65535 when any is 16-bit, else 255 (8-bit
    values k/255 lie on the 16-bit grid too).  Reads the headers only."""
    from PIL import Image

    root = Path(path).expanduser()
    for f in _image_files(root):
        with contextlib.suppress(OSError, ValueError), Image.open(f) as im:
            if _bit_depth(f, im) == 16:
                return 65535
    return 255


def _pixels16(im, mode: str, size: int | None) -> np.ndarray:
    """A 16-bit greyscale image as float32 (C, H, W) in [0, 1], on the 1/65535 grid."""
    im = im.convert("F")
    if size is not None:
        im = _center_square_resize(im, int(size))
    a = np.clip(np.round(np.asarray(im, dtype=np.float32)), 0, 65535) / 65535.0
    return np.repeat(a[None], 3 if mode == "RGB" else 1, axis=0).astype(np.float32)


def _read_images(root: Path, files: list[Path], keep: bool):
    """Open and decode every file: yields (file, image or None, depth, error or None); a file
    that cannot be read (damaged, truncated, 16-bit colour, 32-bit) comes with its reason."""
    from PIL import Image, ImageOps

    for f in files:
        try:
            with Image.open(f) as im:
                im.load()
                depth = _bit_depth(f, im)
                image = ImageOps.exif_transpose(im) if keep else None
                yield f, image, depth, im.mode, im.size, None
        except Exception as err:  # Pillow raises many types for damaged files
            reason = str(err).removeprefix(f"{shown(f)}: ").replace(f"'{f}'", "").strip()
            reason = reason or type(err).__name__
            yield f, None, 0, "", (0, 0), reason


def _counts(items: Iterable, fmt) -> str:
    return ", ".join(f"{n} {fmt(k)}" for k, n in Counter(items).most_common())


def _size_text(size: tuple[int, int]) -> str:
    return f"{size[0]}×{size[1]}"


def _mode_text(mode: str) -> str:
    return "greyscale" if mode in _GREY_MODES else "colour"


@dataclass
class ImageFolder:
    """What a folder of images holds: the readable files with their size (W, H), Pillow mode
    and bit depth, and the files that cannot be read with the reason (see :func:`scan_image_folder`)."""

    root: Path
    files: list[Path]
    sizes: list[tuple[int, int]]
    modes: list[str]
    depths: list[int]
    unreadable: list[tuple[Path, str]]

    @property
    def channels(self) -> int:
        """1 when greyscale images are the majority, else 3 (a tie keeps colour)."""
        grey = sum(m in _GREY_MODES for m in self.modes)
        return 1 if grey > len(self.modes) - grey else 3

    def skipped_line(self) -> str | None:
        """One line naming the unreadable files (the first few), or None."""
        if not self.unreadable:
            return None
        total = len(self.files) + len(self.unreadable)
        named = ", ".join(
            f"{f.relative_to(self.root).as_posix()} ({why})"
            for f, why in self.unreadable[:_SHOWN_FILES]
        )
        more = ", …" if len(self.unreadable) > _SHOWN_FILES else ""
        return (
            f"{shown(self.root)}: skipped {len(self.unreadable)} of {total} image files that "
            f"cannot be read: {named}{more}"
        )

    def lines(self) -> list[str]:
        """A preview for ``scorematch datasets FOLDER/``: counts of sizes and modes, what
        ``train`` would do with them, and the unreadable files."""
        n = len(self.files)
        out = [f"{shown(self.root)}: {n} readable image(s)"]
        if n:
            out.append(f"  sizes: {_counts(self.sizes, _size_text)}")
            out.append(f"  modes: {_counts(self.modes, _mode_text)}")
            depths = sorted(set(self.depths))
            out.append(f"  bit depth: {', '.join(map(str, depths))}")
            c = self.channels
            out.append(
                f"  train reads them as {'greyscale (1 channel)' if c == 1 else 'colour (3 channels)'}"
                f" (the majority; --image-channels {3 if c == 1 else 1} converts the other way)"
            )
            if len(set(self.sizes)) > 1:
                out.append(
                    "  sizes differ: train needs --image-size S (centre crop, resize to S×S)"
                )
            parts = [f.relative_to(self.root).parts for f in self.files]
            classes = sorted({p[0] for p in parts if len(p) > 1})
            if len(classes) > 1 and all(len(p) > 1 for p in parts):
                shown_classes = ", ".join(classes[:_SHOWN_FILES]) + (
                    ", …" if len(classes) > _SHOWN_FILES else ""
                )
                out.append(
                    f"  classes: {len(classes)} sub-folders ({shown_classes}); "
                    "train --labels class learns each, sample --label NAME draws one"
                )
        skipped = self.skipped_line()
        if skipped:
            out.append("  " + skipped.split(": ", 1)[1])
        return out


def scan_image_folder(path: str | Path) -> ImageFolder:
    """Read every PNG/JPEG under ``path`` (recursively) and say what the folder holds (sizes,
    modes, depths, unreadable files) without keeping the pixels."""
    root = _image_root(path)
    found = list(_read_images(root, _image_files(root), keep=False))
    ok = [r for r in found if r[5] is None]
    return ImageFolder(
        root, [r[0] for r in ok], [r[4] for r in ok], [r[3] for r in ok], [r[2] for r in ok],
        [(r[0], r[5]) for r in found if r[5] is not None],
    )  # fmt: skip


def _image_root(path: str | Path) -> Path:
    root = Path(path).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"image folder not found: {shown(root)}")
    if not root.is_dir():
        raise ValueError(f"{shown(root)} is not a folder of images")
    return root


def load_image_folder(path: str | Path, size: int | None = None, mode: str | None = None) -> Tensor:
    """Load every PNG/JPEG under ``path`` (recursively, sorted by path) as ``(N, C, H, W)`` in
    [0, 1]: :func:`read_image_folder`'s images."""
    return read_image_folder(path, size, mode)[0]


def read_image_folder(
    path: str | Path, size: int | None = None, mode: str | None = None
) -> tuple[Tensor, list[Path]]:
    """Load every PNG/JPEG under ``path`` (recursively, sorted by path) as ``(N, C, H, W)`` in
    [0, 1], with the N files read (in that order; their folders are class labels:
    :mod:`scorematch.data.labels`).

    Args:
        path: a folder.
        size: if given, each image is centre-cropped to a square and resized (bicubic) to
            ``size × size``.  Without it all images must share one size.
        mode: ``"L"`` (greyscale, C=1) or ``"RGB"`` (C=3); ``None`` picks the mode of the majority
            of the images (a tie: ``"RGB"``) and says, in a logged warning, how many images are
            converted.  Alpha channels are dropped.

    Files that cannot be read (damaged, truncated, 16-bit colour or 32-bit pixels) are skipped,
    with one logged warning that counts them and names the first few.  EXIF orientation is
    applied.  8-bit images are read as k/255, 16-bit greyscale ones at their depth, as k/65535
    (``image_folder_levels`` says which grid the likelihood dequantises on).  Raises
    ``FileNotFoundError`` for a missing folder and a ``ValueError`` for a folder without readable
    images, or for mixed sizes without ``size`` (listing the sizes and modes with their counts).
    """
    root = _image_root(path)
    if mode is not None and mode not in ("L", "RGB"):
        raise ValueError(f"mode must be 'L', 'RGB' or None, got {mode!r}")
    if size is not None and (isinstance(size, bool) or int(size) != size or size < 1):
        raise ValueError(f"image size must be a positive integer, got {size!r}")
    files = _image_files(root)
    if not files:
        raise ValueError(f"{shown(root)}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    found = list(_read_images(root, files, keep=True))
    ok = [r for r in found if r[5] is None]
    folder = ImageFolder(
        root, [r[0] for r in ok], [r[4] for r in ok], [r[3] for r in ok], [r[2] for r in ok],
        [(r[0], r[5]) for r in found if r[5] is not None],
    )  # fmt: skip
    if not ok:
        f, why = folder.unreadable[0]
        raise ValueError(
            f"{shown(root)}: none of its {len(files)} image files can be read "
            f"(first: cannot read image {shown(f)}: {why})"
        )
    skipped = folder.skipped_line()
    if skipped:
        logger.warning(skipped)
    grey = sum(m in _GREY_MODES for m in folder.modes)
    if mode is None:
        mode = "L" if folder.channels == 1 else "RGB"
        converted = len(ok) - grey if mode == "L" else grey
        if converted:
            logger.warning(
                "%s: %d of %d images are %s and are converted to %s, the mode of most images "
                "(colour on a tie; --image-channels %d keeps them as they are)",
                shown(root), converted, len(ok), "colour" if mode == "L" else "greyscale",
                "greyscale" if mode == "L" else "colour", 3 if mode == "L" else 1,
            )  # fmt: skip
    if size is None and len(set(folder.sizes)) > 1:
        common = Counter(folder.sizes).most_common(1)[0][0]
        odd = [
            f.relative_to(root).as_posix()
            for f, s in zip(folder.files, folder.sizes)
            if s != common
        ]
        modes = (
            f"; modes: {_counts(folder.modes, _mode_text)} (--image-channels 1 or 3 picks one)"
            if 0 < grey < len(ok)
            else ""
        )
        raise ValueError(
            f"{shown(root)}: images have different sizes: {_counts(folder.sizes, _size_text)} "
            f"(not {_size_text(common)}: {', '.join(odd[:_SHOWN_FILES])}"
            f"{', …' if len(odd) > _SHOWN_FILES else ''}){modes}; pass an image size "
            "(--image-size S) to crop and resize them all to S×S"
        )
    arrays = []
    for _, im, depth, _, _, _ in ok:
        if depth == 16:
            arrays.append(_pixels16(im, mode, size))
            continue
        im = im.convert(mode)
        if size is not None:
            im = _center_square_resize(im, int(size))
        a = np.asarray(im, dtype=np.float32) / 255.0
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    return torch.from_numpy(np.stack(arrays)).contiguous(), list(folder.files)
