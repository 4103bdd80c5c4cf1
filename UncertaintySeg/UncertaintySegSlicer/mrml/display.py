"""How output volumes look: fixed window/level with a colour table, overlaid on the input."""

from UncertaintySegSlicer.mrml.colors import requireColorNode


def setFixedDisplayRange(volumeNode, colorNodeID, low, high, transparentBelow=None):
    """Colour table + window/level fixed to [low, high]; values below `transparentBelow` are not drawn."""
    requireColorNode(volumeNode.GetScene(), colorNodeID)
    displayNode = volumeNode.GetDisplayNode()
    displayNode.SetAndObserveColorNodeID(colorNodeID)
    displayNode.AutoWindowLevelOff()
    displayNode.SetWindowLevelMinMax(low, high)
    if transparentBelow is not None:
        displayNode.ApplyThresholdOn()
        displayNode.SetLowerThreshold(transparentBelow)
        displayNode.SetUpperThreshold(max(high, transparentBelow))
    displayNode.AutoThresholdOff()


def showOverlay(backgroundNode, foregroundNode, opacity):
    """Show `foregroundNode` over `backgroundNode` in every slice view of the scene."""
    scene = backgroundNode.GetScene()
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode")):
        compositeNode = scene.GetNthNodeByClass(index, "vtkMRMLSliceCompositeNode")
        compositeNode.SetBackgroundVolumeID(backgroundNode.GetID())
        compositeNode.SetForegroundVolumeID(foregroundNode.GetID())
        compositeNode.SetForegroundOpacity(opacity)
