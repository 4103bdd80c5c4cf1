"""Voxel-wise uncertainty from class probabilities `(C, *spatial)` (torch tensors)."""

from __future__ import annotations

import math


def predictive_entropy(probabilities, normalize: bool = False):
    """Entropy -sum_c p_c log p_c in nats, `(C, *spatial) -> (*spatial)`; with `normalize`, divided by log C (range [0, 1])."""
    import torch

    entropy = torch.special.entr(probabilities).sum(dim=0)
    return entropy / math.log(probabilities.shape[0]) if normalize else entropy


def max_probability(probabilities):
    """Confidence of the predicted class, `(C, *spatial) -> (*spatial)`."""
    return probabilities.max(dim=0).values


def label_map(probabilities):
    """Predicted class index per voxel, `(C, *spatial) -> (*spatial)` uint8 (up to 256 classes)."""
    import torch

    return probabilities.argmax(dim=0).to(torch.uint8)
