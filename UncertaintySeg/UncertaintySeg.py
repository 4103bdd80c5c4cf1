"""UncertaintySeg: how far to trust a segmentation network, voxel by voxel. GUI glue only.

The work is done by `UncertaintySegSlicer` (MRML glue) and `UncertaintySegLib` (the core).
"""

import importlib.util
from typing import Annotated

import vtk

import slicer
from slicer import vtkMRMLScalarVolumeNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from UncertaintySegLib.models import bundled_model_names
from UncertaintySegSlicer.logic import UncertaintySegLogicBase

DEVICES = ["auto", "cpu", "cuda"]
# import name -> pip requirement, installed on first Apply after asking (torch via the PyTorch extension)
REQUIRED_PACKAGES = {"torch": None, "monai": "monai>=1.4", "SimpleITK": "SimpleITK"}


class UncertaintySeg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "UncertaintySeg"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["UncertaintySeg developers"]
        self.parent.helpText = (
            "Runs a segmentation network on a volume and shows how far to trust it: per-class probability "
            "volumes, a voxel-wise entropy overlay (bright = unsure) and a segmentation with the model's classes. "
            "See the README for the command-line tool and the Python console API."
        )
        self.parent.acknowledgementText = (
            "Default model trained on the Medical Segmentation Decathlon Task04 Hippocampus data "
            "(Simpson et al. 2019, arXiv:1902.09063; Antonelli et al., Nat. Commun. 2022; data from Vanderbilt "
            "University Medical Center; CC-BY-SA 4.0). Methods follow Mehrtash et al. (IEEE TMI 2020, confidence "
            "calibration and predictive uncertainty for segmentation), Rousseau et al. (post-hoc calibration of "
            "segmentation networks) and Czolbe et al. (is segmentation uncertainty useful?, IPMI 2021). "
            "Built on MONAI, PyTorch and SimpleITK."
        )


@parameterNodeWrapper
class UncertaintySegParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    model: Annotated[str, Choice(bundled_model_names())] = "hippocampus"
    device: Annotated[str, Choice(DEVICES)] = "auto"
    overlayOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5


class UncertaintySegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/UncertaintySeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = UncertaintySegLogic()
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.initializeParameterNode()

    def cleanup(self):
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event):
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            self._parameterNode.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")

    def setParameterNode(self, inputParameterNode):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()

    def _checkCanApply(self, caller=None, event=None):
        canApply = bool(self._parameterNode and self._parameterNode.inputVolume)
        self.ui.applyButton.enabled = canApply
        self.ui.applyButton.toolTip = "Run the model and show its uncertainty." if canApply else "Select an input volume."

    def onApplyButton(self):
        if not installMissingPackages():
            return
        with slicer.util.tryWithErrorDisplay("UncertaintySeg failed.", waitCursor=True):
            parameters = self._parameterNode
            result = self.logic.run(parameters.inputVolume, model=parameters.model, device=parameters.device,
                                    overlayOpacity=parameters.overlayOpacity)
            folderName = slicer.mrmlScene.GetSubjectHierarchyNode().GetItemName(result.folderItemID)
            self.ui.statusLabel.text = f"Done: the model ran in {result.timings['inference_s']:.1f} s; outputs are in folder '{folderName}'."


def installMissingPackages():
    """Ask, then install what the core needs: torch through the PyTorch extension, the rest with pip."""
    missing = [name for name in REQUIRED_PACKAGES if importlib.util.find_spec(name) is None]
    if not missing:
        return True
    if not slicer.util.confirmOkCancelDisplay(
            f"UncertaintySeg needs these Python packages: {', '.join(missing)}. Install them now? "
            "This downloads several hundred MB and may take a few minutes."):
        return False
    if "torch" in missing:
        import PyTorchUtils

        if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False) is None:
            slicer.util.errorDisplay("PyTorch could not be installed: install it from the PyTorch module, then retry.")
            return False
    requirements = [REQUIRED_PACKAGES[name] for name in missing if REQUIRED_PACKAGES[name]]
    if requirements:
        slicer.util.pip_install(" ".join(requirements))
    return True


class UncertaintySegLogic(ScriptedLoadableModuleLogic, UncertaintySegLogicBase):
    """Console use: `slicer.util.getModuleLogic("UncertaintySeg").run(volumeNode, model="hippocampus")`."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return UncertaintySegParameterNode(super().getParameterNode())


class UncertaintySegTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_runOnSyntheticVolume()

    def test_runOnSyntheticVolume(self):
        """The Logic on a small synthetic volume creates probability, entropy and segmentation nodes."""
        import numpy as np

        self.delayDisplay("Running the default model on a synthetic volume")
        k, j, i = np.mgrid[0:36, 0:50, 0:36]
        image = (100 * np.exp(-((i - 18) ** 2 + (j - 25) ** 2 + (k - 18) ** 2) / 200.0) + 20).astype(np.float32)
        volumeNode = slicer.util.addVolumeFromArray(image, name="synthetic")
        before = slicer.util.arrayFromVolume(volumeNode).copy()
        result = UncertaintySegLogic().run(volumeNode, model="hippocampus", device="cpu")
        self.assertEqual(set(result.probabilityNodes), {"anterior", "posterior"})
        self.assertEqual(slicer.util.arrayFromVolume(result.entropyNode).shape, image.shape)
        self.assertEqual(result.segmentationNode.GetClassName(), "vtkMRMLSegmentationNode")
        self.assertTrue(np.array_equal(slicer.util.arrayFromVolume(volumeNode), before))
        self.delayDisplay("Test passed")
