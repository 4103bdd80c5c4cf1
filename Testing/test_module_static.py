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


# Fields no widget binds: the Widget edits them (the Add/Remove pair buttons write calibrationPairs).
# The Rank button writes rankingTable (no GUI connector binds a table view); the Widget shows it in rankingTableView.
# The Add/Remove annotator buttons write annotatorReferences; Compare annotators writes annotatorTable.
WIDGET_MANAGED_FIELDS = {"calibrationPairs", "rankingTable", "annotatorReferences", "annotatorTable"}


def enum_names():
    import enum

    from UncertaintySegSlicer.panel import panelChoices

    return {name for name, value in vars(panelChoices).items() if isinstance(value, type) and issubclass(value, enum.Enum)
            and len(value) > 0}


def test_every_slicer_parameter_name_maps_to_a_parameter_node_field_and_back():
    mapped = {parameter: cls for cls, parameter in ui_widgets().values() if parameter}
    fields = parameter_fields()
    assert len(mapped) == sum(1 for _, parameter in ui_widgets().values() if parameter), "two widgets bind one parameter"
    assert set(mapped) == set(fields) - WIDGET_MANAGED_FIELDS, f"ui: {sorted(mapped)}, parameter node: {sorted(fields)}"
    # which connector binds each widget is asked of Slicer's own code, release by release: test_slicer_releases.py
    assert fields["calibrationPairs"] == "list[tuple[vtkMRMLScalarVolumeNode, vtkMRMLNode]]"
    assert fields["rankingTable"] == fields["annotatorTable"] == "vtkMRMLTableNode"
    assert fields["annotatorReferences"] == "list[vtkMRMLNode]"
    # the names the console API and earlier scenes use
    assert {"inputVolume", "model", "device", "overlayOpacity", "method", "samples", "reference", "roi"} <= set(mapped)


def test_enum_parameters_have_a_default_member_and_a_label_for_every_member():
    from UncertaintySegSlicer.panel import panelChoices

    for node in module_tree().body:
        if isinstance(node, ast.ClassDef) and node.name == "UncertaintySegParameterNode":
            defaults = {stmt.target.id: ast.unparse(stmt.value) for stmt in node.body if isinstance(stmt, ast.AnnAssign) and stmt.value}
    for name, annotation in parameter_fields().items():
        if annotation in enum_names():
            enum = getattr(panelChoices, annotation)
            assert defaults[name].startswith(f"{annotation}.") and defaults[name].split(".")[1] in enum.__members__, name
            labels = [enum.label(member) for member in enum]  # what QComboBoxToEnumConnector lists
            assert all(labels) and len(set(labels)) == len(labels), annotation


def test_panel_sections_and_run_controls():
    widgets = ui_widgets()
    tree = ElementTree.parse(UI_FILE)
    sections = {w.get("name"): w.find("property[@name='text']/string").text for w in tree.iter("widget")
                if w.get("class") == "ctkCollapsibleButton"}
    assert sections == {"inputsCollapsibleButton": "Inputs", "uncertaintyCollapsibleButton": "Uncertainty",
                        "calibrationCollapsibleButton": "Calibration", "outputsCollapsibleButton": "Outputs",
                        "segmentsCollapsibleButton": "Segments", "analysisCollapsibleButton": "Analysis"}
    collapsed = {w.get("name") for w in tree.iter("widget") if w.get("class") == "ctkCollapsibleButton"
                 and w.findtext("property[@name='collapsed']/bool") == "true"}
    assert {"calibrationCollapsibleButton", "analysisCollapsibleButton"} <= collapsed
    expected = {"applyButton": "QPushButton", "progressBar": "QProgressBar", "statusLabel": "QLabel", "showLogButton": "QPushButton",
                "logTextEdit": "QPlainTextEdit", "segmentTableView": "qMRMLTableView", "fitCalibratorButton": "QPushButton",
                "calibrationPairsList": "QListWidget", "calibrationVolumeSelector": "qMRMLNodeComboBox",
                "calibrationReferenceSelector": "qMRMLNodeComboBox", "rankButton": "QPushButton",
                "rankingTableView": "qMRMLTableView"}
    assert {name: widgets[name][0] for name in expected} == expected
    section_of = {}
    for section in tree.iter("widget"):
        if section.get("class") == "ctkCollapsibleButton":
            section_of.update({w.get("name"): section.get("name") for w in section.iter("widget")})
    for parameter, section in (("inputVolume", "inputs"), ("model", "inputs"), ("device", "inputs"), ("method", "uncertainty"),
                               ("calibration", "calibration"), ("calibrationMethod", "calibration"), ("overlay", "outputs"),
                               ("reference", "outputs"), ("roi", "outputs"), ("createEntropy", "outputs"),
                               ("createFeatureMaps", "analysis"), ("featureMapLayers", "analysis"),
                               ("featureMapReduction", "analysis"), ("rankingScore", "analysis")):
        name = next(n for n, (_, p) in widgets.items() if p == parameter)
        assert section_of[name] == f"{section}CollapsibleButton", parameter
    assert section_of["rankButton"] == section_of["rankingTableView"] == "analysisCollapsibleButton"
    assert {section_of[name] for name in ("annotatorSelector", "addAnnotatorButton", "removeAnnotatorButton", "annotatorsList",
                                          "compareAnnotatorsButton", "annotatorTableView")} == {"analysisCollapsibleButton"}


def test_every_mrml_widget_gets_the_scene_and_every_custom_widget_is_declared():
    tree = ElementTree.parse(UI_FILE)
    top = tree.find("widget").get("name")
    connected = {c.findtext("receiver") for c in tree.iter("connection")
                 if c.findtext("sender") == top and c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"
                 and c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"}
    mrml = {name for name, (cls, _) in ui_widgets().items() if cls.startswith("qMRML") and name != top}
    assert mrml and mrml == connected, f"without the scene: {sorted(mrml - connected)}"
    declared = {c.findtext("class") for c in tree.iter("customwidget")}
    used = {cls for cls, _ in ui_widgets().values()}
    assert {cls for cls in used if cls.startswith(("ctk", "qMRML"))} <= declared


def test_folder_parameters_browse_folders_and_file_parameters_browse_files():
    for widget in ElementTree.parse(UI_FILE).iter("widget"):
        if widget.get("class") == "ctkPathLineEdit":
            parameter = widget.find("property[@name='SlicerParameterName']/string").text
            filters = widget.find("property[@name='filters']/set").text
            wanted = "ctkPathLineEdit::Dirs" if parameter.endswith("Folder") else "ctkPathLineEdit::Files"
            assert wanted in filters.split("|"), (parameter, filters)


def test_panel_rows_name_existing_widgets_and_cover_every_optional_row():

    from UncertaintySegSlicer.panel.panelChoices import panelVisibility
    from panel_settings import settings

    rows = next(ast.literal_eval(node.value) for node in module_tree().body
                if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "PANEL_ROWS")
    assert set(rows) == set(panelVisibility(settings(inputVolume=None)))
    names = {name for row in rows.values() for name in row}
    assert names <= set(ui_widgets()), f"missing in the .ui: {sorted(names - set(ui_widgets()))}"


def test_the_module_loads_in_a_slicer_without_torch_monai_numba_scipy_matplotlib_or_pydantic():
    """Slicer imports the module at startup, before the first Apply can install anything: nothing it imports at load
    time may need those packages (the core and the MRML glue import them inside functions)."""
    import subprocess
    import sys

    imported = sorted({node.module for node in module_tree().body if isinstance(node, ast.ImportFrom)
                       and (node.module or "").split(".")[0] in ("UncertaintySegLib", "UncertaintySegSlicer")})
    assert "UncertaintySegSlicer.mrml.logic" in imported and "UncertaintySegSlicer.panel.panelRun" in imported
    blocked = ["torch", "monai", "numba", "scipy", "matplotlib", "pydantic"]
    code = (f"import sys\nfor name in {blocked!r}: sys.modules[name] = None\nsys.path.insert(0, {str(MODULE)!r})\n"
            + "".join(f"import {module}\n" for module in imported))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_module_logic_is_the_tested_logic():
    bases = {node.name: [ast.unparse(b) for b in node.bases] for node in module_tree().body if isinstance(node, ast.ClassDef)}
    assert "UncertaintySegLogicBase" in bases["UncertaintySegLogic"]
    assert "ScriptedLoadableModuleTest" in bases["UncertaintySegTest"]
    assert {"UncertaintySeg", "UncertaintySegWidget", "UncertaintySegParameterNode"} <= set(bases)


def test_cmake_lists_every_python_file_and_resource():
    cmake = (MODULE / "CMakeLists.txt").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\s+(\S+\.(?:py|ui|png|json|pt|md|csv))\s*$", cmake, flags=re.M))
    python_files = {str(p.relative_to(MODULE)) for folder in ("UncertaintySegLib", "UncertaintySegSlicer") for p in (MODULE / folder).rglob("*.py")}
    assert python_files <= listed, f"not in CMakeLists.txt: {sorted(python_files - listed)}"
    for entry in listed:
        assert (MODULE / entry.replace("${MODULE_NAME}", "UncertaintySeg")).exists(), f"CMakeLists.txt lists a missing file: {entry}"
    resolved = {entry.replace("${MODULE_NAME}", "UncertaintySeg") for entry in listed}
    # every file of the panel and every file of every bundled model is installed with the extension
    resources = {str(p.relative_to(MODULE)) for p in (MODULE / "Resources").rglob("*") if p.is_file()}
    assert {name for name in resources if name.startswith("Resources/Models/hippocampus-punet/")}, "no bundled model found"
    assert resources <= resolved, f"resources not in CMakeLists.txt: {sorted(resources - resolved)}"
    python_lines = re.search(r"set\(MODULE_PYTHON_SCRIPTS\n(.*?)\n\s*\)", cmake, flags=re.S).group(1).split()[1:]
    assert python_lines == sorted(python_lines), "keep MODULE_PYTHON_SCRIPTS sorted"
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in cmake


def test_the_repository_has_the_licence_file_the_extensions_index_requires():
    licence = (MODULE.parent / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence and "END OF TERMS AND CONDITIONS" in licence
    assert 'license = "Apache-2.0"' in (MODULE.parent / "pyproject.toml").read_text(encoding="utf-8")


def test_top_level_cmake_is_a_slicer_extension():
    cmake = (MODULE.parent / "CMakeLists.txt").read_text(encoding="utf-8")
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY \"Segmentation\"", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS \"PyTorch\"", "add_subdirectory(UncertaintySeg)"):
        assert key in cmake
    # the icon and screenshots the Extensions Index shows are files of this repository (raw URLs of its main branch)
    urls = re.findall(r"https://raw\.githubusercontent\.com/\S+?/main/([^\s\"]+)", cmake)
    icon = re.search(r'EXTENSION_ICONURL "https://raw\.githubusercontent\.com/\S+?/main/([^"]+)"', cmake).group(1)
    assert icon.startswith("Resources/") and icon.endswith(".png") and len(urls) >= 3
    for path in urls:
        assert (MODULE.parent / path).is_file(), f"{path} is not in the repository"


def test_ci_has_lint_tests_and_a_slicer_self_test():
    workflow = (MODULE.parent / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8")
    for job in ("lint:", "tests:", "slicer-self-test:"):
        assert f"\n  {job}" in workflow, job
    assert "ruff check" in workflow and "compileall" in workflow
    script = re.search(r"--python-script (\S+)", workflow).group(1)
    assert (MODULE.parent / script).is_file()
    assert "xvfb-run" in workflow and "--testing" in workflow and "--additional-module-paths" in workflow
    # on the latest stable release and on the preview
    assert re.search(r"stability: \[release, nightly\]", workflow) and "stability=${{ matrix.stability }}" in workflow
    # the self-test builds a panel itself: Slicer only logs an exception raised in the module's own panel's setup()
    run_test = next(node for node in ast.walk(module_tree()) if isinstance(node, ast.FunctionDef) and node.name == "runTest")
    assert "self.test_freshPanelIsBuiltAndBound()" in ast.unparse(run_test)


def test_core_library_never_imports_slicer_vtk_qt_or_ctk():
    for path in (MODULE / "UncertaintySegLib").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert name.split(".")[0] not in {"slicer", "vtk", "qt", "ctk", "vtkmodules"}, f"{path.name} imports {name}"


def test_mrml_glue_never_imports_qt_or_ctk():
    for path in (MODULE / "UncertaintySegSlicer").glob("*.py"):
        assert not re.search(r"^\s*(import|from)\s+(qt|ctk)\b", path.read_text(encoding="utf-8"), flags=re.M), path.name


# Names and keywords Python 3.10+ added that the module could reach for at run time; Slicer 5.8 ships Python 3.9.
NEWER_THAN_3_9 = {"pairwise", "TypeAlias", "ParamSpec", "Concatenate", "TypeGuard", "aiter", "anext", "EncodingWarning"}
NEWER_KEYWORDS = {"zip": {"strict"}, "dataclass": {"slots", "kw_only", "match_args"}}


def python_39_problems(source):
    """Why `source` would not import under Python 3.9: 3.10+ syntax (3.9's grammar), a PEP 604 union in an annotation
    Python evaluates when the module loads, or a 3.10+ name or keyword."""
    try:
        tree = ast.parse(source, feature_version=(3, 9))
    except SyntaxError as error:
        return [f"line {error.lineno}: {error.msg} (Python 3.10+ syntax)"]
    postponed = any(isinstance(node, ast.ImportFrom) and node.module == "__future__" and any(a.name == "annotations" for a in node.names)
                    for node in tree.body)
    evaluated = []  # annotations of functions and of module- and class-level names; a function's own locals are not evaluated
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            arguments = node.args.posonlyargs + node.args.args + node.args.kwonlyargs + [node.args.vararg, node.args.kwarg]
            evaluated += [a.annotation for a in arguments if a is not None and a.annotation is not None] + [node.returns]
        if isinstance(node, (ast.Module, ast.ClassDef)):
            evaluated += [stmt.annotation for stmt in node.body if isinstance(stmt, ast.AnnAssign)]
    # pydantic models evaluate their fields' annotations at run time even when annotations are postponed
    fields = [stmt.annotation for node in ast.walk(tree) if isinstance(node, ast.ClassDef) for stmt in node.body
              if isinstance(stmt, ast.AnnAssign)] if "pydantic" in source else []
    problems = [f"line {a.lineno}: '{ast.unparse(a)}' (X | Y in an annotation needs Python 3.10)"
                for a in (evaluated if not postponed else fields)
                if a is not None and any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr) for n in ast.walk(a))]
    for node in ast.walk(tree):
        name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
        if isinstance(node, ast.alias):
            name = node.name
        if name in NEWER_THAN_3_9:
            problems.append(f"line {getattr(node, 'lineno', '?')}: {name} (Python 3.10+)")
        if isinstance(node, ast.Call):
            called = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
            problems += [f"line {node.lineno}: {called}({k.arg}=) (Python 3.10+)" for k in node.keywords
                         if k.arg in NEWER_KEYWORDS.get(called, ())]
    return problems


def test_the_python_39_check_finds_what_it_looks_for():
    assert python_39_problems("match x:\n    case 1:\n        pass\n")
    assert python_39_problems("def f(x: int | None): pass\n")
    assert python_39_problems("class A:\n    x: 'int' | None = None\n")
    assert python_39_problems("pairs = zip(a, b, strict=True)\n")
    assert python_39_problems("from itertools import pairwise\n")
    assert not python_39_problems("from __future__ import annotations\ndef f(x: int | None): pass\n")
    assert python_39_problems("from __future__ import annotations\nfrom pydantic import BaseModel\nclass A(BaseModel):\n    x: int | None = None\n")
    assert not python_39_problems("def f():\n    y: int | None = None\n    return isinstance(y, int)\n")


def test_every_file_slicer_imports_is_python_39():
    """Slicer 5.8 runs the module, the MRML glue and the core (PythonSlicer -m UncertaintySegLib.cli) on Python 3.9."""
    files = sorted(MODULE.rglob("*.py"))
    assert MODULE_FILE in files and len(files) > 50
    problems = {str(path.relative_to(MODULE)): found for path in files if (found := python_39_problems(path.read_text(encoding="utf-8")))}
    assert not problems, problems
