"""UncertaintySeg: how far to trust a segmentation network, voxel by voxel. GUI glue only.

The work is done by `UncertaintySegSlicer` (MRML glue, free of Qt: argument building, background runs,
output loading, calibrator fitting, dependency checks) and `UncertaintySegLib` (the core). Nothing
imported here at module load needs torch, MONAI, numba or scipy: those are installed on first Apply.
"""

import os
import traceback
from pathlib import Path
from typing import Annotated, Optional, Union

import ctk
import qt
import vtk

import slicer
from slicer import vtkMRMLLabelMapVolumeNode, vtkMRMLNode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLTableNode
from slicer.parameterNodeWrapper import (Choice, GuiConnector, WithinRange, parameterNodeGuiConnector, parameterNodeWrapper,
                                         unannotatedType)
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from UncertaintySegLib.predict.model_loading import bundled_model_names
from UncertaintySegSlicer.mrml.calibrationFitting import CalibrationFittingMixin
from UncertaintySegSlicer.panel.calibrationPanel import calibrationPairLabels, checkFitParameters, useFittedCalibration
from UncertaintySegSlicer.panel.dependencies import installMissing, installPlan
from UncertaintySegSlicer.mrml.logic import UncertaintySegLogicBase
from UncertaintySegSlicer.panel.panelAnnotators import annotatorListLabels, checkAnnotatorParameters, compareAnnotators
from UncertaintySegSlicer.panel.panelChoices import (DEVICES, PRECOMPUTED, CalibrationMethod, CalibrationSource, FeatureMapReduction,
                                               OverlayColormap, OverlayMap, RankingScore, RegionOfInterest, UncertaintyMethod,
                                               modelChoices, panelVisibility)
from UncertaintySegSlicer.panel.panelGlue import PanelBinding, errorDialog, resetUnreadableParameters, selectedTableRow
from UncertaintySegSlicer.panel.panelRanking import checkRankParameters, rankScene
from UncertaintySegSlicer.panel.panelRun import PanelRun, RunSettings, checkRunParameters, statusText
from UncertaintySegSlicer.panel.process import FAILED, RUNNING, SUCCEEDED

# Optional rows of the panel (panelChoices.panelVisibility) -> the widgets that show or hide with them.
PANEL_ROWS = {
    "modelFile": ("modelFileLabel", "modelFileSelector"),
    "modelFolder": ("modelFolderLabel", "modelFolderSelector", "trustBundleCheckBox"),
    "probabilitiesFile": ("probabilitiesFileLabel", "probabilitiesFileSelector"),
    "classNames": ("classNamesLabel", "classNamesEdit"),
    "method": ("methodLabel", "methodSelector"),
    "samples": ("samplesLabel", "samplesSpinBox"),
    "calibration": ("calibrationSourceLabel", "calibrationSourceSelector"),
    "calibratorFolder": ("calibratorFolderLabel", "calibratorFolderSelector"),
    "calibrationFit": ("fitGroupBox",),
    "roi": ("roiLabel", "roiSelector"),
    "roiMask": ("roiMaskLabel", "roiMaskSelector"),
    "featureMapOptions": ("featureMapLayersLabel", "featureMapLayersEdit", "featureMapReductionLabel", "featureMapReductionSelector"),
}
POLL_INTERVAL_MS = 100
RANK_TOOLTIP = ("Run the panel's model (method, samples, device) on every scalar volume in the scene, in Slicer's process "
                "(Slicer waits until it is done), and list them most uncertain first: which case to annotate next.")
COMPARE_TOOLTIP = ("Compare the annotators (the reference, then the list) with the last run's probabilities in the ROI "
                   "(Outputs): per agreement group, its voxels and the model's confidence there.")


class UncertaintySeg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "UncertaintySeg"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["UncertaintySeg developers"]
        self.parent.helpText = (
            "Runs a segmentation network on a volume and shows how far to trust it: per-class probability "
            "volumes, a voxel-wise entropy (or mutual information) overlay, bright where the model is unsure, a "
            "segmentation with the model's classes and a per-segment table with quality flags. With a reference "
            "segmentation: calibration metrics (ECE, NLL, Brier, Dice) and a reliability diagram. Calibrators can be "
            "loaded or fitted here on reference segmentations. See the README for the command-line tool and the "
            "Python console API."
        )
        self.parent.acknowledgementText = (
            "Default model trained on the Medical Segmentation Decathlon Task04 Hippocampus data "
            "(Simpson et al. 2019, arXiv:1902.09063; Antonelli et al., Nat. Commun. 2022; data from Vanderbilt "
            "University Medical Center; CC-BY-SA 4.0). Methods follow Mehrtash et al. (IEEE TMI 2020, confidence "
            "calibration and predictive uncertainty for segmentation), Rousseau et al. (post-hoc calibration of "
            "segmentation networks) and Czolbe et al. (is segmentation uncertainty useful?, IPMI 2021). "
            "Built on MONAI, PyTorch and SimpleITK."
        )
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData():
    """A hippocampus MRI with its reference segmentation, in the Sample Data module (UncertaintySegSlicer.panel.sampleData)."""
    import SampleData

    from UncertaintySegSlicer.panel.sampleData import registerSampleData as register

    register(SampleData.SampleDataLogic, os.path.join(os.path.dirname(__file__), "Resources", "Icons"))


@parameterNodeGuiConnector
class ctkPathLineEditToOptionalPathConnector(GuiConnector):
    """A path field that may be unset (`Optional[Path]`): None shows as an empty line edit, whose browse dialog opens in
    the last folder used. Slicer's own connector binds only `Path`, whose empty value `Path()` shows as "." and opens
    the dialog in Slicer's working directory."""

    @staticmethod
    def canRepresent(widget, datatype) -> bool:
        return type(widget) == ctk.ctkPathLineEdit and unannotatedType(datatype) == Optional[Path]

    @staticmethod
    def create(widget, datatype):
        return ctkPathLineEditToOptionalPathConnector(widget) if ctkPathLineEditToOptionalPathConnector.canRepresent(widget, datatype) else None

    def __init__(self, widget):
        super().__init__()
        self._widget = widget

    def _connect(self):
        self._widget.currentPathChanged.connect(self.changed)

    def _disconnect(self):
        self._widget.currentPathChanged.disconnect(self.changed)

    def widget(self):
        return self._widget

    def read(self):
        return Path(self._widget.currentPath) if self._widget.currentPath else None

    def write(self, value) -> None:
        self._widget.currentPath = "" if value is None else str(value)


@parameterNodeWrapper
class UncertaintySegParameterNode:
    """Every setting of the panel; saved with the scene. Widgets bind by their SlicerParameterName."""

    # Inputs
    inputVolume: vtkMRMLScalarVolumeNode
    model: Annotated[str, Choice(modelChoices(bundled_model_names()))] = "hippocampus"
    modelFile: Optional[Path]
    modelFolder: Optional[Path]
    trustBundle: bool = False  # let MONAI run a bundle's config code (`predict --trust-bundle`); shown with modelFolder
    probabilitiesFile: Optional[Path]
    classNames: str = ""
    device: Annotated[str, Choice(DEVICES)] = "auto"
    # Uncertainty
    method: UncertaintyMethod = UncertaintyMethod.AUTO
    samples: Annotated[int, WithinRange(1, 200)] = 20
    # Calibration
    calibration: CalibrationSource = CalibrationSource.NONE
    calibratorFolder: Optional[Path]
    calibrationMethod: CalibrationMethod = CalibrationMethod.TEMPERATURE
    calibrationPairs: list[tuple[vtkMRMLScalarVolumeNode, vtkMRMLNode]]  # edited by the Add/Remove pair buttons
    # Outputs
    createProbabilities: bool = True
    createEntropy: bool = True
    createMutualInformation: bool = True
    createSegmentation: bool = True
    overlay: OverlayMap = OverlayMap.ENTROPY
    overlayColormap: OverlayColormap = OverlayColormap.DEFAULT
    overlayOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    reference: Union[vtkMRMLSegmentationNode, vtkMRMLLabelMapVolumeNode, None]  # None: Slicer writes the default None
    roi: RegionOfInterest = RegionOfInterest.BBOX
    roiMask: Union[vtkMRMLSegmentationNode, vtkMRMLScalarVolumeNode, vtkMRMLLabelMapVolumeNode, None]
    # Analysis
    createFeatureMaps: bool = False
    featureMapLayers: str = ""
    featureMapReduction: FeatureMapReduction = FeatureMapReduction.MEAN
    rankingScore: RankingScore = RankingScore.MEAN_ENTROPY
    rankingTable: vtkMRMLTableNode  # written by the Rank button, shown in the ranking table view
    annotatorReferences: list[vtkMRMLNode]  # annotators besides the reference; edited by the Add/Remove annotator buttons
    annotatorTable: vtkMRMLTableNode  # written by the Compare annotators button, shown in the annotator table view


class UncertaintySegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._binding = PanelBinding()
        self._run = None  # the PanelRun in progress
        self._lastRun = (None, None)  # (input volume, RunResult) of the last run loaded: what annotators are compared with
        self._timer = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/UncertaintySeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = UncertaintySegLogic()
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self.onPollTimer)
        self.ui.progressBar.setVisible(False)
        self.ui.showLogButton.setVisible(False)
        self.ui.logTextEdit.setVisible(False)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.showLogButton.connect("toggled(bool)", self.ui.logTextEdit.setVisible)
        self.ui.addCalibrationPairButton.connect("clicked(bool)", self.onAddCalibrationPair)
        self.ui.removeCalibrationPairButton.connect("clicked(bool)", self.onRemoveCalibrationPair)
        self.ui.fitCalibratorButton.connect("clicked(bool)", self.onFitCalibrator)
        self.ui.segmentTableView.connect("selectionChanged()", self.onSegmentSelected)
        self.ui.rankButton.connect("clicked(bool)", self.onRankButton)
        self.ui.addAnnotatorButton.connect("clicked(bool)", self.onAddAnnotator)
        self.ui.removeAnnotatorButton.connect("clicked(bool)", self.onRemoveAnnotator)
        self.ui.compareAnnotatorsButton.connect("clicked(bool)", self.onCompareAnnotators)
        self.initializeParameterNode()

    def cleanup(self):
        self.cancelRun()
        self.removeObservers()

    @property
    def _parameterNode(self):
        return self._binding.parameterNode

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        """The panel stays bound to the parameter node while the module is hidden: binding it again on every enter()
        leaks on Slicer 5.8 and 5.10 (PanelBinding). Runs in progress go on; their outputs are loaded when they end."""

    def onSceneStartClose(self, caller, event):
        self.cancelRun()
        self._lastRun = (None, None)
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            self._parameterNode.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")

    def setParameterNode(self, inputParameterNode):
        previous = self._parameterNode
        if not self._binding.bind(inputParameterNode, self.ui):
            return
        if previous is not None:
            self.removeObserver(previous, vtk.vtkCommand.ModifiedEvent, self.updatePanel)
        if self._parameterNode:
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updatePanel)
            self.updatePanel()

    # --- what the panel shows ------------------------------------------------------------------
    def updatePanel(self, caller=None, event=None):
        parameters = self._parameterNode
        if parameters is None:
            return
        for row, shown in panelVisibility(parameters).items():
            for name in PANEL_ROWS[row]:
                getattr(self.ui, name).setVisible(shown)
        pairs = list(parameters.calibrationPairs)
        self.ui.calibrationPairsList.clear()
        for text in calibrationPairLabels(pairs):
            self.ui.calibrationPairsList.addItem(text)
        self.ui.removeCalibrationPairButton.enabled = bool(pairs)
        fitProblem = checkFitParameters(parameters)
        self.ui.fitCalibratorButton.enabled = fitProblem is None and self._run is None
        self.ui.fitCalibratorButton.toolTip = fitProblem or "Fit the calibrator on the pairs and save it; Apply then uses it."
        rankProblem = checkRankParameters(parameters)
        self.ui.rankButton.enabled = rankProblem is None and self._run is None
        self.ui.rankButton.toolTip = rankProblem or RANK_TOOLTIP
        if self.ui.rankingTableView.mrmlTableNode() is not parameters.rankingTable:
            self.ui.rankingTableView.setMRMLTableNode(parameters.rankingTable)
        annotators = list(parameters.annotatorReferences)
        self.ui.annotatorsList.clear()
        for text in annotatorListLabels(annotators):
            self.ui.annotatorsList.addItem(text)
        self.ui.removeAnnotatorButton.enabled = bool(annotators)
        compareProblem = checkAnnotatorParameters(parameters, *self._lastRun)
        self.ui.compareAnnotatorsButton.enabled = compareProblem is None
        self.ui.compareAnnotatorsButton.toolTip = compareProblem or COMPARE_TOOLTIP
        if self.ui.annotatorTableView.mrmlTableNode() is not parameters.annotatorTable:
            self.ui.annotatorTableView.setMRMLTableNode(parameters.annotatorTable)
        if self._run is not None:
            return  # Apply is the Cancel button while a run is going on
        problem = checkRunParameters(parameters)
        self.ui.applyButton.enabled = problem is None
        self.ui.applyButton.toolTip = problem or "Run the model in the background and show its uncertainty."

    # --- Apply / Cancel ------------------------------------------------------------------------
    def onApplyButton(self):
        if self._run is not None:
            self.cancelRun()
            return
        problem = checkRunParameters(self._parameterNode)
        if problem:
            slicer.util.errorDisplay(problem)
            return
        if not self.ensureDependencies():
            return
        try:
            self._run = PanelRun(RunSettings.fromParameters(self._parameterNode), parameterNode=self._parameterNode,
                                 workParent=slicer.app.temporaryPath).start()
        except Exception as error:
            self.showError("UncertaintySeg could not start the model.", error)
            return
        self.ui.applyButton.text = "Cancel"
        self.ui.applyButton.toolTip = "Stop the run; the scene stays as it was."
        self.ui.applyButton.enabled = True
        self.ui.fitCalibratorButton.enabled = False
        self.ui.progressBar.value = 0
        self.ui.progressBar.format = "starting"
        self.ui.progressBar.setVisible(True)
        self.ui.statusLabel.text = "Running..."
        self.ui.showLogButton.checked = False
        self.ui.showLogButton.setVisible(False)
        self._timer.start()

    def onPollTimer(self):
        if self._run is None:
            self._timer.stop()
            return
        stage, fraction, state = self._run.poll()
        self.ui.progressBar.value = int(round(100 * (fraction or 0.0)))
        self.ui.progressBar.format = f"{stage} (%p%)"
        if state == RUNNING:
            return
        self._timer.stop()
        self.finishRun()

    def finishRun(self):
        run, loaded = self._run, None
        try:
            if run.state == SUCCEEDED:
                with slicer.util.WaitCursor():
                    loaded = run.load(self.logic)  # replaces the previous run of the parameter node it started from
                self.ui.segmentTableView.setMRMLTableNode(loaded.result.segmentTableNode)
                self._lastRun = (run.settings.inputVolume, loaded.result)
                self.ui.segmentsCollapsibleButton.collapsed = False
            self.ui.statusLabel.text = statusText(run, loaded)
            if run.state == FAILED:
                errorDialog(f"UncertaintySeg failed: {run.errorMessage}", details=run.log)
        except Exception as error:
            self.ui.statusLabel.text = f"The model ran, but its outputs could not be shown: {error}"
            self.showError("The model ran, but its outputs could not be shown.", error)
        finally:
            self.ui.logTextEdit.plainText = run.log
            self.ui.showLogButton.setVisible(True)
            run.cleanup()
            self._run = None
            self.ui.progressBar.setVisible(False)
            self.ui.applyButton.text = "Apply"
            self.updatePanel()

    def cancelRun(self):
        """Stop a run in progress (Cancel, closing the scene, reloading the module): nothing is added to the scene."""
        if self._run is None:
            return
        if self._timer is not None:
            self._timer.stop()
        self._run.cancel()
        self.ui.statusLabel.text = statusText(self._run)
        self.ui.logTextEdit.plainText = self._run.log
        self.ui.showLogButton.setVisible(True)
        self._run = None
        self.ui.progressBar.setVisible(False)
        self.ui.applyButton.text = "Apply"
        self.updatePanel()

    def onSegmentSelected(self):
        view = self.ui.segmentTableView
        row = selectedTableRow(view)
        if row is not None:
            self.logic.jumpToSegment(view.mrmlTableNode(), row)

    # --- analysis ------------------------------------------------------------------------------
    def onRankButton(self):
        problem = checkRankParameters(self._parameterNode)
        if problem:
            slicer.util.errorDisplay(problem)
            return
        if not self.ensureDependencies():
            return

        def progress(stage, fraction):
            self.ui.progressBar.value = int(round(100 * fraction))
            self.ui.progressBar.format = f"{stage} (%p%)"
            slicer.app.processEvents()

        self.ui.progressBar.setVisible(True)
        try:
            with slicer.util.WaitCursor():
                rankScene(self._parameterNode, progress=progress)
        except Exception as error:
            self.showError("The volumes could not be ranked.", error)
        finally:
            self.ui.progressBar.setVisible(False)

    def onAddAnnotator(self):
        node = self.ui.annotatorSelector.currentNode()
        if node is None:
            slicer.util.errorDisplay("Select an annotator's segmentation (or label map) first.")
            return
        self._parameterNode.annotatorReferences = [*self._parameterNode.annotatorReferences, node]

    def onRemoveAnnotator(self):
        row = self.ui.annotatorsList.currentRow
        annotators = list(self._parameterNode.annotatorReferences)
        if 0 <= row < len(annotators):
            del annotators[row]
            self._parameterNode.annotatorReferences = annotators

    def onCompareAnnotators(self):
        problem = checkAnnotatorParameters(self._parameterNode, *self._lastRun)
        if problem:
            slicer.util.errorDisplay(problem)
            return
        try:
            with slicer.util.WaitCursor():
                compareAnnotators(self._parameterNode, *self._lastRun)
        except Exception as error:
            self.showError("The annotators could not be compared.", error)

    # --- calibration ---------------------------------------------------------------------------
    def onAddCalibrationPair(self):
        volume, reference = self.ui.calibrationVolumeSelector.currentNode(), self.ui.calibrationReferenceSelector.currentNode()
        if volume is None or reference is None:
            slicer.util.errorDisplay("Select a volume and its reference segmentation first.")
            return
        self._parameterNode.calibrationPairs = [*self._parameterNode.calibrationPairs, (volume, reference)]

    def onRemoveCalibrationPair(self):
        row = self.ui.calibrationPairsList.currentRow
        pairs = list(self._parameterNode.calibrationPairs)
        if 0 <= row < len(pairs):
            del pairs[row]
            self._parameterNode.calibrationPairs = pairs

    def onFitCalibrator(self):
        parameters = self._parameterNode
        problem = checkFitParameters(parameters)
        if problem:
            slicer.util.errorDisplay(problem)
            return
        if not self.ensureDependencies():
            return
        folder = Path(parameters.calibratorFolder)
        method = parameters.calibrationMethod

        def progress(stage, fraction):
            self.ui.progressBar.value = int(round(100 * fraction))
            self.ui.progressBar.format = f"{stage} (%p%)"
            slicer.app.processEvents()

        self.ui.progressBar.setVisible(True)
        self.ui.calibrationStatusLabel.text = f"Fitting: {method.label()}..."
        model = RunSettings.fromParameters(parameters).modelArguments()
        try:
            with slicer.util.WaitCursor():
                fitted = self.logic.fitCalibrator(list(parameters.calibrationPairs), model=model["model"], method=method.value,
                                                  trustBundle=model.get("trustBundle", False),
                                                  device=parameters.device, saveTo=folder, overwrite=folder.exists(), progress=progress)
        except Exception as error:
            self.ui.calibrationStatusLabel.text = f"Fitting failed: {error}"
            self.showError("The calibrator could not be fitted.", error)
            return
        finally:
            self.ui.progressBar.setVisible(False)
        useFittedCalibration(parameters, fitted)
        use = "a new model folder, now the panel's model" if fitted.isModel else "Apply uses it"
        self.ui.calibrationStatusLabel.text = f"{fitted.description}. Saved in {fitted.folder} ({use}); {fitted.fitSeconds:.1f} s."

    # --- helpers -------------------------------------------------------------------------------
    def ensureDependencies(self):
        """Install torch (PyTorch extension), MONAI and the rest after asking; False when the user declines."""
        plan = installPlan()
        if not plan:
            return True

        def installTorch(versionRequirement):
            try:
                import PyTorchUtils
            except ModuleNotFoundError:
                raise RuntimeError("UncertaintySeg needs the PyTorch extension: install it from the Extensions Manager, "
                                   "restart Slicer, then click Apply again.") from None
            with slicer.util.WaitCursor():
                # askConfirmation=False: installMissing asked once for every package
                return PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False, torchVersionRequirement=versionRequirement)

        def pipInstall(requirements):
            with slicer.util.WaitCursor():
                slicer.util.pip_install(requirements)

        try:
            return installMissing(plan, slicer.util.confirmOkCancelDisplay, installTorch, pipInstall)
        except Exception as error:
            self.showError("Installing UncertaintySeg's Python packages failed.", error)
            return False

    @staticmethod
    def showError(message, error):
        """A message for people: the error's own sentence; the traceback only for unexpected errors, under Details."""
        from UncertaintySegLib.common.errors import InputError

        details = None if isinstance(error, (InputError, RuntimeError)) else traceback.format_exc()
        errorDialog(f"{message}\n\n{error}", details=details)


class UncertaintySegLogic(ScriptedLoadableModuleLogic, UncertaintySegLogicBase, CalibrationFittingMixin):
    """Console use: `slicer.util.getModuleLogic("UncertaintySeg").run(volumeNode, model="hippocampus")`,
    `.fitCalibrator([(volumeNode, segmentationNode)], model="hippocampus", method="temperature", saveTo=folder)`."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        node = super().getParameterNode()
        resetUnreadableParameters(node, UncertaintySegParameterNode)
        return UncertaintySegParameterNode(node)


class UncertaintySegTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (CI: Slicer --testing under Xvfb); the same Logic is tested without the app in Testing/."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_freshPanelIsBuiltAndBound()
        self.setUp()
        self.test_runOnSyntheticVolume()
        self.setUp()
        self.test_panelBindsTheParameterNode()
        self.setUp()
        self.test_applyRunsInTheBackgroundAndCancelLeavesTheScene()

    @staticmethod
    def syntheticVolume():
        import numpy as np

        k, j, i = np.mgrid[0:36, 0:50, 0:36]
        image = (100 * np.exp(-((i - 18) ** 2 + (j - 25) ** 2 + (k - 18) ** 2) / 200.0) + 20).astype(np.float32)
        return slicer.util.addVolumeFromArray(image, name="synthetic"), image

    def test_runOnSyntheticVolume(self):
        """The Logic on a small synthetic volume creates probability, entropy and segmentation nodes."""
        import numpy as np

        self.delayDisplay("Running the default model on a synthetic volume")
        volumeNode, image = self.syntheticVolume()
        before = slicer.util.arrayFromVolume(volumeNode).copy()
        result = UncertaintySegLogic().run(volumeNode, model="hippocampus", device="cpu")
        self.assertEqual(set(result.probabilityNodes), {"anterior", "posterior"})
        self.assertEqual(slicer.util.arrayFromVolume(result.entropyNode).shape, image.shape)
        self.assertEqual(result.segmentationNode.GetClassName(), "vtkMRMLSegmentationNode")
        self.assertTrue(np.array_equal(slicer.util.arrayFromVolume(volumeNode), before))
        self.delayDisplay("Test passed")

    def widget(self):
        return slicer.modules.uncertaintyseg.widgetRepresentation().self()

    def test_freshPanelIsBuiltAndBound(self):
        """A new panel's setup() and enter() raise nothing and bind the parameter node. Slicer only logs an exception
        of the module's own panel's setup(), so this builds one itself, where an exception fails the test."""
        self.delayDisplay("Building a fresh panel")
        volumeNode, _ = self.syntheticVolume()
        parent = slicer.qMRMLWidget()
        parent.setLayout(qt.QVBoxLayout())
        parent.setMRMLScene(slicer.mrmlScene)
        widget = UncertaintySegWidget(parent)
        try:
            widget.setup()
            widget.enter()
            parameters = widget._parameterNode
            self.assertIsNotNone(parameters)
            self.assertIs(parameters.inputVolume, volumeNode)
            self.assertIs(widget.ui.inputVolumeSelector.currentNode(), volumeNode)
            self.assertIsNone(parameters.reference)
            self.assertEqual(widget.ui.modelFileSelector.currentPath, "")  # an unset path shows empty, not "."
            self.assertGreater(widget.ui.modelSelector.count, 0)
            self.assertTrue(widget.ui.applyButton.enabled, widget.ui.applyButton.toolTip)
            for _ in range(3):  # leaving and entering again keeps one binding
                widget.exit()
                widget.enter()
            widget._parameterNode.samples = 11
            self.assertEqual(widget.ui.samplesSpinBox.value, 11)
            widget.ui.samplesSpinBox.value = 13
            self.assertEqual(widget._parameterNode.samples, 13)
            widget.exit()
        finally:
            widget.cleanup()
            parent.deleteLater()
        self.delayDisplay("Test passed")

    def test_panelBindsTheParameterNode(self):
        """Every bound widget follows the parameter node (connectGui), and the optional rows follow the choices."""
        self.delayDisplay("Checking the panel's bindings")
        widget = self.widget()
        widget.enter()
        parameters = widget._parameterNode
        parameters.method = UncertaintyMethod.MC_DROPOUT
        parameters.samples = 7
        parameters.model = PRECOMPUTED
        parameters.overlay = OverlayMap.MUTUAL_INFORMATION
        self.assertEqual(widget.ui.methodSelector.currentText, UncertaintyMethod.MC_DROPOUT.label())
        self.assertEqual(widget.ui.samplesSpinBox.value, 7)
        self.assertEqual(widget.ui.modelSelector.currentText, PRECOMPUTED)
        self.assertFalse(widget.ui.probabilitiesFileSelector.isHidden())
        self.assertTrue(widget.ui.modelFileSelector.isHidden())
        self.assertTrue(widget.ui.methodSelector.isHidden())  # saved probabilities are one sample
        self.assertFalse(widget.ui.applyButton.enabled)  # no probabilities file chosen
        widget.ui.overlaySelector.currentIndex = list(OverlayMap).index(OverlayMap.ENTROPY)
        self.assertIs(parameters.overlay, OverlayMap.ENTROPY)
        self.assertTrue(widget.ui.featureMapLayersEdit.isHidden())
        parameters.createFeatureMaps = True
        self.assertTrue(widget.ui.createFeatureMapsCheckBox.checked)
        self.assertFalse(widget.ui.featureMapLayersEdit.isHidden())
        parameters.createFeatureMaps = False
        parameters.model = "hippocampus"
        self.delayDisplay("Test passed")

    def test_applyRunsInTheBackgroundAndCancelLeavesTheScene(self):
        """Apply runs predict out of process, polls it, and loads its folder; Cancel leaves the scene as it was."""
        import time

        self.delayDisplay("Apply in the background")
        widget = self.widget()
        widget.enter()
        parameters = widget._parameterNode
        volumeNode, _ = self.syntheticVolume()
        parameters.inputVolume = volumeNode
        parameters.model = "hippocampus"
        parameters.device = "cpu"
        parameters.method = UncertaintyMethod.AUTO
        widget.onApplyButton()
        self.assertIsNotNone(widget._run)
        deadline = time.monotonic() + 300
        while widget._run is not None and time.monotonic() < deadline:
            slicer.app.processEvents()
            time.sleep(0.05)
        self.assertIsNone(widget._run, "the background run did not finish within 300 s")
        self.assertTrue(widget.ui.statusLabel.text.startswith("Done"), widget.ui.statusLabel.text)
        self.assertIsNotNone(widget.ui.segmentTableView.mrmlTableNode())
        self.assertIsNotNone(slicer.mrmlScene.GetFirstNodeByName("synthetic entropy"))

        self.delayDisplay("Cancel")
        nodesBefore = slicer.mrmlScene.GetNumberOfNodes()
        parameters.method = UncertaintyMethod.MC_DROPOUT
        parameters.samples = 200
        widget.onApplyButton()
        slicer.app.processEvents()
        widget.onApplyButton()  # the button reads Cancel now
        self.assertIsNone(widget._run)
        self.assertTrue(widget.ui.statusLabel.text.startswith("Cancelled"), widget.ui.statusLabel.text)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodesBefore)
        self.delayDisplay("Test passed")
