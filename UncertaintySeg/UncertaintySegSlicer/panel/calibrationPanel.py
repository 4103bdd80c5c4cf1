"""The panel's calibration-fitting section, free of Qt: whether 'Fit and save' can run, the pair list's text,
and pointing the parameters at a saved fit (the fitting itself is `mrml/calibrationFitting.py`)."""

from pathlib import Path

from UncertaintySegLib.calibration import FIT_REPORT_FILE
from UncertaintySegSlicer.panel.panelChoices import MODEL_FOLDER, PRECOMPUTED, CalibrationMethod, CalibrationSource
from UncertaintySegSlicer.panel.panelRun import RunSettings, isSet, modelSourceProblem


def fitFolderProblem(folder):
    """None when a fit may be saved into `folder` (new, empty, or an earlier fit's, which it replaces), else why not."""
    if not isSet(folder):
        return "Choose the folder to save the fitted calibrator in."
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        return f"{folder} is a file: choose a folder to save the calibrator in."
    if folder.is_dir() and any(folder.iterdir()) and not (folder / FIT_REPORT_FILE).is_file():
        return f"{folder} holds other files: choose an empty or new folder (an earlier fit's folder is replaced)."
    return None


def useFittedCalibration(parameters, fitted):
    """Point the panel's parameters at a saved fit: the calibrator folder, or for fine-tuning the new model folder."""
    if fitted.folder is None:
        raise ValueError("save the fitted calibration first (FittedCalibration.save): the background run reads it from its folder.")
    if fitted.isModel:
        parameters.model = MODEL_FOLDER
        parameters.modelFolder = Path(fitted.folder)
        parameters.calibration = CalibrationSource.NONE
    else:
        parameters.calibratorFolder = Path(fitted.folder)


def calibrationPairLabels(pairs):
    """One line per (volume, reference) pair for the panel's list; a node removed from the scene reads '(removed)'."""
    def name(node):
        return node.GetName() if node is not None and node.GetScene() is not None else "(removed)"
    return [f"{name(volume)}  \N{LEFT RIGHT ARROW}  {name(reference)}" for volume, reference in pairs]


def checkFitParameters(parameters):
    """None when 'Fit and save' can run, else what to fix, in a sentence (the button's tooltip)."""
    if parameters.model == PRECOMPUTED:
        return "Saved probabilities have no logits to calibrate: choose a model."
    pairs = list(parameters.calibrationPairs)
    if not pairs:
        return "Add at least one (volume, reference) pair."
    for index, (volume, reference) in enumerate(pairs):
        if volume is None or reference is None or volume.GetScene() is None or reference.GetScene() is None:
            return f"Pair {index + 1} lost its volume or its reference: remove it."
    if parameters.calibrationMethod is CalibrationMethod.FINETUNE and len(pairs) < 2:
        return "Fine-tuning needs two or more pairs (one is held out to stop early)."
    return modelSourceProblem(RunSettings.fromParameters(parameters)) or fitFolderProblem(parameters.calibratorFolder)
