"""Entropy and labels on hand-computed cases."""

import math

import pytest
import torch

from UncertaintySegLib.predict.uncertainty import label_map, normalize_entropy, predictive_entropy


def test_entropy_by_hand():
    probabilities = torch.tensor([[1.0, 0.5, 1 / 3], [0.0, 0.5, 1 / 3], [0.0, 0.0, 1 / 3]])  # (C=3, V=3)
    assert torch.allclose(predictive_entropy(probabilities), torch.tensor([0.0, math.log(2), math.log(3)]), atol=1e-6)
    assert torch.allclose(normalize_entropy(predictive_entropy(probabilities), 3), torch.tensor([0.0, math.log(2) / math.log(3), 1.0]), atol=1e-6)


def test_labels():
    probabilities = torch.tensor([[0.2, 0.7], [0.5, 0.1], [0.3, 0.2]])
    assert label_map(probabilities).tolist() == [1, 0] and label_map(probabilities).dtype == torch.uint8


@pytest.mark.parametrize("classes", [2, 5])
def test_entropy_is_maximal_for_uniform_probabilities(classes):
    uniform = torch.full((classes, 4), 1.0 / classes)
    peaked = torch.softmax(torch.randn(classes, 100) * 3, dim=0)
    assert torch.allclose(predictive_entropy(uniform), torch.full((4,), math.log(classes)))
    assert float(predictive_entropy(peaked).max()) <= math.log(classes) + 1e-6
