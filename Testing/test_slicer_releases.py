"""The module against Slicer's own Python code at three releases (../shared/slicer-python): the parameter node, the
GUI bindings of every widget of the .ui, the panel's connect/disconnect cycle and its error dialog.

Slicer's `parameterNodeWrapper`, `ScriptedLoadableModule` and `util` run unmodified over a real `slicer-core` scene;
only `qt`/`ctk` (and Slicer's Qt widget classes) are stand-ins (qt_stand_ins.py), so nothing here re-states Slicer's
rules: a field Slicer cannot write, a widget no connector of that release binds, fails here as it fails in the app.
"""

import enum
import typing
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from types import SimpleNamespace

import pytest

slicer = pytest.importorskip("slicer")

import qt_stand_ins  # noqa: E402
from qt_stand_ins import widgetFor  # noqa: E402
from slicer_release import RELEASES, slicerRelease  # noqa: E402
from UncertaintySegSlicer.panel.panelGlue import connectPanel  # noqa: E402

UI_FILE = Path(__file__).resolve().parents[1] / "UncertaintySeg" / "Resources" / "UI" / "UncertaintySeg.ui"
CONCRETE_NODE = {"vtkMRMLNode": "vtkMRMLSegmentationNode"}  # a field of the abstract base takes any node: write one kind


@pytest.fixture(params=RELEASES)
def release(request):
    scene = slicer.vtkMRMLScene()
    with slicerRelease(request.param, scene) as (slicerPackage, qt, ctk, module):
        yield SimpleNamespace(tag=request.param, scene=scene, slicer=slicerPackage, qt=qt, ctk=ctk, module=module,
                              wrapper=slicerPackage.parameterNodeWrapper)


def boundWidgets():
    """parameter name -> (class, {property: value}) for every widget of the .ui with a SlicerParameterName."""
    widgets = {}
    for element in ElementTree.parse(UI_FILE).iter("widget"):
        properties = {}
        for prop in element.findall("property"):
            value = prop[0]
            properties[prop.get("name")] = ([item.text for item in value] if value.tag == "stringlist"
                                            else value.text == "true" if value.tag == "bool" else value.text)
        if "SlicerParameterName" in properties:
            widgets[properties["SlicerParameterName"]] = (element.get("class"), properties)
    assert widgets, f"no widget of {UI_FILE} has a SlicerParameterName"
    return widgets


def sampleValues(datatype, scene, wrapper):
    """Values a field of `datatype` can hold, to write and read back: every member or choice, both bounds, None where
    allowed. A field of a type not handled here fails the test: add its samples."""
    base, annotations = wrapper.splitAnnotations(datatype)
    choice = wrapper.findFirstAnnotation(annotations, wrapper.Choice)
    bounds = wrapper.findFirstAnnotation(annotations, wrapper.WithinRange)
    origin, arguments = typing.get_origin(base), typing.get_args(base)
    if choice is not None:
        return list(choice.choices)
    if bounds is not None:
        return [bounds.minimum, bounds.maximum]
    if isinstance(base, type) and issubclass(base, enum.Enum):
        return list(base)
    if base is bool:
        return [True, False]
    if base is str:
        return ["anterior, posterior", ""]
    if base is Path:
        return [Path("models") / "net.pt"]
    if isinstance(base, type) and issubclass(base, slicer.vtkMRMLNode):
        className = base().GetClassName() if base is not slicer.vtkMRMLNode else CONCRETE_NODE["vtkMRMLNode"]
        return [scene.AddNewNodeByClass(className), None]
    if origin is typing.Union:
        return [value for argument in arguments for value in ([None] if argument is type(None) else
                                                               sampleValues(argument, scene, wrapper)[:1])]
    if origin is list:
        one = sampleValues(arguments[0], scene, wrapper)
        return [[], [one[0], one[0]]]
    if origin is tuple:
        return [tuple(sampleValues(argument, scene, wrapper)[0] for argument in arguments)]
    pytest.fail(f"no sample values for a field of type {datatype}: add them to sampleValues")


def comparable(value):
    """Nodes by ID, containers element by element (the wrapper returns its own list type)."""
    if isinstance(value, slicer.vtkMRMLNode):
        return ("node", value.GetID())
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ObservedList":
        return type(value) is tuple, [comparable(item) for item in value]
    return value


def test_the_parameter_node_is_built_by_slicers_wrapper_and_every_field_reads_back_what_was_written(release):
    """The module's Logic makes its parameter node as Slicer does (today's code raised here at every release: the node
    unions lacked None, so Slicer could not write their default); every field holds every kind of value it allows."""
    ParameterNode = release.module.UncertaintySegParameterNode
    parameters = release.module.UncertaintySegLogic().getParameterNode()
    assert isinstance(parameters, ParameterNode) and parameters.parameterNode.GetScene() is release.scene
    assert parameters.model == "hippocampus" and parameters.reference is None and parameters.modelFile is None
    for name in ParameterNode.allParameters:
        values = sampleValues(ParameterNode.dataType(name), release.scene, release.wrapper)
        for value in values:
            setattr(parameters, name, value)
            assert comparable(getattr(parameters, name)) == comparable(value), (name, value)


def test_the_parameter_node_survives_rewrapping_and_a_scene_saved_and_loaded_again(release, tmp_path):
    """A scene saved with the panel's settings, reloaded: the module wraps the loaded node and reads every value back."""
    ParameterNode = release.module.UncertaintySegParameterNode
    parameters = release.module.UncertaintySegLogic().getParameterNode()
    written = {}
    for name in ParameterNode.allParameters:
        values = sampleValues(ParameterNode.dataType(name), release.scene, release.wrapper)
        value = next((v for v in values if v not in (None, [], "") and v != parameters.default(name).value), values[0])
        setattr(parameters, name, value)
        written[name] = comparable(value)
    again = ParameterNode(parameters.parameterNode)
    assert {name: comparable(getattr(again, name)) for name in written} == written

    release.scene.SetURL(str(tmp_path / "scene.mrml"))
    assert release.scene.Commit()
    loaded = slicer.vtkMRMLScene()
    loaded.SetURL(str(tmp_path / "scene.mrml"))
    assert loaded.Connect()
    node = loaded.GetSingletonNode("UncertaintySeg", "vtkMRMLScriptedModuleNode")
    assert node is not None
    reloaded = ParameterNode(node)
    assert {name: comparable(getattr(reloaded, name)) for name in written} == written


def standInPanel(release):
    """A stand-in widget of the .ui's class for every bound widget, with the .ui's properties."""
    widgets = {name: widgetFor(cls, release.qt, release.ctk, release.slicer, **properties)
               for name, (cls, properties) in boundWidgets().items()}
    return widgets, SimpleNamespace(**{f"{name}Widget": widget for name, widget in widgets.items()})


def test_every_widget_with_a_slicer_parameter_name_is_bound_by_a_connector_of_that_release(release):
    """For each widget of the .ui, Slicer's own `createGuiConnector` finds a connector for its field's type; bound,
    the widget shows the field's value, and an edit in the widget writes the field."""
    ParameterNode = release.module.UncertaintySegParameterNode
    parameters = release.module.UncertaintySegLogic().getParameterNode()
    widgets, ui = standInPanel(release)
    assert set(widgets) <= set(ParameterNode.allParameters), sorted(set(widgets) - set(ParameterNode.allParameters))
    for name, widget in widgets.items():
        release.wrapper.createGuiConnector(widget, ParameterNode.dataType(name))  # raises RuntimeError when none binds
    connectPanel(parameters, ui)
    for name, widget in widgets.items():
        assert widget.connectionCount() == 1, name
    # unset paths show as empty (a browse dialog then opens in the last folder), not as "."
    for name, widget in widgets.items():
        if isinstance(widget, qt_stand_ins.ctkPathLineEdit):
            assert getattr(parameters, name) is None and widget.currentPath == "", name
    # a node selector lists exactly the node classes its field takes; the .ui says the same
    for name, widget in widgets.items():
        if isinstance(widget, qt_stand_ins.qMRMLNodeComboBox):
            assert list(widget.nodeTypes) == list(release.wrapper.getNodeTypes(ParameterNode.dataType(name))), name
            assert list(widget.nodeTypes) == boundWidgets()[name][1]["nodeTypes"], f"{name}: the .ui lists other node types"
    assert "vtkMRMLLabelMapVolumeNode" in widgets["roiMask"].nodeTypes  # maskFromNode takes label maps
    # edits in the panel reach the parameter node
    widgets["samples"].value = 7
    widgets["samples"].valueChanged.emit()
    assert parameters.samples == 7
    widgets["modelFolder"].currentPath = str(Path("bundles") / "spleen")
    widgets["modelFolder"].currentPathChanged.emit()
    assert parameters.modelFolder == Path("bundles") / "spleen"
    widgets["modelFolder"].currentPath = ""
    widgets["modelFolder"].currentPathChanged.emit()
    assert parameters.modelFolder is None
    methods = widgets["method"]
    methods.currentIndex = len(methods.items) - 1
    methods.currentIndexChanged.emit()
    assert parameters.method is list(type(parameters.method))[-1]
    # and the parameter node's changes reach the panel
    parameters.createFeatureMaps = True
    assert widgets["createFeatureMaps"].checked is True
    label = release.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    parameters.roiMask = label
    assert widgets["roiMask"].currentNode() is label


def test_entering_and_leaving_the_module_leaves_one_connection_per_widget(release):
    """connectPanel's tag undoes its connections; with Slicer 5.8's connectGui (no tag) they piled up."""
    parameters = release.module.UncertaintySegLogic().getParameterNode()
    widgets, ui = standInPanel(release)
    for _ in range(3):
        tag = connectPanel(parameters, ui)
        assert tag is not None
        assert {name: widget.connectionCount() for name, widget in widgets.items()} == {name: 1 for name in widgets}
        parameters.disconnectGui(tag)
        assert {name: widget.connectionCount() for name, widget in widgets.items()} == {name: 0 for name in widgets}


def test_every_enter_keeps_the_one_binding_and_frees_the_wrapper_it_was_given(release):
    """enter() asks the Logic for the parameter node: a new wrapper of the same MRML node each time. Binding each one
    (and unbinding on exit) left, on Slicer 5.8 and 5.10, an observer holding every earlier wrapper."""
    import gc
    import weakref

    widgets, ui = standInPanel(release)
    logic = release.module.UncertaintySegLogic()
    binding = release.module.PanelBinding()
    bound = logic.getParameterNode()
    assert binding.bind(bound, ui) and binding.parameterNode is bound
    visits = []
    for _ in range(5):
        wrapper = logic.getParameterNode()
        assert not binding.bind(wrapper, ui) and binding.parameterNode is bound
        visits.append(weakref.ref(wrapper))
        del wrapper
    gc.collect()
    assert [visit() for visit in visits] == [None] * 5
    assert {name: widget.connectionCount() for name, widget in widgets.items()} == {name: 1 for name in widgets}
    bound.samples = 9
    assert widgets["samples"].value == 9
    # the scene closes: unbound; the new scene's node is bound afresh
    assert binding.bind(None, ui) and binding.parameterNode is None
    assert {name: widget.connectionCount() for name, widget in widgets.items()} == {name: 0 for name in widgets}


def test_an_error_without_details_shows_no_details_section(release):
    """Slicer's errorDisplay sets every keyword on the message box: detailedText=None would set it to None."""
    qt_stand_ins.shown.clear()
    release.module.errorDialog("The model failed.")
    release.module.errorDialog("The model failed.", details="Traceback: ...")
    boxes = qt_stand_ins.shown
    assert [box.text for box in boxes] == ["The model failed.", "The model failed."]
    assert boxes[0].detailedText == "" and boxes[1].detailedText == "Traceback: ..."


def test_selecting_a_row_of_the_segment_table_jumps_to_that_tables_row(release):
    """The view may be sorted: row 0 of the view can show table row 2. qMRMLTableModel.mrmlTableRowIndex, which the
    panel called, is not exposed to Python; the table's column titles are its headers, so the source row is the row."""
    from UncertaintySegSlicer.mrml.tables import addTableNode

    table = addTableNode(release.scene, "segments", {"segment": ["a", "b", "c"]})
    assert table.GetUseColumnTitleAsColumnHeader()
    view = release.slicer.qMRMLTableView(tableNode=table, sourceRows=[2, 0, 1], selectedRows=[0])
    assert release.module.selectedTableRow(view) == 2
    assert release.module.selectedTableRow(release.slicer.qMRMLTableView(tableNode=table, sourceRows=[2, 0, 1])) is None


def test_a_scene_with_values_this_version_does_not_offer_opens_with_the_defaults_for_those(release):
    """A scene saved elsewhere: a model not installed here, a method name a later version removed, a sample count out
    of range. Slicer's wrapper raised on the enum (wrapping) or the choice (binding); those fields go back to defaults."""
    release.module.UncertaintySegLogic().getParameterNode().samples = 33
    node = release.scene.GetSingletonNode("UncertaintySeg", "vtkMRMLScriptedModuleNode")
    node.SetParameter("model", "hippocampus-not-installed")
    node.SetParameter("method", "NO_SUCH_METHOD")
    node.SetParameter("samples", "5000")
    node.SetParameter("device", "cuda")  # a value still offered stays
    parameters = release.module.UncertaintySegLogic().getParameterNode()
    assert (parameters.model, parameters.method.name, parameters.samples, parameters.device) == ("hippocampus", "AUTO", 20, "cuda")
    widgets, ui = standInPanel(release)
    connectPanel(parameters, ui)
    assert widgets["model"].currentText == "hippocampus"
