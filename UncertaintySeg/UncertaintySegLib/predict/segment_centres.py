"""Where each scored segment lies: a voxel to centre the views on, row for row with `segment_scores`.

For every foreground class, the whole class (`component` 0) and then each of its 26-connected
components, largest first (ties in label order): the same rows, in the same order, as
`segment_scores.segment_scores`. A segment's centre is the voxel of the segment nearest its
centroid, so that jumping there always lands on the segment (the centroid of a curved
structure such as the hippocampus can lie outside it). A class with no voxel has no centre.
Cost: one labelling pass per class, then each component is read inside its bounding box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .segment_scores import FULL_CONNECTIVITY


@dataclass
class SegmentCentre:
    """A segment's voxel count, centroid `(i, j, k)` (float) and the segment voxel nearest it; None when empty."""

    class_index: int
    component: int
    voxels: int
    centroid: tuple[float, float, float] | None
    voxel: tuple[int, int, int] | None


def centre_of(indices: np.ndarray) -> tuple[tuple[float, float, float], tuple[int, int, int]]:
    """Centroid of voxel indices `(N, 3)` and the index nearest it (the first of equals)."""
    centroid = indices.mean(axis=0)
    nearest = indices[int(np.argmin(((indices - centroid) ** 2).sum(axis=1)))]
    return tuple(float(v) for v in centroid), tuple(int(v) for v in nearest)


def segment_centres(labels: np.ndarray, num_classes: int, components: bool = True) -> list[SegmentCentre]:
    """Centres of every foreground class of `labels (I, J, K)` and, when `components`, of its connected components."""
    from scipy import ndimage

    rows = []
    for index in range(1, num_classes):
        mask = labels == index
        whole = np.argwhere(mask)
        rows.append(_row(index, 0, whole))
        if not components:
            continue
        parts, count = ndimage.label(mask, structure=FULL_CONNECTIVITY)
        sizes = np.bincount(parts.ravel(), minlength=count + 1)
        boxes = ndimage.find_objects(parts)
        for number, part in enumerate(np.argsort(-sizes[1:], kind="stable") + 1, start=1):
            box = boxes[part - 1]
            offset = np.array([axis.start for axis in box])
            rows.append(_row(index, number, np.argwhere(parts[box] == part) + offset))
    return rows


def _row(class_index: int, component: int, indices: np.ndarray) -> SegmentCentre:
    if len(indices) == 0:
        return SegmentCentre(class_index, component, 0, None, None)
    centroid, voxel = centre_of(indices)
    return SegmentCentre(class_index, component, len(indices), centroid, voxel)
