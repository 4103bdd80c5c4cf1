"""What the panel's Apply does, free of Qt: check the parameters, run `uncertaintyseg predict` in the background,
show its folder in the scene with the panel's options.

The Widget only wires buttons and a timer to this:

    problem = checkRunParameters(parameterNode)            # None, or why Apply is disabled
    run = PanelRun(RunSettings.fromParameters(parameterNode), parameterNode=parameterNode).start()
    # every 100 ms:  stage, fraction, state = run.poll()
    # SUCCEEDED:     result = run.load(logic);  FAILED: run.errorMessage, run.log
    # Cancel:        run.cancel()   (the scene is untouched: nodes are only added by load())
    run.cleanup()                                          # the temporary folder goes

`parameterNode` is the module's `@parameterNodeWrapper` (anything with the same attributes will do).
The settings are copied when the run starts, so editing the panel while it runs changes nothing; the run keeps its
parameter node, so that its outputs replace that panel's previous run even when the module was left meanwhile.
"""

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from UncertaintySegLib.calibration.base import JSON_FILE as CALIBRATOR_FILE
from UncertaintySegSlicer.mrml.colors import requireColorNode
from UncertaintySegSlicer.mrml.display import showOverlay
from UncertaintySegSlicer.panel.panelChoices import (MODEL_FILE, MODEL_FOLDER, PRECOMPUTED, CalibrationSource, FeatureMapReduction,
                                               OverlayColormap, OverlayMap, RegionOfInterest, UncertaintyMethod)
from UncertaintySegSlicer.panel.process import CANCELLED, FAILED, RUNNING, SUCCEEDED, CliProcess, predictArguments
from UncertaintySegSlicer.mrml.sceneChanges import removeNodeWithDependents

INPUT_FILE = "input.nrrd"
OUTPUT_FOLDER = "prediction"


def isSet(path):
    """A path parameter holds a path: not None (the panel's unset path) nor an empty `Path` ('.')."""
    return path is not None and str(path) not in ("", ".")


class RunSettings(SimpleNamespace):
    """A copy of the panel's parameters for one run (nodes by reference, the rest plain values).

    Its fields are every parameter of the module's parameter node (`UncertaintySegParameterNode` in
    UncertaintySeg.py, the one place they and their defaults are declared), read when the run starts.
    """

    @classmethod
    def fromParameters(cls, parameters):
        """`parameters`: the `@parameterNodeWrapper` (its `allParameters`), or any object with the same attributes."""
        names = parameters.allParameters if hasattr(parameters, "allParameters") else vars(parameters)
        return cls(**{name: getattr(parameters, name) for name in names})

    def replaced(self, **changes):
        """A copy with `changes`; a name the parameter node does not have is an error, not a new setting."""
        unknown = sorted(set(changes) - set(vars(self)))
        if unknown:
            raise AttributeError(f"no panel parameter named {', '.join(unknown)}")
        return type(self)(**{**vars(self), **changes})

    @property
    def usesSavedProbabilities(self):
        return self.model == PRECOMPUTED

    def modelArguments(self):
        """`predictArguments` keywords for the model choice: a bundled name, a file, a folder, or saved probabilities."""
        if self.model == MODEL_FILE:
            return {"model": str(self.modelFile)}
        if self.model == MODEL_FOLDER:  # only a folder can be a MONAI bundle: the box is shown (and read) only then
            return {"model": str(self.modelFolder), "trustBundle": bool(self.trustBundle)}
        if self.usesSavedProbabilities:
            names = [name.strip() for name in (self.classNames or "").split(",") if name.strip()]
            return {"probabilities": str(self.probabilitiesFile), "classNames": names or None}
        return {"model": self.model}

    def featureMapArguments(self):
        """`predict --feature-maps` values: None when off; [] for the default layers (channel mean); else each named
        layer (space-separated) with the panel's reduction unless it gives its own (`LAYER=max`, `LAYER=0,3,5`)."""
        if not self.createFeatureMaps:
            return None
        return [layer if "=" in layer else f"{layer}={self.featureMapReduction.value}" for layer in self.featureMapLayers.split()]

    def predictArguments(self, image, out):
        """Arguments of `uncertaintyseg predict` for this run."""
        options = {"device": self.device}
        if not self.usesSavedProbabilities:
            options["method"] = self.method.cliMethod
            options["samples"] = self.samples if self.method.drawsSamples else None
            if self.calibration is not CalibrationSource.NONE:
                options["calibrator"] = str(self.calibratorFolder)
            options["featureMaps"] = self.featureMapArguments()
        return predictArguments(image, out, **self.modelArguments(), **options)


def modelSourceProblem(settings):
    """None when the model choice is complete (a bundled name, or an existing file or folder), else what to choose."""
    paths = {MODEL_FILE: ("modelFile", "the TorchScript file (with its model.json beside it) or the model.json", "file"),
             MODEL_FOLDER: ("modelFolder", "the MONAI bundle or model folder", "dir"),
             PRECOMPUTED: ("probabilitiesFile", "the saved probabilities (nnU-Net .npz, or a 4-D volume on the input's grid)", "file")}
    if settings.model not in paths:
        return None
    name, what, kind = paths[settings.model]
    path = getattr(settings, name)
    if not isSet(path):
        return f"Choose {what}."
    if not (Path(path).is_dir() if kind == "dir" else Path(path).is_file()):
        return f"{path} does not exist: choose {what}."
    return None


def checkRunParameters(parameters):
    """None when Apply can run, else what to fix, in a sentence (the Apply button's tooltip)."""
    settings = RunSettings.fromParameters(parameters)
    if settings.inputVolume is None:
        return "Select an input volume."
    problem = modelSourceProblem(settings)
    if problem:
        return problem
    # saved probabilities are one sample with no logits: method and calibration (hidden then) do not apply
    if settings.calibration is not CalibrationSource.NONE and not settings.usesSavedProbabilities:
        if not isSet(settings.calibratorFolder) or not (Path(settings.calibratorFolder) / CALIBRATOR_FILE).is_file():
            if settings.calibration is CalibrationSource.FIT:
                return "Fit the calibrator first (Fit and save), or set calibration to None."
            return f"Choose a calibrator folder (one holding {CALIBRATOR_FILE}, written by `uncertaintyseg calibrate` or the panel)."
    oneSample = settings.method is UncertaintyMethod.SOFTMAX or settings.usesSavedProbabilities
    if settings.overlay is OverlayMap.MUTUAL_INFORMATION and oneSample:
        return "Mutual information needs several samples: choose MC dropout, an ensemble or TTA, or another overlay."
    created = {OverlayMap.ENTROPY: settings.createEntropy, OverlayMap.MUTUAL_INFORMATION: settings.createMutualInformation,
               OverlayMap.PROBABILITY: settings.createProbabilities}
    if not created[settings.overlay]:
        return f"The overlay ({settings.overlay.label()}) is among the maps not created: tick it, or choose another overlay."
    if settings.reference is not None and settings.roi is RegionOfInterest.MASK and settings.roiMask is None:
        return "Select the ROI mask (a segmentation or a volume), or another ROI."
    return featureMapProblem(settings)


def featureMapProblem(settings):
    """None when the Analysis section's feature-map settings can be passed to `predict`, else what to change."""
    from UncertaintySegLib.common.errors import InputError
    from UncertaintySegLib.predict.feature_maps import parse_feature_map

    if not settings.createFeatureMaps:
        return None
    if settings.usesSavedProbabilities:
        return "Feature maps need a model (saved probabilities come without the network's layers): untick feature maps."
    layers = settings.featureMapArguments()
    if not layers and settings.featureMapReduction is not FeatureMapReduction.MEAN:
        return ("The default layers are written as channel means: name the layers (`uncertaintyseg predict --model M "
                "--list-layers` lists them) to take their maximum, or choose the channel mean.")
    for layer in layers:
        try:
            parse_feature_map(layer)
        except InputError as error:
            return str(error)
    return None


@dataclass
class LoadedRun:
    """What `PanelRun.load` added: the Logic's `RunResult` (maps not asked for removed), the overlay shown, notes."""

    result: object
    overlayNode: object
    notes: list = field(default_factory=list)
    featureMapNodes: list = field(default_factory=list)


class PanelRun:
    """One Apply: the input volume written to a temporary NRRD, `predict` run in the background into a temporary folder.
    `parameterNode` (the panel's, or None): whose previous run the outputs replace."""

    def __init__(self, settings, parameterNode=None, workParent=None, python=None):
        self.settings = settings
        self.parameterNode = parameterNode
        self.workParent = workParent
        self.python = python
        self.workFolder = None
        self.process = None
        self._startTime = None
        self.loadSeconds = 0.0

    def start(self):
        from UncertaintySegLib.predict.io import write_volume
        from UncertaintySegSlicer.mrml.volumes import volumeFromNode

        self._startTime = time.monotonic()
        if self.workParent is not None:
            Path(self.workParent).mkdir(parents=True, exist_ok=True)
        self.workFolder = Path(tempfile.mkdtemp(prefix="UncertaintySeg-", dir=self.workParent))
        try:
            image = write_volume(self.workFolder / INPUT_FILE, volumeFromNode(self.settings.inputVolume))
            arguments = self.settings.predictArguments(image, self.outputFolder)
            self.process = CliProcess("predict", arguments, python=self.python, logPath=self.workFolder / "predict.log").start()
        except BaseException:
            self.cleanup()
            raise
        return self

    @property
    def outputFolder(self):
        return self.workFolder / OUTPUT_FOLDER

    def poll(self):
        """(stage text, fraction 0..1 or None, state): the latest progress; never blocks."""
        events, state = self.process.poll()
        last = events[-1] if events else self.process.lastEvent
        if last is None:
            return "starting", None, state
        return str(last["stage"]), float(last["fraction"]), state

    @property
    def state(self):
        return self.process.state if self.process is not None else None

    @property
    def errorMessage(self):
        return self.process.errorMessage if self.process is not None else ""

    @property
    def log(self):
        return self.process.log if self.process is not None else ""

    @property
    def elapsedSeconds(self):
        return 0.0 if self._startTime is None else self.process.elapsedSeconds + self.loadSeconds

    def cancel(self):
        """Kill the run (within ~2 s) and remove its files; the scene was never touched. Returns the state."""
        state = self.process.cancel() if self.process is not None else CANCELLED
        self.cleanup()
        return state

    def cleanup(self):
        if self.workFolder is not None:
            shutil.rmtree(self.workFolder, ignore_errors=True)

    def load(self, logic):
        """Show the finished run's folder in the scene (replacing its parameter node's previous run); a `LoadedRun`."""
        if self.process.state != SUCCEEDED:
            raise RuntimeError(f"the run has not succeeded (state {self.process.state}): nothing to load.")
        settings = self.settings
        if settings.inputVolume.GetScene() is None:
            raise RuntimeError("the input volume was removed from the scene while the model ran: nothing was added.")
        started = time.monotonic()
        reference = settings.reference
        roi = settings.roiMask if settings.roi is RegionOfInterest.MASK else settings.roi.value
        result = logic.addPredictionFolderToScene(settings.inputVolume, self.outputFolder, overlay="entropy",
                                                  overlayOpacity=settings.overlayOpacity, reference=reference, roi=roi,
                                                  parameterNode=self.parameterNode)
        loaded = LoadedRun(result, result.entropyNode)
        loaded.overlayNode = self._chooseOverlay(result, loaded.notes)
        removeMapsNotAskedFor(result, settings, keep=loaded.overlayNode)
        if loaded.overlayNode is not result.entropyNode:
            showOverlay(settings.inputVolume, loaded.overlayNode, settings.overlayOpacity)
        if settings.overlayColormap is not OverlayColormap.DEFAULT:
            setOverlayColormap(loaded.overlayNode, settings.overlayColormap.value)
        if settings.createFeatureMaps:
            from UncertaintySegSlicer.analysis.featureMaps import addFeatureMapFolder

            loaded.featureMapNodes = addFeatureMapFolder(result.folderItemID, self.outputFolder, scene=settings.inputVolume.GetScene(),
                                                         namePrefix=settings.inputVolume.GetName())
            loaded.notes.append(f"{len(loaded.featureMapNodes)} feature map(s) added")
        self.loadSeconds = time.monotonic() - started
        return loaded

    def _chooseOverlay(self, result, notes):
        overlay = self.settings.overlay
        if overlay is OverlayMap.PROBABILITY:
            return next(iter(result.probabilityNodes.values()))
        if overlay is OverlayMap.MUTUAL_INFORMATION:
            if result.mutualInformationNode is not None:
                return result.mutualInformationNode
            notes.append("one sample was drawn, so there is no mutual information: the entropy is shown")
        return result.entropyNode


def removeMapsNotAskedFor(result, settings, keep=None):
    """Remove from the scene the output maps the panel did not ask for (never `keep`, the overlay shown)."""
    unwanted = []
    if not settings.createProbabilities:
        unwanted += [(node, "probability") for node in result.probabilityNodes.values()]
    if not settings.createEntropy:
        unwanted.append((result.entropyNode, "entropy"))
    if not settings.createMutualInformation:
        unwanted.append((result.mutualInformationNode, "mutual information"))
    if not settings.createSegmentation:
        unwanted.append((result.segmentationNode, "segmentation"))
    for node, _ in unwanted:
        if node is not None and node is not keep:
            removeNodeWithDependents(node)
    result.probabilityNodes = {name: node for name, node in result.probabilityNodes.items() if node.GetScene() is not None}
    for attribute in ("entropyNode", "mutualInformationNode", "segmentationNode"):
        node = getattr(result, attribute)
        if node is not None and node.GetScene() is None:
            setattr(result, attribute, None)
    return result


def setOverlayColormap(volumeNode, colorNodeID):
    """Colour table of an output volume (window/level and transparency stay as the Logic fixed them)."""
    requireColorNode(volumeNode.GetScene(), colorNodeID)
    volumeNode.GetDisplayNode().SetAndObserveColorNodeID(colorNodeID)


def statusText(run, loaded=None):
    """The status line after a run: how it ended, how long it took, where the outputs are."""
    seconds = run.elapsedSeconds
    if run.state == CANCELLED:
        return f"Cancelled after {seconds:.1f} s; the scene is as it was."
    if run.state == FAILED:
        return f"Failed after {seconds:.1f} s: {run.errorMessage}"
    if run.state == RUNNING:
        return f"Running for {seconds:.1f} s..."
    if loaded is None:
        return f"The model ran in {seconds:.1f} s."
    result = loaded.result
    folderName = run.settings.inputVolume.GetScene().GetSubjectHierarchyNode().GetItemName(result.folderItemID)
    parts = [f"Done in {seconds:.1f} s; outputs in folder '{folderName}'."]
    if result.metrics:
        ece = result.metrics.get("ece_top_label")
        if ece is not None:
            parts.append(f"ECE {100 * ece:.2f} %.")
    flagged = _flaggedSegments(result.segmentTableNode)
    if flagged:
        parts.append(f"{flagged} segment(s) flagged 'check'.")
    parts += [note[0].upper() + note[1:] + "." for note in loaded.notes]
    return " ".join(parts)


def _flaggedSegments(tableNode):
    if tableNode is None:
        return 0
    table = tableNode.GetTable()
    column = table.GetColumnByName("flag")
    if column is None:
        return 0
    return sum(1 for row in range(table.GetNumberOfRows()) if column.GetValue(row) == "check")
