"""Volume nodes <-> core `Volume`s (arrays in (I, J, K) order, ITK/LPS geometry).

Slicer works in RAS and `arrayFromVolume` is (K, J, I); the core works in LPS and (I, J, K).
Both conversions are here and nowhere else. A geometry is a node's own grid, in its local RAS: a
node under a parent transform (a registered or moved volume) is drawn through that transform, so a
node made on its grid must observe the same transform (`parentTransformNodeID`) to be drawn on it.
"""

import numpy as np
import slicer

from UncertaintySegLib.predict.io import Geometry, Volume
from UncertaintySegSlicer.mrml.names import nodeName

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def ijkToRASFromGeometry(geometry):
    """4x4 IJK-to-RAS matrix from LPS origin/spacing/direction."""
    direction = np.asarray(geometry.direction, dtype=float).reshape(3, 3)
    matrix = np.eye(4)
    matrix[:3, :3] = LPS_TO_RAS @ direction @ np.diag(geometry.spacing)
    matrix[:3, 3] = LPS_TO_RAS @ np.asarray(geometry.origin, dtype=float)
    return matrix


def geometryFromNode(volumeNode):
    directions = np.zeros((3, 3))
    volumeNode.GetIJKToRASDirections(directions)
    return Geometry(
        origin=tuple(float(v) for v in LPS_TO_RAS @ np.asarray(volumeNode.GetOrigin())),
        spacing=tuple(float(v) for v in volumeNode.GetSpacing()),
        direction=tuple(float(v) for v in (LPS_TO_RAS @ directions).ravel()),
    )


def volumeFromNode(volumeNode):
    """A copy of the node's voxels as (I, J, K) (or (C, I, J, K) for vector volumes) with geometry."""
    if volumeNode is None or volumeNode.GetImageData() is None:
        raise ValueError("the input volume node has no image data: load a volume first.")
    array = slicer.util.arrayFromVolume(volumeNode)
    array = array.transpose(3, 2, 1, 0) if array.ndim == 4 else array.transpose(2, 1, 0)
    return Volume(np.array(array), geometryFromNode(volumeNode))


def addVolumeNode(scene, array, geometry, name, className="vtkMRMLScalarVolumeNode", parentTransformNodeID=None):
    """New volume node from an (I, J, K) array, with display nodes; the array is copied.

    `parentTransformNodeID`: the transform the node observes, that of the volume whose grid `geometry` is
    (`inputVolume.GetTransformNodeID()`); None: none, the geometry is in world RAS.
    """
    node = scene.AddNewNodeByClass(className, nodeName(scene, name))
    node.SetAndObserveTransformNodeID(parentTransformNodeID)
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(ijkToRASFromGeometry(geometry)))
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(np.asarray(array).transpose(2, 1, 0)))
    node.CreateDefaultDisplayNodes()
    return node
