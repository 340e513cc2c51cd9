"""The coordinates a density model sees for a table's modelled columns, and the dequantisation
that makes its likelihood a probability of the discrete values (:class:`Coordinates`, held by
:class:`~scorematch.data.ColumnCodec`).

The model's coordinates y (:meth:`Coordinates.to_model`), column by column:

- continuous: y = T(x), the column's Yeo–Johnson transform learned on the training rows
  (``ColumnCodec.fit``, :mod:`scorematch.data.marginals`), else y = x;
- discrete, binary and categorical of at most two labels: y = x (the value, or the code), its bin
  [y − step/2, y + step/2) of width w = step;
- categorical of K ≥ 3 labels: K coordinates, y = ¼ + ½·e_k for label k (e_k the k-th unit
  vector), its bin the box B_k = {y_k ∈ [½, 1), y_j ∈ [0, ½) for j ≠ k} of width w = ½ in each
  coordinate.  B_k lies inside the argmax region of k, so the boxes of different labels are
  disjoint and decoding by argmax gives label k on all of B_k: no order is put on the labels.

Dequantisation (:meth:`Coordinates.spread`): each quantised value is moved to a uniform point of
its bin, drawn afresh: ỹ = y + w·(u − ½), u ~ U[0, 1).  For a model density p on the
coordinates, the bins of the discrete values are disjoint, so P(x_discrete) · p(x_continuous) =
∫_bin p(ỹ) dỹ_q · |T'(x_c)|, and by Jensen's inequality

    log P(x) ≥ E_u log p(ỹ) + Σ_q log w_q + Σ_c log T_c'(x_c),

a proper (bound on the) probability of the discrete values times the density of the continuous
ones in data units (Theis et al. 2016; uniform dequantisation).  ``ColumnCodec.dequantise``
returns ỹ and the last two terms, the likelihood's correction.  Why boxes with gaps between them
rather than the argmax regions of the unit cube (which tile it, volume 1/K each): where the
labels' bins touch, a smooth model's samples fall on the wrong side of the boundary — on
penguins 12 % impossible species × island pairs with touching regions, 1 % with boxes, for a
held-out NLL 0.1 nats better (``benchmarks/results/categorical.md``).
:meth:`Coordinates.decode` decodes: argmax for one-hot columns, T⁻¹ for transformed ones (the
codec then snaps discrete values onto the column's values).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .._checks import rand
from .column_kinds import Column
from .marginals import YeoJohnson

__all__ = ["ONE_HOT_WIDTH", "Coordinates"]

ONE_HOT_WIDTH = 0.5  # the side of a one-hot label's box in each coordinate


class Coordinates:
    """The model's coordinates of the columns ``columns`` (modelled ones, in order; module doc):
    ``dim`` of them, the bin widths ``widths`` of quantised coordinates, the log-volume of a
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
                widths += [ONE_HOT_WIDTH] * c.levels
            else:
                widths.append(c.step if c.quantised else 0.0)
        self.starts = starts
        self.widths = torch.tensor(widths, dtype=torch.float64)
        self.log_volume = float(self.widths[self.widths > 0].log().sum())
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
                y = ONE_HOT_WIDTH * (0.5 + onehot)  # ¼ + ½·e_k, the centre of B_k
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
        with each quantised value moved to a uniform point of its bin, ỹ = y + w·(u − ½) (module
        doc); u is one draw of shape ``(N, dim)`` from ``generator``, in y's dtype (none when no
        column is quantised)."""
        if not self.quantised:
            return y
        u = rand(y.shape, generator, device=y.device, dtype=y.dtype).double()
        return (y.double() + self.widths.to(y.device) * (u - 0.5)).to(y.dtype)

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
