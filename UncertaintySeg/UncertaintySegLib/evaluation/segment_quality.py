"""Does segment uncertainty predict segment quality? (Mehrtash et al., Fig. 3)

Per case and foreground class: Dice against the reference and the mean entropy (and MI) over
the predicted segment. Across a cohort: Pearson and Spearman correlation of logit(Dice) with
mean entropy, and a mean-entropy threshold per class that flags segments with Dice below a
floor (the threshold maximising Youden's J = sensitivity + specificity - 1), which `predict
--flag-threshold thresholds.json` applies to new cases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .metrics import dice_per_class
from ..common.csv_tables import write_csv
from ..common.json_output import write_json
from ..common.plots import pyplot

DICE_CLIP = 1e-3  # logit(Dice) of Dice 0 or 1 is infinite: clip to [DICE_CLIP, 1 - DICE_CLIP]


@dataclass
class SegmentQualityRow:
    method: str
    case: str
    class_name: str
    dice: float
    mean_entropy: float  # NaN where nothing was predicted
    mean_mutual_information: float | None
    predicted_voxels: int
    reference_voxels: int


def case_segment_quality(method: str, case: str, predicted: np.ndarray, reference: np.ndarray, entropy: np.ndarray,
                         class_names, mutual_information: np.ndarray | None = None) -> list[SegmentQualityRow]:
    """One row per foreground class; arrays `(I, J, K)`."""
    dice = dice_per_class(predicted, reference, len(class_names))
    rows = []
    for index, name in enumerate(class_names[1:], start=1):
        mask = predicted == index
        voxels = int(mask.sum())
        rows.append(SegmentQualityRow(
            method=method, case=case, class_name=name, dice=float(dice[index - 1]),
            mean_entropy=float(entropy[mask].mean()) if voxels else math.nan,
            mean_mutual_information=None if mutual_information is None else (float(mutual_information[mask].mean()) if voxels else math.nan),
            predicted_voxels=voxels, reference_voxels=int((reference == index).sum())))
    return rows


def logit_dice(dice) -> np.ndarray:
    clipped = np.clip(np.asarray(dice, dtype=np.float64), DICE_CLIP, 1 - DICE_CLIP)
    return np.log(clipped / (1 - clipped))


def correlations(rows: list[SegmentQualityRow]) -> dict:
    """Pearson r and Spearman rho (with p-values) of logit(Dice) vs mean entropy; segments with nothing predicted are left out."""
    from scipy import stats

    usable = [row for row in rows if not math.isnan(row.mean_entropy)]
    result = {"n": len(usable), "left_out_empty": len(rows) - len(usable)}
    if len(usable) < 3 or len({row.mean_entropy for row in usable}) < 2 or len({row.dice for row in usable}) < 2:
        return {**result, "pearson_r": None, "pearson_p": None, "spearman_rho": None, "spearman_p": None}
    entropy = np.array([row.mean_entropy for row in usable])
    dice = logit_dice([row.dice for row in usable])
    pearson, spearman = stats.pearsonr(entropy, dice), stats.spearmanr(entropy, dice)
    return {**result, "pearson_r": float(pearson.statistic), "pearson_p": float(pearson.pvalue),
            "spearman_rho": float(spearman.statistic), "spearman_p": float(spearman.pvalue)}


def fit_threshold(rows: list[SegmentQualityRow], dice_floor: float) -> dict:
    """The mean-entropy threshold flagging Dice < `dice_floor` best (Youden's J); empty segments count as poor and unflaggable."""
    usable = [row for row in rows if not math.isnan(row.mean_entropy)]
    entropy = np.array([row.mean_entropy for row in usable])
    poor = np.array([row.dice < dice_floor for row in usable])
    if not usable or poor.all() or not poor.any():
        return {"threshold": float(entropy.max()) if usable else None, "youden_j": None, "sensitivity": None, "specificity": None,
                "poor": int(poor.sum()), "n": len(usable),
                "note": "every segment is on one side of the Dice floor: nothing to separate; the threshold flags nothing"}
    best = None
    for threshold in np.unique(entropy):  # flag when mean entropy > threshold
        flagged = entropy > threshold
        sensitivity = float((flagged & poor).sum() / poor.sum())
        specificity = float((~flagged & ~poor).sum() / (~poor).sum())
        if best is None or sensitivity + specificity - 1 > best["youden_j"]:
            best = {"threshold": float(threshold), "youden_j": sensitivity + specificity - 1, "sensitivity": sensitivity,
                    "specificity": specificity}
    return {**best, "poor": int(poor.sum()), "n": len(usable)}


def summarize(rows: list[SegmentQualityRow], class_names, dice_floor: float) -> dict:
    """Per class and over all classes: correlations and the fitted threshold."""
    summary = {}
    for name in list(class_names[1:]) + ["all classes"]:
        selected = [row for row in rows if name == "all classes" or row.class_name == name]
        summary[name] = {"correlation": correlations(selected), "flag": fit_threshold(selected, dice_floor)}
    return summary


def thresholds_document(summary: dict, dice_floor: float, entropy_units: str) -> dict:
    """What `predict --flag-threshold` reads: {"thresholds": {class: value}, "entropy_units": ...}."""
    thresholds = {name: part["flag"]["threshold"] for name, part in summary.items()
                  if name != "all classes" and part["flag"]["threshold"] is not None}
    return {"thresholds": thresholds, "entropy_units": entropy_units, "dice_floor": dice_floor,
            "fitted_on": {name: part["flag"] for name, part in summary.items() if name != "all classes"}}


def write_segment_quality(folder: Path, rows_by_method: dict[str, list[SegmentQualityRow]], class_names, dice_floor: float,
                          entropy_units: str) -> dict:
    """segment_quality.csv, segment_quality.json, segment_quality.png and thresholds[_<method>].json; returns the summaries."""
    rows = [row for method_rows in rows_by_method.values() for row in method_rows]
    write_csv(folder / "segment_quality.csv", rows, SegmentQualityRow.__dataclass_fields__)
    summaries = {method: summarize(method_rows, class_names, dice_floor) for method, method_rows in rows_by_method.items()}
    for method, summary in summaries.items():
        name = "thresholds.json" if len(summaries) == 1 else f"thresholds_{method}.json"
        write_json(folder / name, thresholds_document(summary, dice_floor, entropy_units))
    write_json(folder / "segment_quality.json", {"dice_floor": dice_floor, "entropy_units": entropy_units, "methods": summaries})
    plot_segment_quality(folder / "segment_quality.png", rows_by_method, summaries, entropy_units)
    return summaries


def plot_segment_quality(path: Path, rows_by_method: dict, summaries: dict, entropy_units: str) -> None:
    """logit(Dice) against mean segment entropy, one panel per method, one colour per class (Mehrtash Fig. 3)."""
    plt = pyplot()

    figure, axes = plt.subplots(1, len(rows_by_method), figsize=(4.5 * len(rows_by_method), 4), squeeze=False)
    for axis, (method, rows) in zip(axes[0], rows_by_method.items()):
        for name in sorted({row.class_name for row in rows}):
            points = [(row.mean_entropy, row.dice) for row in rows if row.class_name == name and not math.isnan(row.mean_entropy)]
            if points:
                entropy, dice = zip(*points)
                axis.scatter(entropy, logit_dice(dice), s=14, label=name)
        r = summaries[method]["all classes"]["correlation"]["pearson_r"]
        axis.set_title(f"{method}: r = {r:.2f}" if r is not None else method)
        axis.set_xlabel(f"mean entropy over the predicted segment ({entropy_units})")
        axis.set_ylabel("logit(Dice)")
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
