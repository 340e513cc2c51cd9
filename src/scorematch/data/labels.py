"""Class labels of a data set's rows, for class-conditional training (``train --labels``).

Where labels come from:

* a table: one of its columns (``--labels COLUMN``), which then is the label and is not modelled
  (the codec leaves it out as ``excluded``); an empty cell is "no label" (−1), which trains the
  unconditional score like label dropout does;
* an image folder with one sub-folder per class, ``folder/<class>/*.png`` (``--labels class``): the
  classes are the sub-folders' names, sorted, each image labelled by the first folder of its path
  — what torchvision's ``ImageFolder`` reads;
* the built-in ``digits`` (``--labels class``): the digit 0 … 9.

:class:`LabelCodec` is the label's codec — the class names, a code for each (0 … C − 1, −1 = none)
— stored with a run (``data.labels`` of its config) so that ``sample --label NAME`` and
``impute`` read labels the way training did.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .column_kinds import EXCLUDED, Column, detect_column, number_label
from .table import IMAGE_SUFFIXES, Table, parse_column_list, resolve_columns, shown

__all__ = [
    "IMAGE_LABELS",
    "LABEL_SOURCES",
    "MAX_CLASSES",
    "LabelCodec",
    "check_labels_option",
    "digit_labels",
    "folder_classes",
    "folder_labels",
    "label_column",
    "table_labels",
]

IMAGE_LABELS = "class"  # the value of --labels for image data: sub-folders, or the digit
LABEL_SOURCES = ("column", "folders", "digits")
MAX_CLASSES = 1000  # more distinct labels than this are not classes (an identifier, a number)


@dataclass(frozen=True)
class LabelCodec:
    """The classes of a run's label: ``source`` (``LABEL_SOURCES``), the class names in code order,
    and for a table the label column's name."""

    source: str
    classes: tuple[str, ...]
    column: str | None = None

    def __post_init__(self) -> None:
        if self.source not in LABEL_SOURCES:
            raise ValueError(f"label source must be one of {LABEL_SOURCES}, got {self.source!r}")
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        if len(self.classes) < 2:
            what = f"column {self.column!r}" if self.column else "the data"
            raise ValueError(
                f"--labels: {what} holds {len(self.classes)} class(es) "
                f"({', '.join(self.classes) or 'none'}); class-conditional training needs at "
                "least 2"
            )
        if len(self.classes) > MAX_CLASSES:
            raise ValueError(
                f"--labels: column {self.column!r} holds {len(self.classes)} distinct values, more "
                f"than {MAX_CLASSES}: it is not a class label (an identifier, or a number to model)"
            )

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def describe(self) -> str:
        """``species: 3 classes (Adelie, Chinstrap, Gentoo)``."""
        where = {"column": f"column {self.column!r}", "folders": "the class sub-folders",
                 "digits": "the digit"}[self.source]  # fmt: skip
        names = ", ".join(self.classes[:8]) + (", …" if self.num_classes > 8 else "")
        return f"labels from {where}: {self.num_classes} classes ({names})"

    def code(self, value: Any) -> int:
        """The code of one label given by name (a class name), else by index 0 … C − 1; a
        one-line ValueError lists the classes otherwise."""
        text = str(value).strip()
        if text in self.classes:
            return self.classes.index(text)
        if text.isdigit() and int(text) < self.num_classes:
            return int(text)
        names = ", ".join(self.classes[:12]) + (", …" if self.num_classes > 12 else "")
        raise ValueError(
            f"unknown label {value!r}: the run's {self.num_classes} classes are {names} (or their "
            f"index 0…{self.num_classes - 1})"
        )

    def encode(self, cells: Sequence[str], missing: Sequence[bool] | None = None) -> Tensor:
        """Codes ``(N,)`` int64 of label cells as written (−1 where missing or empty); a label
        that is not a class is a one-line ValueError naming it."""
        missing = [c == "" for c in cells] if missing is None else list(missing)
        index = {name: i for i, name in enumerate(self.classes)}
        unknown = sorted({c for c, m in zip(cells, missing) if not m and c not in index})
        if unknown:
            where = f"column {self.column!r}: " if self.column else ""
            raise ValueError(
                f"{where}label(s) {', '.join(map(repr, unknown[:5]))} not among the run's "
                f"{self.num_classes} classes ({', '.join(self.classes[:8])})"
            )
        return torch.tensor([-1 if m else index[c] for c, m in zip(cells, missing)],
                            dtype=torch.int64)  # fmt: skip

    def to_config(self) -> dict[str, Any]:
        return {"source": self.source, "column": self.column, "classes": list(self.classes)}

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> LabelCodec | None:
        if not config:
            return None
        return cls(config["source"], tuple(config["classes"]), config.get("column"))


# -- tables ------------------------------------------------------------------------------------
def _cells(table: Table, j: int) -> list[str]:
    if j in table.text:
        return list(table.text[j])
    return ["" if m else number_label(v) for v, m in zip(table.values[:, j], table.missing[:, j])]


def label_column(
    table: Table, column: str, columns: Sequence[Column]
) -> tuple[LabelCodec, list[Column]]:
    """The label codec of ``table``'s column ``column`` (a header name or a 1-based index) and
    ``columns`` (the table's detected columns) with that one left out of the model — the label
    is conditioned on, not modelled.  Its classes are ordered as a categorical column's labels
    (numbers by value, then text)."""
    index = resolve_columns(table.names, parse_column_list(column), "--labels")
    if len(index) != 1:
        raise ValueError(f"--labels names one column, got {column!r}")
    (j,) = index
    name = table.names[j]
    found = detect_column(name, table.values[:, j], table.text.get(j), missing=table.missing[:, j],
                          categorical=True, keep=True)  # fmt: skip
    if found.kind != "categorical":
        raise ValueError(f"--labels: column {name!r} holds no label (every cell is missing)")
    codec = LabelCodec("column", tuple(found.labels or ()), name)
    out = [
        dataclasses.replace(c, kind=EXCLUDED, reason="the class label (--labels)", transform=None)
        if c.name == name else c
        for c in columns
    ]  # fmt: skip
    return codec, out


def table_labels(table: Table, codec: LabelCodec) -> Tensor:
    """The codes ``(N,)`` of ``table``'s label column (matched by name; −1 = missing), or all −1
    when the file has no such column (rows without a label)."""
    if codec.column not in table.names:
        return torch.full((table.shape[0],), -1, dtype=torch.int64)
    j = table.names.index(codec.column)
    return codec.encode(_cells(table, j), table.missing[:, j].tolist())


# -- images ------------------------------------------------------------------------------------
def folder_classes(root: str | Path) -> tuple[str, ...]:
    """The class sub-folders of an image folder: the sorted names of its sub-folders that hold an
    image file (at any depth).  A one-line ValueError when there are none, or when images lie
    directly in ``root`` (outside every class)."""
    root = Path(root).expanduser()
    images = [f for f in root.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]
    loose = [f for f in images if f.parent == root]
    if loose:
        raise ValueError(
            f"--labels class: {len(loose)} image(s) lie directly in {shown(root)} (first: "
            f"{loose[0].name}); a labelled folder holds one sub-folder per class, "
            "folder/<class>/*.png"
        )
    classes = sorted({f.relative_to(root).parts[0] for f in images})
    if not classes:
        raise ValueError(f"--labels class: {shown(root)} has no class sub-folder with images")
    return tuple(classes)


def folder_labels(root: str | Path, files: Sequence[Path], codec: LabelCodec) -> Tensor:
    """The codes ``(N,)`` of image ``files`` under ``root``: the class of each file's first
    folder."""
    root = Path(root).expanduser()
    return codec.encode([Path(f).relative_to(root).parts[0] for f in files])


def digit_labels() -> tuple[LabelCodec, Tensor]:
    """The digits' label codec (classes ``"0"`` … ``"9"``) and the 1797 labels."""
    from .digits import load_digits_images

    _, y = load_digits_images(return_labels=True)
    return LabelCodec("digits", tuple(str(d) for d in range(10))), y


def check_labels_option(value: Any) -> str:
    """``--labels`` as given (a column for a table; ``IMAGE_LABELS`` for image data)."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"--labels must name a column (tables) or be {IMAGE_LABELS!r} (images)")
    return value.strip()
