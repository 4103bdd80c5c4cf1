"""Reliability diagrams as PNG (matplotlib, imported lazily).

Top: accuracy per bin as bars at the bins' edges, mean confidence as points, the identity
line, and the per-subject spread (mean +/- standard deviation of accuracy over subjects) as a
band; ECE in the legend. Bottom: the voxel count per bin (log scale).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..calibration_metrics import ReliabilityCurve
from ...common.plots import pyplot


def save_reliability_diagram(path: Path, curve: ReliabilityCurve, title: str, ece: float | None,
                             spread: dict | None = None) -> Path:
    """Draw row 0 of `curve` `(1, B)`; `spread` is `case_evaluation.subject_spread`'s result (or None)."""
    plt = pyplot()

    lower, upper = curve.lower[0], curve.upper[0]
    centres, widths = (lower + upper) / 2, upper - lower
    filled = curve.count[0] > 0
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    label = "accuracy" + ("" if ece is None else f" (ECE {ece:.4f})")
    top.bar(lower[filled], curve.accuracy[0][filled], width=widths[filled], align="edge", color="#4c72b0",
            edgecolor="white", alpha=0.8, label=label)
    top.plot(centres[filled], curve.confidence[0][filled], "o", color="#dd8452", markersize=4, label="mean confidence")
    top.plot([0, 1], [0, 1], "--", color="gray", linewidth=1, label="perfect calibration")
    if spread is not None and np.isfinite(spread["mean"]).any():
        low, high = spread["mean"] - spread["std"], spread["mean"] + spread["std"]
        shown = np.isfinite(spread["mean"])
        top.fill_between(centres[shown], low[shown], high[shown], color="#55a868", alpha=0.3,
                         label=f"subjects: mean +/- SD (n={len(spread['accuracies'])})")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.set_title(title, fontsize=10)
    top.legend(loc="upper left", fontsize=8)
    bottom.bar(lower, np.maximum(curve.count[0], 0), width=widths, align="edge", color="#8172b2", edgecolor="white")
    if filled.any():
        bottom.set_yscale("log")
    bottom.set_xlabel("confidence")
    bottom.set_ylabel("voxels")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return Path(path)
