"""Which run made which nodes, so that re-running replaces its own outputs and never another run's.

A run's key is its `runName`, or the ID of the parameter node it ran from. The key is stored on
the run's subject-hierarchy folder (item attribute) and on every node it created (node
attribute). Replacing a run removes its folder and everything in it; shared reliability charts
only lose that run's series (the scene drops a removed node from the chart's references).
"""

import vtk

from UncertaintySegSlicer.mrml.sceneChanges import removeNodeWithDependents

RUN_KEY_ATTRIBUTE = "UncertaintySeg.runKey"


def runKeyFor(runName=None, parameterNode=None):
    """The key of a run: its name, else its parameter node's ID (a `parameterNodeWrapper` or the MRML node); None: a new run."""
    if runName:
        return str(runName)
    if parameterNode is None:
        return None
    node = parameterNode if hasattr(parameterNode, "GetID") else getattr(parameterNode, "parameterNode", None)
    if node is None or not node.GetID():
        raise ValueError("parameterNode must be a parameter node in the scene (or its parameterNodeWrapper), "
                         f"found {type(parameterNode).__name__}: pass the module's parameter node, or a runName.")
    return f"parameterNode:{node.GetID()}"


def tagRun(scene, folderItemID, nodes, key):
    """Store `key` on the folder item and on each node (no-op without a key)."""
    if key is None:
        return
    scene.GetSubjectHierarchyNode().SetItemAttribute(folderItemID, RUN_KEY_ATTRIBUTE, key)
    for node in nodes:
        node.SetAttribute(RUN_KEY_ATTRIBUTE, key)


def runFolders(scene, key):
    """Subject-hierarchy folders of the runs with this key."""
    shNode = scene.GetSubjectHierarchyNode()
    items = vtk.vtkIdList()
    shNode.GetItemChildren(shNode.GetSceneItemID(), items, True)
    found = [items.GetId(index) for index in range(items.GetNumberOfIds())]
    return [item for item in found if shNode.HasItemAttribute(item, RUN_KEY_ATTRIBUTE)
            and shNode.GetItemAttribute(item, RUN_KEY_ATTRIBUTE) == key]


def removeRun(scene, key):
    """Remove the folders of the runs with `key`, every node in them (with display and storage nodes); returns how many."""
    if key is None:
        return 0
    shNode = scene.GetSubjectHierarchyNode()
    folders = runFolders(scene, key)
    for folderItemID in folders:
        children = vtk.vtkIdList()
        shNode.GetItemChildren(folderItemID, children, True)
        nodes = [shNode.GetItemDataNode(children.GetId(index)) for index in range(children.GetNumberOfIds())]
        for node in nodes:
            if node is not None:
                removeNodeWithDependents(node)
        shNode.RemoveItem(folderItemID, False, True)
    return len(folders)
