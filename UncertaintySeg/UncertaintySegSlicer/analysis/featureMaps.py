"""Feature-map volumes (explainability) in a run's subject-hierarchy folder.

    nodes = addFeatureMaps(inputVolume, result.folderItemID, model="hippocampus")          # computed here
    nodes = addFeatureMapFolder(result.folderItemID, "results/case")                        # `predict --feature-maps`

One scalar volume per map and kept channel, named `<input> <layer> <reduction>` (channels:
`<layer> channel <c>`), shown in grey or Viridis with the window fixed to the map's own
[min, max]. A folder tagged with a run key passes the key on, so re-running that run removes
the maps with the rest. The maps lie on the input's grid, so they go under the input's parent
transform (as the run's other outputs in the folder do). Qt-free; torch and MONAI are imported
only when maps are computed.
"""

import json
from pathlib import Path

from UncertaintySegSlicer.mrml.colors import VIRIDIS
from UncertaintySegSlicer.mrml.display import setFixedDisplayRange
from UncertaintySegSlicer.mrml.folders import placeInFolder
from UncertaintySegSlicer.mrml.runs import RUN_KEY_ATTRIBUTE
from UncertaintySegSlicer.mrml.volumes import addVolumeNode, volumeFromNode

GREY = "vtkMRMLColorTableNodeGrey"
FEATURE_MAP_COLORS = {"grey": GREY, "viridis": VIRIDIS}


def channelLabels(key, count):
    """Node-name suffixes of a map's components: `<layer> mean` for one, `<layer> channel <c>` for chosen channels."""
    layer, _, reduction = key.rpartition("_")
    if count == 1 and not reduction.startswith("c"):
        return [f"{layer} {reduction}"]
    channels = reduction[1:].split("-") if reduction.startswith("c") else [str(index) for index in range(count)]
    if len(channels) != count:
        channels = [str(index) for index in range(count)]
    return [f"{layer} channel {channel}" for channel in channels]


def folderTransformNodeID(scene, folderItemID):
    """The parent transform of the run's outputs in the folder (the first volume or segmentation in it); None: none."""
    import vtk

    shNode = scene.GetSubjectHierarchyNode()
    children = vtk.vtkIdList()
    shNode.GetItemChildren(folderItemID, children)
    for index in range(children.GetNumberOfIds()):
        node = shNode.GetItemDataNode(children.GetId(index))
        if node is not None and node.IsA("vtkMRMLTransformableNode"):
            return node.GetTransformNodeID()
    return None


def addFeatureMapNodes(scene, folderItemID, maps, geometry, namePrefix, colorMap="grey", gridVolume=None):
    """Volume nodes for `{key: (I, J, K) or (k, I, J, K) array}` on `geometry`, placed in the folder; returns them.

    `gridVolume`: the volume whose grid `geometry` is; the maps go under its parent transform. None: under the
    transform of the run's outputs already in the folder (`folderTransformNodeID`).
    """
    import numpy as np

    if colorMap not in FEATURE_MAP_COLORS:
        raise ValueError(f"colorMap '{colorMap}': expected one of {', '.join(FEATURE_MAP_COLORS)}.")
    transformNodeID = gridVolume.GetTransformNodeID() if gridVolume is not None else folderTransformNodeID(scene, folderItemID)
    shNode = scene.GetSubjectHierarchyNode()
    runKey = shNode.GetItemAttribute(folderItemID, RUN_KEY_ATTRIBUTE) if shNode.HasItemAttribute(folderItemID, RUN_KEY_ATTRIBUTE) else None
    nodes = []
    for key, array in maps.items():
        array = np.asarray(array, dtype=np.float32)
        components = array[np.newaxis] if array.ndim == 3 else array
        for label, component in zip(channelLabels(key, components.shape[0]), components):
            node = addVolumeNode(scene, component, geometry, f"{namePrefix} {label}", parentTransformNodeID=transformNodeID)
            low, high = float(component.min()), float(component.max())
            setFixedDisplayRange(node, FEATURE_MAP_COLORS[colorMap], low, high if high > low else low + 1.0)
            if runKey:
                node.SetAttribute(RUN_KEY_ATTRIBUTE, runKey)
            placeInFolder(folderItemID, node)
            nodes.append(node)
    return nodes


def addFeatureMaps(inputVolume, folderItemID, model="hippocampus", layers=None, colorMap="grey", device="auto",
                   trustBundle=False):
    """Compute feature maps of `model`'s first network on `inputVolume` (in this process) and add them to the folder.

    `layers`: `LAYER[=mean|max|0,3,5]` strings as `predict --feature-maps` takes; None: the default
    layers (each UNet encoder and decoder block's last convolution), channel mean.
    """
    from UncertaintySegLib.predict.feature_maps import (
        default_layers,
        feature_maps,
        parse_feature_map,
    )
    from UncertaintySegLib.predict.inference import check_image
    from UncertaintySegLib.predict.model_loading import load_model

    loaded = load_model(model, trust_bundle=trustBundle)
    network = loaded.network
    requests = [parse_feature_map(layer) for layer in (layers if layers is not None else default_layers(network))]
    volume = volumeFromNode(inputVolume)
    maps = feature_maps(network, loaded.spec, check_image(volume, loaded.spec), requests, device=device)
    return addFeatureMapNodes(inputVolume.GetScene(), folderItemID, maps, volume.geometry, inputVolume.GetName(), colorMap,
                              gridVolume=inputVolume)


def addFeatureMapFolder(folderItemID, predictionFolder, scene=None, namePrefix=None, colorMap="grey"):
    """The `feature_maps/` volumes that `predict --feature-maps` listed in the folder's run.json, added to the folder
    (under the parent transform of the run's outputs there)."""
    import slicer
    from UncertaintySegLib.common.errors import InputError
    from UncertaintySegLib.predict.io import read_volume

    scene = scene or slicer.mrmlScene
    folder = Path(predictionFolder)
    record = json.loads((folder / "run.json").read_text())
    files = record.get("outputs", {}).get("feature_maps")
    if not files:
        raise InputError(f"'{folder}' has no feature maps: run `uncertaintyseg predict ... --feature-maps` to write them.")
    prefix = namePrefix or Path(str(record.get("input") or folder.name)).name.split(".")[0]
    nodes = []
    for key, relative in files.items():
        volume = read_volume(folder / relative)
        nodes += addFeatureMapNodes(scene, folderItemID, {key: volume.array}, volume.geometry, prefix, colorMap)
    return nodes
