"""`uncertaintyseg predict`: outputs with the input's geometry, JSON progress, bad input -> exit 2, nothing left behind."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import write_image

from UncertaintySegLib.cli import main
from UncertaintySegLib.predict.io import read_volume

DIRECTION = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)


@pytest.fixture
def image_path(tmp_path):
    array = np.random.default_rng(0).normal(100, 20, (20, 18, 15)).astype(np.float32)
    return write_image(tmp_path / "image.nii.gz", array, spacing=(0.9, 1.1, 1.7), origin=(4.0, -5.0, 6.0), direction=DIRECTION)


def predict(image, model, out, *extra):
    return main(["predict", "--image", str(image), "--model", str(model), "--out", str(out), "--progress", "none", *extra])


def test_predict_writes_outputs_on_the_input_grid(image_path, small_model_dir, tmp_path):
    assert predict(image_path, small_model_dir, tmp_path / "out") == 0
    image = read_volume(image_path)
    probabilities = read_volume(tmp_path / "out" / "probabilities.nrrd")
    entropy = read_volume(tmp_path / "out" / "entropy.nrrd")
    labels = read_volume(tmp_path / "out" / "labels.nrrd")
    for volume in (probabilities, entropy, labels):
        assert volume.spatial_shape == image.spatial_shape
        assert volume.geometry.matches(image.geometry, tolerance=1e-6)
    assert probabilities.num_channels == 3 and np.allclose(probabilities.array.sum(0), 1, atol=1e-5)
    assert np.array_equal(labels.array, probabilities.array.argmax(0))
    expected_entropy = -(probabilities.array * np.log(np.clip(probabilities.array, 1e-30, 1))).sum(0)
    assert np.allclose(entropy.array, expected_entropy, atol=1e-5)
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["class_names"] == ["background", "a", "b"] and run["model"]["name"] == "small"
    assert run["timings"]["inference_s"] > 0 and "torch" in run["versions"]


def test_predict_from_nnunet_probabilities(image_path, tmp_path):
    logits = np.random.default_rng(3).normal(size=(2, 20, 18, 15))
    probabilities = (np.exp(logits) / np.exp(logits).sum(0)).astype(np.float32)
    np.savez(tmp_path / "case.npz", probabilities=probabilities.transpose(0, 3, 2, 1))
    code = main(["predict", "--image", str(image_path), "--probabilities", str(tmp_path / "case.npz"),
                 "--class-names", "background,lesion", "--out", str(tmp_path / "out"), "--progress", "none"])
    assert code == 0
    assert np.allclose(read_volume(tmp_path / "out" / "probabilities.nrrd").array, probabilities, atol=1e-6)
    assert json.loads((tmp_path / "out" / "run.json").read_text())["class_names"] == ["background", "lesion"]


def test_json_progress_lines_from_the_console_script(image_path, small_model_dir, tmp_path):
    command = [sys.executable, "-m", "UncertaintySegLib.cli", "predict", "--image", str(image_path),
               "--model", str(small_model_dir), "--out", str(tmp_path / "out"), "--progress", "json"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    lines = [json.loads(line) for line in completed.stdout.splitlines()]
    assert [line["stage"] for line in lines][-1] == "done" and lines[-1]["fraction"] == 1.0
    assert all(0.0 <= line["fraction"] <= 1.0 for line in lines)
    assert [line["fraction"] for line in lines] == sorted(line["fraction"] for line in lines)


def bad_inputs(tmp_path):
    """name -> (image path, expected message) for each kind of bad image."""
    (tmp_path / "junk.nii.gz").write_bytes(b"not an image at all")
    sitk.WriteImage(sitk.Image(10, 10, sitk.sitkFloat32), str(tmp_path / "flat.nii.gz"))
    two_channels = sitk.JoinSeries([sitk.GetImageFromArray(np.random.rand(9, 9, 9).astype(np.float32))] * 2)
    sitk.WriteImage(two_channels, str(tmp_path / "four_d.nii.gz"))
    vector = sitk.GetImageFromArray(np.random.rand(9, 9, 9, 2).astype(np.float32), isVector=True)
    sitk.WriteImage(vector, str(tmp_path / "vector.nrrd"))
    nan = np.random.rand(9, 9, 9).astype(np.float32)
    nan[3, 3, 3] = np.nan
    write_image(tmp_path / "nan.nrrd", nan)  # ITK's NIfTI reader turns NaN into 0
    inf = np.random.rand(9, 9, 9).astype(np.float32)
    inf[1, 2, 3] = np.inf
    write_image(tmp_path / "inf.nrrd", inf)
    write_image(tmp_path / "blank.nii.gz", np.zeros((9, 9, 9), np.uint8))
    return {
        "missing": (tmp_path / "absent.nii.gz", "not found"),
        "unreadable": (tmp_path / "junk.nii.gz", "cannot read"),
        "2-D": (tmp_path / "flat.nii.gz", "2-D image"),
        "4-D": (tmp_path / "four_d.nii.gz", "2 channel\\(s\\), model 'small' expects 1"),
        "channels": (tmp_path / "vector.nrrd", "2 channel\\(s\\), model 'small' expects 1"),
        "NaN": (tmp_path / "nan.nrrd", "1 NaN or infinite voxel"),
        "inf": (tmp_path / "inf.nrrd", "1 NaN or infinite voxel"),
        "empty": (tmp_path / "blank.nii.gz", "no contrast"),
    }


@pytest.mark.parametrize("kind", ["missing", "unreadable", "2-D", "4-D", "channels", "NaN", "inf", "empty"])
def test_bad_image_exits_2_with_one_line_and_no_output(kind, small_model_dir, tmp_path, capsys):
    import re

    image, message = bad_inputs(tmp_path)[kind]
    assert predict(image, small_model_dir, tmp_path / "out") == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and re.search(message, error), error
    assert not (tmp_path / "out").exists()
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".out")]


def test_model_file_that_is_not_a_model_exits_2(image_path, tmp_path, capsys):
    (tmp_path / "model.json").write_text(json.dumps({"name": "x", "class_names": ["bg", "fg"], "format": "torchscript", "weights": "m.ts"}))
    (tmp_path / "m.ts").write_text("hello")
    assert predict(image_path, tmp_path / "m.ts", tmp_path / "out") == 2
    assert "not a TorchScript model" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_existing_output_folder_is_refused_unless_overwrite(image_path, small_model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    assert predict(image_path, small_model_dir, out) == 2
    assert "already exists" in capsys.readouterr().err and (out / "keep.txt").read_text() == "precious"
    assert predict(image_path, small_model_dir, out, "--overwrite") == 0
    assert sorted(os.listdir(out)) == ["entropy.nrrd", "labels.nrrd", "probabilities.nrrd", "run.json", "segments.csv"]


def test_predict_default_model_on_a_real_case(test_case, tmp_path):
    image_path, label_path = test_case
    assert predict(image_path, "hippocampus", tmp_path / "out") == 0
    image, labels = read_volume(image_path), read_volume(tmp_path / "out" / "labels.nrrd")
    assert labels.geometry.matches(image.geometry, tolerance=1e-6) and labels.spatial_shape == image.spatial_shape
    reference = read_volume(label_path).array
    overlap = 2 * np.logical_and(labels.array > 0, reference > 0).sum() / ((labels.array > 0).sum() + (reference > 0).sum())
    assert overlap > 0.8


def test_existing_output_folder_is_refused_before_any_long_work(tmp_path, capsys):
    import time

    (tmp_path / "out").mkdir()
    started = time.perf_counter()
    assert main(["train", "--epochs", "50", "--out", str(tmp_path / "out"), "--progress", "none"]) == 2
    assert time.perf_counter() - started < 5 and "already exists" in capsys.readouterr().err
