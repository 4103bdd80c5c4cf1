"""Regions of interest for calibration metrics, as boolean masks `(I, J, K)` (None = whole volume).

- `whole`: every voxel.
- `mask`: a given mask (e.g. brain or foreground), non-zero voxels.
- `bbox`: the bounding box of the reference foreground, dilated by 8 mm in-plane (axes i, j,
  converted to voxels with the volume's spacing) and by 2 slices out-of-plane (axis k), clipped
  to the volume (Mehrtash et al. 2020). No foreground: an empty ROI, reported as "no voxels".
"""

from __future__ import annotations

import math

import numpy as np

from ..common.errors import InputError

ROI_KINDS = ("whole", "mask", "bbox")  # the registry of ROI kinds: every command's and the panel's choices come from it
NEEDS_MASK = frozenset({"mask"})  # the kinds that read a mask volume


def roi_kinds(with_mask: bool = True) -> tuple[str, ...]:
    """The ROI kinds, in `ROI_KINDS` order; without `with_mask`, only those that need no mask volume
    (for a caller that has none to give, or that takes a mask as a node instead)."""
    return tuple(kind for kind in ROI_KINDS if with_mask or kind not in NEEDS_MASK)
IN_PLANE_MARGIN_MM = 8.0
OUT_OF_PLANE_MARGIN_SLICES = 2


def dilated_foreground_box(reference: np.ndarray, spacing: tuple[float, float, float],
                           margin_mm: float = IN_PLANE_MARGIN_MM,
                           margin_slices: int = OUT_OF_PLANE_MARGIN_SLICES) -> tuple[slice, slice, slice] | None:
    """Index box of `reference > 0` `(I, J, K)` grown by `margin_mm` along i, j and `margin_slices` along k; None if no foreground."""
    foreground = np.nonzero(reference > 0)
    if foreground[0].size == 0:
        return None
    margins = (math.ceil(margin_mm / spacing[0] - 1e-9), math.ceil(margin_mm / spacing[1] - 1e-9), margin_slices)
    return tuple(slice(max(int(axis.min()) - m, 0), min(int(axis.max()) + m + 1, size))
                 for axis, m, size in zip(foreground, margins, reference.shape))


def roi_mask(kind: str, reference: np.ndarray, spacing: tuple[float, float, float],
             mask: np.ndarray | None = None) -> np.ndarray | None:
    """Boolean ROI `(I, J, K)` of the given kind for a reference label map `(I, J, K)`; None for the whole volume."""
    if kind == "whole":
        return None
    if kind == "mask":
        if mask is None:
            raise InputError("ROI 'mask' needs a mask volume: pass --mask FILE_OR_FOLDER.")
        if mask.shape != reference.shape:
            raise InputError(f"ROI mask has shape {mask.shape}, the reference {reference.shape}: expected the same grid; "
                             "resample the mask onto the reference.")
        return mask != 0
    if kind == "bbox":
        roi = np.zeros(reference.shape, dtype=bool)
        box = dilated_foreground_box(reference, spacing)
        if box is not None:
            roi[box] = True
        return roi
    raise InputError(f"unknown ROI '{kind}': expected one of {', '.join(ROI_KINDS)}.")
