"""Names for the nodes and folders a run adds: the name asked for while nothing in the scene has it.

`vtkMRMLScene.GenerateUniqueName` remembers every name it handed out, also those of nodes removed since,
so a run that replaced its earlier outputs came back as "<input> entropy_1", then "_2", and a lookup
by name missed it. Here a name is free when no node (or, for folders, no subject-hierarchy item) has it.
"""

import itertools


def _firstFree(name, taken):
    return next(candidate for candidate in (name if index == 0 else f"{name}_{index}" for index in itertools.count())
                if not taken(candidate))


def nodeName(scene, name):
    """`name`, or `name_1`, `name_2`, ... when a node of the scene has it."""
    return _firstFree(name, lambda candidate: scene.GetFirstNodeByName(candidate) is not None)


def folderName(scene, name):
    """`name`, or `name_1`, `name_2`, ... when a subject-hierarchy item of the scene has it."""
    shNode = scene.GetSubjectHierarchyNode()
    return _firstFree(name, lambda candidate: shNode.GetItemByName(candidate) != 0)
