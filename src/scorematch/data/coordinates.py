"""The coordinates a density model sees for a table's modelled columns, and the dequantisation
that makes its likelihood a probability of the discrete values (:class:`Coordinates`, held by
:class:`~scorematch.data.ColumnCodec`).

The model's coordinates y (:meth:`Coordinates.to_model`), column by column:

- continuous: y = T(x), the column's Yeo–Johnson transform learned on the training rows
  (``ColumnCodec.fit``, :mod:`scorematch.data.marginals`), else y = x;
- discrete, binary and categorical of at most two labels: y = x (the value, or the code), its bin
  [y − step/2, y + step/2) of width w = step;
- categorical of K ≥ 3 labels: K coordinates, y = c_k, the centroid of its bin, the argmax
  region of k within the unit cube, A_k = {y ∈ [0, 1)^K : y_k > y_j for j ≠ k}: the A_k are
  disjoint, tile the cube, each of volume 1/K, and decoding by argmax gives label k on all of
  A_k: no order is put on the labels (c_k = K/(2(K+1)) + K/(2(K+1))·e_k, the means of the
  largest and of the other coordinates of K uniform numbers).

Dequantisation (:meth:`Coordinates.spread`): each quantised value is moved to a uniform point of
its bin, drawn afresh: ỹ = y + w·(u − ½) with u ~ U[0, 1), and for a one-hot column u ~ U[0, 1)^K
with its largest coordinate swapped into place k (a transposition of coordinates preserves volume
and maps the cube's argmax region of any j onto A_k, so the result is uniform on A_k).  For a
model density p on the coordinates, the bins of the discrete values are disjoint, so
P(x_discrete) · p(x_continuous) = ∫_bin p(ỹ) dỹ_q · |T'(x_c)|, and by Jensen's inequality

    log P(x) ≥ E log p(ỹ) + log vol(bin) + Σ_c log T_c'(x_c),   vol = Π_q w_q · Π_one-hot 1/K,

a proper (bound on the) probability of the discrete values times the density of the continuous
ones in data units (Theis et al. 2016; uniform dequantisation).  ``ColumnCodec.dequantise``
returns ỹ and the last two terms, the likelihood's correction.  Because the A_k tile the cube, a
smooth model loses no probability between the labels (boxes inside the argmax regions, such as
[½, 1) × [0, ½)^{K−1}, leave gaps that a smooth density fills:
``benchmarks/results/categorical.md``).  :meth:`Coordinates.decode` decodes: argmax for one-hot
columns, T⁻¹ for transformed ones (the codec then snaps discrete values onto the column's values).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from .._checks import rand
from .column_kinds import Column
from .marginals import YeoJohnson

__all__ = ["Coordinates"]


class Coordinates:
    """The model's coordinates of the columns ``columns`` (modelled ones, in order; module doc):
    ``dim`` of them, the bin widths ``widths`` of box-dequantised coordinates, the log-volume of a
    row's bin ``log_volume``, and the maps :meth:`to_model`, :meth:`spread`, :meth:`decode`."""

    def __init__(self, columns: Sequence[Column]) -> None:
        self.columns = tuple(columns)
        self.transforms = [
            YeoJohnson.from_dict(c.transform) if c.transform is not None else None
            for c in self.columns
        ]
        widths, starts = [], []
        for c in self.columns:
            starts.append(len(widths))
            if c.one_hot:
                widths += [0.0] * c.levels  # not a box: spread draws in the argmax region
            else:
                widths.append(c.step if c.quantised else 0.0)
        self.starts = starts
        self.widths = torch.tensor(widths, dtype=torch.float64)
        one_hot = [c.levels for c in self.columns if c.one_hot]
        self.log_volume = float(self.widths[self.widths > 0].log().sum()) - float(
            sum(np.log(k) for k in one_hot)
        )
        self.quantised = any(c.quantised for c in self.columns)

    @property
    def dim(self) -> int:
        return int(self.widths.numel())

    @property
    def identity(self) -> bool:
        """True when the coordinates are the data units themselves (no one-hot, no transform)."""
        return self.dim == len(self.columns) and all(t is None for t in self.transforms)

    def column_of(self) -> list[int]:
        """For each coordinate, the index of its column."""
        return [j for j, c in enumerate(self.columns) for _ in range(c.width)]

    def to_model(self, x: Tensor) -> Tensor:
        """The model's coordinates ``(N, dim)`` of data-unit rows ``x`` ``(N, D)`` (module doc):
        transformed continuous values, discrete values and codes as they are, one-hot vectors
        ¼ + ½·e_k; NaN where missing.  Dtype and device follow ``x``."""
        x64 = x.double()
        parts = []
        for j, c in enumerate(self.columns):
            v = x64[:, j]
            if c.one_hot:
                k = v.nan_to_num(0.0).round().clamp(0, c.levels - 1).long()
                onehot = torch.nn.functional.one_hot(k, c.levels).double()
                y = c.levels / (2 * (c.levels + 1)) * (1 + onehot)  # the centroid of A_k
                parts.append(torch.where(v.isnan()[:, None], torch.nan, y))
            elif self.transforms[j] is not None:
                parts.append(self.transforms[j].forward(v)[:, None])
            else:
                parts.append(v[:, None])
        return torch.cat(parts, 1).to(x.dtype)

    def log_jacobian(self, x: Tensor) -> Tensor:
        """Σ over transformed continuous columns of log T'(x), float64 ``(N,)`` (0 without any)."""
        out = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
        for j, t in enumerate(self.transforms):
            if t is not None:
                out = out + t.log_derivative(x[:, j])
        return out

    def spread(self, y: Tensor, generator: torch.Generator | None) -> Tensor:
        """Model coordinates ``y`` ``(N, dim)`` of values on their grids (e.g. :meth:`to_model`'s)
        with each quantised value moved to a uniform point of its bin (module doc): ỹ = y +
        w·(u − ½), and for a one-hot column of label k = argmax its block, u ~ U[0, 1)^K with its
        largest coordinate swapped into place k; u is one draw of shape ``(N, dim)`` from
        ``generator`` (none when no column is quantised)."""
        if not self.quantised:
            return y
        y64 = y.double()
        u = rand(y.shape, generator, device=y.device, dtype=y.dtype).double()  # drawn in y's dtype
        out = y64 + self.widths.to(y.device) * (u - 0.5)
        for j, c in enumerate(self.columns):
            if c.one_hot:
                s = self.starts[j]
                block = u[:, s : s + c.levels].clone()
                k = y64[:, s : s + c.levels].argmax(1, keepdim=True)
                top = block.argmax(1, keepdim=True)
                at_k, at_top = block.gather(1, k), block.gather(1, top)
                block.scatter_(1, top, at_k)  # swap the largest coordinate into place k
                block.scatter_(1, k, at_top)
                out[:, s : s + c.levels] = block
        return out.to(y.dtype)

    def decode(self, y: Tensor) -> Tensor:
        """Data-unit rows ``(N, D)``, float64, of model coordinates ``y`` ``(N, dim)``: argmax for
        one-hot columns (NaN where the block is), T⁻¹ for transformed ones, else the value."""
        y64 = y.double()
        cols = []
        for j, c in enumerate(self.columns):
            s = self.starts[j]
            if c.one_hot:
                block = y64[:, s : s + c.levels]
                code = block.nan_to_num(-torch.inf).argmax(1).double()
                cols.append(torch.where(block.isnan().any(1), torch.nan, code))
            elif self.transforms[j] is not None:
                cols.append(self.transforms[j].inverse(y64[:, s]))
            else:
                cols.append(y64[:, s])
        return torch.stack(cols, 1)
