"""A run on a volume under a parent transform (registered or moved), in a real MRML scene (slicer-core).

The input is a small synthetic volume with a bright blob, placed under a translation of 40 mm in R
(a `vtkMRMLLinearTransformNode`) or under a non-linear one (a `vtkMRMLGridTransformNode` whose
displacement is 30 mm in A everywhere); the prediction is made by hand on the input's grid, so no
model runs. The run's outputs must observe the input's transform, the overlay must be drawn where
the input's blob is in world coordinates (a headless slice render), the segmentation must lie on the
input, jump-to-segment must centre the views on the segment's world position, and a label-map
reference under another transform must be refused instead of compared voxel by voxel.
"""

import json

import numpy as np
import pytest
from slicer_scene import addSliceView, rasToSlicePixel, renderSlice

slicer = pytest.importorskip("slicer", reason="slicer-core is not installed (pip install slicer-core)")
vtk = pytest.importorskip("vtk")

from UncertaintySegLib.common.errors import InputError  # noqa: E402
from UncertaintySegLib.predict.io import Geometry, Volume, write_volume  # noqa: E402
from UncertaintySegLib.predict.pipeline import Prediction  # noqa: E402
from UncertaintySegSlicer.analysis.featureMaps import addFeatureMapFolder, addFeatureMapNodes  # noqa: E402
from UncertaintySegSlicer.mrml.logic import UncertaintySegLogicBase  # noqa: E402
from UncertaintySegSlicer.mrml.reference import labelsFromReferenceNode, maskFromNode  # noqa: E402
from UncertaintySegSlicer.mrml.segmentation import addSegmentationFromLabels  # noqa: E402
from UncertaintySegSlicer.mrml.volumes import addVolumeNode, ijkToRASFromGeometry  # noqa: E402

CLASSES = ("background", "blob")
SHAPE = (24, 24, 5)
GEOMETRY = Geometry(origin=(10.0, -20.0, 5.0), spacing=(2.0, 2.0, 3.0), direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
BLOB = (slice(4, 10), slice(6, 12), slice(None))  # 6 x 6 voxels (12 x 12 mm) on every slice
SHIFTS = {"linear": (40.0, 0.0, 0.0), "grid": (0.0, 30.0, 0.0)}  # local RAS -> world RAS, everywhere


def blobPrediction():
    """P(blob) 0.9 on the blob and 0.01 elsewhere, with its entropy, a mutual information map and labels."""
    foreground = np.full(SHAPE, 0.01, np.float32)
    foreground[BLOB] = 0.9
    probabilities = np.stack([1.0 - foreground, foreground])
    entropy = -(probabilities * np.log(probabilities)).sum(axis=0).astype(np.float32)
    return Prediction(probabilities=probabilities, entropy=entropy, labels=probabilities.argmax(axis=0).astype(np.uint8),
                      class_names=CLASSES, geometry=GEOMETRY, mutual_information=0.5 * entropy, sampling={"method": "by hand"})


def addTransform(scene, kind):
    """A parent transform moving local RAS by SHIFTS[kind] in world RAS: linear, or a displacement grid (non-linear)."""
    shift = SHIFTS[kind]
    if kind == "linear":
        node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "registration")
        matrix = vtk.vtkMatrix4x4()
        for axis in range(3):
            matrix.SetElement(axis, 3, shift[axis])
        node.SetMatrixTransformToParent(matrix)
        return node
    grid = vtk.vtkImageData()
    grid.SetOrigin(-400.0, -400.0, -400.0)
    grid.SetSpacing(200.0, 200.0, 200.0)
    grid.SetDimensions(5, 5, 5)
    grid.AllocateScalars(vtk.VTK_DOUBLE, 3)
    from vtk.util import numpy_support

    numpy_support.vtk_to_numpy(grid.GetPointData().GetScalars())[:] = shift
    transform = slicer.vtkOrientedGridTransform()
    transform.SetDisplacementGridData(grid)
    transform.SetInterpolationModeToLinear()
    node = scene.AddNewNodeByClass("vtkMRMLGridTransformNode", "warp")
    node.SetAndObserveTransformToParent(transform)
    return node


def matrixOf(node):
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def localRAS(ijk):
    return (ijkToRASFromGeometry(GEOMETRY) @ [*ijk, 1.0])[:3]


def blobCentreIJK():
    return [np.mean([axis.start, axis.stop - 1]) if axis.start is not None else (SHAPE[2] - 1) // 2 for axis in BLOB]


@pytest.fixture(params=sorted(SHIFTS))
def transformed_run(request, mrml_scene):
    """A Red slice view, the input (blob 100, elsewhere 10) under a transform, and a run showing P(blob) over it."""
    scene, appLogic = mrml_scene
    sliceLogic = addSliceView(appLogic)
    image = np.full(SHAPE, 10.0, np.float32)
    image[BLOB] = 100.0
    inputNode = addVolumeNode(scene, image, GEOMETRY, "moved case")
    transformNode = addTransform(scene, request.param)
    inputNode.SetAndObserveTransformNodeID(transformNode.GetID())
    before = (slicer.util.arrayFromVolume(inputNode).copy(), matrixOf(inputNode), inputNode.GetTransformNodeID(), inputNode.GetMTime())
    logic = UncertaintySegLogicBase()
    logic.applicationLogic = appLogic
    result = logic.addPredictionToScene(inputNode, blobPrediction(), "by hand", overlay="blob", overlayOpacity=0.6)
    return dict(scene=scene, sliceLogic=sliceLogic, input=inputNode, transform=transformNode, kind=request.param,
                shift=np.array(SHIFTS[request.param]), before=before, result=result, logic=logic)


def test_every_output_on_the_inputs_grid_observes_the_inputs_transform(transformed_run, tmp_path):
    run, result = transformed_run, transformed_run["result"]
    transformID = run["transform"].GetID()
    outputs = [*result.probabilityNodes.values(), result.entropyNode, result.mutualInformationNode, result.segmentationNode]
    assert all(node is not None for node in outputs)
    assert {node.GetName(): node.GetTransformNodeID() for node in outputs} == {node.GetName(): transformID for node in outputs}
    # feature maps added to the run's folder (as the panel does, from a predict folder) go under it too
    maps = addFeatureMapNodes(run["scene"], result.folderItemID, {"layer_mean": np.ones(SHAPE)}, GEOMETRY, "moved case")
    folder = tmp_path / "predicted"
    write_volume(folder / "feature_maps" / "layer_max.nrrd", Volume(np.ones(SHAPE, np.float32), GEOMETRY))
    record = {"input": "case.nii.gz", "outputs": {"feature_maps": {"layer_max": "feature_maps/layer_max.nrrd"}}}
    (folder / "run.json").write_text(json.dumps(record))
    maps += addFeatureMapFolder(result.folderItemID, folder, scene=run["scene"])
    assert [node.GetTransformNodeID() for node in maps] == [transformID, transformID]
    # the input itself is left as it was: voxels, geometry, transform, not even touched
    voxels, matrix, inputTransformID, mtime = run["before"]
    assert np.array_equal(slicer.util.arrayFromVolume(run["input"]), voxels) and np.array_equal(matrixOf(run["input"]), matrix)
    assert run["input"].GetTransformNodeID() == inputTransformID and run["input"].GetMTime() == mtime


def test_slice_view_draws_the_overlay_where_the_input_is_in_world_coordinates(transformed_run):
    run = transformed_run
    sliceLogic, sliceNode = run["sliceLogic"], run["sliceLogic"].GetSliceNode()
    composite = sliceLogic.GetSliceCompositeNode()
    assert composite.GetBackgroundVolumeID() == run["input"].GetID()
    assert composite.GetForegroundVolumeID() == run["result"].probabilityNodes["blob"].GetID()
    local = localRAS(blobCentreIJK())
    world = local + run["shift"]
    sliceNode.SetFieldOfView(160.0, 160.0, 3.0)
    sliceNode.JumpSliceByCentering(*((local + world) / 2.0))  # both places in view, on the blob's slice
    fused, _ = renderSlice(sliceLogic)
    composite.SetForegroundOpacity(0.0)
    plain, _ = renderSlice(sliceLogic)
    wx, wy = rasToSlicePixel(sliceLogic, world)
    lx, ly = rasToSlicePixel(sliceLogic, local)
    assert all(0 <= v < 256 for v in (wx, wy, lx, ly))
    # the input's blob is drawn at its world position (bright, grey) and not at its untransformed one
    assert plain[wy, wx, 0] > 200 and plain[wy, wx, 0] == plain[wy, wx, 2]
    assert plain[ly, lx, :3].max() < 50
    # P(blob) = 0.9 tints the blob in Viridis' yellow-green (green well above blue) ...
    overlay = fused[wy, wx, :3].astype(int)
    assert overlay[1] - overlay[2] > 30, f"no overlay where the input's blob is in world coordinates: {overlay}"
    # ... and draws nothing at the blob's untransformed place
    assert np.array_equal(fused[ly, lx], plain[ly, lx]), "the overlay is drawn where the blob would be without the transform"


def test_segmentation_lies_on_the_input_and_keeps_its_grid(transformed_run):
    run, result = transformed_run, transformed_run["result"]
    scene, inputNode, segmentationNode = run["scene"], run["input"], result.segmentationNode
    exported = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "exported")
    segmentIDs = vtk.vtkStringArray()
    segmentationNode.GetSegmentation().GetSegmentIDs(segmentIDs)
    assert slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
        segmentationNode, segmentIDs, exported, inputNode, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY)
    # exported onto the input through both nodes' transforms (Slicer resamples where they differ): the label map
    assert np.array_equal(slicer.util.arrayFromVolume(exported).transpose(2, 1, 0), blobPrediction().labels)
    # the segmentation's own grid (what Segment Editor paints on) is the input's grid in the input's frame
    geometry = slicer.vtkOrientedImageData()
    parameter = segmentationNode.GetSegmentation().GetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName())
    slicer.vtkSegmentationConverter.DeserializeImageGeometry(parameter, geometry)
    imageToWorld = vtk.vtkMatrix4x4()
    geometry.GetImageToWorldMatrix(imageToWorld)
    found = np.array([[imageToWorld.GetElement(r, c) for c in range(4)] for r in range(4)])
    assert np.allclose(found, ijkToRASFromGeometry(GEOMETRY), atol=1e-6)


def test_jump_to_segment_centres_the_views_on_the_segments_world_position(transformed_run):
    run, result, logic = transformed_run, transformed_run["result"], transformed_run["logic"]
    table = result.segmentTableNode
    sliceNode = run["sliceLogic"].GetSliceNode()
    rasToIJK = np.linalg.inv(ijkToRASFromGeometry(GEOMETRY))
    for row in range(table.GetNumberOfRows()):
        local = np.array(logic.segmentCentreRAS(table, row))  # the table's columns: the input's own RAS
        i, j, k = np.round(rasToIJK @ [*local, 1.0])[:3].astype(int)
        assert blobPrediction().labels[i, j, k] == 1
        world = logic.jumpToSegment(table, row)
        assert np.allclose(world, local + run["shift"], atol=1e-4)
        assert np.allclose(logic.segmentCentreWorldRAS(table, row), world)
        sliceToRAS = sliceNode.GetSliceToRAS()
        assert np.allclose([sliceToRAS.GetElement(axis, 3) for axis in range(3)], local + run["shift"], atol=1e-4)
    # the view now shows the blob under the cross-hair: the centre pixel is the bright input with the overlay on it
    sliceNode.SetFieldOfView(160.0, 160.0, 3.0)
    fused, _ = renderSlice(run["sliceLogic"])
    x, y = rasToSlicePixel(run["sliceLogic"], local + run["shift"])
    assert (x, y) == (128, 128) and int(fused[y, x, 1]) - int(fused[y, x, 2]) > 30
    # the transform moved again (a refined registration): the jump follows it, as the outputs do
    if run["kind"] == "linear":
        matrix = vtk.vtkMatrix4x4()
        matrix.SetElement(0, 3, 40.0)
        matrix.SetElement(2, 3, -6.0)
        run["transform"].SetMatrixTransformToParent(matrix)
        assert np.allclose(logic.jumpToSegment(table, 0), local + [40.0, 0.0, -6.0], atol=1e-4)


def test_a_label_map_under_another_transform_is_refused_and_a_segmentation_is_resampled(transformed_run):
    run = transformed_run
    scene, inputNode, transformID = run["scene"], run["input"], run["transform"].GetID()
    labels = blobPrediction().labels
    sameFrame = addVolumeNode(scene, labels, GEOMETRY, "reference here", "vtkMRMLLabelMapVolumeNode")
    sameFrame.SetAndObserveTransformNodeID(transformID)
    assert np.array_equal(labelsFromReferenceNode(sameFrame, inputNode, list(CLASSES)), labels)
    assert np.array_equal(maskFromNode(sameFrame, inputNode), labels > 0)
    elsewhere = addVolumeNode(scene, labels, GEOMETRY, "reference elsewhere", "vtkMRMLLabelMapVolumeNode")  # no transform
    for read in (lambda: labelsFromReferenceNode(elsewhere, inputNode, list(CLASSES)), lambda: maskFromNode(elsewhere, inputNode)):
        with pytest.raises(InputError, match=r"'reference elsewhere' is under no transform.*'moved case' under '(registration|warp)'"):
            read()
    with pytest.raises(InputError, match="transform"):
        run["logic"].addPredictionToScene(inputNode, blobPrediction(), "by hand", reference=elsewhere)
    # a segmentation node is exported onto the input by Slicer, through both transforms: here (same frame) the blob ...
    segmentationHere = addSegmentationFromLabels(scene, labels, GEOMETRY, list(CLASSES), "segmentation here", inputNode)
    assert segmentationHere.GetTransformNodeID() == transformID
    assert np.array_equal(labelsFromReferenceNode(segmentationHere, inputNode, list(CLASSES)), labels)
    # ... and drawn at the untransformed place (no transform), it lies off the input's blob (outside its grid here)
    segmentationElsewhere = addSegmentationFromLabels(scene, labels, GEOMETRY, list(CLASSES), "segmentation elsewhere", sameFrame)
    segmentationElsewhere.SetAndObserveTransformNodeID(None)
    assert labelsFromReferenceNode(segmentationElsewhere, inputNode, list(CLASSES))[BLOB].sum() == 0
