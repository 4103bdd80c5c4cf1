"""Reference segmentations and ROI masks from scene nodes, as arrays `(I, J, K)` on the input volume's grid.

A segmentation node is exported onto the input's grid (Slicer resamples it, through both nodes'
parent transforms where they differ); its segments are matched to the model's classes by name
(case and surrounding spaces ignored), or, when no name matches, by order (first segment: class 1).
A label map (or scalar) volume must already lie on the input's grid, in the input's frame (under
the same parent transform, or one equal to it), and hold class indices: it is compared voxel by
voxel, so one under another transform is refused rather than resampled. The nodes given are only read.
"""

import numpy as np
import slicer
import vtk

from UncertaintySegLib.common.errors import InputError
from UncertaintySegSlicer.mrml.sceneChanges import temporaryNodes
from UncertaintySegSlicer.mrml.volumes import geometryFromNode, volumeFromNode

GRID_TOLERANCE_MM = 1e-3


def segmentClassIndices(segmentNames, classNames):
    """Class index (1..C-1) of each segment: by name when every name matches a class, else by order."""
    foreground = {name.strip().lower(): index for index, name in enumerate(classNames) if index > 0}
    byName = [foreground.get(name.strip().lower()) for name in segmentNames]
    classList = ", ".join(f"'{name}'" for name in classNames[1:])
    if any(index is not None for index in byName):
        unmatched = [name for name, index in zip(segmentNames, byName) if index is None]
        if unmatched:
            raise InputError(f"reference segments {unmatched} match none of the model's classes ({classList}), while other "
                             "segments do: rename them after the classes, or remove them from the reference.")
        if len(set(byName)) != len(byName):
            raise InputError(f"reference segments {list(segmentNames)} name the same class twice: keep one segment per class.")
        return byName
    if len(segmentNames) > len(classNames) - 1:
        raise InputError(f"the reference has {len(segmentNames)} segments ({', '.join(segmentNames)}) and the model "
                         f"{len(classNames) - 1} foreground classes ({classList}); no segment is named after a class, so they "
                         "cannot be matched: name the segments after the classes.")
    return list(range(1, len(segmentNames) + 1))


def exportSegments(segmentationNode, inputVolume):
    """(label map `(I, J, K)` with segment n as value n + 1, segment names) on the input's grid; the scene is left as it was."""
    segmentation = segmentationNode.GetSegmentation()
    segmentIDs = [segmentation.GetNthSegmentID(index) for index in range(segmentation.GetNumberOfSegments())]
    if not segmentIDs:
        raise InputError(f"segmentation '{segmentationNode.GetName()}' has no segments: expected one segment per class.")
    names = [segmentation.GetSegment(segmentID).GetName() for segmentID in segmentIDs]
    idArray = vtk.vtkStringArray()
    for segmentID in segmentIDs:
        idArray.InsertNextValue(segmentID)
    scene = inputVolume.GetScene()
    with temporaryNodes(scene):
        labelmapNode = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
        if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
                segmentationNode, idArray, labelmapNode, inputVolume, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY):
            raise InputError(f"Slicer could not export segmentation '{segmentationNode.GetName()}' onto "
                             f"'{inputVolume.GetName()}': check it has a binary labelmap representation.")
        labels = volumeFromNode(labelmapNode).array
    return labels, names


def transformName(node):
    """How a message names `node`'s parent transform: "no transform" or "'<name>'"."""
    transformNode = node.GetParentTransformNode()
    return "no transform" if transformNode is None else f"'{transformNode.GetName()}'"


def inSameFrame(node, inputVolume):
    """True when `node` and `inputVolume` are drawn through the same transform: the same parent transform node, or
    parents whose transform between them is linear and the identity (within the grid tolerance)."""
    if node.GetTransformNodeID() == inputVolume.GetTransformNodeID():
        return True
    matrix = vtk.vtkMatrix4x4()
    if not slicer.vtkMRMLTransformNode.GetMatrixTransformBetweenNodes(node.GetParentTransformNode(),
                                                                      inputVolume.GetParentTransformNode(), matrix):
        return False  # non-linear between them
    array = np.array([[matrix.GetElement(row, column) for column in range(4)] for row in range(4)])
    return np.allclose(array[:3, :3], np.eye(3), atol=1e-6) and np.allclose(array[:3, 3], 0.0, atol=GRID_TOLERANCE_MM)


def _volumeOnInputGrid(volumeNode, inputVolume, what):
    volume, grid = volumeFromNode(volumeNode), geometryFromNode(inputVolume)
    shape = tuple(inputVolume.GetImageData().GetDimensions())
    if volume.array.ndim != 3 or volume.spatial_shape != shape or not volume.geometry.matches(grid, GRID_TOLERANCE_MM):
        raise InputError(f"{what} '{volumeNode.GetName()}' ({volume.array.shape} voxels, spacing {volume.geometry.spacing}) does "
                         f"not lie on the grid of '{inputVolume.GetName()}' ({shape} voxels, spacing {grid.spacing}): "
                         "resample it onto the input, or give a segmentation node.")
    if not inSameFrame(volumeNode, inputVolume):
        raise InputError(f"{what} '{volumeNode.GetName()}' is under {transformName(volumeNode)} and the input "
                         f"'{inputVolume.GetName()}' under {transformName(inputVolume)}: a volume is compared with the input "
                         "voxel by voxel, so it must be under the input's transform. Put it under the same transform (or harden "
                         "both), or give a segmentation node, which Slicer resamples through the transforms.")
    return volume.array


def labelsFromReferenceNode(referenceNode, inputVolume, classNames):
    """Reference class indices `(I, J, K)` uint8 on `inputVolume`'s grid, from a segmentation or label map node."""
    if referenceNode.IsA("vtkMRMLSegmentationNode"):
        exported, names = exportSegments(referenceNode, inputVolume)
        lookup = np.zeros(len(names) + 1, dtype=np.uint8)
        lookup[1:] = segmentClassIndices(names, classNames)
        return lookup[exported.astype(np.intp)]
    if referenceNode.IsA("vtkMRMLScalarVolumeNode"):
        labels = _volumeOnInputGrid(referenceNode, inputVolume, "reference")
        if not np.issubdtype(labels.dtype, np.integer) and not np.array_equal(labels, np.round(labels)):
            raise InputError(f"reference '{referenceNode.GetName()}' holds non-integer values: expected class indices "
                             f"0..{len(classNames) - 1}.")
        if labels.min() < 0 or labels.max() >= len(classNames):
            raise InputError(f"reference '{referenceNode.GetName()}' holds labels {labels.min():g}..{labels.max():g}: expected "
                             f"0..{len(classNames) - 1} for the classes {', '.join(classNames)}.")
        return labels.astype(np.uint8)
    raise InputError(f"reference '{referenceNode.GetName()}' is a {referenceNode.GetClassName()}: expected a segmentation "
                     "node or a label map volume.")


def maskFromNode(maskNode, inputVolume):
    """ROI mask `(I, J, K)` bool: the union of a segmentation's segments, or a volume's non-zero voxels, on the input's grid."""
    if maskNode.IsA("vtkMRMLSegmentationNode"):
        return exportSegments(maskNode, inputVolume)[0] > 0
    if maskNode.IsA("vtkMRMLScalarVolumeNode"):
        return _volumeOnInputGrid(maskNode, inputVolume, "ROI mask") != 0
    raise InputError(f"ROI mask '{maskNode.GetName()}' is a {maskNode.GetClassName()}: expected a segmentation or a volume node.")
