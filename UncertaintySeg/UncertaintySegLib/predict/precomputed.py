"""Probability maps that another tool saved: nnU-Net `.npz`, or 4-D NIfTI/NRRD/MHA.

nnU-Net's `--save_probabilities` writes `<case>.npz` with key `probabilities`, shaped
`(C, z, y, x)` (SimpleITK's axis order, nnU-Net's default reader), beside a `<case>.pkl`
of properties. The `.pkl` is a pickle and is never read here: unpickling runs code. The
geometry comes from the image the probabilities were computed for instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..common.errors import InputError
from .io import Volume, read_volume
from .pipeline import check_probabilities

NNUNET_AXES = ("zyx", "xyz")


def read_probabilities(path: str | Path, image: Volume, nnunet_axes: str = "zyx") -> Volume:
    """Per-class probabilities `(C, I, J, K)` on `image`'s grid, validated."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"probability file not found: '{path}'. Expected an nnU-Net .npz or a 4-D NIfTI/NRRD/MHA volume.")
    if path.suffix == ".npz":
        array = _read_nnunet_npz(path, nnunet_axes)
    else:
        volume = read_volume(path)
        if volume.array.ndim != 4:
            raise InputError(f"'{path}' is a 3-D scalar volume: expected per-class probabilities (a 4-D or multi-component volume).")
        if not volume.geometry.matches(image.geometry, tolerance=1e-4):
            raise InputError(f"'{path}' lies on a different grid (origin/spacing/direction) than the image: resample it to the image first.")
        array = volume.array
    if tuple(array.shape[1:]) != tuple(image.spatial_shape):
        hint = " (nnU-Net axes may be 'xyz' for this file: try --nnunet-axes xyz)" if path.suffix == ".npz" else ""
        raise InputError(f"'{path}' has spatial shape {tuple(array.shape[1:])}, the image {tuple(image.spatial_shape)}: expected the same grid{hint}.")
    array = array.astype(np.float32, copy=False)
    check_probabilities(array, str(path))
    return Volume(np.ascontiguousarray(array), image.geometry)


def _read_nnunet_npz(path: Path, axes: str) -> np.ndarray:
    if axes not in NNUNET_AXES:
        raise InputError(f"nnU-Net axes must be one of {NNUNET_AXES}, found '{axes}'.")
    try:
        with open(path, "rb") as file:
            head = file.read(6)
    except OSError as error:
        raise InputError(f"cannot read '{path}' ({error}).") from None
    if head.startswith(b"\x93NUMPY"):  # np.load would return the bare array
        raise InputError(f"'{path}' is a single NumPy array (.npy), not an .npz archive: expected nnU-Net's --save_probabilities "
                         "output, an .npz holding a 'probabilities' array (np.savez(path, probabilities=array)).")
    if not head.startswith(b"PK"):  # np.load would try it as a pickle and say so
        raise InputError(f"'{path}' is not a NumPy .npz archive (a zip file): expected nnU-Net's --save_probabilities "
                         "output, an .npz holding a 'probabilities' array.")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "probabilities" not in archive:
                raise InputError(f"'{path}' has no 'probabilities' array (found {sorted(archive.files)}): expected nnU-Net's --save_probabilities output.")
            array = archive["probabilities"]
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read '{path}' as a NumPy .npz archive ({error}).") from None
    if array.ndim != 4:
        raise InputError(f"'{path}': 'probabilities' has shape {array.shape}: expected (C, z, y, x).")
    return array.transpose(0, 3, 2, 1) if axes == "zyx" else array
