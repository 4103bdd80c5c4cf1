"""Annotation ranking in the scene: the scalar volumes ordered by uncertainty, most uncertain first.

The same core as `uncertaintyseg rank` (`UncertaintySegLib.ranking.rank_volumes`), on volume nodes
instead of files; the result is a table node (rank, volume, score, every score, predicted
foreground volume, node ID), so the numbers match the CLI's ranking.csv for the same images:

    from UncertaintySegSlicer.analysis.ranking import rankVolumeNodes
    tableNode = rankVolumeNodes(model="hippocampus-dice", method="ensemble", score="mean_mi")

Label maps and the volumes UncertaintySeg's runs created (inside a run's subject-hierarchy folder)
are not ranked; pass `volumeNodes` to choose the volumes yourself. Nodes are never modified.
"""

import slicer

from UncertaintySegSlicer.mrml.tables import addTableNode
from UncertaintySegSlicer.mrml.volumes import volumeFromNode

RUN_FOLDER_PREFIX = "UncertaintySeg "  # logic.py names each run's folder "UncertaintySeg <model>: <input>"
RANKING_TABLE_COLUMNS = ("rank", "volume", "score", "mean_entropy", "mean_mi", "segment_entropy", "foreground_voxels",
                         "foreground_ml", "region", "node ID")


def isRunOutput(volumeNode):
    """True for a volume inside a run's subject-hierarchy folder (a probability, entropy or MI map)."""
    shNode = volumeNode.GetScene().GetSubjectHierarchyNode()
    itemID = shNode.GetItemByDataNode(volumeNode)
    while itemID and itemID != shNode.GetSceneItemID():
        itemID = shNode.GetItemParent(itemID)
        if itemID and shNode.GetItemLevel(itemID) == "Folder" and shNode.GetItemName(itemID).startswith(RUN_FOLDER_PREFIX):
            return True
    return False


def rankableVolumeNodes(scene):
    """The scene's scalar volumes other than label maps and run outputs, in scene order."""
    # not GetNodesByClass: its collection is the caller's to delete, and Python never does, so every node stayed referenced
    volumeClass = "vtkMRMLScalarVolumeNode"
    found = [scene.GetNthNodeByClass(index, volumeClass) for index in range(scene.GetNumberOfNodesByClass(volumeClass))]
    return [node for node in found if not node.IsA("vtkMRMLLabelMapVolumeNode") and node.GetImageData() is not None
            and not isRunOutput(node)]


def rankVolumeNodes(volumeNodes=None, model="hippocampus", method=None, samples=20, seed=0, score="mean_entropy",
                    device="auto", tableName="uncertainty ranking", scene=None, progress=None, trustBundle=False):
    """Rank `volumeNodes` (default: `rankableVolumeNodes(scene)`) by `score` and add a table node, returned.

    `model`: a bundled model name, a model path, or a loaded model; `method`, `samples`, `seed` as `logic.run`;
    `score`: "mean_entropy", "mean_mi" (needs several samples) or "segment_entropy". One row per volume,
    most uncertain first; equal scores by volume name, then scene order. `trustBundle` as `logic.run`.
    """
    from pathlib import Path

    from UncertaintySegLib.common.errors import InputError
    from UncertaintySegLib.predict.model_loading import load_model
    from UncertaintySegLib.analysis.ranking import check_score, rank_volumes
    from UncertaintySegLib.predict.sampling import SamplingPlan, parse_method

    scene = scene or slicer.mrmlScene
    check_score(score)
    nodes = rankableVolumeNodes(scene) if volumeNodes is None else list(volumeNodes)
    if not nodes:
        raise InputError("no volumes to rank: load the unlabelled scans into the scene first (label maps and "
                         "UncertaintySeg's own output volumes are not ranked).")
    loadedModel = load_model(model, trust_bundle=trustBundle) if isinstance(model, (str, Path)) else model
    plan = SamplingPlan(methods=parse_method(method), samples=samples, seed=seed) if method else None
    cases = []
    for node in nodes:
        if node is None or node.GetScene() is not scene or node.GetImageData() is None:
            raise InputError("a volume to rank is not in the scene or has no image data: load it again or leave it out.")
        cases.append((node.GetName(), lambda node=node: volumeFromNode(node)))
    ranked = rank_volumes(cases, loadedModel, plan, score, device, progress)
    nodeIDs = [nodes[case.index].GetID() for case in ranked]  # names may repeat, IDs do not
    rows = [case.to_row() for case in ranked]
    columns = {"rank": [row["rank"] for row in rows], "volume": [row["case"] for row in rows],
               **{column: [row[column] for row in rows] for column in RANKING_TABLE_COLUMNS[2:-1]}, "node ID": nodeIDs}
    return addTableNode(scene, tableName, columns, descriptions={
        "score": f"{score}: the ranking's score (most uncertain first)",
        "mean_entropy": "mean predictive entropy over the predicted foreground",
        "mean_mi": "mean mutual information over the predicted foreground (needs several samples)",
        "segment_entropy": "highest per-class mean entropy of the predicted segments",
        "region": "foreground, or whole volume where nothing was predicted as foreground",
    }, units={"score": "nats", "mean_entropy": "nats", "mean_mi": "nats", "segment_entropy": "nats", "foreground_ml": "ml"})
