"""scikit-learn's handwritten digits: 1797 real 8×8 grey-level images shipped with sklearn.

The images come from the UCI "Optical Recognition of Handwritten Digits" set (Alpaydin & Kaynak
1998); each pixel counts 4×4 blocks of a 32×32 bitmap, so values are integers in [0, 16].  They
are loaded from the copy bundled with scikit-learn, with no download.
"""

from __future__ import annotations

import torch
from torch import Tensor

DIGITS_SIZE = 1797


def load_digits_images(*, return_labels: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Return the digits as a float32 tensor ``(1797, 1, 8, 8)`` in [0, 1] (pixel / 16).

    With ``return_labels=True`` also return the int64 class labels ``(1797,)`` in 0..9.
    """
    from sklearn.datasets import load_digits  # imported lazily: sklearn is slow to import

    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    if return_labels:
        return images, torch.as_tensor(bunch.target, dtype=torch.int64)
    return images
