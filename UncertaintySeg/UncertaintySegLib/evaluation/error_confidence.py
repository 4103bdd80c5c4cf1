"""TP/FP/FN confidence: is the model sure where it is right and unsure where it is wrong?

For one foreground class c, the prediction is the argmax of the probabilities `(C, I, J, K)` and
the confidence map `(I, J, K)` is their maximum over C (the confidence of the predicted label).
Two units are scored against a reference label map `(I, J, K)`:

- slice (2-D, along a chosen axis): TP when prediction==c and reference==c both have voxels in
  it, FP when only the prediction has, FN when only the reference has, TN when neither. TP and
  FP confidence: mean over the predicted region of the slice; FN: mean over its reference
  region (how sure the model was of what it predicted there instead); TN: none.
- component (3-D, `scipy.ndimage.label` with full 26-connectivity): a component of
  prediction==c is TP if it touches reference==c, else FP (mean confidence over the
  component); a component of reference==c that touches no voxel predicted as c is FN (mean
  confidence over that reference component).

A confident model that is right on TP and unsure on FP/FN has high TP and low FP/FN
confidence. Rows are small records (one per slice or component), so a cohort keeps only them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..common.csv_tables import write_csv
from ..common.errors import InputError
from ..common.plots import pyplot

UNITS = ("slice", "component")
OUTCOMES = {"slice": ("TP", "FP", "FN", "TN"), "component": ("TP", "FP", "FN")}
PLOTTED_OUTCOMES = ("TP", "FP", "FN")
CSV_COLUMNS = ("method", "case", "class", "unit", "index", "outcome", "voxels", "confidence")
FULL_CONNECTIVITY = np.ones((3, 3, 3), bool)


@dataclass(frozen=True)
class ErrorConfidenceRow:
    """One slice or component of one class of one case.

    `index`: the slice's index along the axis, or the component's number in its own labelling
    (predicted components for TP/FP, reference components for FN; numbered from 1).
    `voxels`: the voxels the confidence averages (0 for a TN slice). `confidence`: None for TN.
    """

    case: str
    class_name: str
    unit: str
    index: int
    outcome: str
    voxels: int
    confidence: float | None


def _check_inputs(probabilities: np.ndarray, reference: np.ndarray, axis: int) -> None:
    if probabilities.ndim != 4 or reference.ndim != 3 or probabilities.shape[1:] != reference.shape:
        raise InputError(f"probabilities have shape {probabilities.shape} and the reference {reference.shape}: expected "
                         "probabilities (C, I, J, K) and a reference (I, J, K) on the same grid; resample one onto the "
                         "other.")
    if axis not in (0, 1, 2):
        raise InputError(f"slice axis {axis!r}: expected 0, 1 or 2 (an axis of the (I, J, K) volume).")


def _check_class(class_index: int, num_classes: int) -> None:
    if not isinstance(class_index, (int, np.integer)) or not 1 <= class_index < num_classes:
        raise InputError(f"class index {class_index!r}: expected a foreground class 1..{num_classes - 1} of the "
                         f"{num_classes} probability channels (0 is background).")


def _slice_rows(predicted: np.ndarray, reference: np.ndarray, confidence: np.ndarray, axis: int, case: str,
                class_name: str) -> list[ErrorConfidenceRow]:
    """One row per slice along `axis`, from boolean masks and the confidence map, all `(I, J, K)`."""
    others = tuple(a for a in range(3) if a != axis)
    predicted_count = predicted.sum(axis=others)
    reference_count = reference.sum(axis=others)
    predicted_sum = np.where(predicted, confidence, 0).sum(axis=others, dtype=np.float64)
    reference_sum = np.where(reference, confidence, 0).sum(axis=others, dtype=np.float64)
    rows = []
    for index in range(predicted.shape[axis]):
        if predicted_count[index]:
            outcome = "TP" if reference_count[index] else "FP"
            voxels, confidence_sum = int(predicted_count[index]), predicted_sum[index]
        elif reference_count[index]:
            outcome, voxels, confidence_sum = "FN", int(reference_count[index]), reference_sum[index]
        else:
            outcome, voxels, confidence_sum = "TN", 0, None
        mean = None if confidence_sum is None else float(confidence_sum / voxels)
        rows.append(ErrorConfidenceRow(case, class_name, "slice", index, outcome, voxels, mean))
    return rows


def _components(mask: np.ndarray, other: np.ndarray, confidence: np.ndarray) -> list[tuple[int, int, float, bool]]:
    """(number, voxels, mean confidence, touches `other`) per 26-connected component of `mask`, all `(I, J, K)`."""
    labels, count = ndimage.label(mask, structure=FULL_CONNECTIVITY)
    voxels = np.bincount(labels.ravel(), minlength=count + 1)
    sums = np.bincount(labels.ravel(), weights=confidence.ravel().astype(np.float64), minlength=count + 1)
    touched = np.bincount(labels[other], minlength=count + 1) > 0
    return [(n, int(voxels[n]), float(sums[n] / voxels[n]), bool(touched[n])) for n in range(1, count + 1)]


def _component_rows(predicted: np.ndarray, reference: np.ndarray, confidence: np.ndarray, case: str,
                    class_name: str) -> list[ErrorConfidenceRow]:
    """TP/FP rows for predicted components, then FN rows for reference components that no prediction touches."""
    rows = [ErrorConfidenceRow(case, class_name, "component", number, "TP" if touched else "FP", voxels, mean)
            for number, voxels, mean, touched in _components(predicted, reference, confidence)]
    rows += [ErrorConfidenceRow(case, class_name, "component", number, "FN", voxels, mean)
             for number, voxels, mean, touched in _components(reference, predicted, confidence) if not touched]
    return rows


def _class_rows(predicted_labels: np.ndarray, confidence: np.ndarray, reference: np.ndarray, class_index: int,
                axis: int, case: str, class_name: str) -> list[ErrorConfidenceRow]:
    predicted, expected = predicted_labels == class_index, reference == class_index
    return (_slice_rows(predicted, expected, confidence, axis, case, class_name)
            + _component_rows(predicted, expected, confidence, case, class_name))


def error_confidence_rows(probabilities: np.ndarray, reference: np.ndarray, class_index: int, axis: int = 2,
                          case: str = "", class_name: str = "") -> list[ErrorConfidenceRow]:
    """Slice rows (in index order along `axis`), then component rows, of class `class_index`.

    probabilities: `(C, I, J, K)` softmax (sums to 1 over C); reference: `(I, J, K)` class indices.
    `class_name` defaults to the class index as text.
    """
    _check_inputs(probabilities, reference, axis)
    _check_class(class_index, probabilities.shape[0])
    return _class_rows(probabilities.argmax(axis=0), probabilities.max(axis=0), reference, int(class_index), axis, case,
                       class_name or str(class_index))


def case_error_confidence(case: str, probabilities: np.ndarray, reference: np.ndarray, class_names: list[str],
                          axis: int = 2) -> list[ErrorConfidenceRow]:
    """`error_confidence_rows` of every foreground class (1..C-1) of one case, argmax computed once."""
    _check_inputs(probabilities, reference, axis)
    if len(class_names) != probabilities.shape[0]:
        raise InputError(f"{len(class_names)} class names for {probabilities.shape[0]} probability channels: expected "
                         "one name per channel, background first.")
    predicted, confidence = probabilities.argmax(axis=0), probabilities.max(axis=0)
    rows = []
    for class_index, class_name in enumerate(class_names[1:], start=1):
        rows += _class_rows(predicted, confidence, reference, class_index, axis, case, class_name)
    return rows


def summarize_error_confidence(rows: list[ErrorConfidenceRow]) -> dict:
    """unit -> outcome -> {"count", "mean_confidence", "median_confidence"} (None where there is no confidence)."""
    summary = {}
    for unit in UNITS:
        summary[unit] = {}
        for outcome in OUTCOMES[unit]:
            group = [r for r in rows if r.unit == unit and r.outcome == outcome]
            values = np.array([r.confidence for r in group if r.confidence is not None], float)
            summary[unit][outcome] = {"count": len(group),
                                      "mean_confidence": float(values.mean()) if values.size else None,
                                      "median_confidence": float(np.median(values)) if values.size else None}
    return summary


def write_error_confidence_csv(path: Path, methods: dict[str, list[ErrorConfidenceRow]]) -> Path:
    """One line per row of every method (columns `CSV_COLUMNS`); a TN slice's confidence is an empty cell."""
    return write_csv(path, ([method, r.case, r.class_name, r.unit, r.index, r.outcome, r.voxels,
                             "" if r.confidence is None else repr(r.confidence)]
                            for method, rows in methods.items() for r in rows), CSV_COLUMNS)


def _draw_panel(axes, rows: list[ErrorConfidenceRow], unit: str, title: str) -> None:
    groups = [[r.confidence for r in rows if r.outcome == outcome] for outcome in PLOTTED_OUTCOMES]
    positions = [p for p, group in enumerate(groups, start=1) if group]
    if positions:
        axes.boxplot([groups[p - 1] for p in positions], positions=positions, widths=0.5, showfliers=False)
        for p in positions:  # every value as a point: boxes of a handful of values mislead
            values = groups[p - 1]
            axes.plot(p + np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else [p], values, "o",
                      color="#4c72b0", alpha=0.5, markersize=3)
    else:
        axes.text(0.5, 0.5, f"no TP/FP/FN {unit}s", transform=axes.transAxes, ha="center")
    axes.set_xticks(range(1, len(PLOTTED_OUTCOMES) + 1))
    axes.set_xticklabels([f"{outcome}\nn={len(group)}" for outcome, group in zip(PLOTTED_OUTCOMES, groups)])
    axes.set_xlim(0.5, len(PLOTTED_OUTCOMES) + 0.5)
    axes.set_ylim(0, 1.02)
    axes.set_title(title, fontsize=9)


def save_error_confidence_plot(path: Path, methods: dict[str, list[ErrorConfidenceRow]]) -> Path:
    """Box plots of confidence by outcome (TP, FP, FN): one row of panels per method and class, one column per unit."""
    plt = pyplot()

    panels = [(method, name, [r for r in rows if r.class_name == name])
              for method, rows in methods.items() for name in dict.fromkeys(r.class_name for r in rows)]
    if not panels:
        raise InputError("no error-confidence rows to plot: expected at least one case with a foreground class.")
    figure, grid = plt.subplots(len(panels), len(UNITS), figsize=(7, 2.8 * len(panels)), squeeze=False, sharey=True)
    for (method, name, rows), axes_row in zip(panels, grid):
        for unit, axes in zip(UNITS, axes_row):
            _draw_panel(axes, [r for r in rows if r.unit == unit], unit, f"{method}, {name}: per {unit}")
        axes_row[0].set_ylabel("mean confidence")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return Path(path)
