"""Read and write volumes with their geometry (SimpleITK): NIfTI, NRRD, MHA, DICOM series.

Arrays are in index order: a scalar volume is `(I, J, K)`, a multi-component volume
(e.g. per-class probabilities) is `(C, I, J, K)`, the MONAI convention. SimpleITK's own
arrays are `(K, J, I[, C])`; the transposes live here and nowhere else.
Geometry is ITK's: origin in LPS millimetres, spacing in millimetres, direction as a
row-major 3x3 matrix whose columns are the i, j, k axis directions.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..common.errors import InputError, OutputWriteError
from ..common.output_folders import current_umask

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
    """Read a 3-D volume (scalar, multi-component, or 4-D with channels last) with its geometry.

    Damaged files are refused (InputError) rather than read as something else: a truncated file (ITK's
    NIfTI reader would zero-fill the missing voxels), NaN/Inf voxels in a NIfTI (its reader turns them
    into 0) and a NIfTI with a zero dimension (read as one slice). See `_read_nifti`.
    """
    import SimpleITK as sitk

    path = Path(path)
    if not path.exists():
        raise InputError(f"image not found: '{path}'. Expected {READABLE}; check the path.")
    if path.is_file() and path.name.lower().endswith((".nii", ".nii.gz")):
        volume = _read_nifti(path)
        if volume is not None:
            return volume
    try:
        image = _read_dicom_series(path) if path.is_dir() else sitk.ReadImage(str(path))
    except RuntimeError as error:
        if path.is_file() and path.name.lower().endswith((".mha", ".mhd")):
            _check_metaimage_size(path)  # ITK's own message blames a missing file
        raise InputError(f"cannot read '{path}' as an image: {itk_reason(error)}. Expected {READABLE}.") from None
    return _volume_from_sitk(image, path)


# NIfTI datatype code -> numpy type of one voxel (scalar types only; others are left to ITK)
_NIFTI_TYPES = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2", 768: "u4", 1024: "i8", 1280: "u8"}
_NIFTI_FLOATS = {16: "f4", 64: "f8", 32: "f4", 1792: "f8"}  # float32, float64, complex64, complex128 (as float pairs)
_AGAIN = "download or export it again"


def quiet_itk_warnings() -> None:
    """Stop ITK printing "WARNING: In .../itkNiftiImageIO.cxx" lines on stderr (the CLI's own messages say what matters).
    Process-wide, so only the command line calls it, never the Slicer layer."""
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalWarningDisplay(False)


def itk_reason(error: RuntimeError) -> str:
    """ITK's message on one line, without its source file, object address or the lines of the library under it;
    the two geometry refusals said in words."""
    import re

    text = str(error)
    match = re.search(r"ITK ERROR: (?:\w+\(0x[0-9a-fA-F]+\): )?([^\n]*(?:\n(?!\[)[^\n]*)*)", text)
    reason = " ".join((match.group(1) if match else (text.strip().splitlines() or ["unknown reason"])[-1]).split())
    if "Bad direction, determinant is 0" in reason:
        return ("its direction matrix is singular (determinant 0: two axes point the same way, or one has no direction), "
                "so its voxels have no place in space; fix the header's directions or export the image again")
    if "orthonormal" in reason:
        return ("its axis directions are not perpendicular unit vectors (a sheared or scaled sform/qform), which ITK "
                "cannot place in space; resample it onto an orthogonal grid (e.g. with 3D Slicer or nibabel) and save it again")
    spacing = re.search(r"Zero-valued spacing.*to (\[[^]]*\])", reason)
    if spacing:
        return f"its voxel spacing {spacing.group(1)} holds a zero; fix the header's spacing or export the image again"
    return reason.rstrip(".:")


def _read_nifti(path: Path) -> Volume | None:
    """A NIfTI-1/2 file (.nii or .nii.gz), decompressed once, checked, and its voxels built here.

    ITK's NIfTI reader (niftilib under SimpleITK) zero-fills a file that ends early, replaces NaN/Inf
    voxels with 0 and reads a zero dimension as 1: each would give a wrong prediction with exit 0.
    So the file is read whole here (gzip decompressed in memory, once), its header's promise checked
    against what it holds, and float voxels counted for NaN/Inf (one pass, memory-bound). The voxels
    then come from these bytes; only the geometry is asked of SimpleITK (header only), so the cost is
    about what SimpleITK's own read costs. Returns None for the rare layouts left to SimpleITK
    (scaled, RGB, complex...), which then decompresses the file a second time.
    """
    data = path.read_bytes()
    compressed = data[:2] == b"\x1f\x8b"
    if compressed:
        data = _gunzip(data, path)
    header = _nifti_header(data)
    starts = {int.from_bytes(data[:4], order) for order in ("little", "big")} & {348, 540}
    if header is None and starts and len(data) < min(starts):
        raise InputError(f"'{path}' is truncated: it holds {len(data)} bytes{' once decompressed' if compressed else ''}, "
                         f"fewer than its NIfTI header ({min(starts)}); {_AGAIN}.")
    if header is None:
        return None  # not a NIfTI-1/2 single file: let ITK say what it is
    dims, datatype, bitpix, offset, scaled, order = header
    shape = "x".join(str(d) for d in dims)
    if any(d <= 0 for d in dims):
        raise InputError(f"'{path}' has a zero or negative dimension (header: {shape} voxels): an axis without voxels, which "
                         f"readers take for one slice; {_AGAIN}.")
    expected = int(np.prod(dims, dtype=np.int64)) * bitpix // 8
    held = max(len(data) - offset, 0)
    if held < expected:
        raise InputError(f"'{path}' is truncated: its header promises {expected} bytes of voxels ({shape}, {bitpix}-bit), "
                         f"the file holds {held}{' once decompressed' if compressed else ''}; {_AGAIN}.")
    if datatype in _NIFTI_FLOATS:
        kind = np.dtype(order + _NIFTI_FLOATS[datatype])
        _check_finite_voxels(np.frombuffer(data, dtype=kind, count=expected // kind.itemsize, offset=offset), path)
    if datatype not in _NIFTI_TYPES or scaled:
        return None
    return _nifti_volume(path, data, dims, np.dtype(order + _NIFTI_TYPES[datatype]), offset)


def _gunzip(data: bytes, path: Path) -> bytes:
    """Every gzip member of `data`, decompressed; a stream that ends early gives what it holds (checked by the caller)."""
    import zlib

    parts = []
    while data:
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            parts.append(decompressor.decompress(data))
        except zlib.error as error:
            raise InputError(f"'{path}' is damaged: its gzip stream cannot be decompressed ({error}); {_AGAIN}.") from None
        if not decompressor.eof:
            break  # truncated: the header check says by how much
        data = decompressor.unused_data.lstrip(b"\0")  # further members, or padding
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _nifti_header(data: bytes):
    """(dims, datatype, bitpix, voxel offset, scaled?, byte order) of a single-file NIfTI-1/2 header, or None."""
    import struct

    for order in "<>":
        size = struct.unpack_from(order + "i", data, 0)[0] if len(data) >= 4 else 0
        if size == 348 and len(data) >= 348 and data[344:347] == b"n+1":
            rank, *dim = struct.unpack_from(order + "8h", data, 40)
            datatype, bitpix = struct.unpack_from(order + "2h", data, 70)
            offset, slope, inter = struct.unpack_from(order + "3f", data, 108)
        elif size == 540 and len(data) >= 540 and data[4:7] == b"n+2":
            datatype, bitpix = struct.unpack_from(order + "2h", data, 12)
            rank, *dim = struct.unpack_from(order + "8q", data, 16)
            offset, = struct.unpack_from(order + "q", data, 168)
            slope, inter = struct.unpack_from(order + "2d", data, 176)
        else:
            continue
        if not 1 <= rank <= 7 or bitpix <= 0 or bitpix % 8 or offset < size:
            return None
        scaled = not (slope in (0.0, 1.0) and inter == 0.0)  # NaN slope or inter: scaled, left to ITK
        return tuple(int(d) for d in dim[:rank]), int(datatype), int(bitpix), int(offset), scaled, order
    return None


def _check_finite_voxels(values: np.ndarray, path: Path) -> None:
    finite = np.isfinite(values)
    bad = values.size - int(np.count_nonzero(finite))
    if bad:
        nan = int(np.count_nonzero(np.isnan(values)))
        raise InputError(
            f"'{path}' holds {bad} NaN or infinite voxel(s) of {values.size} ({nan} NaN, {bad - nan} infinite): expected "
            "finite values. NIfTI readers silently turn them into 0, which would change the image; replace them "
            "(e.g. with the background value) or mask them, and save the file again."
        )


def _nifti_volume(path: Path, data: bytes, dims: tuple[int, ...], dtype: np.dtype, offset: int) -> Volume | None:
    """The voxels of a checked NIfTI from its bytes, the geometry from SimpleITK's header reading; None if the
    layout is one SimpleITK reads differently (then it reads the file itself)."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    size, components, dimension = tuple(reader.GetSize()), reader.GetNumberOfComponents(), reader.GetDimension()
    voxels = np.frombuffer(data, dtype=dtype, count=int(np.prod(dims, dtype=np.int64)), offset=offset)
    if dimension == len(dims) == 3 and components == 1 and size == dims:
        array = voxels.reshape(dims[::-1]).transpose(2, 1, 0)  # file order: i fastest -> (I, J, K)
    elif dimension == len(dims) == 4 and components == 1 and size == dims:
        array = voxels.reshape(dims[::-1]).transpose(0, 3, 2, 1)  # (T, K, J, I) -> (T, I, J, K)
    elif dimension == 3 and len(dims) == 5 and dims[3] == 1 and components == dims[4] and size == dims[:3]:
        array = voxels.reshape(dims[4], *dims[2::-1]).transpose(0, 3, 2, 1)  # vector: (C, 1, K, J, I) -> (C, I, J, K)
    else:
        return None
    native = dtype.newbyteorder("=")
    names = {"u1": "UInt8", "i1": "Int8", "u2": "UInt16", "i2": "Int16", "u4": "UInt32", "i4": "Int32",
             "u8": "UInt64", "i8": "Int64", "f4": "Float32", "f8": "Float64"}
    wanted = getattr(sitk, ("sitk" if components == 1 else "sitkVector") + names[native.str[1:]])
    if reader.GetPixelID() != wanted:
        return None  # ITK would give another pixel type
    direction = np.asarray(reader.GetDirection(), dtype=float).reshape(dimension, dimension)[:3, :3]
    geometry = Geometry(origin=tuple(float(v) for v in reader.GetOrigin()[:3]),
                        spacing=tuple(float(v) for v in reader.GetSpacing()[:3]),
                        direction=tuple(float(v) for v in direction.ravel()))
    return Volume(np.ascontiguousarray(array, dtype=native), geometry)


def _check_metaimage_size(path: Path) -> None:
    """After ITK failed on a MetaImage: say 'truncated' when its header promises more data than the file holds."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(65536)
    except OSError:
        return
    fields, end = {}, 0
    for line in head.split(b"\n"):
        end += len(line) + 1
        key, _, value = line.decode("latin-1").partition("=")
        fields[key.strip()] = value.strip()
        if key.strip() == "ElementDataFile":
            break
    else:
        return
    if fields.get("ElementDataFile", "").upper() != "LOCAL":
        return
    held = path.stat().st_size - end
    if fields.get("CompressedData", "False").lower() == "true":
        promised, what = fields.get("CompressedDataSize"), "bytes of compressed voxels"
    else:
        sizes = {"MET_UCHAR": 1, "MET_CHAR": 1, "MET_USHORT": 2, "MET_SHORT": 2, "MET_UINT": 4, "MET_INT": 4,
                 "MET_ULONG_LONG": 8, "MET_LONG_LONG": 8, "MET_FLOAT": 4, "MET_DOUBLE": 8}
        try:
            dims = [int(v) for v in fields["DimSize"].split()]
            channels = int(fields.get("ElementNumberOfChannels", "1"))
            promised = str(int(np.prod(dims)) * channels * sizes[fields["ElementType"]])
        except (KeyError, ValueError):
            return
        what = "bytes of voxels"
    if promised is not None and promised.isdigit() and held < int(promised):
        raise InputError(f"'{path}' is truncated: its header promises {promised} {what}, the file holds {held}; {_AGAIN}.")


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
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_ids[0])
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        return reader.Execute()
    except RuntimeError:
        _check_slice_sizes(folder, files)
        raise


def _check_slice_sizes(folder: Path, files) -> None:
    """After ITK failed on a DICOM series: say so when its slices have different sizes (rows x columns)."""
    import SimpleITK as sitk

    sizes: dict[str, list[str]] = {}
    for name in files:
        reader = sitk.ImageFileReader()
        reader.SetFileName(name)
        try:
            reader.ReadImageInformation()
        except RuntimeError:
            continue
        sizes.setdefault("x".join(str(s) for s in reader.GetSize()[:2]), []).append(Path(name).name)
    if len(sizes) > 1:
        counts = ", ".join(f"{len(names)} of {size} (e.g. {names[0]})" for size, names in sorted(sizes.items(), key=lambda item: -len(item[1])))
        raise InputError(f"the DICOM series in '{folder}' has slices of {len(sizes)} sizes: {counts}; expected every slice of "
                         "one size. The folder mixes images (e.g. a localizer or a secondary capture): move them out, "
                         "or export the series again.")


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
        try:
            sitk.WriteImage(image, temporary, useCompression=True)
        except RuntimeError as error:
            reason = itk_reason(error).replace(str(Path(temporary).resolve()), path.name).replace(temporary, path.name)
            raise OutputWriteError(f"could not write '{path}': {reason}. {_room(path.parent)}") from None
        if suffix in (".nii", ".nii.gz"):
            _check_written_nifti(Path(temporary), path)
        os.chmod(temporary, 0o666 & ~current_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def _room(folder: Path) -> str:
    import shutil

    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return "Check that the folder is writable and its disk has room."
    return f"Check that the folder is writable and its disk has room ({free / 2**20:.0f} MiB free there)."


def _check_written_nifti(temporary: Path, path: Path) -> None:
    """niftilib reports a failed write (e.g. a full disk) on stderr only: check that the file holds all it promises."""
    import zlib

    with open(temporary, "rb") as handle:
        head = handle.read(1 << 16)
        compressed = head[:2] == b"\x1f\x8b"
        data = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head) if compressed else head
        header = _nifti_header(data)
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(size - 4, 0))
        trailer = handle.read(4)
    if header is None:
        raise OutputWriteError(f"could not write '{path}': the file written has no complete NIfTI header. {_room(path.parent)}")
    dims, _, bitpix, offset, _, _ = header
    expected = offset + int(np.prod(dims, dtype=np.int64)) * bitpix // 8
    written = int.from_bytes(trailer, "little") if compressed else size  # gzip's trailer: the length mod 2**32
    if (written != expected % 2**32) if compressed else (written < expected):
        raise OutputWriteError(f"could not write '{path}': the file was cut short while writing. {_room(path.parent)}")
