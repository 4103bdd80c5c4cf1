"""The panel's "Rank volumes in the scene" button, free of Qt: the scene's volumes ranked by uncertainty with the
panel's model, method, samples and device, in Slicer's process (`ranking.rankVolumeNodes`, the core of `uncertaintyseg rank`).

    problem = checkRankParameters(parameterNode)      # None, or why the button is disabled (its tooltip)
    tableNode = rankScene(parameterNode, progress)    # also stored in parameterNode.rankingTable

`parameterNode` is the module's `@parameterNodeWrapper` (anything with the same attributes will do).
"""

from UncertaintySegSlicer.panel.panelChoices import RankingScore, UncertaintyMethod
from UncertaintySegSlicer.panel.panelRun import RunSettings, modelSourceProblem
from UncertaintySegSlicer.analysis.ranking import rankableVolumeNodes

RANKING_TABLE_NAME = "uncertainty ranking"


def checkRankParameters(parameters, scene=None):
    """None when the scene's volumes can be ranked with the panel's settings, else what to fix, in a sentence."""
    import slicer

    settings = RunSettings.fromParameters(parameters)
    if settings.usesSavedProbabilities:
        return "Ranking runs a model on every volume: choose a model (not saved probabilities)."
    problem = modelSourceProblem(settings)
    if problem:
        return problem
    if parameters.rankingScore is RankingScore.MEAN_MI and settings.method in (UncertaintyMethod.AUTO, UncertaintyMethod.SOFTMAX):
        return "Mean mutual information needs several samples: choose MC dropout, an ensemble or TTA as the method, or another score."
    if not rankableVolumeNodes(scene or slicer.mrmlScene):
        return "No volumes to rank: load the unlabelled scans first (label maps and UncertaintySeg's outputs are not ranked)."
    return None


def rankScene(parameters, scene=None, progress=None):
    """Rank the scene's volumes (most uncertain first) into a new table node, which replaces the parameter node's
    previous ranking table (removed from the scene, its name kept) and is stored in `parameters.rankingTable`; returns
    it. A ranking that fails leaves the previous table in place."""
    import slicer

    from UncertaintySegSlicer.analysis.ranking import rankVolumeNodes
    from UncertaintySegSlicer.mrml.tables import retireReplacedTable

    scene = scene or slicer.mrmlScene
    settings = RunSettings.fromParameters(parameters)
    model = settings.modelArguments()
    tableNode = rankVolumeNodes(model=model["model"], trustBundle=model.get("trustBundle", False),
                                method=settings.method.cliMethod, samples=settings.samples,
                                score=parameters.rankingScore.value, device=settings.device, tableName=RANKING_TABLE_NAME,
                                scene=scene, progress=progress)
    previous = parameters.rankingTable
    parameters.rankingTable = tableNode
    retireReplacedTable(previous, tableNode, scene)
    return tableNode
