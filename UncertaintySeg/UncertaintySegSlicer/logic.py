"""The module's Logic, free of Qt: takes nodes and plain values, returns nodes.

`UncertaintySeg.py`'s `UncertaintySegLogic` inherits this class, so Slicer's Python console,
the GUI and the tests (against a real `slicer-core` scene) run the same code:

    logic = slicer.util.getModuleLogic("UncertaintySeg")
    result = logic.run(volumeNode, model="hippocampus", method="mc_dropout", samples=20)
    result.probabilityNodes, result.entropyNode, result.mutualInformationNode, result.segmentationNode
"""

import math
from dataclasses import dataclass, field

from UncertaintySegSlicer.colors import INFERNO, VIRIDIS
from UncertaintySegSlicer.display import setFixedDisplayRange, showOverlay
from UncertaintySegSlicer.folders import createFolder, placeInFolder
from UncertaintySegSlicer.segmentation import addSegmentationFromLabels
from UncertaintySegSlicer.volumes import addVolumeNode, volumeFromNode

# Overlay values this small (as a fraction of the range) are not drawn, so the scan shows through.
TRANSPARENT_FRACTION = 0.05


@dataclass
class RunResult:
    """Nodes one run created, all inside `folderItemID`."""

    folderItemID: int
    probabilityNodes: dict = field(default_factory=dict)  # class name -> vtkMRMLScalarVolumeNode
    entropyNode: object = None
    mutualInformationNode: object = None  # only when several samples were drawn
    segmentationNode: object = None
    timings: dict = field(default_factory=dict)


class UncertaintySegLogicBase:
    def run(self, inputVolume, model="hippocampus", device="auto", method=None, samples=20, seed=0,
            overlay="entropy", overlayOpacity=0.5):
        """Run `model` on `inputVolume` (left unchanged) and add probability, entropy and label outputs.

        `method`: "softmax", "mc_dropout", "ensemble", "tta" or a combination ("ensemble+tta"); the
        default averages an ensemble's members, else one softmax pass. With several samples a mutual
        information volume is added too. `overlay` is "entropy", "mutual_information" or a class name:
        the volume shown over the input.
        """
        from UncertaintySegLib.models import load_model
        from UncertaintySegLib.pipeline import predict_volume
        from UncertaintySegLib.sampling import SamplingPlan, parse_method

        loadedModel = load_model(model)
        plan = SamplingPlan(methods=parse_method(method), samples=samples, seed=seed) if method else None
        prediction = predict_volume(volumeFromNode(inputVolume), loadedModel, device=device, plan=plan)
        return self.addPredictionToScene(inputVolume, prediction, loadedModel.spec.name, overlay, overlayOpacity)

    def addPredictionToScene(self, inputVolume, prediction, modelName, overlay="entropy", overlayOpacity=0.5):
        """Output nodes for a core `Prediction` computed on `inputVolume`'s grid."""
        maps = ["entropy"] + (["mutual_information"] if prediction.mutual_information is not None else [])
        if overlay not in maps and overlay not in prediction.class_names[1:]:
            raise ValueError(f"overlay '{overlay}' is not one of {maps} or the classes {list(prediction.class_names[1:])}.")
        scene = inputVolume.GetScene()
        inputName = inputVolume.GetName()
        result = RunResult(folderItemID=createFolder(scene, f"UncertaintySeg {modelName}: {inputName}"), timings=dict(prediction.timings))
        for classIndex, className in enumerate(prediction.class_names):
            if classIndex == 0:
                continue
            node = addVolumeNode(scene, prediction.probabilities[classIndex], prediction.geometry, f"{inputName} P({className})")
            setFixedDisplayRange(node, VIRIDIS, 0.0, 1.0, transparentBelow=TRANSPARENT_FRACTION)
            result.probabilityNodes[className] = node
        maxEntropy = math.log(len(prediction.class_names))
        result.entropyNode = addVolumeNode(scene, prediction.entropy, prediction.geometry, f"{inputName} entropy")
        setFixedDisplayRange(result.entropyNode, INFERNO, 0.0, maxEntropy, transparentBelow=TRANSPARENT_FRACTION * maxEntropy)
        if prediction.mutual_information is not None:
            result.mutualInformationNode = addVolumeNode(scene, prediction.mutual_information, prediction.geometry, f"{inputName} mutual information")
            setFixedDisplayRange(result.mutualInformationNode, INFERNO, 0.0, maxEntropy, transparentBelow=TRANSPARENT_FRACTION * maxEntropy)
        result.segmentationNode = addSegmentationFromLabels(
            scene, prediction.labels, prediction.geometry, prediction.class_names, f"{inputName} segmentation", inputVolume)
        for node in [*result.probabilityNodes.values(), result.entropyNode, result.mutualInformationNode, result.segmentationNode]:
            if node is not None:
                placeInFolder(result.folderItemID, node)
        shown = {"entropy": result.entropyNode, "mutual_information": result.mutualInformationNode}.get(overlay) or result.probabilityNodes[overlay]
        showOverlay(inputVolume, shown, overlayOpacity)
        return result
