"""Per-case scores of a probabilistic segmentation: NLL, Brier, Dice per class, HD95 per class.

Calibration histograms (ECE, MCE, ACE, reliability curves) are in `calibration_metrics`.
NLL and Brier are means over voxels; the voxel count comes with them so that cases pool
exactly (`pooled_mean`). They run over chunks of voxels, so their extra memory stays small.
"""

from __future__ import annotations

import warnings

import numpy as np

CHUNK_VOXELS = 1 << 20
PROBABILITY_FLOOR = 1e-7  # NLL of a voxel is at most -log(1e-7) ~ 16.1 nats


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


def _chunks(probabilities: np.ndarray, labels: np.ndarray, mask: np.ndarray | None):
    """Yield `(C, n)` probabilities (float64) and `(n,)` labels of the voxels inside `mask`, chunk by chunk."""
    flat_probabilities = probabilities.reshape(probabilities.shape[0], -1)
    flat_labels = labels.reshape(-1)
    flat_mask = None if mask is None else mask.reshape(-1)
    for start in range(0, flat_labels.size, CHUNK_VOXELS):
        stop = start + CHUNK_VOXELS
        p, y = flat_probabilities[:, start:stop].astype(np.float64), flat_labels[start:stop].astype(np.int64)
        if flat_mask is not None:
            p, y = p[:, flat_mask[start:stop]], y[flat_mask[start:stop]]
        yield p, y


def negative_log_likelihood(probabilities: np.ndarray, labels: np.ndarray, mask: np.ndarray | None = None) -> tuple[float | None, int]:
    """Mean -log p[reference class] (nats) over voxels of `probabilities (C, *S)`, `labels (*S)`; (None, 0) if empty."""
    total, count = 0.0, 0
    for p, y in _chunks(probabilities, labels, mask):
        total -= float(np.log(np.maximum(p[y, np.arange(y.size)], PROBABILITY_FLOOR)).sum())
        count += y.size
    return (total / count if count else None), count


def brier_score(probabilities: np.ndarray, labels: np.ndarray, mask: np.ndarray | None = None) -> tuple[float | None, int]:
    """Multi-class Brier score (Mehrtash et al. 2020, eq. 4): mean over voxels of sum_c (p_c - [y = c])^2.

    Range [0, 2]; `probabilities (C, *S)`, `labels (*S)`; (None, 0) if no voxel.
    """
    total, count = 0.0, 0
    for p, y in _chunks(probabilities, labels, mask):
        squared = (p ** 2).sum(axis=0)
        squared += 1.0 - 2.0 * p[y, np.arange(y.size)]
        total += float(squared.sum())
        count += y.size
    return (total / count if count else None), count


def pooled_mean(values: list[float | None], counts: list[int]) -> float | None:
    """Voxel-weighted mean of per-case means: the mean over all voxels of all cases (None if none)."""
    pairs = [(v, n) for v, n in zip(values, counts) if v is not None and n > 0]
    total = sum(n for _, n in pairs)
    return sum(v * n for v, n in pairs) / total if total else None


def hausdorff95_per_class(predicted: np.ndarray, reference: np.ndarray, num_classes: int,
                          spacing: tuple[float, ...]) -> list[float | None]:
    """95th-percentile symmetric Hausdorff distance (mm, MONAI's) of classes 1..C-1 between label maps `(*S)`.

    None where the class is absent from the prediction or the reference (the distance is undefined).
    """
    import torch
    from monai.metrics import compute_hausdorff_distance

    predicted, reference = torch.as_tensor(predicted), torch.as_tensor(reference)
    distances = []
    for c in range(1, num_classes):
        pair = [(labels == c)[None, None] for labels in (predicted, reference)]
        if not (pair[0].any() and pair[1].any()):
            distances.append(None)
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # MONAI's own deprecated argument, not ours
            distance = float(compute_hausdorff_distance(*pair, include_background=True, percentile=95,
                                                        spacing=list(spacing)).item())
        distances.append(distance if np.isfinite(distance) else None)
    return distances
