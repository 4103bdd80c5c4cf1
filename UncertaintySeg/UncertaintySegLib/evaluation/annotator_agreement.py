"""Several reference segmentations of one case: annotator agreement, the model's confidence there, and D²_GED.

Czolbe et al. (IPMI 2021) compare the model's confidence where annotators agree with where they
disagree; Kohl et al. (2018) score a stochastic model's samples against the annotators' set with
the generalised energy distance. Pure functions on arrays; references are label maps of class
indices 0..C-1 (class 0 = background), `R` of them, `(R, I, J, K)` or a sequence of `(I, J, K)`.

Agreement groups, **label as a whole** (scope "label"), from the rater counts `n_c` (raters who
gave class c) and `m = max_c n_c`:

- `all_background`: every rater says background (`n_0 = R`);
- `all_foreground`: every rater gives the same foreground class (`m = R`, that class > 0);
- `majority`: raters disagree, but one class has a strict majority (`R/2 < m < R`);
- `no_majority`: raters disagree and no class has more than half of them (`m <= R/2`; with two
  raters every disagreement is here, with three binary raters never).

**Per foreground class c** (scope = class name), the binary question "is it c?": `all_foreground`
(`n_c = R`), `all_background` (`n_c = 0`), `mixed` (otherwise).

Model confidence per group, from probabilities `(C, I, J, K)`: `mean_max_probability` (label:
the mean of `max_c p_c`; per class: of `max(p_c, 1 - p_c)`, the confidence of the binary
decision) and `mean_majority_probability`, the mean probability the model gives the raters'
majority label (label: the class with most raters, ties to the lowest index; per class: c when
more than half the raters give it, else not-c, so ties go to "not c"). Empty groups: None.

D²_GED = 2 E[d(S, Y)] - E[d(S, S')] - E[d(Y, Y')] with d = 1 - IoU, S and S' the model's samples,
Y and Y' the annotators. Expectations are means over **all** ordered pairs of the two empirical
sets, the pairs of a mask with itself included (d = 0 there): the energy distance between the
two empirical distributions, so it is 0 when the sets are equal and symmetric in S and Y. It is
given per foreground class (IoU of the class masks) and for the foreground union (IoU of
`label > 0`); the IoU of two empty masks is 1 (d = 0). Each pair costs one `bincount` of the two
label maps (a C×C confusion matrix); no (S, R, voxels) stack is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..common.errors import InputError

LABEL_GROUPS = ("all_background", "all_foreground", "majority", "no_majority")
CLASS_GROUPS = ("all_background", "all_foreground", "mixed")


def rater_counts(references: Sequence[np.ndarray] | np.ndarray, num_classes: int) -> np.ndarray:
    """Raters per class and voxel `(C, I, J, K)` (uint16) from R label maps `(R, I, J, K)`; R >= 2, same shapes."""
    references = list(references)
    if len(references) < 2:
        raise InputError(f"annotator agreement needs at least 2 reference label maps, got {len(references)}.")
    shapes = {tuple(r.shape) for r in references}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3:
        raise InputError(f"reference label maps have shapes {sorted(shapes)}: expected one 3-D shape (I, J, K) for all "
                         "annotators of a case (resample them onto one grid).")
    counts = np.zeros((num_classes, *references[0].shape), np.uint16)
    for labels in references:
        labels = np.asarray(labels)
        if labels.min() < 0 or labels.max() >= num_classes:
            raise InputError(f"a reference holds labels {labels.min()}..{labels.max()}: expected 0..{num_classes - 1}.")
        for c in range(num_classes):
            counts[c] += labels == c
    return counts


def label_agreement_groups(counts: np.ndarray, raters: int) -> tuple[np.ndarray, np.ndarray]:
    """Group index into LABEL_GROUPS `(I, J, K)` (uint8) and the majority label `(I, J, K)` (ties: lowest class) from `(C, I, J, K)` counts of `raters` raters."""
    majority = counts.argmax(axis=0)
    top = counts.max(axis=0).astype(np.int64)
    groups = np.full(top.shape, LABEL_GROUPS.index("no_majority"), np.uint8)
    groups[2 * top > raters] = LABEL_GROUPS.index("majority")
    groups[(top == raters) & (majority > 0)] = LABEL_GROUPS.index("all_foreground")
    groups[(top == raters) & (majority == 0)] = LABEL_GROUPS.index("all_background")
    return groups, majority


@dataclass
class AgreementRow:
    """One group of one scope ("label" or a foreground class name) of one case."""

    scope: str
    group: str
    voxels: int
    fraction: float | None
    mean_max_probability: float | None
    mean_majority_probability: float | None


def _group_rows(scope: str, names: Sequence[str], groups: np.ndarray, confidence: np.ndarray,
                majority_probability: np.ndarray) -> list[AgreementRow]:
    total = groups.size
    voxels = np.bincount(groups, minlength=len(names))
    confidence_sum = np.bincount(groups, weights=confidence, minlength=len(names))
    majority_sum = np.bincount(groups, weights=majority_probability, minlength=len(names))
    return [AgreementRow(scope, name, int(n), n / total if total else None,
                         float(confidence_sum[g] / n) if n else None, float(majority_sum[g] / n) if n else None)
            for g, (name, n) in enumerate(zip(names, voxels))]


def annotator_agreement(references: Sequence[np.ndarray] | np.ndarray, probabilities: np.ndarray,
                        class_names: Sequence[str], roi: np.ndarray | None = None) -> list[AgreementRow]:
    """Agreement groups and the model's confidence in each (see the module docstring).

    `references`: R label maps `(R, I, J, K)`; `probabilities`: `(C, I, J, K)`; `roi`: boolean
    `(I, J, K)` or None (whole volume). Returns the 4 "label" rows, then 3 rows per foreground class.
    """
    num_classes = len(class_names)
    if probabilities.ndim != 4 or probabilities.shape[0] != num_classes:
        raise InputError(f"probabilities have shape {probabilities.shape}: expected ({num_classes}, I, J, K).")
    counts = rater_counts(references, num_classes)
    if counts.shape[1:] != probabilities.shape[1:]:
        raise InputError(f"references {counts.shape[1:]} and probabilities {probabilities.shape[1:]} lie on different grids.")
    raters = len(references)
    inside = np.ones(counts.shape[1:], bool) if roi is None else np.asarray(roi, bool)
    probabilities = probabilities[:, inside].astype(np.float64)
    counts = counts[:, inside]
    groups, majority = label_agreement_groups(counts, raters)
    rows = _group_rows("label", LABEL_GROUPS, groups, probabilities.max(axis=0),
                       np.take_along_axis(probabilities, majority[None], axis=0)[0])
    for c in range(1, num_classes):
        p = probabilities[c]
        n = counts[c]
        class_groups = np.full(n.shape, CLASS_GROUPS.index("mixed"), np.uint8)
        class_groups[n == raters] = CLASS_GROUPS.index("all_foreground")
        class_groups[n == 0] = CLASS_GROUPS.index("all_background")
        rows += _group_rows(class_names[c], CLASS_GROUPS, class_groups, np.maximum(p, 1 - p),
                            np.where(2 * n.astype(np.int64) > raters, p, 1 - p))
    return rows


def pairwise_distances(first: Sequence[np.ndarray], second: Sequence[np.ndarray], num_classes: int) -> np.ndarray:
    """d = 1 - IoU for every pair `(len(first), len(second), C)`: channel 0 the foreground union, channel c class c.

    Label maps `(I, J, K)` of one shape; two empty masks have IoU 1 (d = 0).
    """
    distances = np.zeros((len(first), len(second), num_classes))
    for i, a in enumerate(first):
        for j, b in enumerate(second):
            if a.shape != b.shape:
                raise InputError(f"label maps of shapes {a.shape} and {b.shape}: expected one grid for samples and references.")
            confusion = np.bincount(a.ravel().astype(np.int64) * num_classes + b.ravel(),
                                    minlength=num_classes * num_classes).reshape(num_classes, num_classes)
            rows, columns = confusion.sum(axis=1), confusion.sum(axis=0)
            intersection = np.diag(confusion).astype(np.float64)
            union = rows + columns - intersection
            intersection[0] = confusion[1:, 1:].sum()
            union[0] = rows[1:].sum() + columns[1:].sum() - intersection[0]
            distances[i, j] = np.where(union > 0, 1.0 - intersection / np.maximum(union, 1), 0.0)
    return distances


@dataclass
class EnergyDistance:
    """D²_GED and its three expectations, per scope: index 0 the foreground union, index c class c; each `(C,)`."""

    d2: np.ndarray
    sample_reference: np.ndarray
    sample_sample: np.ndarray
    reference_reference: np.ndarray
    samples: int
    references: int


def generalized_energy_distance(samples: Sequence[np.ndarray], references: Sequence[np.ndarray],
                                num_classes: int) -> EnergyDistance:
    """D²_GED between S sample label maps and R reference label maps (each `(I, J, K)`), d = 1 - IoU (module docstring)."""
    samples, references = list(samples), list(references)
    if not samples or not references:
        raise InputError(f"D²_GED needs at least one sample and one reference, got {len(samples)} and {len(references)}.")
    cross = pairwise_distances(samples, references, num_classes).mean(axis=(0, 1))
    within_samples = pairwise_distances(samples, samples, num_classes).mean(axis=(0, 1))
    within_references = pairwise_distances(references, references, num_classes).mean(axis=(0, 1))
    return EnergyDistance(2 * cross - within_samples - within_references, cross, within_samples, within_references,
                          len(samples), len(references))
