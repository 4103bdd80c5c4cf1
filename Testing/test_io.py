"""Volumes keep voxels and geometry exactly through read/write; writes are whole or nothing."""

import os

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import write_image

from UncertaintySegLib.common.errors import InputError
from UncertaintySegLib.predict.io import Geometry, Volume, read_volume, write_volume
from UncertaintySegLib.common.output_folders import atomic_output_folder

OBLIQUE = (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)


@pytest.fixture
def oblique_volume():
    array = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    return Volume(array, Geometry(origin=(10.5, -3.25, 7.0), spacing=(0.7, 1.3, 2.5), direction=OBLIQUE))


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_scalar_round_trip_keeps_voxels_and_geometry(tmp_path, oblique_volume, suffix):
    path = write_volume(tmp_path / f"v{suffix}", oblique_volume)
    back = read_volume(path)
    assert np.array_equal(back.array, oblique_volume.array)
    assert back.geometry.matches(oblique_volume.geometry, tolerance=1e-6)


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz", ".mha"])
def test_multicomponent_round_trip_keeps_channel_order(tmp_path, oblique_volume, suffix):
    probabilities = np.stack([oblique_volume.array, -oblique_volume.array, oblique_volume.array * 2])
    back = read_volume(write_volume(tmp_path / f"p{suffix}", Volume(probabilities, oblique_volume.geometry)))
    assert back.array.shape == (3, 4, 5, 6)
    assert np.array_equal(back.array, probabilities)
    assert back.geometry.matches(oblique_volume.geometry, tolerance=1e-6)


def test_index_order_matches_itk_indices(tmp_path):
    """Voxel (i, j, k) of our array is ITK's index (i, j, k), and its physical point follows the geometry."""
    array = np.zeros((3, 4, 5), np.int16)
    array[2, 1, 4] = 7
    path = write_image(tmp_path / "a.nii.gz", array, spacing=(2.0, 3.0, 4.0), origin=(1.0, 2.0, 3.0))
    assert sitk.ReadImage(str(path)).GetPixel(2, 1, 4) == 7
    volume = read_volume(path)
    assert volume.array[2, 1, 4] == 7 and volume.spatial_shape == (3, 4, 5)


def test_four_d_nifti_reads_as_channels_first(tmp_path):
    data = np.random.default_rng(0).random((2, 3, 4, 5)).astype(np.float32)  # (C, I, J, K)
    image = sitk.JoinSeries([sitk.GetImageFromArray(np.ascontiguousarray(c.transpose(2, 1, 0))) for c in data])
    sitk.WriteImage(image, str(tmp_path / "four_d.nii.gz"))
    volume = read_volume(tmp_path / "four_d.nii.gz")
    assert volume.array.shape == (2, 3, 4, 5) and np.allclose(volume.array, data)


def test_dicom_series_folder(tmp_path):
    array = (np.arange(6 * 7 * 4).reshape(6, 7, 4) % 50).astype(np.int16)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    image.SetSpacing((0.8, 0.8, 2.0))
    image.SetOrigin((5.0, 6.0, 7.0))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(image.GetDepth()):
        slice_ = image[:, :, k]
        slice_.SetMetaData("0020|000e", "1.2.826.0.1.3680043.2.1125.1.1")  # series instance UID
        slice_.SetMetaData("0020|0032", "\\".join(str(v) for v in image.TransformIndexToPhysicalPoint((0, 0, k))))
        slice_.SetMetaData("0020|0013", str(k))
        slice_.SetMetaData("0008|0060", "MR")
        writer.SetFileName(str(tmp_path / f"slice{k:03d}.dcm"))
        writer.Execute(slice_)
    volume = read_volume(tmp_path)
    assert np.array_equal(volume.array, array)
    assert np.allclose(volume.geometry.spacing, (0.8, 0.8, 2.0)) and np.allclose(volume.geometry.origin, (5.0, 6.0, 7.0))


def test_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(InputError, match="not found.*check the path"):
        read_volume(tmp_path / "nope.nii.gz")


def test_unreadable_file(tmp_path):
    (tmp_path / "junk.nii.gz").write_bytes(b"this is not an image")
    with pytest.raises(InputError, match="cannot read"):
        read_volume(tmp_path / "junk.nii.gz")


def test_two_d_image_is_refused(tmp_path):
    sitk.WriteImage(sitk.Image(8, 9, sitk.sitkUInt8), str(tmp_path / "flat.nii.gz"))
    with pytest.raises(InputError, match="2-D image .*expected a 3-D volume"):
        read_volume(tmp_path / "flat.nii.gz")


def test_write_refuses_to_overwrite_and_leaves_no_temporaries(tmp_path, oblique_volume):
    path = write_volume(tmp_path / "v.nrrd", oblique_volume)
    before = path.read_bytes()
    with pytest.raises(InputError, match="already exists"):
        write_volume(path, Volume(oblique_volume.array * 0, oblique_volume.geometry))
    assert path.read_bytes() == before
    write_volume(path, Volume(oblique_volume.array * 0, oblique_volume.geometry), overwrite=True)
    assert read_volume(path).array.max() == 0
    assert os.listdir(tmp_path) == ["v.nrrd"]


def test_output_folder_is_whole_or_absent(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_output_folder(tmp_path / "out") as staging:
            (staging / "half.txt").write_text("x")
            raise RuntimeError("failure halfway")
    assert os.listdir(tmp_path) == []
    with atomic_output_folder(tmp_path / "out") as staging:
        (staging / "a.txt").write_text("first")
    with pytest.raises(InputError, match="already exists.*--overwrite"):
        with atomic_output_folder(tmp_path / "out"):
            pass
    with atomic_output_folder(tmp_path / "out", overwrite=True) as staging:
        (staging / "b.txt").write_text("second")
    assert os.listdir(tmp_path) == ["out"] and os.listdir(tmp_path / "out") == ["b.txt"]


def test_outputs_get_the_usual_permissions(tmp_path, oblique_volume):
    mask = os.umask(0o022)
    try:
        with atomic_output_folder(tmp_path / "out") as staging:
            write_volume(staging / "v.nrrd", oblique_volume)
    finally:
        os.umask(mask)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "out" / "v.nrrd").stat().st_mode & 0o777 == 0o644
