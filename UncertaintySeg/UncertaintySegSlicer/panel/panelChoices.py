"""The panel's choices: what each combo box offers, how it reads, and what it means to the CLI and the Logic.

The module's `@parameterNodeWrapper` annotates its fields with these enums; Slicer's
`QComboBoxToEnumConnector` lists a combo box's items from the enum, labelled by its `label()`,
and stores the member's *name* in the parameter node (so a saved scene survives a relabelling).
The value of a member is what `uncertaintyseg predict` or the Logic takes.
Free of Qt and of slicer, so it is tested here.
"""

import enum

from UncertaintySegLib.calibration.methods import calibration_methods
from UncertaintySegLib.predict.sampling_axes import AXES, SINGLE_PASS, panel_methods

DEVICES = ["auto", "cpu", "cuda"]

# The model combo box lists the bundled models by name, then these three sources.
MODEL_FILE = "TorchScript file or model.json..."
MODEL_FOLDER = "MONAI bundle or model folder..."
PRECOMPUTED = "precomputed probabilities..."
MODEL_SOURCES = (MODEL_FILE, MODEL_FOLDER, PRECOMPUTED)


def modelChoices(bundledNames):
    """Items of the model combo box: the bundled models, then a file, a folder, saved probabilities."""
    return [*bundledNames, *MODEL_SOURCES]


class _Labelled(enum.Enum):
    """An enum whose combo-box text is `LABELS[member]` (Slicer calls `label(member)`)."""

    def label(self):
        return self._labels()[self.name]

    @classmethod
    def _labels(cls):
        raise NotImplementedError


class _GeneratedChoice(_Labelled):
    """An enum whose members come from a core registry (`generatedChoice`), labels included."""

    @classmethod
    def _labels(cls):
        return cls._generatedLabels


def generatedChoice(base, name, choices, doc):
    """Enum `name` (a subclass of `base`, a `_GeneratedChoice`) with a member per (value, label) of `choices`, named by
    its value in capitals ("ensemble+tta": ENSEMBLE_TTA)."""
    def memberName(value):
        return value.upper().replace("+", "_")

    generated = base(name, [(memberName(value), value) for value, _ in choices], module=__name__, qualname=name)
    generated.__doc__ = doc
    generated._generatedLabels = {memberName(value): label for value, label in choices}
    return generated


class _UncertaintyMethodChoice(_GeneratedChoice):
    """What every `UncertaintyMethod` member offers."""

    @property
    def cliMethod(self):
        return None if self.name == "AUTO" else self.value

    @property
    def drawsSamples(self):
        """Whether `--samples` matters: MC dropout passes or a stochastic model's draws (an axis that draws)."""
        return any(AXES[part].draws_samples for part in self.value.split("+") if part in AXES)


# Automatic, the single pass, then the core's sampling axes and their combinations (`sampling_axes.panel_methods`).
UncertaintyMethod = generatedChoice(
    _UncertaintyMethodChoice, "UncertaintyMethod",
    [("auto", "Automatic (ensemble average, else one pass)"), (SINGLE_PASS, "Single pass (softmax)"), *panel_methods()],
    "`predict --method` (None for AUTO: an ensemble's members averaged, else one softmax pass).")


class CalibrationSource(_Labelled):
    NONE = "none"
    SAVED = "saved"
    FIT = "fit"

    @classmethod
    def _labels(cls):
        return {"NONE": "None", "SAVED": "Load a saved calibrator", "FIT": "Fit now from reference segmentations"}


# The calibration registry's methods that have a `panel_label`, in its order (temperature first).
CalibrationMethod = generatedChoice(
    _GeneratedChoice, "CalibrationMethod",
    [(name, method.panel_label) for name, method in calibration_methods().items() if method.panel_label],
    "`uncertaintyseg calibrate --method` names of the methods the panel fits.")


class RegionOfInterest(_Labelled):
    """Where calibration is measured against the reference (the Logic's `roi`; MASK: the mask node)."""

    BBOX = "bbox"
    WHOLE = "whole"
    MASK = "mask"

    @classmethod
    def _labels(cls):
        return {"BBOX": "Reference box, dilated (8 mm in-plane, 2 slices)", "WHOLE": "Whole volume", "MASK": "Inside a mask"}


class OverlayMap(_Labelled):
    """The volume shown over the input; PROBABILITY: the first foreground class's probability."""

    ENTROPY = "entropy"
    MUTUAL_INFORMATION = "mutual_information"
    PROBABILITY = "probability"

    @classmethod
    def _labels(cls):
        return {"ENTROPY": "Entropy (total uncertainty)", "MUTUAL_INFORMATION": "Mutual information (model uncertainty)",
                "PROBABILITY": "Probability of the first class"}


class OverlayColormap(_Labelled):
    """Colour table of the overlay, by Slicer's IDs; DEFAULT keeps the map's own (Inferno, or Viridis for probabilities)."""

    DEFAULT = ""
    INFERNO = "vtkMRMLColorTableNodeFileInferno.txt"
    MAGMA = "vtkMRMLColorTableNodeFileMagma.txt"
    PLASMA = "vtkMRMLColorTableNodeFilePlasma.txt"
    VIRIDIS = "vtkMRMLColorTableNodeFileViridis.txt"
    CIVIDIS = "vtkMRMLColorTableNodeFileCividis.txt"

    @classmethod
    def _labels(cls):
        return {"DEFAULT": "Default (Inferno; Viridis for probabilities)", "INFERNO": "Inferno", "MAGMA": "Magma",
                "PLASMA": "Plasma", "VIRIDIS": "Viridis", "CIVIDIS": "Cividis"}


class FeatureMapReduction(_Labelled):
    """How `predict --feature-maps` reduces a layer's channels to one volume (`LAYER=mean`, `LAYER=max`)."""

    MEAN = "mean"
    MAX = "max"

    @classmethod
    def _labels(cls):
        return {"MEAN": "Channel mean", "MAX": "Channel maximum"}


class RankingScore(_Labelled):
    """`rankVolumeNodes`' score (`uncertaintyseg rank --score`): what orders the scene's volumes, most uncertain first."""

    MEAN_ENTROPY = "mean_entropy"
    MEAN_MI = "mean_mi"
    SEGMENT_ENTROPY = "segment_entropy"

    @classmethod
    def _labels(cls):
        return {"MEAN_ENTROPY": "Mean entropy (predicted foreground)", "MEAN_MI": "Mean mutual information (needs samples)",
                "SEGMENT_ENTROPY": "Segment entropy (most uncertain class)"}


def panelVisibility(parameters):
    """Which optional rows of the panel the current choices need: {row name: shown} (the Widget maps rows to widgets)."""
    precomputed = parameters.model == PRECOMPUTED
    calibration = parameters.calibration
    hasReference = parameters.reference is not None
    return {
        "modelFile": parameters.model == MODEL_FILE,
        "modelFolder": parameters.model == MODEL_FOLDER,
        "probabilitiesFile": precomputed,
        "classNames": precomputed,
        "method": not precomputed,
        "samples": not precomputed and parameters.method.drawsSamples,
        "calibration": not precomputed,
        "calibratorFolder": not precomputed and calibration is not CalibrationSource.NONE,
        "calibrationFit": not precomputed and calibration is CalibrationSource.FIT,
        "roi": hasReference,
        "roiMask": hasReference and parameters.roi is RegionOfInterest.MASK,
        "featureMapOptions": bool(parameters.createFeatureMaps),
    }
