"""Subject-hierarchy folders: one per run, holding its output nodes."""

from UncertaintySegSlicer.mrml.names import folderName


def createFolder(scene, name):
    shNode = scene.GetSubjectHierarchyNode()
    return shNode.CreateFolderItem(shNode.GetSceneItemID(), folderName(scene, name))


def placeInFolder(folderItemID, node):
    """Move `node` under the folder (creating its item where the Slicer app has not)."""
    shNode = node.GetScene().GetSubjectHierarchyNode()
    itemID = shNode.GetItemByDataNode(node)
    if itemID:
        shNode.SetItemParent(itemID, folderItemID)
    else:
        shNode.CreateItem(folderItemID, node)
