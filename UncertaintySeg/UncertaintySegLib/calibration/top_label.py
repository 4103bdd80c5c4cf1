"""Histogram binning and isotonic regression of the top-label confidence, for comparison with the scaling methods.

Both learn a map g from a voxel's top-label confidence `p_max` to the chance that its top label is
right, from the fitting voxels (Zadrozny and Elkan):

- `HistogramBinning`: `n_bins` equal-width bins of [0, 1]; g is the accuracy of each bin (a bin
  without voxels keeps the identity at its centre).
- `IsotonicRegression`: the non-decreasing g of best fit (pool-adjacent-violators). It is optimal
  for every proper scoring rule, NLL included, among non-decreasing maps, which include the identity,
  so it never raises the NLL of its fitting voxels (up to the clipping below).

The other classes keep their proportions and share the rest, `p_c (1 - g) / (1 - p_max)`. The result
is returned as logits (log-probabilities, g clipped to [1e-6, 1 - 1e-6]). Unlike temperature scaling,
where g(p_max) falls below another class's rescaled probability the voxel's argmax changes.
"""

from __future__ import annotations

import numpy as np

from ..common.errors import InputError
from .base import DEFAULT_MAX_VOXELS_PER_CASE, VoxelCalibrator

CLIP = 1e-6


def pool_adjacent_violators(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knots `(xs, gs)` of the non-decreasing least-squares fit of `y` on `x`: each block of pooled
    points gives two knots (its lowest and highest x, same value), so linear interpolation between the
    knots reproduces the fit at every data point."""
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order].astype(np.float64)
    unique, start = np.unique(x, return_index=True)  # tied x share one value: pool them first
    sums, counts = np.add.reduceat(y, start), np.diff(np.append(start, len(x))).astype(np.float64)
    values, weights, lows, highs = [], [], [], []
    for value, weight, at in zip(sums / counts, counts, unique):
        values.append(value)
        weights.append(weight)
        lows.append(at)
        highs.append(at)
        while len(values) > 1 and values[-2] >= values[-1]:  # a violation: pool the last two blocks
            total = weights[-2] + weights[-1]
            values[-2:] = [(values[-2] * weights[-2] + values[-1] * weights[-1]) / total]
            weights[-2:] = [total]
            lows[-2:] = [lows[-2]]
            highs[-2:] = [highs[-1]]
    xs = np.array([point for low, high in zip(lows, highs) for point in (low, high)])
    gs = np.repeat(np.array(values), 2)
    return xs, gs


def interpolate(x, xs, gs):
    """Piecewise-linear `g(x)` through knots `xs` (non-decreasing) -> `gs`, constant beyond the ends (torch)."""
    import torch

    xs, gs = xs.to(x.device), gs.to(x.device)
    right = torch.searchsorted(xs, x.contiguous(), right=True).clamp(1, len(xs) - 1)
    x0, x1, g0, g1 = xs[right - 1], xs[right], gs[right - 1], gs[right]
    span = (x1 - x0).clamp_min(1e-12)
    weight = ((x - x0) / span).clamp(0, 1)
    return torch.where(x1 > x0, g0 + weight * (g1 - g0), g1)


class TopLabelCalibrator(VoxelCalibrator):
    """A map `g` of the top-label confidence, stored as knots `knots_x_`, `knots_g_` (piecewise linear)."""

    def _fit_voxels(self, logits, labels) -> None:
        import torch

        probabilities = torch.softmax(logits.double(), 1)
        confidence, top = probabilities.max(1)
        xs, gs = self._fit_map(confidence.numpy(), (top == labels).numpy().astype(np.float64))
        self.knots_x_, self.knots_g_ = torch.from_numpy(xs).double(), torch.from_numpy(gs).double()

    def _fit_map(self, confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _apply(self, logits, channel_dim: int):
        import torch

        probabilities = torch.softmax(logits.double(), channel_dim)
        confidence, top = probabilities.max(channel_dim, keepdim=True)
        mapped = interpolate(confidence, self.knots_x_, self.knots_g_).clamp(CLIP, 1 - CLIP)
        rest = 1 - confidence
        share = torch.where(rest > 1e-12, probabilities / rest.clamp_min(1e-12),
                            torch.full_like(probabilities, 1 / (probabilities.shape[channel_dim] - 1)))
        others = share * (1 - mapped)  # the other classes keep their proportions and share 1 - g
        calibrated = others.scatter(channel_dim, top, mapped)
        return calibrated.clamp_min(1e-12).log().float()

    def _tensors(self) -> dict:
        return {"knots_x": self.knots_x_, "knots_g": self.knots_g_}

    def _load_tensors(self, tensors: dict) -> None:
        self.knots_x_, self.knots_g_ = tensors["knots_x"].double(), tensors["knots_g"].double()

    def _tensor_shapes(self) -> dict:
        return {"knots_x": ((None,), "confidences of the map's knots"), "knots_g": ((None,), "calibrated confidences at the knots")}

    def _check_values(self, source: str) -> None:
        x, g = self.knots_x_, self.knots_g_
        if len(x) != len(g) or len(x) == 0:
            raise InputError(f"{source}knots_x, knots_g: expected the same number of knots (at least 1), found {len(x)} and "
                             f"{len(g)}; fit the calibrator again.")
        if not bool(((x >= 0) & (x <= 1) & (g >= 0) & (g <= 1)).all()) or bool((x[1:] < x[:-1]).any()):
            raise InputError(f"{source}knots_x, knots_g: expected increasing confidences in [0, 1] mapped into [0, 1]; "
                             "fit the calibrator again.")


class HistogramBinning(TopLabelCalibrator):
    """Top-label confidence mapped to the accuracy of its bin (`n_bins` equal-width bins of [0, 1])."""

    method = "histogram"
    title = "Histogram binning"
    order = 5  # for comparison: not offered in the panel

    def __init__(self, n_bins: int = 15, max_voxels_per_case: int | None = DEFAULT_MAX_VOXELS_PER_CASE, seed: int = 0):
        super().__init__(max_voxels_per_case, seed)
        self.n_bins = n_bins

    def _fit_map(self, confidence, correct):
        from ..common.errors import InputError

        if self.n_bins < 1:
            raise InputError(f"n_bins {self.n_bins}: expected at least 1.")
        edges = np.linspace(0.0, 1.0, self.n_bins + 1)
        bins = np.clip(np.digitize(confidence, edges[1:-1], right=False), 0, self.n_bins - 1)
        counts = np.bincount(bins, minlength=self.n_bins)
        hits = np.bincount(bins, weights=correct, minlength=self.n_bins)
        centres = (edges[:-1] + edges[1:]) / 2
        accuracy = np.where(counts > 0, hits / np.maximum(counts, 1), centres)
        # a step per bin: knots at both edges (the upper one nudged inside so neighbouring steps do not blend)
        xs = np.stack([edges[:-1], np.nextafter(edges[1:], 0)], 1).reshape(-1)
        xs[-1] = 1.0
        return xs, np.repeat(accuracy, 2)

    def _summary(self) -> dict:
        return {"n_bins": self.n_bins}

    def _parameters_text(self) -> str:
        return f"{self.n_bins} bins"


class IsotonicRegression(TopLabelCalibrator):
    """Top-label confidence mapped by the non-decreasing fit of top-label correctness (pool-adjacent-violators)."""

    method = "isotonic"
    title = "Isotonic regression"
    order = 6  # for comparison: not offered in the panel

    def _fit_map(self, confidence, correct):
        return pool_adjacent_violators(confidence, correct)

    def _summary(self) -> dict:
        return {"knots": int(len(self.knots_x_))}

    def _parameters_text(self) -> str:
        return f"{len(self.knots_x_) // 2} steps"
