"""Read and write volumes with their geometry (SimpleITK): NIfTI, NRRD, MHA, DICOM series.

Arrays are in index order: a scalar volume is `(I, J, K)`, a multi-component volume
(e.g. per-class probabilities) is `(C, I, J, K)`, the MONAI convention. SimpleITK's own
arrays are `(K, J, I[, C])`; the transposes live here and nowhere else.
Geometry is ITK's: origin in LPS millimetres, spacing in millimetres, direction as a
row-major 3x3 matrix whose columns are the i, j, k axis directions.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError

READABLE = "a NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr) or MetaImage (.mha, .mhd) file, or a DICOM series folder"
_WRITABLE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


@dataclass(frozen=True)
class Geometry:
    """Where voxels lie in space (ITK/LPS convention)."""

    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]
    direction: tuple[float, ...]  # 9 values, row-major

    def matches(self, other: "Geometry", tolerance: float = 1e-6) -> bool:
        return all(
            np.allclose(a, b, atol=tolerance, rtol=0)
            for a, b in ((self.origin, other.origin), (self.spacing, other.spacing), (self.direction, other.direction))
        )


@dataclass
class Volume:
    """Voxels `(I, J, K)` or `(C, I, J, K)` and their geometry."""

    array: np.ndarray
    geometry: Geometry

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape[-3:])

    @property
    def num_channels(self) -> int:
        return 1 if self.array.ndim == 3 else int(self.array.shape[0])


def read_volume(path: str | os.PathLike) -> Volume:
    """Read a 3-D volume (scalar, multi-component, or 4-D with channels last) with its geometry."""
    import SimpleITK as sitk

    path = Path(path)
    if not path.exists():
        raise InputError(f"image not found: '{path}'. Expected {READABLE}; check the path.")
    try:
        image = _read_dicom_series(path) if path.is_dir() else sitk.ReadImage(str(path))
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown reason"
        raise InputError(f"cannot read '{path}' as an image ({reason}). Expected {READABLE}.") from None
    return _volume_from_sitk(image, path)


def _read_dicom_series(folder: Path):
    import SimpleITK as sitk

    series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series_ids:
        raise InputError(f"no DICOM series found in folder '{folder}'. Expected a folder with one DICOM series, or {READABLE}.")
    if len(series_ids) > 1:
        raise InputError(
            f"folder '{folder}' holds {len(series_ids)} DICOM series ({', '.join(series_ids)}): expected one. "
            "Put each series in its own folder."
        )
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_ids[0]))
    return reader.Execute()


def _volume_from_sitk(image, path: Path) -> Volume:
    import SimpleITK as sitk

    dimension = image.GetDimension()
    if dimension not in (3, 4):
        size = "x".join(str(s) for s in image.GetSize())
        raise InputError(f"'{path}' is a {dimension}-D image ({size}): expected a 3-D volume.")
    array = sitk.GetArrayFromImage(image)
    if dimension == 4:  # (T, K, J, I): channels first already
        array = array.transpose(0, 3, 2, 1)
    elif image.GetNumberOfComponentsPerPixel() > 1:  # (K, J, I, C)
        array = array.transpose(3, 2, 1, 0)
    else:  # (K, J, I)
        array = array.transpose(2, 1, 0)
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(dimension, dimension)[:3, :3]
    geometry = Geometry(
        origin=tuple(float(v) for v in image.GetOrigin()[:3]),
        spacing=tuple(float(v) for v in image.GetSpacing()[:3]),
        direction=tuple(float(v) for v in direction.ravel()),
    )
    return Volume(np.ascontiguousarray(array), geometry)


def write_volume(path: str | os.PathLike, volume: Volume, overwrite: bool = False) -> Path:
    """Write `volume` whole or not at all (temporary file, then rename); refuse to overwrite unless asked."""
    import SimpleITK as sitk

    path = Path(path)
    suffix = next((s for s in _WRITABLE_SUFFIXES if path.name.endswith(s)), None)
    if suffix is None:
        raise InputError(f"cannot write '{path}': expected a file name ending in one of {', '.join(_WRITABLE_SUFFIXES)}.")
    if path.exists() and not overwrite:
        raise InputError(f"'{path}' already exists; choose another name or ask to overwrite (--overwrite).")
    array = volume.array
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if array.ndim == 4:
        image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(3, 2, 1, 0)), isVector=True)
    elif array.ndim == 3:
        image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    else:
        raise InputError(f"cannot write an array of shape {array.shape}: expected (I, J, K) or (C, I, J, K).")
    image.SetOrigin(volume.geometry.origin)
    image.SetSpacing(volume.geometry.spacing)
    image.SetDirection(volume.geometry.direction)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(handle)
    try:
        sitk.WriteImage(image, temporary, useCompression=True)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def require_new_output_folder(folder: str | os.PathLike, overwrite: bool = False) -> None:
    """Refuse an existing output folder unless `overwrite`: call it before long work, not only at the end."""
    if Path(folder).exists() and not overwrite:
        raise InputError(f"output folder '{folder}' already exists; choose another folder or pass --overwrite.")


@contextlib.contextmanager
def atomic_output_folder(folder: str | os.PathLike, overwrite: bool = False):
    """Yield a temporary folder that becomes `folder` only if the block succeeds.

    An existing `folder` is refused unless `overwrite`, and is replaced only at the end.
    """
    folder = Path(folder)
    require_new_output_folder(folder, overwrite)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700
    try:
        yield staging
        if folder.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=folder.parent))
            os.replace(folder, retired / folder.name)
            os.replace(staging, folder)
            shutil.rmtree(retired)
        else:
            os.replace(staging, folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
