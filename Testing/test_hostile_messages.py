"""Messages that used to mislead (issue 15, item 9), and JSON that used to be invalid, through the real CLI.

Each input is made here from a real hippocampus case or written by hand (NRRD headers, DICOM
slices written with SimpleITK); a full disk is a real file-size limit on a real CLI process.
"""

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from UncertaintySegLib.cli import main

REPOSITORY = Path(__file__).resolve().parents[1]


def run(capsys, *argv):
    capsys.readouterr()
    code = main([*map(str, argv), "--progress", "none"])
    return code, capsys.readouterr().err


def predict(capsys, image, model, out):
    return run(capsys, "predict", "--image", image, "--model", model, "--device", "cpu", "--out", out)


def nrrd_with_directions(path, directions):
    """An 8x8x8 float NRRD whose header gives `directions` (three "(x,y,z)" vectors) as its space directions."""
    header = ("NRRD0004\ntype: float\ndimension: 3\nspace: left-posterior-superior\nsizes: 8 8 8\n"
              f"space directions: {directions}\nkinds: domain domain domain\nendian: little\nencoding: raw\n"
              "space origin: (0,0,0)\n\n")
    path.write_bytes(header.encode() + np.zeros(512, np.float32).tobytes())
    return path


@pytest.mark.parametrize("dtype", [np.int8, np.int16])
def test_negative_labels_are_shown_as_they_are(test_case, hippocampus_copy, tmp_path, capsys, dtype):
    """A reference with -1 labels was reported as 'holds labels 255..255'."""
    import SimpleITK as sitk

    image, label = test_case
    assert predict(capsys, image, hippocampus_copy, tmp_path / "pred")[0] == 0
    original = sitk.ReadImage(str(label))
    labels = sitk.GetArrayFromImage(original).astype(dtype)
    labels[labels == 2] = -1
    edited = sitk.GetImageFromArray(labels)
    edited.CopyInformation(original)
    for suffix in (".nii.gz", ".nrrd"):
        reference = tmp_path / f"negative{suffix}"
        sitk.WriteImage(edited, str(reference))
        code, err = run(capsys, "evaluate", "--pred", tmp_path / "pred", "--ref", reference, "--out", tmp_path / "eval")
        assert code == 2 and "holds labels -1..1" in err and "255" not in err, err
        assert not (tmp_path / "eval").exists()


def test_singular_direction_and_zero_spacing_are_said_in_words(small_model_dir, tmp_path, capsys):
    """ITK's refusals used to reach the user as '(0 0 1)' (the last line of a matrix) or a bare ITK line."""
    singular = nrrd_with_directions(tmp_path / "singular.nrrd", "(1,0,0) (1,0,0) (0,0,1)")
    code, err = predict(capsys, singular, small_model_dir, tmp_path / "out")
    assert code == 2 and "direction matrix is singular" in err and "(0 0 1)" not in err, err
    flat = nrrd_with_directions(tmp_path / "flat.nrrd", "(1,0,0) (0,0,0) (0,0,1)")
    code, err = predict(capsys, flat, small_model_dir, tmp_path / "out")
    assert code == 2 and "spacing [1, 0, 1] holds a zero" in err and "ITK" not in err, err
    assert not (tmp_path / "out").exists()


def test_dicom_series_with_mixed_slice_sizes_names_the_sizes(small_model_dir, tmp_path, capsys):
    """Used to say '(Size: [20, 20, 1])' or 'ITK ERROR: ImageSeriesReader(0x...): Size mismatch!'."""
    import SimpleITK as sitk

    folder = tmp_path / "series"
    folder.mkdir()
    for index, size in enumerate((20, 20, 24, 20)):
        slice_ = sitk.GetImageFromArray(np.zeros((1, size, size), np.int16))
        for tag, value in {"0020|000d": "1.2.3", "0020|000e": "1.2.3.4", "0020|0013": str(index + 1),
                           "0020|0032": f"0\\0\\{index}", "0020|0037": "1\\0\\0\\0\\1\\0", "0008|0060": "CT"}.items():
            slice_.SetMetaData(tag, value)
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        writer.SetFileName(str(folder / f"slice{index}.dcm"))
        writer.Execute(slice_)
    code, err = predict(capsys, folder, small_model_dir, tmp_path / "out")
    assert code == 2, err
    assert "slices of 2 sizes: 3 of 20x20 (e.g. slice0.dcm), 1 of 24x24 (e.g. slice2.dcm)" in err and "(0x" not in err, err


def test_itk_warnings_do_not_reach_stderr(test_case, small_model_dir, tmp_path):
    """A sheared NIfTI made ITK print a 'WARNING: In .../itkNiftiImageIO.cxx, line ...' block before the error."""
    import SimpleITK as sitk

    image, _ = test_case
    plain = tmp_path / "plain.nii"
    sitk.WriteImage(sitk.ReadImage(str(image)), str(plain))
    header = bytearray(plain.read_bytes())
    header[252:256] = np.array([0, 1], "<i2").tobytes()  # qform_code 0, sform_code 1 ...
    header[280:328] = np.array([[1, 0.5, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]], "<f4").tobytes()  # ... with a shear
    sheared = tmp_path / "sheared.nii"
    sheared.write_bytes(bytes(header))
    result = cli(["predict", "--image", sheared, "--model", small_model_dir, "--out", tmp_path / "out"])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()], result.stderr  # one line
    assert "axis directions are not perpendicular" in result.stderr and "WARNING" not in result.stderr


def cli(argv, file_size_limit=None):
    """A real `uncertaintyseg` process; with `file_size_limit` (bytes) every larger write fails, as on a full disk."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    environment = dict(os.environ, PYTHONPATH=str(REPOSITORY / "UncertaintySeg"), PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, "-m", "UncertaintySegLib.cli", *map(str, argv), "--progress", "none"],
                          capture_output=True, text=True, env=environment, timeout=300,
                          preexec_fn=limit if file_size_limit else None)


def test_full_disk_is_one_line_and_leaves_nothing(test_case, small_model_dir, tmp_path):
    """A full disk used to print ITK's 9-line NRRD error (with the hidden staging file's name)."""
    image, _ = test_case
    out = tmp_path / "runs" / "out"
    out.parent.mkdir()
    result = cli(["predict", "--image", image, "--model", small_model_dir, "--out", out], file_size_limit=32 * 1024)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "could not write" in lines[0] and "disk has room" in lines[0], result.stderr
    assert "[nrrd]" not in result.stderr and ".tmp" not in result.stderr and "/." not in result.stderr
    assert os.listdir(out.parent) == []  # neither the folder nor a staging folder


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha"])
def test_cut_short_nifti_and_metaimage_writes_are_errors(tmp_path, suffix):
    """niftilib reports a failed write on stderr only: the file was left cut short, as if written."""
    script = ("import numpy as np, sys\n"
              "from UncertaintySegLib.predict.io import Geometry, Volume, write_volume\n"
              "from UncertaintySegLib.common.errors import OutputWriteError\n"
              "volume = Volume(np.random.default_rng(0).random((64, 64, 64), np.float32), "
              "Geometry((0, 0, 0), (1, 1, 1), (1, 0, 0, 0, 1, 0, 0, 0, 1)))\n"
              f"try:\n    write_volume(sys.argv[1], volume)\nexcept OutputWriteError as error:\n    print(error)\n")
    environment = dict(os.environ, PYTHONPATH=str(REPOSITORY / "UncertaintySeg"), PYTHONDONTWRITEBYTECODE="1")
    target = tmp_path / f"volume{suffix}"

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    result = subprocess.run([sys.executable, "-c", script, str(target)], capture_output=True, text=True,
                            env=environment, timeout=120, preexec_fn=limit)
    assert result.stdout.startswith(f"could not write '{target}'"), (result.stdout, result.stderr)
    assert os.listdir(tmp_path) == []


def test_every_json_the_project_writes_is_valid_json(tmp_path):
    """Python's json writes a bare NaN (invalid JSON) by default: run.json got one from --flag-threshold nan."""
    from UncertaintySegLib.common.json_output import json_text, write_json

    document = {"dice": float("nan"), "ece": np.float32(0.25), "bounds": (np.float64("inf"), 1), "count": np.int64(3)}
    path = write_json(tmp_path / "metrics.json", document)
    assert json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(f"wrote {name}")) == {
        "dice": None, "ece": 0.25, "bounds": [None, 1], "count": 3}
    assert json_text([float("-inf")]) == "[\n  null\n]\n"


def test_no_module_writes_json_without_the_shared_writer():
    """Every JSON file and JSON line goes through json_output (so none can hold NaN); a new json.dumps fails here."""
    offenders = []
    for path in (REPOSITORY / "UncertaintySeg").rglob("*.py"):
        if path.name == "json_output.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if ("json.dump(" in line or "json.dumps(" in line) and "allow_nan=False" not in line:
                offenders.append(f"{path.relative_to(REPOSITORY)}:{number}: {line.strip()}")
    assert offenders == [], "use json_output.write_json / json_text:\n" + "\n".join(offenders)
