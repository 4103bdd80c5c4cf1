"""Several annotators' segmentations of one volume in the scene: where they agree, and the model's confidence there.

The same core as `uncertaintyseg evaluate --ref A --ref B` (`annotator_agreement.annotator_agreement`), on nodes
instead of files; the result is a table node with one row per scope ("label", then each foreground class) and
agreement group: voxels, fraction of the ROI, mean max-probability, mean probability of the annotators' majority:

    from UncertaintySegSlicer.analysis.annotators import annotatorAgreementTable
    result = slicer.util.getModuleLogic("UncertaintySeg").run(volumeNode, model="hippocampus-dice", method="ensemble")
    tableNode = annotatorAgreementTable(volumeNode, result, [raterANode, raterBNode, raterCNode], roi="bbox")

Each reference (a segmentation node, or a label map on the input's grid) is read as the single reference of a run
is (`reference.labelsFromReferenceNode`: segments matched to the model's classes by name, else by order). The nodes
given are only read; a failure adds nothing to the scene.
"""

import numpy as np
import slicer

from UncertaintySegLib.common.errors import InputError
from UncertaintySegSlicer.mrml.reference import GRID_TOLERANCE_MM, labelsFromReferenceNode, maskFromNode
from UncertaintySegSlicer.mrml.sceneChanges import removedOnError
from UncertaintySegSlicer.mrml.tables import addTableNode
from UncertaintySegSlicer.mrml.volumes import geometryFromNode, volumeFromNode

AGREEMENT_COLUMNS = ("scope", "group", "voxels", "fraction", "mean max probability", "mean majority probability")


def inputShape(inputVolume):
    """(I, J, K) of the input volume; an InputError when it is missing or has no image data."""
    if inputVolume is None or inputVolume.GetImageData() is None:
        raise InputError("annotator agreement needs the input volume the model ran on, with its image data: select it.")
    return tuple(inputVolume.GetImageData().GetDimensions())


def missingProbabilityMaps(runResult, scene):
    """The foreground classes of a run's `RunResult` whose probability volume is no longer in `scene`."""
    nodes = runResult.probabilityNodes
    return [name for name in runResult.classNames[1:] if nodes.get(name) is None or nodes[name].GetScene() is not scene]


def repeatedNodeNames(nodes):
    """Sorted names of the nodes given more than once (by node ID)."""
    ids = [node.GetID() for node in nodes]
    return sorted({node.GetName() for node in nodes if ids.count(node.GetID()) > 1})


def probabilitiesFrom(source, inputVolume):
    """(probabilities `(C, I, J, K)`, class names) of a core `Prediction` or of a run's `RunResult`.

    A run keeps the foreground classes' probability volumes; the background's is `1 - their sum` (the model's
    probabilities sum to 1 per voxel). Every foreground class's volume must still be in the scene.
    """
    shape = inputShape(inputVolume)
    grid = geometryFromNode(inputVolume)
    if hasattr(source, "probabilities") and hasattr(source, "class_names"):
        probabilities, classNames = np.asarray(source.probabilities), list(source.class_names)
        if probabilities.shape[1:] != shape or not source.geometry.matches(grid, GRID_TOLERANCE_MM):
            raise InputError(f"the prediction ({probabilities.shape[1:]} voxels) does not lie on the grid of "
                             f"'{inputVolume.GetName()}' ({shape} voxels): expected a prediction of this volume.")
        return probabilities, classNames
    if not (hasattr(source, "probabilityNodes") and hasattr(source, "classNames")):
        raise InputError(f"probabilities given as a {type(source).__name__}: expected a run's result (logic.run) or a "
                         "core Prediction (pipeline.predict_volume).")
    classNames = list(source.classNames)
    nodes = source.probabilityNodes
    missing = missingProbabilityMaps(source, inputVolume.GetScene())
    if len(classNames) < 2 or missing:
        raise InputError(f"the run's probability volumes of {missing or classNames} are not in the scene: expected one per "
                         "foreground class; run the model again keeping the probability maps.")
    foreground = []
    for name in classNames[1:]:
        volume = volumeFromNode(nodes[name])
        if volume.spatial_shape != shape or not volume.geometry.matches(grid, GRID_TOLERANCE_MM):
            raise InputError(f"probability volume '{nodes[name].GetName()}' ({volume.spatial_shape} voxels) does not lie on "
                             f"the grid of '{inputVolume.GetName()}' ({shape} voxels): give the run made on this volume.")
        foreground.append(volume.array.astype(np.float64))
    background = np.clip(1.0 - np.sum(foreground, axis=0), 0.0, 1.0)
    return np.stack([background, *foreground]), classNames


def referenceLabels(referenceNodes, inputVolume, classNames):
    """Each annotator's class indices `(R, I, J, K)` uint8 on the input's grid; R >= 2 distinct nodes."""
    nodes = list(referenceNodes)
    if len(nodes) < 2 or any(node is None for node in nodes):
        found = ", ".join(f"'{node.GetName()}'" for node in nodes if node is not None) or "none"
        raise InputError(f"annotator agreement needs 2 or more references (one segmentation or label map per annotator), "
                         f"found {found}: add another annotator's segmentation.")
    repeated = repeatedNodeNames(nodes)
    if repeated:
        raise InputError(f"references {repeated} are given more than once: give each annotator's segmentation once.")
    labels = []
    for number, node in enumerate(nodes, start=1):
        try:
            labels.append(labelsFromReferenceNode(node, inputVolume, classNames))
        except InputError as error:
            raise InputError(f"annotator {number} ('{node.GetName()}'): {error}") from None
    return np.stack(labels)


def agreementRoi(roi, firstReference, inputVolume):
    """Boolean ROI `(I, J, K)` or None (whole): "bbox" is the first annotator's foreground box, dilated 8 mm in-plane
    and 2 slices (as `evaluate --ref A --ref B --roi bbox`, whose box is the first --ref's); "whole"; or a mask node."""
    from UncertaintySegLib.evaluation.roi import roi_mask

    if isinstance(roi, str):
        if roi not in ("bbox", "whole"):
            raise InputError(f"roi '{roi}': expected 'bbox', 'whole', or a mask node (segmentation or volume).")
        return roi_mask(roi, firstReference, geometryFromNode(inputVolume).spacing)
    if roi is None:
        raise InputError("roi is None: expected 'bbox', 'whole', or a mask node (segmentation or volume).")
    return maskFromNode(roi, inputVolume)


def annotatorAgreementTable(inputVolume, probabilities, referenceNodes, roi="bbox", tableName=None, scene=None):
    """Agreement groups of `referenceNodes` (2 or more annotators) and the model's confidence in each, as a new table node.

    `probabilities`: a run's `RunResult` (logic.run, the panel's last run) or a core `Prediction`, both on
    `inputVolume`'s grid. `roi`: "bbox" (the first annotator's dilated foreground box), "whole", or a mask node.
    One row per `AgreementRow`: the 4 "label" groups, then 3 groups per foreground class; NaN for an empty group.
    """
    from UncertaintySegLib.evaluation.annotator_agreement import annotator_agreement

    inputShape(inputVolume)
    scene = scene or inputVolume.GetScene() or slicer.mrmlScene
    array, classNames = probabilitiesFrom(probabilities, inputVolume)
    labels = referenceLabels(referenceNodes, inputVolume, classNames)
    rows = annotator_agreement(labels, array, classNames, agreementRoi(roi, labels[0], inputVolume))
    columns = {"scope": [row.scope for row in rows], "group": [row.group for row in rows],
               "voxels": [row.voxels for row in rows], "fraction": [row.fraction for row in rows],
               "mean max probability": [row.mean_max_probability for row in rows],
               "mean majority probability": [row.mean_majority_probability for row in rows]}
    with removedOnError(scene):
        return addTableNode(scene, tableName or f"{inputVolume.GetName()} annotator agreement", columns, descriptions={
            "scope": "label: the whole label map; a class name: the binary question 'is it this class?'",
            "group": (f"where the {len(labels)} annotators agree: all background, all the same foreground class, a strict "
                      "majority, or no majority (label); all foreground, all background, or mixed (class)"),
            "voxels": "voxels of the group inside the ROI",
            "fraction": "the group's share of the ROI's voxels",
            "mean max probability": "the model's confidence: mean of the highest class probability (class: of max(p, 1 - p))",
            "mean majority probability": "mean probability the model gives the annotators' majority label (ties: lowest class; class: 'not it')",
        })
