"""The module's Logic, free of Qt: takes nodes and plain values, returns nodes.

`UncertaintySeg.py`'s `UncertaintySegLogic` inherits this class, so Slicer's Python console,
the GUI and the tests (against a real `slicer-core` scene) run the same code:

    logic = slicer.util.getModuleLogic("UncertaintySeg")
    result = logic.run(volumeNode, model="hippocampus-dice", method="mc_dropout", samples=20,
                       calibrator="path/to/hippocampus-ts", reference=segmentationNode)
    result.probabilityNodes, result.entropyNode, result.chartNode, result.metrics

`calibrator` is a folder written by `uncertaintyseg calibrate` (or `Calibrator.save`), or a fitted
`Calibrator`; `reference` a segmentation node (segments matched to the model's classes by name,
else by order) or a label map volume on the input's grid; `roi` "bbox" (the reference foreground
box, dilated 8 mm in-plane and 2 slices), "whole", or a mask node. With a reference, `result.metrics`
holds ECE/MCE/ACE, NLL, Brier, Dice and HD95 per class (`case_evaluation.evaluate_case`), and the
reliability diagram is shown in a plot view (one chart per volume; runs on one volume overlay).
Every run adds a per-segment table; `logic.jumpToSegment(result.segmentTableNode, row)` centres the
slice views on a segment. Every node made on the input's grid goes under the input's parent transform
(linear or not), so a registered or moved input has its overlays and segmentation drawn on it; the
table's centres are in the input's own RAS and are mapped to world RAS through that transform to jump.
`runName=` (or `parameterNode=`) makes a run replaceable: running again with the same name removes
that run's folder and nodes first, and no other run's.
A folder written by `uncertaintyseg predict` is shown the same way:
`logic.addPredictionFolderToScene(volumeNode, "results/case", reference=segmentationNode)`.
"""

import math
from dataclasses import dataclass, field
from pathlib import Path

import slicer

from UncertaintySegSlicer.mrml.charts import addReliabilityTable, addRunSeries, refreshReliabilityCharts, reliabilityChart, showChart
from UncertaintySegSlicer.mrml.colors import INFERNO, VIRIDIS
from UncertaintySegSlicer.mrml.display import setFixedDisplayRange, showOverlay
from UncertaintySegSlicer.mrml.folders import createFolder, placeInFolder
from UncertaintySegSlicer.mrml.reference import labelsFromReferenceNode, maskFromNode
from UncertaintySegSlicer.mrml.runs import removeRun, runKeyFor, tagRun
from UncertaintySegSlicer.mrml.sceneChanges import removedOnError
from UncertaintySegSlicer.mrml.segmentation import addSegmentationFromLabels
from UncertaintySegSlicer.mrml.tables import addMetricsTable, addSegmentTable, segmentCentreRAS, segmentCentreWorldRAS
from UncertaintySegSlicer.mrml.volumes import addVolumeNode, geometryFromNode, volumeFromNode

# Overlay values this small (as a fraction of the range) are not drawn, so the scan shows through.
TRANSPARENT_FRACTION = 0.05
GRID_TOLERANCE_MM = 1e-3


@dataclass
class RunResult:
    """Nodes one run created, all inside `folderItemID` except the volume's shared reliability chart."""

    folderItemID: int
    classNames: list = field(default_factory=list)  # the model's classes, background first
    probabilityNodes: dict = field(default_factory=dict)  # foreground class name -> vtkMRMLScalarVolumeNode
    entropyNode: object = None
    mutualInformationNode: object = None  # only when several samples were drawn
    segmentationNode: object = None
    segmentTableNode: object = None  # per segment and component: volume, mean entropy, mean MI, flag, centre (input's RAS)
    metricsTableNode: object = None  # with a reference: one row per score
    reliabilityTableNode: object = None  # with a reference: one row per bin
    chartNode: object = None  # with a reference: the volume's reliability chart (shared by runs on that volume)
    plotSeriesNodes: dict = field(default_factory=dict)  # "accuracy", "mean confidence" -> this run's series
    metrics: dict = field(default_factory=dict)  # with a reference: evaluate_case's scores and "voxels" (in the ROI)
    runKey: str = None
    timings: dict = field(default_factory=dict)


class UncertaintySegLogicBase:
    # Slicer's application logic (plot layout, selection); None: the running application's. Set it where there is no app.
    applicationLogic = None

    def getApplicationLogic(self):
        if self.applicationLogic is not None:
            return self.applicationLogic
        app = getattr(slicer, "app", None)
        return app.applicationLogic() if app is not None else None

    def run(self, inputVolume, model="hippocampus", device="auto", method=None, samples=20, seed=0,
            overlay="entropy", overlayOpacity=0.5, calibrator=None, reference=None, roi="bbox", flagThreshold=None,
            runName=None, parameterNode=None, bins=20, variant="top_label", trustBundle=False):
        """Run `model` on `inputVolume` (left unchanged) and add probability, entropy, label and segment outputs.

        `method`: "softmax", "mc_dropout", "ensemble", "tta", "sample" (latent draws of a stochastic model such as the
        Probabilistic U-Net) or a combination ("ensemble+tta"); the
        default averages an ensemble's members, else one softmax pass. With several samples a mutual
        information volume is added too. `overlay` is "entropy", "mutual_information" or a class name:
        the volume shown over the input. `calibrator`: a saved calibrator folder (or a fitted
        `Calibrator`) applied to every pass's logits. `flagThreshold`: mean segment entropy above
        which a segment is flagged "check" (a number, {class: number}, or `evaluate`'s thresholds.json).
        `trustBundle`: let MONAI run a MONAI bundle's config code (as `predict --trust-bundle`); by default a bundle's
        config is read as data and refused if it holds code. The rest as `addPredictionToScene`.
        """
        from UncertaintySegLib.predict.model_loading import load_model
        from UncertaintySegLib.predict.pipeline import predict_volume
        from UncertaintySegLib.predict.sampling import SamplingPlan, parse_method

        loadedModel = load_model(model, trust_bundle=trustBundle)
        fitted = self.loadCalibrator(calibrator, loadedModel)
        if reference is not None:  # a reference that cannot be matched fails before the model runs, not after
            labelsFromReferenceNode(reference, inputVolume, list(loadedModel.spec.class_names))
        plan = SamplingPlan(methods=parse_method(method), samples=samples, seed=seed) if method else None
        prediction = predict_volume(volumeFromNode(inputVolume), loadedModel, device=device, plan=plan,
                                    logits_transform=fitted.transform if fitted is not None else None)
        label = runName or f"{loadedModel.spec.name} {prediction.sampling.get('method', '')}".strip() + (" calibrated" if fitted else "")
        return self.addPredictionToScene(inputVolume, prediction, loadedModel.spec.name, overlay, overlayOpacity, reference=reference,
                                         roi=roi, flagThreshold=flagThreshold, runName=runName, parameterNode=parameterNode,
                                         runLabel=label, bins=bins, variant=variant)

    @staticmethod
    def loadCalibrator(calibrator, loadedModel):
        """A fitted calibrator checked against the model (its classes and weights); None for None."""
        if calibrator is None:
            return None
        from UncertaintySegLib.calibration import calibration_methods, model_fingerprint
        from UncertaintySegLib.common.errors import InputError
        from UncertaintySegLib.calibration import load_calibrator_for

        if hasattr(calibrator, "transform") and hasattr(calibrator, "check_model"):
            calibrator.check_model(model_fingerprint(loadedModel))
            if calibrator.n_classes_ != loadedModel.spec.num_classes:
                raise InputError(f"the calibrator was fitted on {calibrator.n_classes_} classes, model '{loadedModel.spec.name}' has "
                                 f"{loadedModel.spec.num_classes}.")
            return calibrator
        if str(calibrator) in calibration_methods() and not Path(calibrator).exists():
            raise InputError(f"calibrator='{calibrator}' names a calibration method: expected the folder of a saved calibrator "
                             f"(`uncertaintyseg calibrate --model {loadedModel.spec.name} --method {calibrator} --out FOLDER`, "
                             "then calibrator='FOLDER'), or one fitted on reference segmentations in the scene "
                             f"(`logic.fitCalibrator([(volumeNode, segmentationNode)], model=..., method='{calibrator}')`).")
        return load_calibrator_for(Path(calibrator), loadedModel)

    def addPredictionFolderToScene(self, inputVolume, folder, overlay="entropy", overlayOpacity=0.5, **options):
        """Outputs of a folder written by `uncertaintyseg predict` on `inputVolume`'s image (its segments.csv is shown as
        written); `options` as `addPredictionToScene`."""
        from UncertaintySegLib.common.errors import InputError
        from UncertaintySegLib.predict.prediction_folder import read_prediction_folder

        saved = read_prediction_folder(folder)
        prediction, grid = saved.prediction, geometryFromNode(inputVolume)
        shape = tuple(inputVolume.GetImageData().GetDimensions()) if inputVolume.GetImageData() else None
        if prediction.labels.shape != shape or not prediction.geometry.matches(grid, GRID_TOLERANCE_MM):
            raise InputError(f"prediction folder '{folder}' ({prediction.labels.shape} voxels, origin {prediction.geometry.origin}) "
                             f"does not lie on the grid of '{inputVolume.GetName()}' ({shape} voxels, origin {grid.origin}): "
                             "expected predict's output for this volume's image.")
        calibrated = " calibrated" if (saved.record.get("model") or {}).get("calibrator") else ""
        label = f"{saved.model_name} {prediction.sampling.get('method', '')}".strip() + calibrated
        options.setdefault("runLabel", options.get("runName") or label)
        return self.addPredictionToScene(inputVolume, prediction, saved.model_name, overlay, overlayOpacity, segments=saved.segments, **options)

    def addPredictionToScene(self, inputVolume, prediction, modelName, overlay="entropy", overlayOpacity=0.5, reference=None,
                             roi="bbox", segments=None, flagThreshold=None, runName=None, parameterNode=None, runLabel=None,
                             bins=20, variant="top_label", show=True):
        """Output nodes for a core `Prediction` computed on `inputVolume`'s grid, in one subject-hierarchy folder.

        Everything that can fail on the inputs (overlay, reference, ROI, metrics) is done before the
        scene changes, and nodes added are removed again if adding fails, so a failed run leaves the
        scene as it was. With `runName` or `parameterNode`, the earlier run with that key is replaced.
        `segments`: `SegmentScore` rows (e.g. a predict folder's segments.csv); computed when None.
        `variant`: the reliability diagram's calibration variant ("top_label", "class_wise", "foreground").
        `show`: put the overlay in the slice views and the chart in a plot view (layout switched where the
        scene has a layout node, as the Plots module does).
        """
        from UncertaintySegLib.evaluation.binning import VARIANTS  # numba: not when Slicer loads the module, before dependencies exist
        from UncertaintySegLib.predict.segment_centres import segment_centres

        maps = ["entropy"] + (["mutual_information"] if prediction.mutual_information is not None else [])
        if overlay not in maps and overlay not in prediction.class_names[1:]:
            raise ValueError(f"overlay '{overlay}' is not one of {maps} or the classes {list(prediction.class_names[1:])}.")
        if variant not in VARIANTS:
            raise ValueError(f"variant '{variant}': expected one of {', '.join(VARIANTS)}.")
        key = runKeyFor(runName, parameterNode)
        evaluation = self.evaluatePrediction(inputVolume, prediction, reference, roi, bins) if reference is not None else None
        if segments is None:
            segments = self.segmentScores(prediction, flagThreshold)
        centres = segment_centres(prediction.labels, len(prediction.class_names))
        scene = inputVolume.GetScene()
        removeRun(scene, key)
        with removedOnError(scene):
            result = self._addNodes(scene, inputVolume, prediction, modelName, segments, centres, evaluation,
                                    runLabel or runName or modelName, variant)
            result.runKey = key
            tagRun(scene, result.folderItemID, self._runNodes(result), key)
            maps = {"entropy": result.entropyNode, "mutual_information": result.mutualInformationNode}
            shown = maps.get(overlay) or result.probabilityNodes[overlay]
            if show:
                showOverlay(inputVolume, shown, overlayOpacity)
                if result.chartNode is not None:
                    showChart(result.chartNode, self.getApplicationLogic())
        refreshReliabilityCharts(scene)  # titles without the replaced run; a chart left with no run goes
        return result

    @staticmethod
    def segmentScores(prediction, flagThreshold=None):
        """The CLI's per-segment rows (`segment_scores`) for a prediction."""
        from UncertaintySegLib.predict.segment_scores import read_thresholds
        from UncertaintySegLib.predict.segment_scores import segment_scores

        thresholds = flagThreshold
        if isinstance(flagThreshold, (str, Path)):
            thresholds = read_thresholds(str(flagThreshold), prediction.entropy_units != "nats")
        return segment_scores(prediction.labels, prediction.entropy, prediction.geometry.spacing, prediction.class_names,
                              prediction.mutual_information, thresholds)

    @staticmethod
    def evaluatePrediction(inputVolume, prediction, reference, roi="bbox", bins=20):
        """`evaluate_case` of the prediction against a reference node, inside `roi` ("bbox", "whole" or a mask node)."""
        from UncertaintySegLib.evaluation.case_evaluation import evaluate_case
        from UncertaintySegLib.common.errors import InputError
        from UncertaintySegLib.evaluation.roi import roi_kinds, roi_mask

        labels = labelsFromReferenceNode(reference, inputVolume, list(prediction.class_names))
        if labels.shape != prediction.labels.shape:
            raise InputError(f"reference {labels.shape} and prediction {prediction.labels.shape} differ in shape: expected the input's grid.")
        spacing = prediction.geometry.spacing
        if isinstance(roi, str):
            if roi not in roi_kinds(with_mask=False):  # a mask comes as a node
                raise InputError(f"roi '{roi}': expected {' or '.join(map(repr, roi_kinds(with_mask=False)))}, or a mask node "
                                 "(segmentation or volume).")
            region = roi_mask(roi, labels, spacing)
        else:
            region = maskFromNode(roi, inputVolume)
        return evaluate_case(inputVolume.GetName(), prediction.probabilities, labels, prediction.labels,
                             list(prediction.class_names), spacing, region, bins)

    def _addNodes(self, scene, inputVolume, prediction, modelName, segments, centres, evaluation, runLabel, variant):
        from UncertaintySegLib.evaluation.case_evaluation import marginal_curve

        inputName = inputVolume.GetName()
        transformNodeID = inputVolume.GetTransformNodeID()  # the prediction lies on the input's grid: in the input's frame

        def addMap(array, name):
            return addVolumeNode(scene, array, prediction.geometry, name, parentTransformNodeID=transformNodeID)

        result = RunResult(folderItemID=createFolder(scene, f"UncertaintySeg {modelName}: {inputName}"),
                           classNames=list(prediction.class_names), timings=dict(prediction.timings))
        for classIndex, className in enumerate(prediction.class_names):
            if classIndex == 0:
                continue
            node = addMap(prediction.probabilities[classIndex], f"{inputName} P({className})")
            setFixedDisplayRange(node, VIRIDIS, 0.0, 1.0, transparentBelow=TRANSPARENT_FRACTION)
            result.probabilityNodes[className] = node
        maxEntropy = math.log(len(prediction.class_names)) if prediction.entropy_units == "nats" else 1.0
        result.entropyNode = addMap(prediction.entropy, f"{inputName} entropy")
        setFixedDisplayRange(result.entropyNode, INFERNO, 0.0, maxEntropy, transparentBelow=TRANSPARENT_FRACTION * maxEntropy)
        if prediction.mutual_information is not None:
            result.mutualInformationNode = addMap(prediction.mutual_information, f"{inputName} mutual information")
            setFixedDisplayRange(result.mutualInformationNode, INFERNO, 0.0, maxEntropy, transparentBelow=TRANSPARENT_FRACTION * maxEntropy)
        result.segmentationNode = addSegmentationFromLabels(  # under the input's transform, as its reference volume
            scene, prediction.labels, prediction.geometry, prediction.class_names, f"{inputName} segmentation", inputVolume)
        result.segmentTableNode = addSegmentTable(scene, f"{inputName} segments", segments, centres, prediction.geometry,
                                                  transformNodeID)
        if evaluation is not None:
            result.metrics = {**evaluation.scores, "voxels": evaluation.voxels}
            result.metricsTableNode = addMetricsTable(scene, f"{inputName} metrics", result.metrics)
            curve = marginal_curve(evaluation.histograms[variant, "equal_width"])
            result.reliabilityTableNode = addReliabilityTable(scene, f"{inputName} reliability bins", curve)
            result.chartNode = reliabilityChart(scene, inputVolume, variant)
            accuracy, confidence = addRunSeries(result.chartNode, result.reliabilityTableNode, runLabel, evaluation.scores[f"ece_{variant}"])
            result.plotSeriesNodes = {"accuracy": accuracy, "mean confidence": confidence}
        for node in self._runNodes(result):
            placeInFolder(result.folderItemID, node)
        return result

    @staticmethod
    def _runNodes(result):
        """The nodes that belong to the run's folder (the shared chart does not)."""
        classes = result.segmentationNode.GetLabelmapConversionColorTableNode() if result.segmentationNode else None
        nodes = [*result.probabilityNodes.values(), result.entropyNode, result.mutualInformationNode, result.segmentationNode,
                 classes, result.segmentTableNode, result.metricsTableNode, result.reliabilityTableNode,
                 *result.plotSeriesNodes.values()]
        return [node for node in nodes if node is not None]

    @staticmethod
    def segmentCentreRAS(tableNode, row):
        """(R, A, S) of a segment table's row: a voxel of that segment nearest its centroid, in the input volume's own RAS
        (before its parent transform); None for an empty class."""
        return segmentCentreRAS(tableNode, row)

    @staticmethod
    def segmentCentreWorldRAS(tableNode, row):
        """`segmentCentreRAS` in world RAS, where the views show it: through the input's parent transform (as it is now)."""
        return segmentCentreWorldRAS(tableNode, row)

    def jumpToSegment(self, tableNode, row):
        """Centre every slice view on the segment of a segment table's row; returns the point, in world RAS (through the
        input's parent transform), or None (empty class)."""
        point = segmentCentreWorldRAS(tableNode, row)
        if point is not None:
            slicer.vtkMRMLSliceNode.JumpAllSlices(tableNode.GetScene(), *point, slicer.vtkMRMLSliceNode.CenteredJumpSlice)
        return point
