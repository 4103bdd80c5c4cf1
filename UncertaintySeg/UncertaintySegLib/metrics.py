"""Segmentation and calibration metrics (first version: Dice per class)."""

from __future__ import annotations

import numpy as np


def dice_per_class(predicted: np.ndarray, reference: np.ndarray, num_classes: int) -> list[float]:
    """Dice of classes 1..C-1 between two label maps of the same shape; a class absent from both scores 1."""
    if predicted.shape != reference.shape:
        raise ValueError(f"label maps differ in shape: {predicted.shape} vs {reference.shape}")
    scores = []
    for c in range(1, num_classes):
        p, r = predicted == c, reference == c
        total = int(p.sum()) + int(r.sum())
        scores.append(1.0 if total == 0 else 2.0 * int(np.logical_and(p, r).sum()) / total)
    return scores
