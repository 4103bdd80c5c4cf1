"""Adding to a scene all or nothing, and removing nodes with what hangs off them.

`temporaryNodes` removes every node added inside it (helpers such as a label map exported for a
moment); `removedOnError` removes them only when the block fails, so a run that fails part-way
leaves the scene as it was. Display and storage nodes go with their data node.
"""

from contextlib import contextmanager


def nodeIDs(scene):
    return {scene.GetNthNode(index).GetID() for index in range(scene.GetNumberOfNodes())}


def folderItemIDs(scene):
    import vtk

    shNode = scene.GetSubjectHierarchyNode()
    children = vtk.vtkIdList()
    shNode.GetItemChildren(shNode.GetSceneItemID(), children, True)
    return {children.GetId(index) for index in range(children.GetNumberOfIds())}


def removeNodeWithDependents(node):
    """Remove `node`, its display nodes, its storage nodes (Slicer leaves those behind otherwise) and its
    subject-hierarchy item (removed by the Subject hierarchy module's logic in the app, not without it)."""
    scene = node.GetScene()
    if scene is None:
        return
    shNode = scene.GetSubjectHierarchyNode()
    itemID = shNode.GetItemByDataNode(node)
    if itemID:
        shNode.RemoveItem(itemID, False, False)
    dependents = []
    for count, get in (("GetNumberOfDisplayNodes", "GetNthDisplayNode"), ("GetNumberOfStorageNodes", "GetNthStorageNode")):
        if hasattr(node, count):
            dependents += [getattr(node, get)(index) for index in range(getattr(node, count)())]
    scene.RemoveNode(node)
    for dependent in dependents:
        if dependent is not None and dependent.GetScene() is scene:
            scene.RemoveNode(dependent)


def _removeAddedSince(scene, before, itemsBefore):
    added = [scene.GetNodeByID(nodeID) for nodeID in nodeIDs(scene) - before]
    for node in added:
        if node is not None and node.GetScene() is scene:
            scene.RemoveNode(node)
    shNode = scene.GetSubjectHierarchyNode()
    newItems = folderItemIDs(scene) - itemsBefore
    for itemID in newItems:
        if shNode.GetItemParent(itemID) not in newItems:  # the top of a new branch: removed with its children
            shNode.RemoveItem(itemID, False, True)


@contextmanager
def temporaryNodes(scene):
    """Every node (and subject-hierarchy item) added inside the block is removed when it ends."""
    before, itemsBefore = nodeIDs(scene), folderItemIDs(scene)
    try:
        yield
    finally:
        _removeAddedSince(scene, before, itemsBefore)


@contextmanager
def removedOnError(scene):
    """Nodes and subject-hierarchy items added inside the block are removed if it raises; the error goes on."""
    before, itemsBefore = nodeIDs(scene), folderItemIDs(scene)
    try:
        yield
    except BaseException:
        _removeAddedSince(scene, before, itemsBefore)
        raise
