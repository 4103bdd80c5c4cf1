"""Evaluate one case (arrays in, numbers out) and pool cases of one method.

Calibration (ECE/MCE/ACE per variant, equal-width and equal-mass bins), NLL and Brier are
computed inside the ROI; Dice and HD95 on the whole volume (segmentation quality). Pooled
results merge the cases' histograms and voxel-weight NLL and Brier, so they equal one pass
over all voxels of all cases; Dice and HD95 are averaged over cases.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .binning import VARIANTS, BinSums
from .calibration_metrics import BINNINGS, CalibrationHistogram, ReliabilityCurve, curve_from_sums
from .metrics import brier_score, dice_per_class, hausdorff95_per_class, negative_log_likelihood, pooled_mean

NO_VOXELS = "no voxels in the ROI"


@dataclass
class CaseResult:
    """One case of one method: flat scores by name, and the histograms to pool."""

    case: str
    voxels: int
    scores: dict
    histograms: dict = field(repr=False)  # (variant, binning) -> CalibrationHistogram

    @property
    def note(self) -> str:
        return NO_VOXELS if self.voxels == 0 else ""


def calibration_score_names() -> list[str]:
    names = []
    for variant in VARIANTS:
        names += [f"ece_{variant}", f"mce_{variant}", f"ace_{variant}", f"ece_{variant}_equal_mass"]
    return names


def score_names(class_names: list[str]) -> list[str]:
    """Every per-case score, in report order."""
    foreground = class_names[1:]
    return (calibration_score_names() + ["nll", "brier"] + [f"dice_{name}" for name in foreground]
            + [f"hd95_{name}" for name in foreground])


def lower_is_better(score: str) -> bool:
    return not score.startswith("dice_")


def _calibration_scores(histograms: dict) -> dict:
    scores = {}
    for variant in VARIANTS:
        summary = histograms[variant, "equal_width"].compute()
        scores.update({f"ece_{variant}": summary.ece, f"mce_{variant}": summary.mce, f"ace_{variant}": summary.ace,
                       f"ece_{variant}_equal_mass": histograms[variant, "equal_mass"].compute().ece})
    return scores


def evaluate_case(case: str, probabilities: np.ndarray, reference: np.ndarray, predicted: np.ndarray,
                  class_names: list[str], spacing: tuple[float, float, float], roi: np.ndarray | None = None,
                  bins: int = 20) -> CaseResult:
    """Scores of probabilities `(C, I, J, K)` and predicted labels `(I, J, K)` against a reference `(I, J, K)`."""
    num_classes = len(class_names)
    histograms = {}
    for variant in VARIANTS:
        for binning in BINNINGS:
            histograms[variant, binning] = CalibrationHistogram(num_classes, variant, bins, binning).update(
                probabilities, reference, roi)
    nll, voxels = negative_log_likelihood(probabilities, reference, roi)
    brier, _ = brier_score(probabilities, reference, roi)
    foreground = class_names[1:]
    dice = dice_per_class(predicted, reference, num_classes)
    hd95 = hausdorff95_per_class(predicted, reference, num_classes, spacing)
    scores = {**_calibration_scores(histograms), "nll": nll, "brier": brier,
              **{f"dice_{n}": d for n, d in zip(foreground, dice)}, **{f"hd95_{n}": h for n, h in zip(foreground, hd95)}}
    return CaseResult(case, voxels, scores, histograms)


def merged_histogram(results: list[CaseResult], variant: str, binning: str = "equal_width") -> CalibrationHistogram:
    """One histogram holding every case's voxels (the cases' histograms are left as they are)."""
    first = results[0].histograms[variant, binning]
    merged = CalibrationHistogram(first.num_classes, variant, first.bins, binning, first.resolution)
    for result in results:
        merged.merge(result.histograms[variant, binning])
    return merged


def pooled_scores(results: list[CaseResult], class_names: list[str]) -> dict:
    """Scores over all cases: calibration from merged histograms, voxel-weighted NLL/Brier, mean Dice/HD95."""
    merged = {key: merged_histogram(results, *key) for key in results[0].histograms}
    counts = [r.voxels for r in results]
    scores = {**_calibration_scores(merged), "voxels": sum(counts),
              "nll": pooled_mean([r.scores["nll"] for r in results], counts),
              "brier": pooled_mean([r.scores["brier"] for r in results], counts)}
    for name in score_names(class_names):
        if name.startswith(("dice_", "hd95_")):
            values = [r.scores[name] for r in results if r.scores[name] is not None]
            scores[name] = float(np.mean(values)) if values else None
    return scores


def marginal_curve(histogram: CalibrationHistogram) -> ReliabilityCurve:
    """Equal-width reliability curve `(1, B)` with every row (class) pooled: the marginal diagram."""
    sums = histogram.sums
    pooled = BinSums(sums.counts.sum(0, keepdims=True), sums.confidence_sums.sum(0, keepdims=True),
                     sums.hits.sum(0, keepdims=True))
    curve = histogram.curve()
    return curve_from_sums(pooled, curve.lower[:1], curve.upper[:1])


def subject_spread(results: list[CaseResult], variant: str) -> dict[str, np.ndarray]:
    """Per bin, over subjects with voxels in it: mean and standard deviation of accuracy, and their number `(B,)`.

    Rousseau et al. Fig. 2; `accuracies (S, B)` (NaN where a subject has no voxel in a bin) gives Fig. 3.
    """
    accuracies = np.stack([marginal_curve(r.histograms[variant, "equal_width"]).accuracy[0] for r in results])
    present = np.isfinite(accuracies)
    subjects = present.sum(axis=0)
    filled = np.where(present, accuracies, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(subjects > 0, filled.sum(axis=0) / subjects, np.nan)
        deviation = np.where(subjects > 0, np.sqrt((np.where(present, accuracies - mean, 0.0) ** 2).sum(axis=0) / subjects), np.nan)
    return {"mean": mean, "std": deviation, "subjects": subjects, "accuracies": accuracies}
