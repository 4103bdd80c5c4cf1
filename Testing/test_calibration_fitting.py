"""Fitting a calibrator from (volume, reference) pairs in a real MRML scene, on real hippocampus cases:
the same fit as the library's on the same files, saved where the panel's Apply reads it, ensembles pooled,
fine-tuning written as a model folder, and errors that say what to do."""

from types import SimpleNamespace

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core is not installed (pip install slicer-core)")

from UncertaintySegLib.common.errors import InputError  # noqa: E402
from UncertaintySegLib.predict.io import read_volume  # noqa: E402
from UncertaintySegLib.calibration import FIT_REPORT_FILE  # noqa: E402
from UncertaintySegSlicer.mrml.calibrationFitting import CalibrationFittingMixin  # noqa: E402
from UncertaintySegSlicer.panel.calibrationPanel import (calibrationPairLabels, checkFitParameters, fitFolderProblem,  # noqa: E402
                                                         useFittedCalibration)
from UncertaintySegSlicer.panel.panelChoices import MODEL_FOLDER, PRECOMPUTED, CalibrationMethod, CalibrationSource  # noqa: E402
from panel_settings import settings  # noqa: E402
from UncertaintySegSlicer.panel.panelRun import RunSettings, checkRunParameters  # noqa: E402
from UncertaintySegSlicer.mrml.segmentation import addSegmentationFromLabels  # noqa: E402
from UncertaintySegSlicer.mrml.volumes import addVolumeNode, geometryFromNode  # noqa: E402

CLASSES = ["background", "anterior", "posterior"]


@pytest.fixture(scope="session")
def calibration_cases(data_root):
    """The first two cases of the calibration split: (case id, image Volume, reference labels)."""
    from UncertaintySegLib.data.hippocampus import load_split

    return [(case.case_id, read_volume(case.image), read_volume(case.label).array.astype(np.uint8))
            for case in load_split(data_root, "calibration")[:2]]


@pytest.fixture
def scene_pairs(mrml_scene, calibration_cases):
    """(scene, pairs): the first reference as a segmentation node, the second as a label map volume."""
    scene, _ = mrml_scene
    pairs = []
    for index, (caseID, image, labels) in enumerate(calibration_cases):
        volume = addVolumeNode(scene, image.array, image.geometry, caseID)
        if index == 0:
            reference = addSegmentationFromLabels(scene, labels, image.geometry, CLASSES, f"{caseID} reference", volume)
        else:
            reference = addVolumeNode(scene, labels, image.geometry, f"{caseID} labels", "vtkMRMLLabelMapVolumeNode")
        pairs.append((volume, reference))
    return scene, pairs


def library_cases(model, calibration_cases, roi="bbox"):
    """The same cases read straight from the files, as `uncertaintyseg calibrate` reads them."""
    from UncertaintySegLib.predict.inference import check_image, predict_logits
    from UncertaintySegLib.evaluation.roi import roi_mask

    for _, image, labels in calibration_cases:
        pixels = check_image(image, model.spec)
        for network in model.networks:
            yield (predict_logits(network, model.spec, pixels, device="cpu"), labels.astype(np.int64),
                   roi_mask(roi, labels, image.geometry.spacing))


def test_temperature_fitted_from_scene_pairs_is_the_librarys_fit_on_the_files(scene_pairs, calibration_cases, tmp_path):
    from UncertaintySegLib.calibration import TemperatureScaling, model_fingerprint
    from UncertaintySegLib.predict.model_loading import load_model

    _, pairs = scene_pairs
    stages = []
    fitted = CalibrationFittingMixin().fitCalibrator(pairs, model="hippocampus", method="temperature", device="cpu",
                                                     saveTo=tmp_path / "hippocampus-ts", progress=lambda s, f: stages.append((s, f)))
    model = load_model("hippocampus")
    expected = TemperatureScaling().fit_cases(library_cases(model, calibration_cases), model=model_fingerprint(model))
    calibrator = fitted.calibrator
    assert (calibrator.cases_used_, calibrator.voxels_used_) == (2, expected.voxels_used_)
    assert calibrator.temperature_ == pytest.approx(expected.temperature_, rel=1e-6)
    assert calibrator.nll_after_ < calibrator.nll_before_
    fractions = [fraction for _, fraction in stages]
    assert fractions == sorted(fractions) and stages[-1] == ("done", 1.0)
    assert any(stage.startswith(f"logits of '{calibration_cases[1][0]}' (2/2)") for stage, _ in stages)

    # saved whole, with a report naming the scene's nodes; the panel's Apply then passes it to predict
    assert fitted.folder == tmp_path / "hippocampus-ts"
    report = (fitted.folder / FIT_REPORT_FILE).read_text()
    assert calibration_cases[0][0] + " reference" in report and calibration_cases[1][0] + " labels" in report
    from UncertaintySegLib.calibration import load_calibrator_for

    loaded = load_calibrator_for(fitted.folder, model)
    logits = np.random.default_rng(0).normal(size=(3, 4, 5, 6)).astype(np.float32)
    assert np.allclose(loaded.transform(logits).numpy(), calibrator.transform(logits).numpy())
    parameters = SimpleNamespace(**vars(settings(inputVolume=pairs[0][0])))
    parameters.calibration = CalibrationSource.FIT
    assert "Fit the calibrator first" in checkRunParameters(parameters)
    useFittedCalibration(parameters, fitted)
    assert parameters.calibration is CalibrationSource.FIT and checkRunParameters(parameters) is None
    assert RunSettings.fromParameters(parameters).predictArguments("in.nrrd", "out")[-2:] == ["--calibrator", str(fitted.folder)]
    # fitting again into the same folder replaces the earlier fit; a folder of other files is refused
    assert fitFolderProblem(fitted.folder) is None and fitFolderProblem(tmp_path / "new") is None
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    assert "holds other files" in fitFolderProblem(tmp_path / "mine")


def test_an_ensembles_member_passes_are_pooled(scene_pairs):
    from UncertaintySegLib.calibration import model_fingerprint
    from UncertaintySegLib.predict.model_loading import load_model

    _, pairs = scene_pairs
    model = load_model("hippocampus-dice")
    fitted = CalibrationFittingMixin().fitCalibrator(pairs[1:], model=model, method="platt", device="cpu", roi="whole")
    assert fitted.calibrator.cases_used_ == len(model.networks) == 5
    assert fitted.calibrator.voxels_used_ == 5 * min(pairs[1][0].GetImageData().GetNumberOfPoints(), 200_000)
    fitted.calibrator.check_model(model_fingerprint(model))  # fitted for these five members' weights
    with pytest.raises(InputError, match="not for 'hippocampus'"):
        fitted.calibrator.check_model(model_fingerprint(load_model("hippocampus")))


def test_fine_tuning_from_the_scene_becomes_the_panels_model(scene_pairs, tmp_path):
    from UncertaintySegLib.predict.model_loading import load_model

    _, pairs = scene_pairs
    fitted = CalibrationFittingMixin().fitCalibrator(pairs, model="hippocampus", method="finetune", device="cpu",
                                                     saveTo=tmp_path / "hippocampus-ft", max_epochs=1, patience=1)
    assert fitted.isModel and (fitted.calibrator.cases_used_, fitted.calibrator.holdout_cases_) == (1, 1)
    assert {"model.json", "model.pt", "fine_tuning.json", "calibrator.json", FIT_REPORT_FILE} <= {p.name for p in fitted.folder.iterdir()}
    tuned = load_model(fitted.folder)
    assert tuned.spec.name == "hippocampus-finetuned" and tuned.spec.class_names == load_model("hippocampus").spec.class_names
    parameters = SimpleNamespace(model="hippocampus", modelFolder=None, calibration=CalibrationSource.FIT, calibratorFolder=None)
    useFittedCalibration(parameters, fitted)
    assert (parameters.model, parameters.modelFolder, parameters.calibration) == (MODEL_FOLDER, fitted.folder, CalibrationSource.NONE)


def test_fitting_errors_say_what_to_do(scene_pairs, tmp_path):
    scene, pairs = scene_pairs
    logic = CalibrationFittingMixin()
    with pytest.raises(InputError, match="at least 2 pairs"):
        logic.fitCalibrator(pairs[:1], method="finetune")
    with pytest.raises(InputError, match="no calibration pairs"):
        logic.fitCalibrator([], method="temperature")
    with pytest.raises(InputError, match="expected one of temperature, vector, platt, auxconv, finetune, histogram, isotonic"):
        logic.fitCalibrator(pairs, method="bogus")
    with pytest.raises(InputError, match="'auxconv' has no setting max_epoch: expected some of kernel_size, learning_rate, max_epochs"):
        logic.fitCalibrator(pairs, method="auxconv", max_epoch=5)
    volume, reference = pairs[1]
    empty = addVolumeNode(scene, np.zeros(slicer.util.arrayFromVolume(volume).shape[::-1], np.uint8),
                          geometryFromNode(volume), "empty labels", "vtkMRMLLabelMapVolumeNode")
    with pytest.raises(InputError, match=r"pair 1 \(.*'empty labels'\): the reference has no foreground"):
        logic.fitCalibrator([(volume, empty)], model="hippocampus", device="cpu")
    scene.RemoveNode(reference)
    with pytest.raises(InputError, match="pair 2 lost its volume or its reference"):
        logic.fitCalibrator(pairs, model="hippocampus", device="cpu")
    assert calibrationPairLabels(pairs)[1].endswith("(removed)")


def test_fit_button_is_refused_with_a_sentence_saying_what_to_fix(scene_pairs, tmp_path):
    _, pairs = scene_pairs
    base = SimpleNamespace(**{**vars(settings(inputVolume=pairs[0][0])), "calibrationPairs": pairs,
                              "calibrationMethod": CalibrationMethod.TEMPERATURE, "calibratorFolder": tmp_path / "cal"})
    assert checkFitParameters(base) is None
    cases = [({"model": PRECOMPUTED}, "no logits to calibrate"), ({"calibrationPairs": []}, "Add at least one"),
             ({"calibrationPairs": [(pairs[0][0], None)]}, "Pair 1 lost its volume or its reference"),
             ({"calibrationPairs": pairs[:1], "calibrationMethod": CalibrationMethod.FINETUNE}, "two or more pairs"),
             ({"model": MODEL_FOLDER}, "Choose the MONAI bundle or model folder"),
             ({"calibratorFolder": None}, "Choose the folder to save")]
    for changes, expected in cases:
        assert expected in (checkFitParameters(SimpleNamespace(**{**vars(base), **changes})) or ""), changes
    assert calibrationPairLabels(pairs) == [f"{v.GetName()}  \N{LEFT RIGHT ARROW}  {r.GetName()}" for v, r in pairs]
    assert settings(inputVolume=None, model="hippocampus-ce").modelArguments() == {"model": "hippocampus-ce"}
