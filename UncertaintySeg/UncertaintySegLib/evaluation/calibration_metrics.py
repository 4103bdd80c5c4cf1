"""Streaming calibration histograms and what follows from them: ECE, MCE, ACE, reliability curves.

`CalibrationHistogram` keeps, per bin, the voxel count, the sum of confidence and the count of
hits (`update` over chunks or cases, `merge`, `compute`); memory is O(bins x classes), never
O(voxels). The metrics are pure functions of those sums.

Conventions:
- ECE = sum_b n_b / N * |acc_b - conf_b|; MCE = max over non-empty bins; ACE = mean over
  non-empty bins (unweighted). Class-wise values are the mean over classes of each class's
  value (as MONAI's `CalibrationErrorMetric` reduces channels).
- Equal-width bins are `[b/B, (b+1)/B)`, the last one closed: a confidence of exactly 1.0 is in
  the last bin, as in scikit-learn. torchmetrics' `MulticlassCalibrationError` gives 1.0 a bin
  of its own; both agree whenever no confidence is exactly 1.0 (a correct voxel at 1.0 adds
  nothing either way; a wrong one adds 1/N to torchmetrics' ECE and less here).
- Equal-mass bins are built at `compute` from a fine equal-width grid (`grid` sub-bins, 2^14 by
  default): edges lie on that grid, so each bin holds as close to N/B voxels as the grid and
  ties allow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .binning import VARIANTS, BinSums, InputFaults, accumulate_numpy, accumulate_torch, empty_sums, rows_for
from ..common.errors import InputError

BINNINGS = ("equal_width", "equal_mass")
SUM_TOLERANCE = 1e-3


@dataclass
class ReliabilityCurve:
    """Per-bin statistics `(rows, B)`: edges, count, mean confidence and accuracy (NaN where empty)."""

    lower: np.ndarray
    upper: np.ndarray
    count: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray


@dataclass
class CalibrationSummary:
    """Metrics of one histogram; `None` (and `voxels == 0`) when no voxel was seen ("no voxels")."""

    variant: str
    binning: str
    voxels: int
    ece: float | None
    mce: float | None
    ace: float | None
    per_row_ece: list[float | None]
    curve: ReliabilityCurve


def curve_from_sums(sums: BinSums, lower: np.ndarray, upper: np.ndarray) -> ReliabilityCurve:
    """Means per bin from sums `(rows, B)`; empty bins are NaN."""
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.where(sums.counts > 0, sums.confidence_sums / sums.counts, np.nan)
        accuracy = np.where(sums.counts > 0, sums.hits / sums.counts, np.nan)
    return ReliabilityCurve(lower, upper, sums.counts.copy(), confidence, accuracy)


def expected_calibration_error(curve: ReliabilityCurve) -> np.ndarray:
    """Count-weighted mean |accuracy - confidence| per row `(rows,)`; NaN for a row with no voxel."""
    gaps = np.nan_to_num(np.abs(curve.accuracy - curve.confidence))
    totals = curve.count.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, (gaps * curve.count).sum(axis=1) / totals, np.nan)


def maximum_calibration_error(curve: ReliabilityCurve) -> np.ndarray:
    """Largest |accuracy - confidence| over non-empty bins, per row `(rows,)`."""
    gaps = np.where(curve.count > 0, np.abs(curve.accuracy - curve.confidence), -np.inf)
    worst = gaps.max(axis=1)
    return np.where(np.isfinite(worst), worst, np.nan)


def average_calibration_error(curve: ReliabilityCurve) -> np.ndarray:
    """Unweighted mean |accuracy - confidence| over non-empty bins, per row `(rows,)`."""
    filled = curve.count > 0
    gaps = np.where(filled, np.abs(curve.accuracy - curve.confidence), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(filled.any(axis=1), gaps.sum(axis=1) / filled.sum(axis=1), np.nan)


def equal_mass_sums(fine: BinSums, bins: int) -> tuple[BinSums, np.ndarray, np.ndarray]:
    """Group fine equal-width sums `(rows, G)` into `bins` bins of about equal count per row.

    Returns the grouped sums `(rows, bins)` and their lower/upper edges `(rows, bins)`.
    """
    rows, grid = fine.counts.shape
    grouped = empty_sums(rows, bins)
    lower, upper = np.zeros((rows, bins)), np.zeros((rows, bins))
    for row in range(rows):
        cumulative = np.cumsum(fine.counts[row])
        targets = cumulative[-1] * np.arange(1, bins) / bins
        cuts = np.concatenate([[0], np.searchsorted(cumulative, targets, side="left") + 1, [grid]])
        cuts = np.maximum.accumulate(np.minimum(cuts, grid))
        group = np.searchsorted(cuts[1:], np.arange(grid), side="right")
        for target, source in ((grouped.counts, fine.counts), (grouped.confidence_sums, fine.confidence_sums),
                               (grouped.hits, fine.hits)):
            target[row] = np.bincount(group, weights=source[row], minlength=bins)[:bins].astype(target.dtype)
        lower[row], upper[row] = cuts[:-1] / grid, cuts[1:] / grid
    return grouped, lower, upper


def _as_float_or_none(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


class CalibrationHistogram:
    """Streaming per-bin sums for one variant: `class_wise`, `top_label` or `foreground`.

    `update(probabilities (C, *spatial), labels (*spatial), mask (*spatial) | None)` takes numpy
    arrays or torch tensors (CPU or CUDA); state is `(rows, bins)` (or `(rows, grid)` for
    equal-mass bins), whatever the number of voxels.
    """

    def __init__(self, num_classes: int, variant: str = "top_label", bins: int = 20, binning: str = "equal_width",
                 grid: int = 1 << 14):
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, found '{variant}'")
        if binning not in BINNINGS:
            raise ValueError(f"binning must be one of {BINNINGS}, found '{binning}'")
        if num_classes < 2 or bins < 1 or grid < bins:
            raise ValueError(f"need num_classes >= 2, bins >= 1 and grid >= bins; found {num_classes}, {bins}, {grid}")
        self.num_classes, self.variant, self.bins, self.binning = num_classes, variant, bins, binning
        self.grid = grid
        self.resolution = bins if binning == "equal_width" else grid
        self.sums = empty_sums(rows_for(variant, num_classes), self.resolution)

    def update(self, probabilities, labels, mask=None) -> "CalibrationHistogram":
        """Add voxels; raises `InputError` (and adds nothing) on NaN, values outside [0, 1], sums not 1 or bad labels."""
        flat_probabilities, flat_labels, flat_mask = self._flatten(probabilities, labels, mask)
        if _is_torch(flat_probabilities) and flat_probabilities.device.type != "cpu":
            sums, faults = accumulate_torch(flat_probabilities, flat_labels, flat_mask, self.variant, self.resolution)
        else:
            sums, faults = accumulate_numpy(*(_cpu_numpy(a) for a in (flat_probabilities, flat_labels)),
                                            None if flat_mask is None else _cpu_numpy(flat_mask), self.variant,
                                            self.resolution)
        self._raise_for(faults)
        self._add(sums)
        return self

    def merge(self, other: "CalibrationHistogram") -> "CalibrationHistogram":
        """Add another histogram's sums (same classes, variant and bins) to this one."""
        if (other.num_classes, other.variant, other.binning, other.resolution) != (
                self.num_classes, self.variant, self.binning, self.resolution):
            raise ValueError("cannot merge histograms with different classes, variant or bins")
        self._add(other.sums)
        return self

    @property
    def voxels(self) -> int:
        return int(self.sums.counts[0].sum())

    def curve(self) -> ReliabilityCurve:
        """Reliability curve `(rows, bins)` with equal-width or equal-mass bins."""
        if self.binning == "equal_width":
            edges = np.linspace(0.0, 1.0, self.bins + 1)
            rows = self.sums.counts.shape[0]
            return curve_from_sums(self.sums, np.tile(edges[:-1], (rows, 1)), np.tile(edges[1:], (rows, 1)))
        grouped, lower, upper = equal_mass_sums(self.sums, self.bins)
        return curve_from_sums(grouped, lower, upper)

    def compute(self) -> CalibrationSummary:
        """ECE, MCE and ACE (mean over rows for class-wise) and the curve; `None` metrics when empty."""
        curve = self.curve()
        per_row = [expected_calibration_error(curve), maximum_calibration_error(curve), average_calibration_error(curve)]
        ece, mce, ace = (_as_float_or_none(np.mean(values)) for values in per_row)
        return CalibrationSummary(self.variant, self.binning, self.voxels, ece, mce, ace,
                                  [_as_float_or_none(v) for v in per_row[0]], curve)

    def _add(self, sums: BinSums) -> None:
        self.sums.counts += sums.counts
        self.sums.confidence_sums += sums.confidence_sums
        self.sums.hits += sums.hits

    def _flatten(self, probabilities, labels, mask):
        if probabilities.ndim < 1 or probabilities.shape[0] != self.num_classes:
            raise InputError(f"probabilities have shape {tuple(probabilities.shape)}: expected ({self.num_classes}, ...) "
                             f"for {self.num_classes} classes; pass per-class probabilities, classes first.")
        if tuple(labels.shape) != tuple(probabilities.shape[1:]):
            raise InputError(f"labels have shape {tuple(labels.shape)}, probabilities {tuple(probabilities.shape)}: "
                             "expected labels of the probabilities' spatial shape; resample one onto the other's grid.")
        if mask is not None and tuple(mask.shape) != tuple(labels.shape):
            raise InputError(f"mask has shape {tuple(mask.shape)}: expected the labels' shape {tuple(labels.shape)}.")
        _check_dtypes(probabilities, labels)
        flat_mask = None if mask is None else mask.reshape(-1)
        return probabilities.reshape(self.num_classes, -1), labels.reshape(-1), flat_mask

    def _raise_for(self, faults: InputFaults) -> None:
        if faults.out_of_range:
            raise InputError(f"{faults.out_of_range} voxels hold NaN or probabilities outside [0, 1]: expected "
                             "probabilities (apply a softmax to logits; check the file is a probability map).")
        if faults.bad_labels:
            raise InputError(f"{faults.bad_labels} reference voxels hold labels outside 0..{self.num_classes - 1}: "
                             f"expected class indices of the {self.num_classes} predicted classes; check the "
                             "reference matches the model's classes.")
        if faults.worst_sum_error > SUM_TOLERANCE:
            raise InputError(f"class probabilities sum to 1 +/- {faults.worst_sum_error:.3g} at some voxels: expected "
                             f"1 within {SUM_TOLERANCE}; pass softmax probabilities of all classes.")


def _is_torch(array) -> bool:
    return type(array).__module__.startswith("torch")


def _cpu_numpy(array) -> np.ndarray:
    """A numpy view of a CPU tensor or array (no copy when contiguous); 16-bit floats become float32."""
    if _is_torch(array):
        array = array.detach()
        array = (array.float() if array.dtype.is_floating_point and array.element_size() == 2 else array).numpy()
    array = np.asarray(array)
    if array.dtype == np.float16:
        array = array.astype(np.float32)
    return np.ascontiguousarray(array)


def _check_dtypes(probabilities, labels) -> None:
    kind = str(labels.dtype)
    if "int" not in kind and "bool" not in kind:
        raise InputError(f"labels have dtype {kind}: expected integer class indices; round and cast the reference "
                         "(e.g. labels.astype(np.int16)) after checking it holds whole numbers.")
    if "float" not in str(probabilities.dtype) and "bfloat" not in str(probabilities.dtype):
        raise InputError(f"probabilities have dtype {probabilities.dtype}: expected floating-point probabilities.")
