"""Table nodes of one run: metrics against a reference, and per-segment uncertainty with a point to jump to.

The numbers are the core's (`case_evaluation.evaluate_case`, `segment_scores.segment_scores`,
the CLI's segments.csv), written as they are: NaN where the core has None or NaN.

A segment table's centre columns are RAS of the input volume's own grid, before any parent transform
(where the voxel is in the volume, as the CLI would say). The table references the transform the run's
outputs observe (node reference `CENTRE_TRANSFORM_ROLE`); `segmentCentreWorldRAS` maps a centre through
it to world RAS, where the views show the segment, following the transform as it is now.
"""

import math

import numpy as np
import vtk
from vtk.util import numpy_support

from UncertaintySegSlicer.mrml.names import nodeName
from UncertaintySegSlicer.mrml.volumes import ijkToRASFromGeometry

METRIC_COLUMNS = ("metric", "value")
CENTRE_COLUMNS = ("centre R", "centre A", "centre S")
SEGMENT_COLUMNS = ("class", "component", "voxels", "volume (ml)", "mean entropy", "mean MI", "flag") + CENTRE_COLUMNS
CENTRE_TRANSFORM_ROLE = "UncertaintySeg.centreTransform"  # the segment table's reference to the input's parent transform
FLAG_TEXT = {True: "check", False: "ok", None: ""}


def _column(name, values):
    """A VTK array named `name`: strings for str values, else numbers (int64 for integers, float64 otherwise)."""
    if values and isinstance(values[0], str):
        array = vtk.vtkStringArray()
        for value in values:
            array.InsertNextValue(value)
    else:
        numbers = np.array([np.nan if value is None else value for value in values])
        numbers = numbers.astype(np.int64 if np.issubdtype(numbers.dtype, np.integer) else np.float64)
        array = numpy_support.numpy_to_vtk(np.ascontiguousarray(numbers), deep=1)
    array.SetName(name)
    return array


def addTableNode(scene, name, columns, descriptions=None, units=None):
    """New table node from `columns` ({name: list of values}, all of one length), in that column order."""
    tableNode = scene.AddNewNodeByClass("vtkMRMLTableNode", nodeName(scene, name))
    table = tableNode.GetTable()
    for columnName, values in columns.items():
        table.AddColumn(_column(columnName, list(values)))
    for columnName, text in (descriptions or {}).items():
        tableNode.SetColumnDescription(columnName, text)
    for columnName, unit in (units or {}).items():
        tableNode.SetColumnUnitLabel(columnName, unit)
    tableNode.SetUseColumnTitleAsColumnHeader(True)
    tableNode.Modified()
    return tableNode


def retireReplacedTable(previous, tableNode, scene):
    """Remove `previous`, the table `tableNode` replaces, from `scene` (if there) and give `tableNode` its name."""
    if previous is not None and previous.GetScene() is scene:
        name = previous.GetName()
        scene.RemoveNode(previous)
        tableNode.SetName(name)  # the new table was named uniquely beside the old one; it takes the old one's name


def addMetricsTable(scene, name, metrics):
    """One row per score of `metrics` (`evaluate_case`'s scores plus "voxels"), in their order."""
    return addTableNode(scene, name, {"metric": list(metrics), "value": [float("nan") if v is None else float(v) for v in metrics.values()]},
                        descriptions={"value": "ECE/MCE/ACE, NLL and Brier inside the ROI; Dice and HD95 (mm) on the whole volume"})


def addSegmentTable(scene, name, segments, centres, geometry, transformNodeID=None):
    """One row per `SegmentScore` (whole class, then its components) with the RAS point of its `SegmentCentre`.

    The point is in `geometry`'s RAS (the input's grid); `transformNodeID`: the input's parent transform, kept as the
    table's `CENTRE_TRANSFORM_ROLE` reference so that `segmentCentreWorldRAS` maps points to world RAS.
    """
    if [(s.class_index, s.component, s.voxels) for s in segments] != [(c.class_index, c.component, c.voxels) for c in centres]:
        raise ValueError("segment scores and segment centres describe different segments: compute both from one label map.")
    ijkToRAS = ijkToRASFromGeometry(geometry)
    points = [(ijkToRAS @ [*centre.voxel, 1.0])[:3] if centre.voxel is not None else (math.nan,) * 3 for centre in centres]
    columns = {
        "class": [s.class_name for s in segments], "component": [s.component for s in segments],
        "voxels": [s.voxels for s in segments], "volume (ml)": [s.volume_ml for s in segments],
        "mean entropy": [s.mean_entropy for s in segments],
        "mean MI": [math.nan if s.mean_mutual_information is None else s.mean_mutual_information for s in segments],
        "flag": [FLAG_TEXT[s.flagged] for s in segments],
        **{column: [float(point[axis]) for point in points] for axis, column in enumerate(CENTRE_COLUMNS)},
    }
    tableNode = addTableNode(scene, name, columns, descriptions={
        "component": "0: the whole class; 1, 2, ...: its connected components, largest first",
        "mean entropy": "mean predictive entropy over the segment's voxels",
        "mean MI": "mean mutual information (needs several samples)",
        "flag": "check: mean entropy above the flag threshold; empty without a threshold",
        **{column: "a voxel of the segment nearest its centroid: RAS (mm) of the input volume's grid, before its parent "
                   "transform (jumping to the segment maps it to world RAS)" for column in CENTRE_COLUMNS},
    }, units={"volume (ml)": "ml", "mean entropy": "nats", "mean MI": "nats", **{column: "mm" for column in CENTRE_COLUMNS}})
    if transformNodeID:
        tableNode.SetNodeReferenceID(CENTRE_TRANSFORM_ROLE, transformNodeID)
    return tableNode


def segmentCentreRAS(tableNode, row):
    """(R, A, S) of row `row` of a segment table, as stored: the input volume's local RAS; None for a class with no voxel."""
    table = tableNode.GetTable()
    if not 0 <= row < table.GetNumberOfRows():
        raise IndexError(f"row {row} is outside segment table '{tableNode.GetName()}' ({table.GetNumberOfRows()} rows).")
    columns = [table.GetColumnByName(name) for name in CENTRE_COLUMNS]
    if any(column is None for column in columns):
        raise ValueError(f"table '{tableNode.GetName()}' has no {', '.join(CENTRE_COLUMNS)} columns: "
                         "expected a segment table of UncertaintySeg.")
    point = tuple(float(column.GetValue(row)) for column in columns)
    return None if any(math.isnan(value) for value in point) else point


def segmentCentreWorldRAS(tableNode, row):
    """(R, A, S) in world RAS of row `row`'s centre: through the table's `CENTRE_TRANSFORM_ROLE` transform (linear or not,
    as it is now), unchanged without one; None for a class with no voxel."""
    point = segmentCentreRAS(tableNode, row)
    transformNode = tableNode.GetNodeReference(CENTRE_TRANSFORM_ROLE)
    if point is None or transformNode is None:
        return point
    toWorld = vtk.vtkGeneralTransform()
    transformNode.GetTransformToWorld(toWorld)
    return tuple(float(value) for value in toWorld.TransformPoint(point))
