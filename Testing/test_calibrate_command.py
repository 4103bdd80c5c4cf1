"""`uncertaintyseg calibrate` and `predict --calibrator` end to end: files, report, refusals."""

import json

import numpy as np
import pytest
import torch

from UncertaintySegLib.calibration import load_calibrator
from UncertaintySegLib.cli import main
from UncertaintySegLib.predict.io import read_volume
from UncertaintySegLib.predict.model_loading import load_model
from synthetic_cases import digest


def calibrate(*arguments):
    return main(["calibrate", "--progress", "none", *map(str, arguments)])


def test_calibrate_then_predict_with_the_calibrator_on_real_data(data_root, test_case, hippocampus_copy, small_model_dir, tmp_path, capsys):
    from UncertaintySegLib.predict.inference import check_image, predict_logits

    out = tmp_path / "cal"
    assert calibrate("--model", hippocampus_copy, "--method", "temperature", "--data-root", data_root, "--max-cases", 5,
                     "--out", out) == 0
    assert sorted(p.name for p in out.iterdir()) == ["calibrator.json", "calibrator.pt", "fit_report.json"]
    report = json.loads((out / "fit_report.json").read_text())
    assert len(report["data"]["fit_cases"]) == 4 and len(report["data"]["held_out_cases"]) == 1
    fit, held_out = report["nll_per_forward_pass"]["fit"], report["nll_per_forward_pass"]["held_out"]
    assert fit["nll_after"] <= fit["nll_before"] and held_out["voxels"] > 0 and held_out["nll_before"] > 0
    calibrator = load_calibrator(out)
    assert calibrator.model_["name"] == "hippocampus" and calibrator.voxels_used_ == fit["voxels"]
    assert "Temperature scaling" in capsys.readouterr().out

    image, _ = test_case
    assert main(["predict", "--image", str(image), "--model", str(hippocampus_copy), "--calibrator", str(out),
                 "--out", str(tmp_path / "pred"), "--progress", "none"]) == 0
    run = json.loads((tmp_path / "pred" / "run.json").read_text())
    assert run["model"]["calibrator"]["method"] == "temperature" and run["model"]["calibrator"]["path"] == str(out)
    model = load_model(hippocampus_copy)
    logits = predict_logits(model.network, model.spec, check_image(read_volume(image), model.spec), device="cpu")
    expected = torch.softmax(logits / calibrator.temperature_, 0).numpy()
    assert np.allclose(read_volume(tmp_path / "pred" / "probabilities.nrrd").array, expected, atol=1e-5)

    code = main(["predict", "--image", str(image), "--model", str(small_model_dir), "--calibrator", str(out),
                 "--out", str(tmp_path / "other"), "--progress", "none"])
    assert code == 2 and "fitted for classes ['background', 'anterior', 'posterior']" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()


def test_ensemble_members_passes_are_pooled(data_root, small_model_dir, tmp_path):
    assert calibrate("--model", small_model_dir, small_model_dir, "--method", "vector", "--data-root", data_root,
                     "--max-cases", 3, "--holdout-fraction", 0, "--roi", "none", "--max-voxels-per-case", 1000,
                     "--out", tmp_path / "cal") == 0
    calibrator = load_calibrator(tmp_path / "cal")
    assert calibrator.cases_used_ == 6 and calibrator.voxels_used_ == 6000 and calibrator.model_["members"] == 2
    assert "3 cases x 2 members, 6000 voxels" in calibrator.describe()
    held_out = json.loads((tmp_path / "cal" / "fit_report.json").read_text())["nll_per_forward_pass"]["held_out"]
    assert held_out["voxels"] == 0


def test_finetune_writes_a_model_folder_that_predict_runs_as_a_model(data_root, test_case, hippocampus_copy, tmp_path, capsys):
    before = digest(hippocampus_copy)
    out = tmp_path / "tuned"
    assert calibrate("--model", hippocampus_copy, "--method", "finetune", "--epochs", 1, "--data-root", data_root,
                     "--max-cases", 3, "--out", out) == 0
    assert digest(hippocampus_copy) == before
    assert {"model.json", "model.pt", "fine_tuning.json", "calibrator.json", "fit_report.json"} <= {p.name for p in out.iterdir()}
    assert load_model(out).spec.name == "hippocampus-finetuned"
    report = json.loads((out / "fit_report.json").read_text())
    assert report["settings"]["calibrator"]["learning_rate"] is None and "lr 0.001" in report["description"]  # dice_ce-trained
    image, _ = test_case
    capsys.readouterr()
    assert main(["predict", "--image", str(image), "--model", str(hippocampus_copy), "--calibrator", str(out),
                 "--out", str(tmp_path / "p1"), "--progress", "none"]) == 2
    assert "holds a fine-tuned model" in capsys.readouterr().err
    assert main(["predict", "--image", str(image), "--model", str(out), "--out", str(tmp_path / "p2"), "--progress", "none"]) == 0


@pytest.mark.parametrize("arguments, message", [
    (["--method", "platt-per-class"], "unknown calibration method 'platt-per-class'"),
    (["--method", "temperature", "--roi", "mask"], "--roi mask needs --mask"),
    (["--method", "temperature", "--max-voxels-per-case", "-1"], "--max-voxels-per-case -1"),
    (["--method", "temperature", "--holdout-fraction", "1"], "--holdout-fraction 1"),
])
def test_calibrate_refuses_bad_options_and_writes_nothing(arguments, message, small_model_dir, tmp_path, capsys):
    assert calibrate("--model", small_model_dir, *arguments, "--out", tmp_path / "cal") == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "cal").exists()


def test_calibrate_refuses_labels_outside_the_models_classes_and_an_empty_roi(small_model_dir, tmp_path, capsys):
    from conftest import write_image

    task = tmp_path / "data" / "Task04_Hippocampus"
    for sub in ("imagesTr", "labelsTr"):
        (task / sub).mkdir(parents=True)
    write_image(task / "imagesTr" / "case_a.nii.gz", np.random.default_rng(0).normal(0, 1, (12, 12, 12)).astype(np.float32))
    labels = np.zeros((12, 12, 12), np.uint8)
    labels[4:8, 4:8, 4:8] = 5
    write_image(task / "labelsTr" / "case_a.nii.gz", labels)
    (task / "dataset.json").write_text("{}")
    (task / "splits.json").write_text(json.dumps({"train": [], "calibration": ["case_a"], "test": []}))
    arguments = ("--model", small_model_dir, "--method", "temperature", "--data-root", tmp_path / "data", "--out", tmp_path / "cal")
    assert calibrate(*arguments) == 2
    assert "case 'case_a': labels hold values 0..5, model 'small' has 3 classes" in capsys.readouterr().err
    write_image(task / "labelsTr" / "case_a.nii.gz", np.zeros((12, 12, 12), np.uint8))
    assert calibrate(*arguments) == 2
    assert "case 'case_a': the bbox ROI is empty" in capsys.readouterr().err
    assert not (tmp_path / "cal").exists()
