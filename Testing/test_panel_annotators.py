"""Compare annotators in a real MRML scene (slicer-core): three synthetic raters with known disagreement, the table
against the core's `annotator_agreement` on the same arrays and against hand counts, segment-name matching, bad
input, untouched inputs, a failure that leaves the scene as it was, and the panel button's problem sentences."""

from types import SimpleNamespace

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core is not installed (pip install slicer-core)")

from panel_settings import settings  # noqa: E402
from UncertaintySegLib.evaluation.annotator_agreement import annotator_agreement  # noqa: E402
from UncertaintySegLib.common.errors import InputError  # noqa: E402
from UncertaintySegLib.predict.io import Geometry  # noqa: E402
from UncertaintySegLib.evaluation.roi import roi_mask  # noqa: E402
from UncertaintySegSlicer.analysis import annotators as annotatorsModule  # noqa: E402
from UncertaintySegSlicer.analysis.annotators import AGREEMENT_COLUMNS, annotatorAgreementTable  # noqa: E402
from UncertaintySegSlicer.mrml.logic import RunResult  # noqa: E402
from UncertaintySegSlicer.panel.panelAnnotators import (ANNOTATOR_TABLE_NAME, annotatorListLabels,  # noqa: E402
                                                  checkAnnotatorParameters, compareAnnotators)
from UncertaintySegSlicer.panel.panelChoices import RegionOfInterest  # noqa: E402
from UncertaintySegSlicer.mrml.segmentation import addSegmentationFromLabels  # noqa: E402
from UncertaintySegSlicer.mrml.volumes import addVolumeNode, volumeFromNode  # noqa: E402

CLASSES = ["background", "anterior", "posterior"]
SHAPE = (30, 24, 10)
GEOMETRY = Geometry(origin=(5.0, -3.0, 2.0), spacing=(2.0, 2.0, 3.0), direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))


def rater_labels():
    """Three raters `(3, I, J, K)`: B adds a slab of class 1 next to A's (8 voxels) and a speck far outside A's box
    (4 voxels), where 2 raters to 1 say background; C calls half of class 2 class 1 (16 voxels, 2 to 1 for class 2).
    All agree on 32 voxels of class 1 and 16 of class 2."""
    a = np.zeros(SHAPE, np.uint8)
    a[4:8, 4:8, 3:5] = 1
    a[10:14, 10:14, 3:5] = 2
    b = a.copy()
    b[8, 4:8, 3:5] = 1
    b[24:26, 18:20, 8] = 1
    c = a.copy()
    c[10:12, 10:14, 3:5] = 1
    return np.stack([a, b, c])


@pytest.fixture
def case(mrml_scene):
    """Input volume, a run's probability volumes (softmax of seeded noise) and the three raters as scene nodes:
    A a segmentation, B a label map, C a segmentation whose segments are in the other order, named in other case."""
    scene, _ = mrml_scene
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(len(CLASSES), *SHAPE)) * 2.0
    probabilities = (np.exp(logits) / np.exp(logits).sum(axis=0)).astype(np.float32)
    inputNode = addVolumeNode(scene, rng.normal(size=SHAPE).astype(np.float32), GEOMETRY, "case")
    run = RunResult(folderItemID=0, classNames=list(CLASSES), probabilityNodes={
        name: addVolumeNode(scene, probabilities[index], GEOMETRY, f"case P({name})") for index, name in enumerate(CLASSES) if index})
    labels = rater_labels()
    swapped = np.choose(labels[2], [0, 2, 1]).astype(np.uint8)  # C's label 1 is posterior, 2 anterior
    raters = [addSegmentationFromLabels(scene, labels[0], GEOMETRY, CLASSES, "rater A", inputNode),
              addVolumeNode(scene, labels[1], GEOMETRY, "rater B", "vtkMRMLLabelMapVolumeNode"),
              addSegmentationFromLabels(scene, swapped, GEOMETRY, ["background", " Posterior", "ANTERIOR"], "rater C", inputNode)]
    return SimpleNamespace(scene=scene, input=inputNode, run=run, probabilities=probabilities, labels=labels, raters=raters)


def rows(tableNode):
    """{column: list of values} of a table node (strings for scope and group, floats otherwise)."""
    table = tableNode.GetTable()
    values = {}
    for name in AGREEMENT_COLUMNS:
        column = table.GetColumnByName(name)
        assert column is not None, name
        values[name] = [column.GetValue(row) for row in range(table.GetNumberOfRows())]
    return values


def assert_table_matches(tableNode, expected):
    found = rows(tableNode)
    assert found["scope"] == [row.scope for row in expected] and found["group"] == [row.group for row in expected]
    assert found["voxels"] == [row.voxels for row in expected]
    for column, attribute in (("fraction", "fraction"), ("mean max probability", "mean_max_probability"),
                              ("mean majority probability", "mean_majority_probability")):
        want = [np.nan if getattr(row, attribute) is None else getattr(row, attribute) for row in expected]
        assert np.allclose(found[column], want, rtol=0, atol=1e-6, equal_nan=True), column


def scene_counts(scene):
    return scene.GetNumberOfNodes(), scene.GetSubjectHierarchyNode().GetNumberOfItems()


def test_table_equals_annotator_agreement_on_the_same_arrays_and_the_hand_counts(case):
    tableNode = annotatorAgreementTable(case.input, case.run, case.raters, roi="whole")
    expected = annotator_agreement(case.labels, case.probabilities, CLASSES, None)
    assert_table_matches(tableNode, expected)
    label = {group: voxels for scope, group, voxels in zip(*(rows(tableNode)[c] for c in ("scope", "group", "voxels")))
             if scope == "label"}
    assert label == {"all_background": np.prod(SHAPE) - 76, "all_foreground": 48, "majority": 28, "no_majority": 0}
    assert tableNode.GetName() == "case annotator agreement"
    assert "3 annotators" in tableNode.GetColumnDescription("group")


def test_bbox_is_the_first_annotators_dilated_box_and_a_mask_node_is_an_roi(case):
    box = roi_mask("bbox", case.labels[0], GEOMETRY.spacing)
    assert box.sum() == 18 * 18 * 6  # i, j: 4..13 grown by 8 mm / 2 mm = 4 voxels; k: 3..4 grown by 2 slices
    assert not box[24:26, 18:20, 8].any()  # B's speck is outside: the box is annotator 1's, not the annotators' union
    tableNode = annotatorAgreementTable(case.input, case.run, case.raters)
    assert_table_matches(tableNode, annotator_agreement(case.labels, case.probabilities, CLASSES, box))
    mask = np.zeros(SHAPE, np.uint8)
    mask[6:12, 4:14, 2:6] = 1
    maskNode = addVolumeNode(case.scene, mask, GEOMETRY, "mask", "vtkMRMLLabelMapVolumeNode")
    tableNode = annotatorAgreementTable(case.input, case.run, case.raters, roi=maskNode)
    assert_table_matches(tableNode, annotator_agreement(case.labels, case.probabilities, CLASSES, mask > 0))


def test_a_core_prediction_gives_the_same_table(case):
    prediction = SimpleNamespace(probabilities=case.probabilities, class_names=tuple(CLASSES), geometry=GEOMETRY)
    tableNode = annotatorAgreementTable(case.input, prediction, case.raters, roi="whole", tableName="from prediction")
    assert tableNode.GetName() == "from prediction"
    assert_table_matches(tableNode, annotator_agreement(case.labels, case.probabilities, CLASSES, None))


def test_bad_input_says_what_was_expected_and_adds_nothing(case):
    scene, a, b, c = case.scene, *case.raters
    tail = addSegmentationFromLabels(scene, case.labels[1], GEOMETRY, ["background", "anterior", "tail"], "tail rater", case.input)
    cropped = addVolumeNode(scene, case.labels[1][1:], GEOMETRY, "cropped", "vtkMRMLLabelMapVolumeNode")
    partial = RunResult(folderItemID=0, classNames=list(CLASSES), probabilityNodes={"anterior": case.run.probabilityNodes["anterior"]})
    counts = scene_counts(scene)
    for arguments, message in (
            ((case.input, case.run, [a]), r"2 or more references .* found 'rater A': add another"),
            ((case.input, case.run, [a, b, a]), r"\['rater A'\] are given more than once"),
            ((case.input, case.run, [a, tail]), r"annotator 2 \('tail rater'\): reference segments \['tail'\] match none"),
            ((case.input, case.run, [a, cropped]), r"annotator 2 \('cropped'\): reference 'cropped' .* does not lie on the grid"),
            ((case.input, partial, [a, b]), r"\['posterior'\] are not in the scene"),
            ((case.input, object(), [a, b]), "expected a run's result"),
            ((None, case.run, [a, b]), "needs the input volume")):
        with pytest.raises(InputError, match=message):
            annotatorAgreementTable(*arguments)
        assert scene_counts(scene) == counts, message
    with pytest.raises(InputError, match="roi 'box': expected 'bbox', 'whole', or a mask node"):
        annotatorAgreementTable(case.input, case.run, [a, b], roi="box")
    assert scene_counts(scene) == counts


def test_inputs_are_unchanged_and_a_failure_leaves_the_scene_as_it_was(case, monkeypatch):
    nodes = [case.input, *case.run.probabilityNodes.values(), *case.raters]
    times = [node.GetMTime() for node in nodes]
    volumes = [node for node in nodes if node.IsA("vtkMRMLVolumeNode")]
    arrays = [volumeFromNode(node).array.copy() for node in volumes]
    counts = scene_counts(case.scene)
    annotatorAgreementTable(case.input, case.run, case.raters)
    assert [node.GetMTime() for node in nodes] == times
    assert all(np.array_equal(volumeFromNode(node).array, array) for node, array in zip(volumes, arrays))
    assert scene_counts(case.scene)[0] == counts[0] + 1  # the table, and no exported label map left behind

    addTableNode = annotatorsModule.addTableNode

    def failing(*args, **kwargs):  # the table node is added, then something fails
        addTableNode(*args, **kwargs)
        raise RuntimeError("table could not be filled")

    monkeypatch.setattr(annotatorsModule, "addTableNode", failing)
    counts = scene_counts(case.scene)
    with pytest.raises(RuntimeError, match="could not be filled"):
        annotatorAgreementTable(case.input, case.run, case.raters)
    assert scene_counts(case.scene) == counts


def panel(**changes):
    """The parameter node's fields the Compare button reads (a plain object: compareAnnotators writes annotatorTable)."""
    extra = {"annotatorReferences": changes.pop("annotatorReferences", []), "annotatorTable": None}
    return SimpleNamespace(**{**vars(settings(**changes)), **extra})


def test_compare_button_replaces_its_table_and_two_annotators_only_disagree_without_majority(case):
    a, b, c = case.raters
    parameters = panel(reference=a, annotatorReferences=[b], roi=RegionOfInterest.WHOLE)
    assert checkAnnotatorParameters(parameters, case.input, case.run) is None
    first = compareAnnotators(parameters, case.input, case.run)
    assert parameters.annotatorTable is first and first.GetName() == ANNOTATOR_TABLE_NAME
    label = dict(zip(rows(first)["group"][:4], rows(first)["voxels"][:4]))
    assert label == {"all_background": np.prod(SHAPE) - 76, "all_foreground": 64, "majority": 0, "no_majority": 12}
    parameters.annotatorReferences = [b, c]
    parameters.roi = RegionOfInterest.BBOX
    second = compareAnnotators(parameters, case.input, case.run)
    assert first.GetScene() is None and parameters.annotatorTable is second and second.GetName() == ANNOTATOR_TABLE_NAME
    box = roi_mask("bbox", case.labels[0], GEOMETRY.spacing)
    assert_table_matches(second, annotator_agreement(case.labels, case.probabilities, CLASSES, box))


def test_check_sentences_say_what_to_do(case):
    a, b, c = case.raters
    fine = dict(reference=a, annotatorReferences=[b, c])
    partial = RunResult(folderItemID=0, classNames=list(CLASSES), probabilityNodes={"anterior": case.run.probabilityNodes["anterior"]})
    removed = addVolumeNode(case.scene, np.zeros(SHAPE, np.float32), GEOMETRY, "removed")
    case.scene.RemoveNode(removed)
    for parameters, inputVolume, run, expected in (
            (panel(**fine), None, None, "Apply first"),
            (panel(**fine), removed, case.run, "input volume was removed from the scene: Apply again"),
            (panel(**fine), case.input, partial, "no probability map of posterior in the scene: tick the probability maps"),
            (panel(annotatorReferences=[b, c]), case.input, case.run, "Select a reference segmentation (Outputs): it is annotator 1"),
            (panel(reference=a), case.input, case.run, "Add another annotator's segmentation"),
            (panel(reference=a, annotatorReferences=[b, a]), case.input, case.run, "rater A is listed more than once"),
            (panel(**fine, roi=RegionOfInterest.MASK), case.input, case.run, "Select the ROI mask")):
        assert expected in (checkAnnotatorParameters(parameters, inputVolume, run) or ""), expected
    assert checkAnnotatorParameters(panel(**fine, roi=RegionOfInterest.MASK, roiMask=a), case.input, case.run) is None
    assert annotatorListLabels([b, c]) == ["annotator 2: rater B", "annotator 3: rater C"]
