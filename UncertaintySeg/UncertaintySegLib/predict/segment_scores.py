"""Segment-level uncertainty: which predicted structures to check.

For each foreground class, the mean entropy over the voxels predicted as that class (Mehrtash et
al., eq. 7) and over each of its connected components (26-connectivity), the volume, the mean
mutual information where samples were drawn, and a quality flag: "check" when the mean entropy
exceeds a threshold (set by the user, or fitted on labelled cases by `segment_quality.py`).
Arrays are `(I, J, K)`; cost is one labelling pass and one `bincount` per class, linear in voxels.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..common.csv_tables import write_csv
from ..common.errors import InputError

SEGMENTS_FILE = "segments.csv"  # what predict writes into its output folder
FULL_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)


@dataclass
class SegmentScore:
    """One predicted segment (`component` 0: the whole class) or one of its connected components (1, 2, ...)."""

    class_index: int
    class_name: str
    component: int
    voxels: int
    volume_ml: float
    mean_entropy: float
    mean_mutual_information: float | None
    flagged: bool | None  # None: no threshold given


def segment_scores(labels: np.ndarray, entropy: np.ndarray, spacing, class_names, mutual_information: np.ndarray | None = None,
                   thresholds: dict[str, float] | float | None = None, components: bool = True) -> list[SegmentScore]:
    """Scores of every predicted foreground segment, and of its components when `components`.

    `thresholds`: one mean-entropy threshold for all classes, or one per class name; a class absent
    from a dict is not flagged. A class with no predicted voxel gets a row with 0 voxels and NaN
    scores (nothing was found: worth a look too, but not flagged by entropy).
    """
    from scipy import ndimage

    if labels.shape != entropy.shape or (mutual_information is not None and mutual_information.shape != labels.shape):
        raise InputError(f"labels {labels.shape}, entropy {entropy.shape} and mutual information must share one (I, J, K) shape.")
    voxel_ml = float(np.prod(spacing)) / 1000.0
    rows = []
    for index, name in enumerate(class_names):
        if index == 0:
            continue
        threshold = thresholds.get(name) if isinstance(thresholds, dict) else thresholds
        mask = labels == index
        parts, count = ndimage.label(mask, structure=FULL_CONNECTIVITY) if components else (mask.astype(np.int32), int(mask.any()))
        sizes = np.bincount(parts.ravel(), minlength=count + 1)
        entropy_sums = np.bincount(parts.ravel(), weights=entropy.ravel(), minlength=count + 1)
        mi_sums = np.bincount(parts.ravel(), weights=mutual_information.ravel(), minlength=count + 1) if mutual_information is not None else None
        total = int(sizes[1:].sum())
        rows.append(score(index, name, 0, total, voxel_ml, entropy_sums[1:].sum(), None if mi_sums is None else mi_sums[1:].sum(), threshold))
        if components:
            for number, part in enumerate(np.argsort(-sizes[1:], kind="stable") + 1, start=1):  # largest component first
                rows.append(score(index, name, number, int(sizes[part]), voxel_ml, entropy_sums[part],
                                  None if mi_sums is None else mi_sums[part], threshold))
    return rows


def score(index: int, name: str, component: int, voxels: int, voxel_ml: float, entropy_sum: float, mi_sum: float | None,
          threshold: float | None) -> SegmentScore:
    mean_entropy = float(entropy_sum) / voxels if voxels else math.nan
    return SegmentScore(
        class_index=index, class_name=name, component=component, voxels=voxels, volume_ml=round(voxels * voxel_ml, 6),
        mean_entropy=mean_entropy, mean_mutual_information=None if mi_sum is None else (float(mi_sum) / voxels if voxels else math.nan),
        flagged=None if threshold is None or not voxels else bool(mean_entropy > threshold),
    )


def write_segment_csv(path: Path, rows: list[SegmentScore]) -> None:
    """One line per segment and component; `component` 0 is the whole class."""
    write_csv(path, rows, SegmentScore.__dataclass_fields__)


def read_segment_csv(path: Path) -> list[SegmentScore]:
    """The rows `write_segment_csv` wrote (empty cells: None; "nan": NaN)."""
    def optional(text, kind):
        return None if text == "" else kind(text)

    try:
        with open(path, newline="") as handle:
            return [SegmentScore(
                class_index=int(row["class_index"]), class_name=row["class_name"], component=int(row["component"]),
                voxels=int(row["voxels"]), volume_ml=float(row["volume_ml"]), mean_entropy=float(row["mean_entropy"]),
                mean_mutual_information=optional(row["mean_mutual_information"], float),
                flagged=optional(row["flagged"], lambda text: text == "True"),
            ) for row in csv.DictReader(handle)]
    except (KeyError, ValueError, TypeError) as error:
        raise InputError(f"'{path}' is not a segments.csv written by `uncertaintyseg predict` ({type(error).__name__}: {error}).") from None


def read_thresholds(value: str | None, normalized: bool) -> dict | float | None:
    """--flag-threshold: a number, or a JSON file {"thresholds": {class: value}, "entropy_units": ...}."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        data = json.loads(Path(value).read_text())
        thresholds, units = dict(data["thresholds"]), data.get("entropy_units", "nats")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"--flag-threshold {value!r} is neither a number nor a thresholds.json written by `evaluate` ({error}).") from None
    wanted = "fraction of log C" if normalized else "nats"
    if units != wanted:
        raise InputError(f"thresholds in {value} are in {units}, this run's entropy is in {wanted}: "
                         f"{'drop' if units == 'nats' else 'add'} --normalize-uncertainty or fit thresholds in the same units.")
    try:
        values = {name: float(threshold) for name, threshold in thresholds.items()}
    except (TypeError, ValueError):
        values = None
    if values is None or not all(math.isfinite(threshold) and threshold >= 0 for threshold in values.values()):
        raise InputError(f"--flag-threshold {value}: thresholds: expected a finite number >= 0 per class, found {thresholds!r}.")
    return values
