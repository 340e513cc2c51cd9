"""The result dataclasses: they unpack as (value, nfe) and, used as if they were their tensor,
say which field holds it."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

import scorematch as sm


def _samples() -> sm.Samples:
    process = sm.EDM()
    model = sm.Gaussian(torch.zeros(2), torch.eye(2)).score_model(process)
    g = torch.Generator().manual_seed(0)
    return sm.sample(model, process, (8, 2), sampler="heun", steps=4, generator=g)


def test_samples_unpack_and_name_their_tensor():
    samples = _samples()
    x, nfe = samples
    assert x is samples.x and nfe == samples.nfe
    with pytest.raises(AttributeError, match=r"\.x"):
        _ = samples.shape
    with pytest.raises(TypeError, match=r"\.x\[\.\.\.\]"):
        _ = samples[:, 0]
    with pytest.raises(AttributeError, match="no attribute 'not_a_field'"):
        _ = samples.not_a_field
    assert samples.x.shape == (8, 2)
    assert copy.deepcopy(samples).nfe == samples.nfe
    assert dataclasses.replace(samples, nfe=3).nfe == 3


def test_log_likelihood_names_its_tensor():
    result = sm.LogLikelihood(torch.zeros(3), 5)
    with pytest.raises(AttributeError, match=r"\.log_prob"):
        _ = result.mean
