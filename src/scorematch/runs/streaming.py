"""Memory and time flat in the row count: samples drawn in chunks and streamed to their file, and
bounded subsamples for the statistics whose cost grows with the square of the rows.

One batch of a million samples holds the network's activations for a million rows at once (about
2 KB a row for the default MLP: 2.7 GB); chunks of ``chunk_rows(shape)`` rows keep that bounded,
and each chunk goes to the output file as soon as it is drawn (``.npy``: a header for all the
rows, then the chunks; ``.csv``: the header line, then the chunks), written atomically like every
file the tool writes.  The first chunk is exactly ``Run.sample(rows, seed=seed)``, so small requests give
the same samples as before; chunk i > 0 uses seed ``(seed + i * SEED_STRIDE) mod 2**63``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .._checks import check_positive_int
from ..io import atomic_save
from .checks import seed_value

__all__ = [
    "MAX_DISTANCE_ROWS",
    "SEED_STRIDE",
    "SampleSource",
    "StreamResult",
    "chunk_rows",
    "iter_samples",
    "sample_to_file",
    "subsample_rows",
]

SEED_STRIDE = 1_000_003  # a prime: chunk seeds of nearby --seed values do not collide
MAX_DISTANCE_ROWS = 10_000  # held-out rows MMD and energy distance use at most (O(rows²) each)


def chunk_rows(shape: tuple[int, ...], budget: int = 1 << 21) -> int:
    """Rows per chunk for events of ``shape``: about ``budget`` numbers of samples per chunk,
    between 64 and 50 000 rows.  What a chunk holds most of is the network's activations (about
    2 KB a row for the default MLP: ~0.1 GB at 50 000 rows); much smaller chunks cost time
    (``benchmarks/results/design_choices.md``)."""
    return max(64, min(50_000, budget // max(1, math.prod(shape))))


def subsample_rows(x: Tensor, limit: int, generator: torch.Generator) -> Tensor:
    """``x`` itself when it has at most ``limit`` rows, else ``limit`` rows drawn without
    replacement (kept in their order) with ``generator``."""
    if x.shape[0] <= limit:
        return x
    keep = torch.randperm(x.shape[0], generator=generator)[:limit].sort().values
    return x[keep.to(x.device)]


class SampleSource(Protocol):
    """What is sampled in chunks: a :class:`~scorematch.runs.Run` (its ``shape`` and ``sample``)."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    def sample(self, n: int, *, seed: int = 0, trajectory: bool = False, **options: Any) -> Any: ...


@dataclass
class StreamResult:
    """What ``sample_to_file`` drew: the rows, the total NFE and seconds, the first chunk's
    trajectory (when asked) and, when ``keep`` (outputs that need them all), the samples."""

    n: int
    nfe: int
    seconds: float
    trajectory: list[Tensor] | None = field(default=None, repr=False)
    x: Tensor | None = field(default=None, repr=False)
    grid_note: str | None = None  # the first chunk's line about its grid (``Run.sample``)


def iter_samples(
    run: SampleSource,
    n: int,
    *,
    seed: int = 0,
    chunk: int | None = None,
    trajectory: bool = False,
    progress: bool = False,
    **options: Any,
) -> Iterator[Any]:
    """``Run.sample`` in chunks: yields one ``SampleResult`` per chunk (data units, on CPU), with
    one progress bar over all ``n`` rows (one chunk: the sampler's bar over its steps).
    ``options`` go to ``Run.sample`` (sampler, steps, churn); ``trajectory`` is kept for the first
    chunk only."""
    n, seed = check_positive_int(n, "n"), seed_value(seed)
    chunk = check_positive_int(chunk, "chunk") if chunk is not None else chunk_rows(run.shape)
    if n <= chunk:  # one chunk: the sampler's own bar over its steps, as without chunks
        part = run.sample(n, seed=seed, trajectory=trajectory, progress=progress, **options)
        part.x = part.x.cpu()
        yield part
        return
    bar = None  # made after the first chunk, so that a bad option fails before any bar is drawn
    for i, start in enumerate(range(0, n, chunk)):
        rows = min(chunk, n - start)
        part = run.sample(
            rows, seed=(seed + i * SEED_STRIDE) % 2**63, trajectory=trajectory and i == 0, **options
        )
        part.x = part.x.cpu()
        if bar is None:
            bar = tqdm(total=n, unit="sample", desc="sampling", disable=not progress)
        bar.update(rows)
        yield part
    bar.close()


def sample_to_file(
    run: SampleSource,
    n: int,
    out: str | Path,
    *,
    keep: bool = False,
    postprocess: Callable[[Tensor], Tensor] | None = None,
    **options: Any,
) -> StreamResult:
    """Draw ``n`` samples of ``run`` in chunks (``iter_samples``; ``options`` go there) and write
    them to ``out``: ``.npy`` (float32, shape ``(n, *event)``) or ``.csv`` (rows flattened, header
    ``x1, x2, …``; a user's table: its column names, categoricals as labels), atomically.  Another suffix (``.png``) writes nothing and needs ``keep``: the
    samples are then returned in ``x`` (the caller plots them).  ``postprocess`` maps each chunk
    (data units) before it is written, e.g. rounding discrete columns."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".npy", ".csv") and not keep:
        raise ValueError(f"cannot stream samples to {out}: use .npy or .csv, or keep=True")
    state: dict[str, Any] = {"nfe": 0, "seconds": 0.0, "trajectory": None, "kept": [], "note": None}

    def chunks() -> Iterator[Tensor]:
        for i, part in enumerate(iter_samples(run, n, **options)):
            x = part.x if postprocess is None else postprocess(part.x)
            state["nfe"] += part.nfe
            state["seconds"] += part.seconds
            if i == 0:
                state["trajectory"] = part.trajectory
                state["note"] = getattr(part, "grid_note", None)
            if keep:
                state["kept"].append(x)
            yield x

    def write_npy(tmp: Path) -> None:
        # The header needs the dtype, known from the first chunk; the rows go straight to disk.
        array, start = None, 0
        for x in chunks():
            if array is None:
                shape = (n, *x.shape[1:])
                array = np.lib.format.open_memmap(
                    tmp, mode="w+", dtype=x.numpy().dtype, shape=shape
                )
            array[start : start + x.shape[0]] = x.numpy()
            start += x.shape[0]
        array.flush()
        del array

    codec = getattr(run, "columns", None)  # a user's table: its names, labels and grids

    def write_csv(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            if codec is not None:
                writer = csv.writer(f, lineterminator="\n")
                writer.writerow(codec.names)
                for x in chunks():
                    writer.writerows(codec.format_rows(x.reshape(x.shape[0], -1)))
                return
            f.write(",".join(f"x{i + 1}" for i in range(math.prod(run.shape))) + "\n")
            for x in chunks():  # 9 significant digits: float32 values read back exactly
                np.savetxt(f, x.reshape(x.shape[0], -1).numpy(), delimiter=",", fmt="%.9g")

    main = getattr(run, "is_main", True)  # under torchrun every rank draws, rank 0 writes
    if suffix == ".npy" and main:
        atomic_save(out, write_npy)
    elif suffix == ".csv" and main:
        atomic_save(out, write_csv)
    else:
        for _ in chunks():
            pass
    x = torch.cat(state["kept"]) if keep else None
    return StreamResult(n, state["nfe"], state["seconds"], state["trajectory"], x, state["note"])
