"""The Slicer layer against a real MRML scene (slicer-core): nodes, geometry, colours, what a slice view shows."""

import math

import numpy as np
import pytest
from slicer_scene import addSliceView, rasToSlicePixel, renderSlice

slicer = pytest.importorskip("slicer", reason="slicer-core is not installed (pip install slicer-core)")

from UncertaintySegLib.predict.io import Geometry, read_volume  # noqa: E402
from UncertaintySegSlicer.mrml.colors import INFERNO, VIRIDIS  # noqa: E402
from UncertaintySegSlicer.mrml.logic import UncertaintySegLogicBase  # noqa: E402
from UncertaintySegSlicer.mrml.volumes import addVolumeNode, ijkToRASFromGeometry, volumeFromNode  # noqa: E402


def ijkToRAS(node):
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def test_volume_node_round_trip_keeps_voxels_and_lps_geometry(mrml_scene):
    scene, _ = mrml_scene
    geometry = Geometry((12.0, -4.5, 30.0), (0.8, 1.2, 2.0), (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    array = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    node = addVolumeNode(scene, array, geometry, "vol")
    # LPS origin (12, -4.5, 30) is RAS (-12, 4.5, 30); voxel (i, j, k) sits where the geometry says
    assert np.allclose(node.GetOrigin(), (-12.0, 4.5, 30.0))
    assert np.allclose(ijkToRAS(node), ijkToRASFromGeometry(geometry))
    assert slicer.util.arrayFromVolume(node)[4, 3, 2] == array[2, 3, 4]
    back = volumeFromNode(node)
    assert np.array_equal(back.array, array) and back.geometry.matches(geometry, tolerance=1e-9)


def test_geometry_of_a_real_file_matches_slicer_reading_it(mrml_scene, test_case):
    """The node we create for a file has the IJK-to-RAS matrix Slicer's own reader gives it."""
    scene, _ = mrml_scene
    image_path, _ = test_case
    volume = read_volume(image_path)
    ours = addVolumeNode(scene, volume.array, volume.geometry, "ours")
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    slicers = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "slicer")
    storage.SetFileName(str(image_path))
    assert storage.ReadData(slicers)
    assert np.allclose(ijkToRAS(ours), ijkToRAS(slicers), atol=1e-6)
    assert np.array_equal(slicer.util.arrayFromVolume(ours), slicer.util.arrayFromVolume(slicers))


@pytest.fixture
def hippocampus_run(mrml_scene, test_case):
    """The Logic run with the default model on a real hippocampus case, with a Red slice view open."""
    scene, appLogic = mrml_scene
    sliceLogic = addSliceView(appLogic)
    image_path, _ = test_case
    volume = read_volume(image_path)
    inputNode = addVolumeNode(scene, volume.array, volume.geometry, "hippocampus case")
    before = (slicer.util.arrayFromVolume(inputNode).copy(), ijkToRAS(inputNode), inputNode.GetMTime())
    result = UncertaintySegLogicBase().run(inputNode, model="hippocampus", device="cpu", overlayOpacity=0.6)
    return scene, sliceLogic, inputNode, before, result


def test_logic_creates_the_expected_nodes_in_one_folder(hippocampus_run):
    scene, _, inputNode, _, result = hippocampus_run
    assert set(result.probabilityNodes) == {"anterior", "posterior"}
    outputs = [*result.probabilityNodes.values(), result.entropyNode]
    for node in outputs:
        assert node.IsA("vtkMRMLScalarVolumeNode")
        assert np.allclose(ijkToRAS(node), ijkToRAS(inputNode), atol=1e-6)
        assert node.GetImageData().GetDimensions() == inputNode.GetImageData().GetDimensions()
    shNode = scene.GetSubjectHierarchyNode()
    for node in [*outputs, result.segmentationNode]:
        assert shNode.GetItemParent(shNode.GetItemByDataNode(node)) == result.folderItemID
    assert "hippocampus case" in shNode.GetItemName(result.folderItemID)


def test_colour_tables_and_fixed_ranges(hippocampus_run):
    _, _, _, _, result = hippocampus_run
    for node in result.probabilityNodes.values():
        display = node.GetDisplayNode()
        assert display.GetColorNodeID() == VIRIDIS and not display.GetAutoWindowLevel()
        assert math.isclose(display.GetWindowLevelMin(), 0.0, abs_tol=1e-6) and math.isclose(display.GetWindowLevelMax(), 1.0, abs_tol=1e-6)
    display = result.entropyNode.GetDisplayNode()
    assert display.GetColorNodeID() == INFERNO
    assert math.isclose(display.GetWindowLevelMax(), math.log(3), rel_tol=1e-6)


def test_values_in_nodes_are_the_cores(hippocampus_run, test_case):
    _, _, _, _, result = hippocampus_run
    probability = volumeFromNode(result.probabilityNodes["anterior"]).array
    entropy = volumeFromNode(result.entropyNode).array
    assert probability.min() >= 0 and probability.max() <= 1 and probability.max() > 0.9
    assert entropy.min() >= 0 and entropy.max() <= math.log(3) + 1e-5


def test_segmentation_has_the_model_classes(hippocampus_run):
    import vtk

    _, _, inputNode, _, result = hippocampus_run
    segmentation = result.segmentationNode.GetSegmentation()
    names = [segmentation.GetNthSegment(n).GetName() for n in range(segmentation.GetNumberOfSegments())]
    assert names == ["anterior", "posterior"]
    exported = inputNode.GetScene().AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "exported")
    segmentIds = vtk.vtkStringArray()
    segmentation.GetSegmentIDs(segmentIds)
    assert slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
        result.segmentationNode, segmentIds, exported, inputNode, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY)
    foreground = np.stack([volumeFromNode(result.probabilityNodes[name]).array for name in ("anterior", "posterior")])
    expected = np.concatenate([1 - foreground.sum(0, keepdims=True), foreground]).argmax(0)
    assert np.array_equal(slicer.util.arrayFromVolume(exported).transpose(2, 1, 0), expected)


def test_input_node_is_unchanged(hippocampus_run):
    _, _, inputNode, (voxels, matrix, _), _ = hippocampus_run
    assert np.array_equal(slicer.util.arrayFromVolume(inputNode), voxels)
    assert np.array_equal(ijkToRAS(inputNode), matrix)


def test_slice_view_shows_the_entropy_overlay_where_the_model_is_unsure(hippocampus_run, tmp_path):
    scene, sliceLogic, inputNode, _, result = hippocampus_run
    composite = sliceLogic.GetSliceCompositeNode()
    assert composite.GetBackgroundVolumeID() == inputNode.GetID()
    assert composite.GetForegroundVolumeID() == result.entropyNode.GetID()
    assert math.isclose(composite.GetForegroundOpacity(), 0.6)
    entropy = volumeFromNode(result.entropyNode).array
    i, j, k = np.unravel_index(entropy.argmax(), entropy.shape)  # the most unsure voxel
    calm = np.unravel_index(entropy[:, :, k].argmin(), entropy.shape[:2])  # the most confident voxel on that slice
    assert entropy[calm[0], calm[1], k] < 0.05 * math.log(3)  # below the overlay's transparency threshold
    ijkToRASMatrix = ijkToRAS(inputNode)
    sliceLogic.FitSliceToAll()
    sliceLogic.SetSliceOffset(float((ijkToRASMatrix @ [i, j, k, 1])[2]))
    fused, image = renderSlice(sliceLogic)
    composite.SetForegroundOpacity(0.0)
    plain, _ = renderSlice(sliceLogic)
    unsure_x, unsure_y = rasToSlicePixel(sliceLogic, (ijkToRASMatrix @ [i, j, k, 1])[:3])
    calm_x, calm_y = rasToSlicePixel(sliceLogic, (ijkToRASMatrix @ [*calm, k, 1])[:3])
    # unsure: grey background tinted towards Inferno's warm colours (red > blue); confident: transparent
    unsure = fused[unsure_y, unsure_x, :3].astype(int)
    assert not np.array_equal(unsure, plain[unsure_y, unsure_x, :3]) and unsure[0] - unsure[2] > 30
    assert np.array_equal(fused[calm_y, calm_x], plain[calm_y, calm_x])
    import vtk

    writer = vtk.vtkPNGWriter()
    writer.SetFileName(str(tmp_path / "slice.png"))
    writer.SetInputData(image)
    writer.Write()
    assert (tmp_path / "slice.png").stat().st_size > 1000


def test_mc_dropout_adds_a_mutual_information_overlay(mrml_scene, test_case):
    scene, appLogic = mrml_scene
    addSliceView(appLogic)
    volume = read_volume(test_case[0])
    inputNode = addVolumeNode(scene, volume.array, volume.geometry, "hippocampus case")
    result = UncertaintySegLogicBase().run(inputNode, model="hippocampus", device="cpu", method="mc_dropout", samples=4,
                                           overlay="mutual_information")
    mi = volumeFromNode(result.mutualInformationNode).array
    assert mi.min() >= 0 and mi.max() > 0 and mi.max() <= volumeFromNode(result.entropyNode).array.max() + 1e-6
    assert result.mutualInformationNode.GetDisplayNode().GetColorNodeID() == INFERNO
    compositeIDs = [scene.GetNthNodeByClass(n, "vtkMRMLSliceCompositeNode").GetForegroundVolumeID()
                    for n in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode"))]
    assert compositeIDs and all(nodeID == result.mutualInformationNode.GetID() for nodeID in compositeIDs)
    shNode = scene.GetSubjectHierarchyNode()
    assert shNode.GetItemParent(shNode.GetItemByDataNode(result.mutualInformationNode)) == result.folderItemID
    single = UncertaintySegLogicBase().run(inputNode, model="hippocampus", device="cpu")
    assert single.mutualInformationNode is None
    with pytest.raises(ValueError, match=r"not one of \[.entropy.\]"):
        UncertaintySegLogicBase().run(inputNode, model="hippocampus", device="cpu", overlay="variance")


def test_a_segmentation_keeps_its_class_values_when_exported(mrml_scene):
    """Slicer's export takes the segmentation's label-value table (its labelmap conversion colour table): a map with
    only class 2 comes back as 2, not renumbered to 1."""
    import vtk

    from UncertaintySegSlicer.mrml.segmentation import addSegmentationFromLabels

    scene, _ = mrml_scene
    geometry = Geometry((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), tuple(np.eye(3).ravel()))
    labels = np.zeros((6, 6, 4), np.uint8)
    labels[2:4, 2:4, 1:3] = 2
    inputNode = addVolumeNode(scene, labels.astype(np.float32), geometry, "case")
    segmentationNode = addSegmentationFromLabels(scene, labels, geometry, ["background", "anterior", "posterior"], "case segmentation", inputNode)
    classes = segmentationNode.GetLabelmapConversionColorTableNode()
    assert classes is not None and classes.GetScene() is scene
    assert [classes.GetColorName(index) for index in range(3)] == ["background", "anterior", "posterior"]
    exported = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "exported")
    segmentIds = vtk.vtkStringArray()
    segmentationNode.GetSegmentation().GetSegmentIDs(segmentIds)
    assert slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
        segmentationNode, segmentIds, exported, inputNode, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY, classes)
    assert np.array_equal(slicer.util.arrayFromVolume(exported).transpose(2, 1, 0), labels)


def test_a_run_that_replaces_its_earlier_outputs_keeps_their_names(mrml_scene, test_case):
    """vtkMRMLScene.GenerateUniqueName remembers removed nodes' names: the second run came back as '... entropy_1'."""
    scene, _ = mrml_scene
    image = read_volume(test_case[0])
    inputNode = addVolumeNode(scene, image.array, image.geometry, "hippocampus case")
    logic = UncertaintySegLogicBase()
    first = logic.run(inputNode, model="hippocampus", device="cpu", runName="again")
    names = sorted(node.GetName() for node in logic._runNodes(first))
    folder = scene.GetSubjectHierarchyNode().GetItemName(first.folderItemID)
    second = logic.run(inputNode, model="hippocampus", device="cpu", runName="again")
    assert first.entropyNode.GetScene() is None
    assert sorted(node.GetName() for node in logic._runNodes(second)) == names
    assert scene.GetSubjectHierarchyNode().GetItemName(second.folderItemID) == folder
    assert scene.GetFirstNodeByName("hippocampus case entropy") is second.entropyNode
    assert "hippocampus case segmentation classes" in names  # the label-value table is the run's, replaced with it
    other = logic.run(inputNode, model="hippocampus", device="cpu", runName="another")  # beside it: a name of its own
    assert other.entropyNode.GetName() == "hippocampus case entropy_1"
