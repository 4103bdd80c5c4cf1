"""Checks of the Slicer module that need no Slicer application: .ui names, parameter mapping, CMake lists."""

import ast
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

MODULE = Path(__file__).resolve().parents[1] / "UncertaintySeg"
UI_FILE = MODULE / "Resources" / "UI" / "UncertaintySeg.ui"
MODULE_FILE = MODULE / "UncertaintySeg.py"


def ui_widgets():
    """name -> (class, SlicerParameterName or None) for every widget in the .ui file."""
    widgets = {}
    for widget in ElementTree.parse(UI_FILE).iter("widget"):
        parameter = None
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                parameter = prop.find("string").text
        widgets[widget.get("name")] = (widget.get("class"), parameter)
    return widgets


def module_tree():
    return ast.parse(MODULE_FILE.read_text(encoding="utf-8"))


def parameter_fields():
    for node in module_tree().body:
        if isinstance(node, ast.ClassDef) and node.name == "UncertaintySegParameterNode":
            assert any(getattr(d, "id", None) == "parameterNodeWrapper" for d in node.decorator_list)
            return {stmt.target.id: ast.unparse(stmt.annotation) for stmt in node.body if isinstance(stmt, ast.AnnAssign)}
    pytest.fail("UncertaintySegParameterNode not found in UncertaintySeg.py")


def test_every_ui_attribute_used_exists_in_the_ui_file():
    used = {node.attr for node in ast.walk(module_tree())
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
            and node.value.attr == "ui" and getattr(node.value.value, "id", None) == "self"}
    assert used, "the widget uses no self.ui.X: the check would be empty"
    assert used <= set(ui_widgets()), f"missing in the .ui: {sorted(used - set(ui_widgets()))}"


def test_every_slicer_parameter_name_maps_to_a_parameter_node_field_and_back():
    mapped = {parameter: cls for cls, parameter in ui_widgets().values() if parameter}
    fields = parameter_fields()
    assert set(mapped) == set(fields), f"ui: {sorted(mapped)}, parameter node: {sorted(fields)}"
    # widget classes that parameterNodeWrapper's GUI connectors can bind to the field types
    expected = {"inputVolume": "qMRMLNodeComboBox", "model": "QComboBox", "device": "QComboBox", "overlayOpacity": "ctkSliderWidget"}
    assert {name: mapped[name] for name in expected} == expected
    assert "Choice" in fields["model"] and "Choice" in fields["device"]  # QComboBox <-> str needs Choice
    assert "WithinRange" in fields["overlayOpacity"]  # ctkSliderWidget <-> float needs a range


def test_module_logic_is_the_tested_logic():
    bases = {node.name: [ast.unparse(b) for b in node.bases] for node in module_tree().body if isinstance(node, ast.ClassDef)}
    assert "UncertaintySegLogicBase" in bases["UncertaintySegLogic"]
    assert "ScriptedLoadableModuleTest" in bases["UncertaintySegTest"]
    assert {"UncertaintySeg", "UncertaintySegWidget", "UncertaintySegParameterNode"} <= set(bases)


def test_cmake_lists_every_python_file_and_resource():
    cmake = (MODULE / "CMakeLists.txt").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\s+(\S+\.(?:py|ui|png|json|pt|md))\s*$", cmake, flags=re.M))
    python_files = {str(p.relative_to(MODULE)) for folder in ("UncertaintySegLib", "UncertaintySegSlicer") for p in (MODULE / folder).rglob("*.py")}
    assert python_files <= listed, f"not in CMakeLists.txt: {sorted(python_files - listed)}"
    for entry in listed:
        assert (MODULE / entry.replace("${MODULE_NAME}", "UncertaintySeg")).exists(), f"CMakeLists.txt lists a missing file: {entry}"
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in cmake


def test_top_level_cmake_is_a_slicer_extension():
    cmake = (MODULE.parent / "CMakeLists.txt").read_text(encoding="utf-8")
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY \"Segmentation\"", "EXTENSION_DESCRIPTION", "EXTENSION_ICONURL",
                "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS \"PyTorch\"", "add_subdirectory(UncertaintySeg)"):
        assert key in cmake


def test_core_library_never_imports_slicer_vtk_qt_or_ctk():
    for path in (MODULE / "UncertaintySegLib").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert name.split(".")[0] not in {"slicer", "vtk", "qt", "ctk", "vtkmodules"}, f"{path.name} imports {name}"


def test_mrml_glue_never_imports_qt_or_ctk():
    for path in (MODULE / "UncertaintySegSlicer").glob("*.py"):
        assert not re.search(r"^\s*(import|from)\s+(qt|ctk)\b", path.read_text(encoding="utf-8"), flags=re.M), path.name
