"""The panel's Apply without Qt: parameter checks, `predict` arguments, the background run against the real CLI,
loading its folder into a real MRML scene with the panel's options, Cancel, a failing run, and what the slice view shows."""

import math

import numpy as np
import pytest
from slicer_scene import addSliceView, rasToSlicePixel, renderSlice

slicer = pytest.importorskip("slicer", reason="slicer-core is not installed (pip install slicer-core)")

from panel_settings import FakeNode, parsed, settings  # noqa: E402
from UncertaintySegLib.predict.io import read_volume  # noqa: E402
from UncertaintySegSlicer.mrml.logic import UncertaintySegLogicBase  # noqa: E402
from UncertaintySegSlicer.panel.panelChoices import (MODEL_FILE, MODEL_FOLDER, PRECOMPUTED, CalibrationSource,  # noqa: E402
                                               OverlayColormap, OverlayMap, RegionOfInterest, UncertaintyMethod, panelVisibility)
from UncertaintySegSlicer.panel.panelRun import PanelRun, checkRunParameters, statusText  # noqa: E402
from UncertaintySegSlicer.panel.process import CANCELLED, FAILED, RUNNING, SUCCEEDED  # noqa: E402
from UncertaintySegSlicer.mrml.runs import runKeyFor  # noqa: E402
from UncertaintySegSlicer.mrml.segmentation import addSegmentationFromLabels  # noqa: E402
from UncertaintySegSlicer.mrml.volumes import addVolumeNode, ijkToRASFromGeometry, volumeFromNode  # noqa: E402

CLASSES = ["background", "anterior", "posterior"]


def test_predict_arguments_follow_the_panel_choices(tmp_path):
    args = parsed(settings())
    assert (args.model, args.method, args.calibrator, args.device) == (["hippocampus"], None, None, "auto")
    args = parsed(settings(model="hippocampus-dice", method=UncertaintyMethod.ENSEMBLE_MC_DROPOUT, samples=7, device="cpu"))
    assert (args.model, args.method, args.samples, args.device) == (["hippocampus-dice"], "ensemble+mc_dropout", 7, "cpu")
    assert parsed(settings(method=UncertaintyMethod.TTA, samples=7)).samples == 20  # no dropout: the CLI default, unused
    args = parsed(settings(model=MODEL_FILE, modelFile=tmp_path / "net.ts", calibration=CalibrationSource.SAVED,
                           calibratorFolder=tmp_path / "cal"))
    assert (args.model, args.calibrator) == ([str(tmp_path / "net.ts")], tmp_path / "cal")
    assert parsed(settings(model=MODEL_FOLDER, modelFolder=tmp_path / "bundle")).model == [str(tmp_path / "bundle")]
    # saved probabilities: one sample with no logits, so method and calibrator are left out
    args = parsed(settings(model=PRECOMPUTED, probabilitiesFile=tmp_path / "case.npz", classNames=" background, liver,tumour ",
                           method=UncertaintyMethod.MC_DROPOUT, calibration=CalibrationSource.SAVED, calibratorFolder=tmp_path))
    assert (args.model, args.probabilities, args.class_names) == (None, tmp_path / "case.npz", "background,liver,tumour")
    assert (args.method, args.calibrator) == (None, None)
    assert parsed(settings(model=PRECOMPUTED, probabilitiesFile=tmp_path / "case.npz")).class_names is None


def test_apply_is_refused_with_a_sentence_saying_what_to_fix(tmp_path):
    (tmp_path / "net.ts").write_bytes(b"")
    (tmp_path / "saved").mkdir()
    (tmp_path / "saved" / "calibrator.json").write_text("{}")
    cases = [
        (settings(inputVolume=None), "Select an input volume."),
        (settings(model=MODEL_FILE), "Choose the TorchScript file"),
        (settings(model=MODEL_FILE, modelFile=tmp_path / "missing.ts"), "does not exist"),
        (settings(model=MODEL_FOLDER, modelFolder=tmp_path / "net.ts"), "does not exist: choose the MONAI bundle"),
        (settings(model=PRECOMPUTED), "Choose the saved probabilities"),
        (settings(calibration=CalibrationSource.SAVED, calibratorFolder=tmp_path), "Choose a calibrator folder"),
        (settings(calibration=CalibrationSource.FIT, calibratorFolder=tmp_path / "new"), "Fit the calibrator first"),
        (settings(method=UncertaintyMethod.SOFTMAX, overlay=OverlayMap.MUTUAL_INFORMATION), "needs several samples"),
        (settings(createEntropy=False), "among the maps not created"),
        (settings(createProbabilities=False, overlay=OverlayMap.PROBABILITY), "among the maps not created"),
        (settings(reference=FakeNode(), roi=RegionOfInterest.MASK), "Select the ROI mask"),
    ]
    for case, expected in cases:
        assert expected in (checkRunParameters(case) or ""), (case, checkRunParameters(case))
    for fine in (settings(), settings(model=MODEL_FILE, modelFile=tmp_path / "net.ts"),
                 settings(calibration=CalibrationSource.SAVED, calibratorFolder=tmp_path / "saved"),
                 settings(calibration=CalibrationSource.FIT, calibratorFolder=tmp_path / "saved"),
                 settings(roi=RegionOfInterest.MASK),  # no reference: the ROI is not used
                 settings(model=PRECOMPUTED, probabilitiesFile=tmp_path / "net.ts", calibration=CalibrationSource.SAVED),
                 settings(createProbabilities=False, createMutualInformation=False, createSegmentation=False)):
        assert checkRunParameters(fine) is None, fine


def test_optional_rows_follow_the_choices():
    def shown(**changes):
        return {row for row, visible in panelVisibility(settings(**changes)).items() if visible}

    assert shown() == {"method", "calibration"}
    assert shown(model=MODEL_FILE, method=UncertaintyMethod.MC_DROPOUT) == {"modelFile", "method", "samples", "calibration"}
    assert shown(model=PRECOMPUTED, method=UncertaintyMethod.MC_DROPOUT, calibration=CalibrationSource.FIT) == {
        "probabilitiesFile", "classNames"}
    assert shown(calibration=CalibrationSource.FIT) == {"method", "calibration", "calibratorFolder", "calibrationFit"}
    assert shown(calibration=CalibrationSource.SAVED, reference=FakeNode(), roi=RegionOfInterest.MASK) == {
        "method", "calibration", "calibratorFolder", "roi", "roiMask"}


@pytest.fixture
def panel_scene(mrml_scene, test_case):
    """A scene as the panel sees it: a Red slice view, the hippocampus case, its reference segmentation, a parameter node."""
    scene, appLogic = mrml_scene
    image, reference = read_volume(test_case[0]), read_volume(test_case[1])
    sliceLogic = addSliceView(appLogic)
    inputNode = addVolumeNode(scene, image.array, image.geometry, "hippocampus case")
    referenceNode = addSegmentationFromLabels(scene, reference.array.astype(np.uint8), image.geometry, CLASSES, "reference", inputNode)
    parameterNode = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", "UncertaintySeg")
    logic = UncertaintySegLogicBase()
    logic.applicationLogic = appLogic
    return {"scene": scene, "sliceLogic": sliceLogic, "input": inputNode, "reference": referenceNode, "parameterNode": parameterNode,
            "logic": logic, "image": image}


def wait(run, timeout):
    stages, fractions = [], []
    while True:
        stage, fraction, state = run.poll()
        if fraction is not None and (not stages or stage != stages[-1]):
            stages.append(stage)
            fractions.append(fraction)
        if state != RUNNING:
            return stages, fractions, state
        if run.process.elapsedSeconds > timeout:
            run.cancel()
            pytest.fail(f"the run did not end within {timeout} s:\n{run.log}")
        run.process.wait(0.1)


def test_apply_runs_predict_in_the_background_and_shows_the_chosen_overlay(panel_scene, tmp_path):
    """MC dropout with the MI overlay in Magma, no probability volumes, a reference: what the panel would show."""
    scene, inputNode = panel_scene["scene"], panel_scene["input"]
    voxelsBefore = slicer.util.arrayFromVolume(inputNode).copy()
    chosen = settings(inputVolume=inputNode, device="cpu", method=UncertaintyMethod.MC_DROPOUT, samples=2,
                      overlay=OverlayMap.MUTUAL_INFORMATION, overlayColormap=OverlayColormap.MAGMA, overlayOpacity=0.8,
                      createProbabilities=False, reference=panel_scene["reference"])
    assert checkRunParameters(chosen) is None
    # the run keeps the panel's parameter node: leaving the module (exit() unsets the panel's) must not lose it
    run = PanelRun(chosen, parameterNode=panel_scene["parameterNode"], workParent=tmp_path).start()
    assert run.workFolder.parent == tmp_path and (run.workFolder / "input.nrrd").is_file()
    assert scene.GetFirstNodeByName("hippocampus case entropy") is None  # nothing is added while it runs
    stages, fractions, state = wait(run, timeout=120)
    assert state == SUCCEEDED, run.log
    # The panel shows the latest event per poll (stages in between may be skipped); every event the CLI sent is kept.
    everyStage = [event["stage"] for event in run.process.events]
    assert fractions == sorted(fractions) and stages[-1] == "done" and set(stages) <= set(everyStage), stages
    assert "MC dropout sample 2/2 (2/2)" in everyStage, everyStage  # the progress bar's text
    written = read_volume(run.outputFolder / "mutual_information.nrrd").array
    loaded = run.load(panel_scene["logic"])
    result = loaded.result
    assert result.runKey == runKeyFor(parameterNode=panel_scene["parameterNode"])
    assert loaded.overlayNode is result.mutualInformationNode
    assert np.allclose(volumeFromNode(result.mutualInformationNode).array, written)
    assert result.probabilityNodes == {} and scene.GetFirstNodeByName("hippocampus case P(anterior)") is None
    assert result.entropyNode is not None and result.segmentationNode is not None
    assert result.metricsTableNode is not None and result.segmentTableNode is not None and result.chartNode is not None
    composite = panel_scene["sliceLogic"].GetSliceCompositeNode()
    assert composite.GetForegroundVolumeID() == result.mutualInformationNode.GetID()
    assert math.isclose(composite.GetForegroundOpacity(), 0.8)
    display = result.mutualInformationNode.GetDisplayNode()
    assert display.GetColorNodeID() == OverlayColormap.MAGMA.value
    assert math.isclose(display.GetWindowLevelMax(), math.log(3), rel_tol=1e-6)  # the Logic's fixed range is kept
    assert np.array_equal(slicer.util.arrayFromVolume(inputNode), voxelsBefore)
    text = statusText(run, loaded)
    assert text.startswith("Done in ") and "UncertaintySeg hippocampus: hippocampus case" in text and "ECE" in text

    # the overlay is drawn where the model is unsure (high MI), and leaves the scan alone where it is sure
    sliceLogic = panel_scene["sliceLogic"]
    mi = volumeFromNode(result.mutualInformationNode).array
    i, j, k = np.unravel_index(mi.argmax(), mi.shape)
    calm = np.unravel_index(mi[:, :, k].argmin(), mi.shape[:2])
    matrix = ijkToRASFromGeometry(panel_scene["image"].geometry)
    sliceLogic.FitSliceToAll()
    sliceLogic.SetSliceOffset(float((matrix @ [i, j, k, 1])[2]))
    fused, _ = renderSlice(sliceLogic)
    composite.SetForegroundOpacity(0.0)
    plain, _ = renderSlice(sliceLogic)
    unsureX, unsureY = rasToSlicePixel(sliceLogic, (matrix @ [i, j, k, 1])[:3])
    calmX, calmY = rasToSlicePixel(sliceLogic, (matrix @ [*calm, k, 1])[:3])
    unsure = fused[unsureY, unsureX, :3].astype(int)
    assert not np.array_equal(unsure, plain[unsureY, unsureX, :3]) and unsure[0] - unsure[1] > 30  # Magma's warm end
    assert np.array_equal(fused[calmY, calmX], plain[calmY, calmX])

    # loaded again for the same parameter node (as a second Apply would): its own outputs are replaced, the reference stays
    before = scene.GetNumberOfNodes()
    run.settings = chosen.replaced(overlay=OverlayMap.ENTROPY, overlayColormap=OverlayColormap.DEFAULT)
    replaced = run.load(panel_scene["logic"]).result
    assert result.mutualInformationNode.GetScene() is None and result.entropyNode.GetScene() is None
    assert composite.GetForegroundVolumeID() == replaced.entropyNode.GetID()
    assert replaced.entropyNode.GetDisplayNode().GetColorNodeID() == "vtkMRMLColorTableNodeFileInferno.txt"
    assert scene.GetNumberOfNodes() == before and panel_scene["reference"].GetScene() is scene
    run.cleanup()
    assert not run.workFolder.exists()


def test_cancel_leaves_the_scene_and_the_disk_as_they_were(panel_scene, tmp_path):
    scene, work = panel_scene["scene"], tmp_path / "work"
    before = scene.GetNumberOfNodes()
    run = PanelRun(settings(inputVolume=panel_scene["input"], device="cpu", method=UncertaintyMethod.MC_DROPOUT, samples=500),
                   workParent=work).start()
    assert run.state == RUNNING and (run.workFolder / "input.nrrd").is_file()
    assert run.cancel() == CANCELLED
    assert not any(work.iterdir())
    assert scene.GetNumberOfNodes() == before
    assert statusText(run).startswith("Cancelled after ") and "as it was" in statusText(run)
    with pytest.raises(RuntimeError, match="not succeeded"):
        run.load(panel_scene["logic"])


def test_a_failing_run_reports_the_clis_message_not_a_traceback(panel_scene, tmp_path):
    notAModel = tmp_path / "downloads" / "net.ts"
    notAModel.parent.mkdir()
    notAModel.write_bytes(b"not torchscript")
    chosen = settings(inputVolume=panel_scene["input"], device="cpu", model=MODEL_FILE, modelFile=notAModel)
    assert checkRunParameters(chosen) is None  # the file exists; only the CLI can tell it is not a model
    run = PanelRun(chosen, workParent=tmp_path / "work").start()
    assert wait(run, timeout=60)[2] == FAILED
    assert "model.json" in run.errorMessage and "Traceback" not in run.errorMessage
    assert statusText(run) == f"Failed after {run.elapsedSeconds:.1f} s: {run.errorMessage}"
    assert "model.json" in run.log
    run.cleanup()
    assert not any((tmp_path / "work").iterdir())


def test_an_input_removed_while_running_is_reported_and_nothing_is_added(panel_scene, tmp_path):
    import sys

    from UncertaintySegSlicer.panel.process import BackgroundProcess

    scene = panel_scene["scene"]
    run = PanelRun(settings(inputVolume=panel_scene["input"]), workParent=tmp_path)
    run.process = BackgroundProcess([sys.executable, "-c", "pass"]).start()  # a run that ended well, without the model
    assert run.process.wait(30) == SUCCEEDED
    scene.RemoveNode(panel_scene["input"])
    before = scene.GetNumberOfNodes()
    with pytest.raises(RuntimeError, match="removed from the scene while the model ran"):
        run.load(panel_scene["logic"])
    assert scene.GetNumberOfNodes() == before


def test_every_method_the_panel_offers_is_one_predict_accepts_and_samples_show_when_they_matter():
    from UncertaintySegLib.predict.sampling import parse_method
    from UncertaintySegSlicer.panel.panelChoices import UncertaintyMethod

    for method in UncertaintyMethod:
        if method.cliMethod is not None:
            parse_method(method.cliMethod)
    assert UncertaintyMethod.SAMPLE.drawsSamples and UncertaintyMethod.MC_DROPOUT.drawsSamples
    assert not UncertaintyMethod.ENSEMBLE.drawsSamples and not UncertaintyMethod.ENSEMBLE_TTA.drawsSamples
