"""The panel's "Compare annotators" button, free of Qt: the panel's reference (annotator 1) and its extra annotators
against the probabilities of the panel's last run (`annotators.annotatorAgreementTable`), in the panel's ROI.

    problem = checkAnnotatorParameters(parameterNode, inputVolume, runResult)   # None, or the button's tooltip
    tableNode = compareAnnotators(parameterNode, inputVolume, runResult)       # also in parameterNode.annotatorTable

`inputVolume` and `runResult` are the last run's input and its `RunResult` (None before the first run);
`parameterNode` is the module's `@parameterNodeWrapper` (anything with the same attributes will do).
"""

from UncertaintySegSlicer.analysis.annotators import annotatorAgreementTable, missingProbabilityMaps, repeatedNodeNames
from UncertaintySegSlicer.panel.panelChoices import RegionOfInterest
from UncertaintySegSlicer.mrml.tables import retireReplacedTable

ANNOTATOR_TABLE_NAME = "annotator agreement"


def annotatorNodes(parameters):
    """The annotators compared: the panel's reference first, then the extra annotators in list order."""
    return [node for node in (parameters.reference, *parameters.annotatorReferences) if node is not None]


def annotatorListLabels(extraAnnotators):
    """The list's lines for the extra annotators: numbered after the reference (annotator 1)."""
    return [f"annotator {number}: {node.GetName() if node is not None else '(removed)'}"
            for number, node in enumerate(extraAnnotators, start=2)]


def checkAnnotatorParameters(parameters, inputVolume, runResult):
    """None when the annotators can be compared with the last run's probabilities, else what to do, in a sentence."""
    if runResult is None or inputVolume is None:
        return "Apply first: the annotators are compared with the model's probabilities from the panel's last run."
    if inputVolume.GetScene() is None:
        return "The last run's input volume was removed from the scene: Apply again."
    missing = missingProbabilityMaps(runResult, inputVolume.GetScene())
    if missing:
        return (f"The last run has no probability map of {', '.join(missing)} in the scene: tick the probability maps "
                "(Outputs) and Apply again.")
    if parameters.reference is None:
        return "Select a reference segmentation (Outputs): it is annotator 1."
    nodes = annotatorNodes(parameters)
    if len(nodes) < 2:
        return "Add another annotator's segmentation: at least 2 annotators are compared (the reference is annotator 1)."
    repeated = repeatedNodeNames(nodes)
    if repeated:
        return f"{', '.join(repeated)} is listed more than once (the reference counts as annotator 1): remove the copy."
    if parameters.roi is RegionOfInterest.MASK and parameters.roiMask is None:
        return "Select the ROI mask (Outputs), or another ROI."
    return None


def compareAnnotators(parameters, inputVolume, runResult, scene=None):
    """The agreement table of the panel's annotators and the last run, in the panel's ROI ("bbox": annotator 1's box).
    It replaces the parameter node's previous table (removed, its name kept) and is stored in `parameters.annotatorTable`."""
    scene = scene or inputVolume.GetScene()
    roi = parameters.roiMask if parameters.roi is RegionOfInterest.MASK else parameters.roi.value
    tableNode = annotatorAgreementTable(inputVolume, runResult, annotatorNodes(parameters), roi=roi,
                                        tableName=ANNOTATOR_TABLE_NAME, scene=scene)
    previous = parameters.annotatorTable
    parameters.annotatorTable = tableNode
    retireReplacedTable(previous, tableNode, scene)
    return tableNode
