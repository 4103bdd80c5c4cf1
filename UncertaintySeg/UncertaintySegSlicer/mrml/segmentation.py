"""A segmentation node from a label map, with the model's class names and colours (and its class colour table,
`<name> classes`, which the segmentation keeps as its label-value table)."""

import slicer

from UncertaintySegSlicer.mrml.colors import classColor
from UncertaintySegSlicer.mrml.names import nodeName
from UncertaintySegSlicer.mrml.sceneChanges import temporaryNodes
from UncertaintySegSlicer.mrml.volumes import addVolumeNode


def addSegmentationFromLabels(scene, labels, geometry, classNames, name, referenceVolumeNode):
    """Segments for classes 1..C-1 of an (I, J, K) label map; classes absent from the map get no segment.

    The map lies on `referenceVolumeNode`'s grid (`geometry`), so the segmentation goes under that volume's parent
    transform: drawn where the volume is, with the volume's own grid as its reference geometry (Segment Editor's).
    """
    transformNodeID = referenceVolumeNode.GetTransformNodeID()
    segmentationNode = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", nodeName(scene, name))
    segmentationNode.CreateDefaultDisplayNodes()
    segmentationNode.SetAndObserveTransformNodeID(transformNodeID)  # first: Slicer maps the reference grid between frames
    segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(referenceVolumeNode)
    # the class colour table stays: the import makes it the segmentation's label-value table, which Slicer's export
    # uses to keep each class's value (without it, a map holding only class 2 is exported as 1)
    colorTable = scene.AddNewNodeByClass("vtkMRMLColorTableNode", nodeName(scene, name + " classes"))
    colorTable.SetTypeToUser()
    colorTable.SetNumberOfColors(len(classNames))
    colorTable.SetColor(0, classNames[0], 0.0, 0.0, 0.0, 0.0)
    for index, className in enumerate(classNames[1:], start=1):
        colorTable.SetColor(index, className, *classColor(index), 1.0)
    with temporaryNodes(scene):  # the label map and its display node
        labelmapNode = addVolumeNode(scene, labels, geometry, name + " labels", "vtkMRMLLabelMapVolumeNode",
                                     parentTransformNodeID=transformNodeID)  # same frame: imported without resampling
        labelmapNode.GetDisplayNode().SetAndObserveColorNodeID(colorTable.GetID())
        if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmapNode, segmentationNode):
            raise RuntimeError("Slicer could not import the label map into a segmentation")
    return segmentationNode
