"""Figures for people (matplotlib, imported lazily): the demo's slice overlay."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...common.plots import pyplot
from ...predict.io import Volume
from ...predict.pipeline import Prediction


def most_foreground_slice(labels: np.ndarray) -> int:
    """Index along k of the slice `(I, J)` with the most predicted foreground (the middle one if none)."""
    counts = (labels > 0).sum(axis=(0, 1))
    return int(counts.argmax()) if counts.any() else labels.shape[2] // 2


def save_overlay_png(path: Path, image: Volume, prediction: Prediction, reference: Volume | None = None) -> Path:
    """Three panels on one axial slice: image, foreground probability overlay, entropy."""
    plt = pyplot()

    k = most_foreground_slice(prediction.labels)
    background = image.array[..., k].T
    foreground = 1.0 - prediction.probabilities[0, :, :, k].T
    entropy = prediction.entropy[..., k].T
    figure, axes = plt.subplots(1, 3, figsize=(9, 3.6))
    for axis, title in zip(axes, ("image", "P(foreground) overlay", "entropy (nats)")):
        axis.imshow(background, cmap="gray", origin="lower")
        axis.set_title(title, fontsize=10)
        axis.axis("off")
    shown = axes[1].imshow(np.ma.masked_less(foreground, 0.05), cmap="viridis", vmin=0, vmax=1, alpha=0.6, origin="lower")
    figure.colorbar(shown, ax=axes[1], fraction=0.046)
    heat = axes[2].imshow(entropy, cmap="inferno", vmin=0, vmax=np.log(prediction.probabilities.shape[0]), origin="lower")
    figure.colorbar(heat, ax=axes[2], fraction=0.046)
    if reference is not None:
        axes[1].contour(reference.array[..., k].T > 0, levels=[0.5], colors="red", linewidths=0.8)
    figure.suptitle(f"slice k={k}; red: reference outline", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return Path(path)
