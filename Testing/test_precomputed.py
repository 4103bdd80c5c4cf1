"""Probabilities saved by other tools: nnU-Net .npz (axes as nnU-Net writes them) and 4-D volumes."""

import numpy as np
import pytest
import SimpleITK as sitk

from UncertaintySegLib.common.errors import InputError
from UncertaintySegLib.predict.io import Geometry, Volume, write_volume
from UncertaintySegLib.predict.precomputed import read_probabilities

IMAGE = Volume(np.zeros((5, 6, 7), np.float32), Geometry((1.0, 2.0, 3.0), (0.5, 0.6, 0.7), (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)))


def random_probabilities(shape=(3, 5, 6, 7), seed=0):
    logits = np.random.default_rng(seed).normal(size=shape)
    return (np.exp(logits) / np.exp(logits).sum(0)).astype(np.float32)


def test_nnunet_npz_in_zyx_order(tmp_path):
    probabilities = random_probabilities()  # (C, I, J, K)
    np.savez_compressed(tmp_path / "case.npz", probabilities=probabilities.transpose(0, 3, 2, 1))  # nnU-Net: (C, z, y, x)
    volume = read_probabilities(tmp_path / "case.npz", IMAGE)
    assert np.allclose(volume.array, probabilities) and volume.geometry == IMAGE.geometry


def test_nnunet_npz_with_wrong_axes_gets_a_hint(tmp_path):
    np.savez_compressed(tmp_path / "case.npz", probabilities=random_probabilities())  # (C, x, y, z)
    with pytest.raises(InputError, match="try --nnunet-axes xyz"):
        read_probabilities(tmp_path / "case.npz", IMAGE)
    assert read_probabilities(tmp_path / "case.npz", IMAGE, nnunet_axes="xyz").array.shape == (3, 5, 6, 7)


def test_npz_with_objects_is_never_unpickled(tmp_path):
    np.savez(tmp_path / "evil.npz", probabilities=np.array([{"a": 1}], dtype=object))
    with pytest.raises(InputError, match="cannot read"):
        read_probabilities(tmp_path / "evil.npz", IMAGE)


def test_four_d_volume_on_the_image_grid(tmp_path):
    probabilities = random_probabilities()
    path = write_volume(tmp_path / "p.nrrd", Volume(probabilities, IMAGE.geometry))
    assert np.allclose(read_probabilities(path, IMAGE).array, probabilities)
    moved = Volume(IMAGE.array, Geometry((9.0, 2.0, 3.0), IMAGE.geometry.spacing, IMAGE.geometry.direction))
    with pytest.raises(InputError, match="different grid"):
        read_probabilities(path, moved)


@pytest.mark.parametrize("mangle, message", [
    (lambda p: p * 2, "expected probabilities in \\[0, 1\\]|sum to"),
    (lambda p: p * 0.5, "sum to"),
    (lambda p: np.where(p > 0.9, np.nan, p), "NaN"),
])
def test_values_that_are_not_probabilities(tmp_path, mangle, message):
    np.savez(tmp_path / "bad.npz", probabilities=mangle(random_probabilities()).transpose(0, 3, 2, 1))
    with pytest.raises(InputError, match=message):
        read_probabilities(tmp_path / "bad.npz", IMAGE)


def test_three_d_scalar_is_not_a_probability_map(tmp_path):
    sitk.WriteImage(sitk.Image(5, 6, 7, sitk.sitkFloat32), str(tmp_path / "scalar.nii.gz"))
    with pytest.raises(InputError, match="3-D scalar volume"):
        read_probabilities(tmp_path / "scalar.nii.gz", IMAGE)
