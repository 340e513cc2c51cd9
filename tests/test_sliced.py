"""SSM's projection kinds and K projections: the variance each kind adds, against closed forms.

For a constant score s(x) = c (zero Jacobian) SSM's per-sample value is ½(vᵀc)², mean ½‖c‖² (= ISM)
for every kind with E[vvᵀ] = I, and Var ½(vᵀc)² = ¼ Var (vᵀc)² is
  Gaussian v:            ½‖c‖⁴                       (vᵀc ~ N(0, ‖c‖²))
  Rademacher v:          ½(‖c‖⁴ − Σᵢcᵢ⁴)               (E(vᵀc)⁴ = 3‖c‖⁴ − 2Σcᵢ⁴)
  uniform on √D·sphere:  ¼‖c‖⁴ (2D − 2)/(D + 2)      (E(vᵀc)⁴ = 3D‖c‖⁴/(D + 2))
and with K independent projections per sample the variance is divided by K.  SSM-VR removes it.
"""

from __future__ import annotations

import pytest
import torch

from scorematch.objectives import ism, ssm
from scorematch.objectives.sliced import PROJECTIONS

F64 = torch.float64
C = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=F64)
D = C.numel()


def variance(kind: str) -> float:
    n2, n4 = float(C.square().sum()), float(C.pow(4).sum())
    return {
        "gaussian": 0.5 * n2**2,
        "rademacher": 0.5 * (n2**2 - n4),
        "sphere": 0.25 * n2**2 * (2 * D - 2) / (D + 2),
    }[kind]


@pytest.mark.parametrize("k", [1, 4])
@pytest.mark.parametrize("projection", PROJECTIONS)
def test_projection_variance_and_k_projections_match_closed_forms(projection, k):
    x = torch.zeros(40_000, D, dtype=F64)

    def constant(y):
        return C.expand_as(y) + 0 * y  # depends on y, so the Jacobian (zero) is defined

    values = ssm(constant, x, n_projections=k, projection=projection,
                 generator=torch.Generator().manual_seed(k), reduction="none")  # fmt: skip
    values = values.detach()
    mean, var = float(values.mean()), float(values.var())
    expected_var = variance(projection) / k
    assert mean == pytest.approx(float(ism(constant, x[:1]).detach()), rel=6 * (expected_var / 40_000) ** 0.5 / mean)  # fmt: skip
    # the sample variance of 40 000 draws is within ~5 % (its relative s.e. is below 1.5 % here)
    assert var == pytest.approx(expected_var, rel=0.05), (projection, k, var, expected_var)
    vr = ssm(constant, x[:100], n_projections=k, projection=projection, variance_reduced=True,
             generator=torch.Generator().manual_seed(0), reduction="none")  # fmt: skip
    assert float(vr.detach().var()) == 0.0
