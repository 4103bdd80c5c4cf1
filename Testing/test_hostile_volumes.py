"""Damaged inputs and non-finite outputs, through the real CLI.

Inputs (exit 2, nothing written): a truncated .nii.gz (SimpleITK's NIfTI reader zero-fills what is
missing), NaN/Inf voxels in a NIfTI (the NIfTI library turns them into 0), a NIfTI with a zero
dimension (read as one slice), a truncated MetaImage (ITK's message blames a missing file).
Outputs (exit 1, nothing written): a network with NaN weights, a calibrator whose scale overflows
the logits. Files are made here from a real hippocampus case.
"""

import gzip
import shutil
import struct

import numpy as np
import pytest

from UncertaintySegLib.cli import main


@pytest.fixture(scope="module")
def case(tmp_path_factory, data_root):
    """(image, label) copies of one real case, and the image's NIfTI bytes, decompressed."""
    from UncertaintySegLib.data.hippocampus import load_split

    source = load_split(data_root, "test")[0]
    folder = tmp_path_factory.mktemp("case")
    image, label = folder / "image.nii.gz", folder / "label.nii.gz"
    shutil.copy(source.image, image)
    shutil.copy(source.label, label)
    return image, label, gzip.decompress(image.read_bytes())


def run(capsys, *argv):
    capsys.readouterr()
    code = main([*map(str, argv), "--progress", "none"])
    return code, capsys.readouterr().err


def predict(capsys, image, model, out, *extra):
    return run(capsys, "predict", "--image", image, "--model", model, "--device", "cpu", "--out", out, *extra)


def float_copy(image, path, edit):
    """`image` as float32 with `edit(array)` applied to its (K, J, I) voxels, written as NIfTI with SimpleITK."""
    import SimpleITK as sitk

    original = sitk.ReadImage(str(image))
    array = sitk.GetArrayFromImage(original).astype(np.float32)
    edit(array)
    edited = sitk.GetImageFromArray(array)
    edited.CopyInformation(original)
    sitk.WriteImage(edited, str(path), useCompression=True)
    return path


# ---- damaged inputs: exit 2, a message that says what and what to do, no output folder -----------------------


def test_truncated_nifti_is_refused_as_image_and_as_reference(case, small_model_dir, tmp_path, capsys):
    image, label, raw = case
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
    code, err = predict(capsys, truncated, small_model_dir, tmp_path / "out")
    assert code == 2, err
    assert "'" + str(truncated) + "' is truncated" in err and f"promises {len(raw) - 352} bytes of voxels" in err
    assert "download or export it again" in err
    assert not (tmp_path / "out").exists()

    code, err = predict(capsys, image, small_model_dir, tmp_path / "pred")
    assert code == 0, err
    cut = tmp_path / "label_truncated.nii.gz"
    cut.write_bytes(label.read_bytes()[: label.stat().st_size * 2 // 3])
    code, err = run(capsys, "evaluate", "--pred", tmp_path / "pred", "--ref", cut, "--out", tmp_path / "eval")
    assert code == 2, err
    assert "is truncated" in err and str(cut) in err
    assert not (tmp_path / "eval").exists()


def test_uncompressed_nifti_cut_short_is_refused(case, small_model_dir, tmp_path, capsys):
    _, _, raw = case
    cut = tmp_path / "cut.nii"
    cut.write_bytes(raw[: len(raw) - 1000])
    code, err = predict(capsys, cut, small_model_dir, tmp_path / "out")
    assert code == 2, err
    assert f"promises {len(raw) - 352} bytes of voxels" in err and f"holds {len(raw) - 352 - 1000}" in err
    assert not (tmp_path / "out").exists()

    header_only = tmp_path / "header_only.nii"
    header_only.write_bytes(raw[:200])
    code, err = predict(capsys, header_only, small_model_dir, tmp_path / "out")
    assert code == 2 and "is truncated" in err and "fewer than its NIfTI header (348)" in err, err


def test_nan_and_inf_voxels_in_a_nifti_are_counted(case, small_model_dir, tmp_path, capsys):
    image, _, _ = case

    def spoil(array):
        array[0, 0, :5] = np.nan
        array[1, 1, :3] = np.inf
        array[2, 2, 0] = -np.inf

    spoiled = float_copy(image, tmp_path / "nan.nii.gz", spoil)
    code, err = predict(capsys, spoiled, small_model_dir, tmp_path / "out")
    assert code == 2, err
    assert "9 NaN or infinite voxel(s)" in err and "5 NaN, 4 infinite" in err
    assert not (tmp_path / "out").exists()


def test_all_nan_nifti_is_not_reported_as_no_contrast(case, small_model_dir, tmp_path, capsys):
    import SimpleITK as sitk

    image, _, _ = case
    spoiled = float_copy(image, tmp_path / "all_nan.nii.gz", lambda array: array.fill(np.nan))
    code, err = predict(capsys, spoiled, small_model_dir, tmp_path / "out")
    assert code == 2, err
    assert "no contrast" not in err
    count = int(np.prod(sitk.ReadImage(str(image)).GetSize()))  # every voxel is NaN now
    assert f"{count} NaN or infinite voxel(s) of {count} ({count} NaN, 0 infinite)" in err
    assert not (tmp_path / "out").exists()


def test_zero_dimension_nifti_is_refused(case, small_model_dir, tmp_path, capsys):
    _, _, raw = case
    header = bytearray(raw[:352])
    assert struct.unpack_from("<i", header, 0)[0] == 348
    struct.pack_into("<h", header, 40 + 2 * 3, 0)  # dim[3] = 0; the voxels stay, as a careless writer leaves them
    flat = tmp_path / "zero.nii"
    flat.write_bytes(bytes(header) + raw[352:])
    code, err = predict(capsys, flat, small_model_dir, tmp_path / "out")
    assert code == 2, err
    assert "zero or negative dimension" in err and "x0 voxels" in err
    assert not (tmp_path / "out").exists()


def test_truncated_metaimage_says_truncated(case, small_model_dir, tmp_path, capsys):
    import SimpleITK as sitk

    image, _, _ = case
    for compressed in (False, True):
        whole = tmp_path / f"whole{int(compressed)}.mha"
        sitk.WriteImage(sitk.ReadImage(str(image)), str(whole), useCompression=compressed)
        cut = tmp_path / f"cut{int(compressed)}.mha"
        cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
        code, err = predict(capsys, cut, small_model_dir, tmp_path / "out")
        assert code == 2, err
        assert "is truncated" in err and "No such file" not in err
        assert not (tmp_path / "out").exists()


def test_nifti_reader_reads_what_simpleitk_reads(case, tmp_path):
    """The NIfTI reader decompresses once and builds the voxels itself: same arrays and geometry as SimpleITK's."""
    import SimpleITK as sitk

    from UncertaintySegLib.predict import io

    image, label, _ = case
    rng = np.random.default_rng(0)
    probabilities = rng.random((3, 7, 6, 5)).astype(np.float32)
    geometry = io.Geometry((1.0, -2.0, 3.0), (0.5, 0.7, 1.1), (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    vector = io.write_volume(tmp_path / "probabilities.nii.gz", io.Volume(probabilities, geometry))
    four = sitk.GetImageFromArray(rng.random((2, 5, 6, 7)).astype(np.float64), isVector=False)
    sitk.WriteImage(four, str(tmp_path / "four.nii"))
    for path in (image, label, vector, tmp_path / "four.nii"):
        expected = io._volume_from_sitk(sitk.ReadImage(str(path)), path)
        found = io.read_volume(path)
        assert found.array.dtype == expected.array.dtype and found.array.shape == expected.array.shape, path
        np.testing.assert_array_equal(found.array, expected.array)
        assert found.geometry == expected.geometry
        assert found.array.flags.c_contiguous


# ---- non-finite outputs: exit 1, which stage, no output folder --------------------------------------------------


@pytest.mark.parametrize("value", [float("nan"), 1e38])
def test_network_with_damaged_weights_fails_naming_the_network(small_model_dir, case, tmp_path, capsys, value):
    """One NaN weight, or a first layer of finite but extreme weights (its outputs overflow to inf)."""
    import torch

    image, _, _ = case
    model = tmp_path / "model"
    shutil.copytree(small_model_dir, model)
    weights = torch.load(model / "model.pt", weights_only=True)
    first = next(name for name, tensor in weights.items() if tensor.is_floating_point() and tensor.ndim > 1)
    if value != value:
        weights[first].view(-1)[0] = value
    else:
        weights[first].fill_(value)
    torch.save(weights, model / "model.pt")
    code, err = predict(capsys, image, model, tmp_path / "out")
    if code == 2:  # the model loader's own checks may refuse NaN weights when it loads them: also fine
        assert value != value and "NaN" in err, err
        return
    assert code == 1, err
    assert "the network 'small' produced" in err and "non-finite logits (NaN/Inf)" in err and "weights may be damaged" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("method, scale, bias", [("temperature", float("inf"), 0.0), ("vector", 3e38, 3e38)])
def test_calibrator_that_overflows_fails_naming_the_calibrator(small_model_dir, case, tmp_path, capsys, method, scale, bias):
    """A temperature calibrator saved with scale inf (T = 0), and a vector one with finite but extreme parameters
    (z * 3e38 + 3e38 overflows to inf): their logits are NaN/Inf, every voxel would be labelled background."""
    import torch

    from UncertaintySegLib.calibration import CALIBRATORS, model_fingerprint
    from UncertaintySegLib.predict.model_loading import load_model

    image, _, _ = case
    labels = (torch.arange(300) % 3).reshape(10, 10, 3)
    logits = torch.nn.functional.one_hot(labels, 3).permute(3, 0, 1, 2).float() * 2
    logits += torch.randn(logits.shape, generator=torch.Generator().manual_seed(0))
    fingerprint = model_fingerprint(load_model(small_model_dir))
    calibrator = CALIBRATORS[method](max_voxels_per_case=None).fit(logits, labels, model=fingerprint)
    folder = calibrator.save(tmp_path / "calibrator")
    torch.save({"scale": torch.full((3,), scale), "bias": torch.full((3,), bias)}, folder / "calibrator.pt")
    code, err = predict(capsys, image, small_model_dir, tmp_path / "out", "--calibrator", folder)
    if code == 2:  # the calibrator's own checks may refuse an infinite scale when it is loaded: also fine
        assert scale == float("inf") and "calibrator" in err, err
        return
    assert code == 1, err
    assert f"the calibrator '{method}'" in err and "turned finite logits into" in err and "non-finite ones" in err
    assert not (tmp_path / "out").exists()
