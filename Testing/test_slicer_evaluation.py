"""The Logic's evaluation outputs in a real MRML scene (slicer-core), with the bundled model on a real case:
reliability chart, metrics and segment tables, reference matching, calibrators, re-runs, failures."""

import csv
import math

import numpy as np
import pytest
from slicer_scene import addSliceView

slicer = pytest.importorskip("slicer", reason="slicer-core is not installed (pip install slicer-core)")

from UncertaintySegLib.evaluation.calibration_metrics import CalibrationHistogram  # noqa: E402
from UncertaintySegLib.evaluation.case_evaluation import evaluate_case  # noqa: E402
from UncertaintySegLib.common.errors import InputError  # noqa: E402
from UncertaintySegLib.predict.io import read_volume  # noqa: E402
from UncertaintySegLib.evaluation.roi import roi_mask  # noqa: E402
from UncertaintySegLib.predict.segment_scores import segment_scores  # noqa: E402
from UncertaintySegSlicer.mrml import logic as logicModule  # noqa: E402
from UncertaintySegSlicer.mrml.charts import SERIES_ROLE_ATTRIBUTE  # noqa: E402
from UncertaintySegSlicer.mrml.logic import UncertaintySegLogicBase  # noqa: E402
from UncertaintySegSlicer.mrml.reference import labelsFromReferenceNode  # noqa: E402
from UncertaintySegSlicer.mrml.segmentation import addSegmentationFromLabels  # noqa: E402
from UncertaintySegSlicer.mrml.tables import CENTRE_COLUMNS, METRIC_COLUMNS, SEGMENT_COLUMNS  # noqa: E402
from UncertaintySegSlicer.mrml.volumes import addVolumeNode, ijkToRASFromGeometry, volumeFromNode  # noqa: E402

CLASSES = ["background", "anterior", "posterior"]


@pytest.fixture(scope="session")
def hippocampus_case(test_case):
    """(image, reference, prediction of the bundled model) for the first test case, computed once."""
    from UncertaintySegLib.predict.model_loading import load_model
    from UncertaintySegLib.predict.pipeline import predict_volume

    image, reference = read_volume(test_case[0]), read_volume(test_case[1])
    return image, reference.array.astype(np.uint8), predict_volume(image, load_model("hippocampus"), device="cpu")


@pytest.fixture
def scene_with_case(mrml_scene, hippocampus_case):
    """Scene with a Red slice view, a layout node (conventional), the input volume and a reference segmentation."""
    scene, appLogic = mrml_scene
    image, reference, prediction = hippocampus_case
    sliceLogic = addSliceView(appLogic)
    layoutLogic = slicer.vtkMRMLLayoutLogic()
    layoutLogic.SetMRMLScene(scene)
    layoutLogic.GetLayoutNode().SetViewArrangement(slicer.vtkMRMLLayoutNode.SlicerLayoutConventionalView)
    inputNode = addVolumeNode(scene, image.array, image.geometry, "hippocampus case")
    referenceNode = addSegmentationFromLabels(scene, reference, image.geometry, CLASSES, "reference", inputNode)
    logic = UncertaintySegLogicBase()
    logic.applicationLogic = appLogic
    yield {"scene": scene, "appLogic": appLogic, "sliceLogic": sliceLogic, "layoutLogic": layoutLogic, "input": inputNode,
           "referenceNode": referenceNode, "logic": logic, "image": image, "reference": reference, "prediction": prediction}
    layoutLogic.SetMRMLScene(None)


def evaluated(case, **options):
    """The Logic on the session's prediction (no model run), with the reference segmentation."""
    options.setdefault("reference", case["referenceNode"])
    return case["logic"].addPredictionToScene(case["input"], case["prediction"], "hippocampus", **options)


def expected_evaluation(case, roi="bbox"):
    reference, prediction = case["reference"], case["prediction"]
    region = roi_mask(roi, reference, prediction.geometry.spacing)
    return evaluate_case("hippocampus case", prediction.probabilities, reference, prediction.labels, CLASSES,
                         prediction.geometry.spacing, region), region


def column(tableNode, name):
    return slicer.util.arrayFromTableColumn(tableNode, name)


def sceneCounts(scene):
    shNode = scene.GetSubjectHierarchyNode()
    return scene.GetNumberOfNodes(), shNode.GetNumberOfItems()


def test_reliability_chart_holds_the_bins_the_metrics_library_computes(scene_with_case):
    result = evaluated(scene_with_case, runName="base")
    expected, region = expected_evaluation(scene_with_case)
    probabilities = scene_with_case["prediction"].probabilities
    curve = CalibrationHistogram(3, "top_label", 20).update(probabilities, scene_with_case["reference"], region).curve()
    table = result.reliabilityTableNode
    assert table.IsA("vtkMRMLTableNode") and table.GetName() == "hippocampus case reliability bins"
    for name, values in (("lower", curve.lower[0]), ("upper", curve.upper[0]), ("centre", (curve.lower[0] + curve.upper[0]) / 2),
                         ("count", curve.count[0]), ("mean confidence", curve.confidence[0]), ("accuracy", curve.accuracy[0])):
        assert np.array_equal(column(table, name), values, equal_nan=True), name
    assert np.isnan(column(table, "accuracy")[0]) and column(table, "count").sum() == region.sum() == result.metrics["voxels"]
    chart = result.chartNode
    assert chart.IsA("vtkMRMLPlotChartNode") and chart.GetName() == "hippocampus case reliability"
    assert chart.GetTitle() == f"Reliability (top-label), hippocampus case: ECE {expected.scores['ece_top_label']:.4f}"
    assert (chart.GetXAxisTitle(), chart.GetYAxisTitle()) == ("confidence", "accuracy")
    series = [chart.GetNthPlotSeriesNode(n) for n in range(chart.GetNumberOfPlotSeriesNodes())]
    accuracy, confidence = result.plotSeriesNodes["accuracy"], result.plotSeriesNodes["mean confidence"]
    assert {s.GetID() for s in series} >= {accuracy.GetID(), confidence.GetID()}
    for node, y in ((accuracy, "accuracy"), (confidence, "mean confidence")):
        assert node.GetTableNodeID() == table.GetID() and (node.GetXColumnName(), node.GetYColumnName()) == ("centre", y)
    identity = [s for s in series if s.GetLineStyle() == slicer.vtkMRMLPlotSeriesNode.LineStyleDash]
    assert len(identity) == 1
    # every series is drawn at its X column: a PlotTypeLine series ignores X (points equally spaced)
    assert {s.GetPlotType() for s in series} == {slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter}
    identityTable = identity[0].GetTableNode()
    assert np.array_equal(column(identityTable, identity[0].GetXColumnName()), [0, 1])
    assert np.array_equal(column(identityTable, identity[0].GetYColumnName()), [0, 1])


def test_chart_is_shown_in_a_layout_with_a_plot_view(scene_with_case):
    result = evaluated(scene_with_case)
    scene, appLogic = scene_with_case["scene"], scene_with_case["appLogic"]
    layoutNode = scene_with_case["layoutLogic"].GetLayoutNode()
    assert layoutNode.GetViewArrangement() == slicer.vtkMRMLLayoutNode.SlicerLayoutConventionalPlotView
    assert appLogic.GetSelectionNode().GetActivePlotChartID() == result.chartNode.GetID()
    plotViews = [scene.GetNthNodeByClass(n, "vtkMRMLPlotViewNode") for n in range(scene.GetNumberOfNodesByClass("vtkMRMLPlotViewNode"))]
    assert plotViews and all(view.GetPlotChartNodeID() == result.chartNode.GetID() for view in plotViews)


def test_metrics_table_matches_evaluate_case(scene_with_case):
    result = evaluated(scene_with_case)
    expected, _ = expected_evaluation(scene_with_case)
    assert result.metrics == {**expected.scores, "voxels": expected.voxels}
    table = result.metricsTableNode
    assert table.IsA("vtkMRMLTableNode") and table.GetName() == "hippocampus case metrics"
    assert [table.GetColumnName(n) for n in range(table.GetNumberOfColumns())] == list(METRIC_COLUMNS)
    names = [table.GetCellText(row, 0) for row in range(table.GetNumberOfRows())]
    assert names[-1] == "voxels"
    assert {"ece_top_label", "mce_top_label", "nll", "brier", "dice_anterior", "dice_posterior"} <= set(names)
    assert np.array_equal(column(table, "value"), [result.metrics[name] for name in names])
    whole = evaluated(scene_with_case, roi="whole")
    assert whole.metrics["voxels"] == scene_with_case["reference"].size > result.metrics["voxels"]
    assert whole.metrics == {**expected_evaluation(scene_with_case, "whole")[0].scores, "voxels": scene_with_case["reference"].size}


def test_roi_from_a_mask_node(scene_with_case):
    mask = np.zeros(scene_with_case["reference"].shape, dtype=np.uint8)
    mask[5:20, 10:30, 4:20] = 1
    maskNode = addVolumeNode(scene_with_case["scene"], mask, scene_with_case["image"].geometry, "mask", "vtkMRMLLabelMapVolumeNode")
    result = evaluated(scene_with_case, roi=maskNode)
    prediction = scene_with_case["prediction"]
    expected = evaluate_case("hippocampus case", prediction.probabilities, scene_with_case["reference"], prediction.labels, CLASSES,
                             prediction.geometry.spacing, mask > 0)
    assert result.metrics == {**expected.scores, "voxels": int(mask.sum())}


def test_segment_table_matches_segment_scores_and_centres_the_views(scene_with_case):
    result = evaluated(scene_with_case, flagThreshold=0.085)
    prediction = scene_with_case["prediction"]
    rows = segment_scores(prediction.labels, prediction.entropy, prediction.geometry.spacing, CLASSES, None, 0.085)
    table = result.segmentTableNode
    assert table.GetName() == "hippocampus case segments"
    assert [table.GetColumnName(n) for n in range(table.GetNumberOfColumns())] == list(SEGMENT_COLUMNS)
    assert table.GetNumberOfRows() == len(rows) >= 4
    assert [table.GetCellText(r, 0) for r in range(len(rows))] == [row.class_name for row in rows]
    assert np.array_equal(column(table, "component"), [row.component for row in rows])
    assert np.array_equal(column(table, "voxels"), [row.voxels for row in rows])
    assert np.array_equal(column(table, "volume (ml)"), [row.volume_ml for row in rows])
    assert np.array_equal(column(table, "mean entropy"), [row.mean_entropy for row in rows])
    assert np.isnan(column(table, "mean MI")).all()  # one softmax pass: no MI
    assert [table.GetCellText(r, 6) for r in range(len(rows))] == [{True: "check", False: "ok"}[row.flagged] for row in rows]
    assert {"check", "ok"} == {table.GetCellText(r, 6) for r in range(len(rows))}
    rasToIJK = np.linalg.inv(ijkToRASFromGeometry(prediction.geometry))
    sliceNode = scene_with_case["sliceLogic"].GetSliceNode()
    for row, score in enumerate(rows):
        point = scene_with_case["logic"].segmentCentreRAS(table, row)
        i, j, k = np.round(rasToIJK @ [*point, 1.0])[:3].astype(int)
        assert prediction.labels[i, j, k] == score.class_index  # the centre lies on its segment
        assert scene_with_case["logic"].jumpToSegment(table, row) == point
        sliceToRAS = sliceNode.GetSliceToRAS()
        assert np.allclose([sliceToRAS.GetElement(axis, 3) for axis in range(3)], point)
    with pytest.raises(IndexError):
        scene_with_case["logic"].segmentCentreRAS(table, len(rows))


def test_a_class_with_no_voxel_has_no_centre(scene_with_case):
    from dataclasses import replace

    prediction = scene_with_case["prediction"]
    labels = np.where(prediction.labels == 2, 1, prediction.labels).astype(np.uint8)  # no "posterior" voxel
    result = scene_with_case["logic"].addPredictionToScene(scene_with_case["input"], replace(prediction, labels=labels), "hippocampus")
    table = result.segmentTableNode
    empty = [row for row in range(table.GetNumberOfRows()) if table.GetCellText(row, 0) == "posterior"]
    assert len(empty) == 1 and column(table, "voxels")[empty[0]] == 0
    assert np.isnan([column(table, name)[empty[0]] for name in CENTRE_COLUMNS]).all()
    assert scene_with_case["logic"].jumpToSegment(table, empty[0]) is None
    assert result.chartNode is None and result.metricsTableNode is None and result.metrics == {}


def test_rerun_replaces_only_its_own_nodes_and_runs_overlay(scene_with_case):
    scene = scene_with_case["scene"]
    first = evaluated(scene_with_case, runName="first")
    second = evaluated(scene_with_case, runName="second")
    assert second.chartNode.GetID() == first.chartNode.GetID()  # one chart per volume, runs overlaid
    counts = sceneCounts(scene)
    firstIDs = [node.GetID() for node in UncertaintySegLogicBase._runNodes(first)]
    secondIDs = [node.GetID() for node in UncertaintySegLogicBase._runNodes(second)]
    again = evaluated(scene_with_case, runName="first")
    assert sceneCounts(scene) == counts
    assert all(scene.GetNodeByID(nodeID) is None for nodeID in firstIDs)
    assert all(scene.GetNodeByID(nodeID) is not None for nodeID in secondIDs)
    shNode = scene.GetSubjectHierarchyNode()
    assert shNode.GetItemDataNode(first.folderItemID) is None and shNode.GetItemName(second.folderItemID)
    chart = again.chartNode
    accuracySeries = [chart.GetNthPlotSeriesNode(n) for n in range(chart.GetNumberOfPlotSeriesNodes())
                      if chart.GetNthPlotSeriesNode(n).GetAttribute(SERIES_ROLE_ATTRIBUTE) == "accuracy"]
    overlaid = [again.plotSeriesNodes["accuracy"].GetID(), second.plotSeriesNodes["accuracy"].GetID()]
    assert sorted(s.GetID() for s in accuracySeries) == sorted(overlaid)
    assert "first" in chart.GetTitle() and "second" in chart.GetTitle()
    assert again.entropyNode.GetAttribute("UncertaintySeg.runKey") == "first"
    chartFolder = shNode.GetItemParent(shNode.GetItemByDataNode(chart))
    assert shNode.GetItemName(chartFolder) == "UncertaintySeg reliability: hippocampus case"
    # both runs again without a reference: the chart, its identity line and its folder go
    identityIDs = [s.GetID() for s in [chart.GetNthPlotSeriesNode(n) for n in range(chart.GetNumberOfPlotSeriesNodes())]
                   if s.GetAttribute(SERIES_ROLE_ATTRIBUTE) == "identity"]
    counts = sceneCounts(scene)
    evaluated(scene_with_case, runName="first", reference=None)
    evaluated(scene_with_case, runName="second", reference=None)
    assert scene.GetNodeByID(chart.GetID()) is None and all(scene.GetNodeByID(i) is None for i in identityIDs)
    assert counts[0] - sceneCounts(scene)[0] == 2 * 4 + 3  # per run: metrics and bins tables, 2 series; chart, identity table and series
    assert counts[1] - sceneCounts(scene)[1] == 2 * 4 + 3 + 1  # subject-hierarchy items: those nodes and the chart's folder
    # a parameter node is a key too; a run without a key never replaces anything
    parameterNode = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", "UncertaintySeg")
    evaluated(scene_with_case, parameterNode=parameterNode, reference=None)
    counts = sceneCounts(scene)
    evaluated(scene_with_case, parameterNode=parameterNode, reference=None)
    assert sceneCounts(scene) == counts
    evaluated(scene_with_case, reference=None)
    assert sceneCounts(scene)[0] > counts[0]


def test_input_nodes_are_bit_identical(scene_with_case):
    inputNode, referenceNode = scene_with_case["input"], scene_with_case["referenceNode"]
    voxels = slicer.util.arrayFromVolume(inputNode).copy()
    times = (inputNode.GetMTime(), inputNode.GetImageData().GetMTime(), referenceNode.GetMTime())
    labelmapNode = addVolumeNode(scene_with_case["scene"], scene_with_case["reference"], scene_with_case["image"].geometry,
                                 "reference labels", "vtkMRMLLabelMapVolumeNode")
    labelTime = labelmapNode.GetImageData().GetMTime()
    scene_with_case["logic"].run(inputNode, model="hippocampus", device="cpu", reference=referenceNode)
    evaluated(scene_with_case, reference=labelmapNode)
    assert np.array_equal(slicer.util.arrayFromVolume(inputNode), voxels)
    assert (inputNode.GetMTime(), inputNode.GetImageData().GetMTime(), referenceNode.GetMTime()) == times
    assert labelmapNode.GetImageData().GetMTime() == labelTime
    assert np.array_equal(slicer.util.arrayFromVolume(labelmapNode).transpose(2, 1, 0), scene_with_case["reference"])


def test_logic_run_with_a_reference_scores_the_models_prediction(scene_with_case):
    result = scene_with_case["logic"].run(scene_with_case["input"], model="hippocampus", device="cpu",
                                          reference=scene_with_case["referenceNode"], runName="console")
    expected, _ = expected_evaluation(scene_with_case)
    assert result.metrics.keys() == {**expected.scores, "voxels": 0}.keys()
    assert np.allclose([result.metrics[k] for k in expected.scores], list(expected.scores.values()), rtol=1e-6, atol=1e-9)
    assert result.metrics["dice_anterior"] > 0.8 and result.metricsTableNode is not None and result.chartNode is not None


def test_a_run_that_fails_leaves_the_scene_as_it_was(scene_with_case, monkeypatch):
    scene = scene_with_case["scene"]
    kept = evaluated(scene_with_case, runName="kept")
    unmatched = addSegmentationFromLabels(scene, scene_with_case["reference"], scene_with_case["image"].geometry,
                                          ["background", "left", "right"], "unmatched", scene_with_case["input"])
    segmentation = unmatched.GetSegmentation()
    segmentation.AddEmptySegment("", "third")
    counts = sceneCounts(scene)
    with pytest.raises(InputError, match="3 segments .* cannot be matched"):
        evaluated(scene_with_case, reference=unmatched, runName="kept")
    assert sceneCounts(scene) == counts and scene.GetNodeByID(kept.entropyNode.GetID()) is not None
    with pytest.raises(InputError, match="cannot be matched"):  # checked before the model runs
        scene_with_case["logic"].run(scene_with_case["input"], model="hippocampus", device="cpu", reference=unmatched, runName="kept")
    assert sceneCounts(scene) == counts
    badLabels = addVolumeNode(scene, np.where(scene_with_case["reference"] > 0, 5, 0).astype(np.uint8), scene_with_case["image"].geometry,
                              "bad labels", "vtkMRMLLabelMapVolumeNode")
    counts = sceneCounts(scene)
    with pytest.raises(InputError, match=r"labels 0\.\.5"):
        evaluated(scene_with_case, reference=badLabels)
    assert sceneCounts(scene) == counts

    def failing(*args, **kwargs):  # fails after the volumes, segmentation and segment table were added
        raise RuntimeError("table could not be made")

    monkeypatch.setattr(logicModule, "addMetricsTable", failing)
    with pytest.raises(RuntimeError, match="table could not be made"):
        evaluated(scene_with_case)
    assert sceneCounts(scene) == counts


def test_reference_classes_matched_by_name_then_by_order(scene_with_case):
    scene, inputNode, geometry = scene_with_case["scene"], scene_with_case["input"], scene_with_case["image"].geometry
    reference = scene_with_case["reference"]
    assert np.array_equal(labelsFromReferenceNode(scene_with_case["referenceNode"], inputNode, CLASSES), reference)
    swapped = np.choose(reference, [0, 2, 1]).astype(np.uint8)  # segment 1 is "posterior", segment 2 "anterior"
    byName = addSegmentationFromLabels(scene, swapped, geometry, ["background", " Posterior", "ANTERIOR"], "by name", inputNode)
    assert np.array_equal(labelsFromReferenceNode(byName, inputNode, CLASSES), reference)
    byOrder = addSegmentationFromLabels(scene, reference, geometry, ["background", "Segment_1", "Segment_2"], "by order", inputNode)
    assert np.array_equal(labelsFromReferenceNode(byOrder, inputNode, CLASSES), reference)
    partly = addSegmentationFromLabels(scene, reference, geometry, ["background", "anterior", "tail"], "partly", inputNode)
    with pytest.raises(InputError, match=r"\['tail'\] match none"):
        labelsFromReferenceNode(partly, inputNode, CLASSES)
    labelmap = addVolumeNode(scene, reference, geometry, "labels", "vtkMRMLLabelMapVolumeNode")
    assert np.array_equal(labelsFromReferenceNode(labelmap, inputNode, CLASSES), reference)
    shifted = addVolumeNode(scene, reference[1:], geometry, "cropped labels", "vtkMRMLLabelMapVolumeNode")
    with pytest.raises(InputError, match="does not lie on the grid"):
        labelsFromReferenceNode(shifted, inputNode, CLASSES)


def test_saved_calibrator_is_applied_and_checked(scene_with_case, tmp_path, small_model_dir):
    import torch

    from UncertaintySegLib.calibration import TemperatureScaling, load_calibrator, model_fingerprint
    from UncertaintySegLib.predict.model_loading import load_model
    from UncertaintySegLib.predict.pipeline import predict_volume

    model = load_model("hippocampus")
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (6, 6, 6), generator=generator)
    logits = torch.nn.functional.one_hot(labels, 3).permute(3, 0, 1, 2).float() * 8.0  # overconfident: T > 1
    logits[:, :2] = torch.roll(logits[:, :2], 1, dims=0)  # a third of the voxels confidently wrong
    TemperatureScaling(max_voxels_per_case=None).fit(logits, labels, model=model_fingerprint(model)).save(tmp_path / "ts")
    assert load_calibrator(tmp_path / "ts").temperature_ > 1.5
    logic, inputNode = scene_with_case["logic"], scene_with_case["input"]
    result = logic.run(inputNode, model="hippocampus", device="cpu", calibrator=str(tmp_path / "ts"))
    expected = predict_volume(volumeFromNode(inputNode), model, device="cpu", logits_transform=load_calibrator(tmp_path / "ts").transform)
    calibrated = volumeFromNode(result.probabilityNodes["anterior"]).array
    assert np.allclose(calibrated, expected.probabilities[1], atol=1e-6)
    assert calibrated.max() < 0.99 < scene_with_case["prediction"].probabilities[1].max()  # T > 1 softens
    with pytest.raises(ValueError, match="saved calibrator"):
        logic.run(inputNode, model="hippocampus", device="cpu", calibrator="temperature")
    with pytest.raises(InputError):
        logic.run(inputNode, model=str(small_model_dir), device="cpu", calibrator=str(tmp_path / "ts"))


def test_prediction_folder_goes_through_the_same_code_path(scene_with_case, test_case, tmp_path):
    from UncertaintySegLib.cli import main

    out = tmp_path / "case"
    assert main(["predict", "--image", str(test_case[0]), "--model", "hippocampus", "--method", "mc_dropout", "--samples", "3",
                 "--device", "cpu", "--flag-threshold", "0.085", "--out", str(out), "--progress", "none"]) == 0
    labelmap = addVolumeNode(scene_with_case["scene"], scene_with_case["reference"], scene_with_case["image"].geometry, "labels",
                             "vtkMRMLLabelMapVolumeNode")
    result = scene_with_case["logic"].addPredictionFolderToScene(scene_with_case["input"], out, reference=labelmap, runName="cli")
    probabilities, reference = read_volume(out / "probabilities.nrrd"), scene_with_case["reference"]
    assert np.array_equal(volumeFromNode(result.probabilityNodes["posterior"]).array, probabilities.array[2])
    assert np.array_equal(volumeFromNode(result.mutualInformationNode).array, read_volume(out / "mutual_information.nrrd").array)
    labels = read_volume(out / "labels.nrrd").array
    expected = evaluate_case("hippocampus case", probabilities.array, reference, labels, CLASSES, probabilities.geometry.spacing,
                             roi_mask("bbox", reference, probabilities.geometry.spacing))
    assert result.metrics == {**expected.scores, "voxels": expected.voxels}
    with open(out / "segments.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    table = result.segmentTableNode
    assert table.GetNumberOfRows() == len(rows)
    for r, row in enumerate(rows):
        assert table.GetCellText(r, 0) == row["class_name"] and int(column(table, "voxels")[r]) == int(row["voxels"])
        assert math.isclose(column(table, "mean entropy")[r], float(row["mean_entropy"]), rel_tol=1e-12)
        assert math.isclose(column(table, "mean MI")[r], float(row["mean_mutual_information"]), rel_tol=1e-12)
        assert table.GetCellText(r, 6) == {"True": "check", "False": "ok"}[row["flagged"]]
    assert result.plotSeriesNodes["accuracy"].GetName() == "cli accuracy"
    assert result.chartNode.GetTitle().endswith(f"ECE {expected.scores['ece_top_label']:.4f}")
    other = addVolumeNode(scene_with_case["scene"], scene_with_case["image"].array[:, :, 1:], scene_with_case["image"].geometry, "other")
    with pytest.raises(InputError, match="does not lie on the grid"):
        scene_with_case["logic"].addPredictionFolderToScene(other, out)
