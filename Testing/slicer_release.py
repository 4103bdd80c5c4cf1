"""Slicer's own pure-Python `slicer` package at a release, over `slicer-core`'s MRML, for tests.

`../shared/slicer-python/<tag>/slicer/` holds Slicer's `Base/Python/slicer/` at each release, unmodified
(parameterNodeWrapper, ScriptedLoadableModule, util, i18n). Inside `slicerRelease(tag)` those are the modules
`import slicer.X` finds, `qt` and `ctk` are the stand-ins of `qt_stand_ins.py`, and the module file
`UncertaintySeg.py` is imported fresh against them, as Slicer imports it at startup. Everything is put back
on leaving, so the rest of the suite sees `slicer-core`'s `slicer.util` again.
"""

import importlib
import sys
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest

from qt_stand_ins import SLICER_QT_CLASSES, SLICER_QT_PLACEHOLDERS, StandInObject, standInModules

SLICER_PYTHON = Path(__file__).resolve().parents[2] / "shared" / "slicer-python"
RELEASES = ("v5.8.1", "v5.10.0", "v5.12.3")


def _replacedModule(name):
    """Modules that must come from the release (or the stand-ins) inside the context."""
    return name in ("qt", "ctk", "UncertaintySeg") or (name.startswith("slicer.") and not name.startswith("slicer.slicer_core"))


class StandInApplication:
    """`slicer.app`, for Slicer's util functions: not in testing mode, with a main window for message boxes."""

    applicationName = "Slicer"

    def testingEnabled(self):
        return False

    def topLevelWidgets(self):
        return [SimpleNamespace(objectName="qSlicerMainWindow")]


@contextmanager
def slicerRelease(tag, scene=None):
    """Yields (slicer, qt, ctk, module): Slicer's package at `tag` and the freshly imported `UncertaintySeg` module.
    `scene` (a vtkMRMLScene) becomes `slicer.mrmlScene` inside."""
    folder = SLICER_PYTHON / tag / "slicer"
    if not (folder / "parameterNodeWrapper" / "wrapper.py").is_file():
        pytest.skip(f"Slicer's Python package at {tag} is absent: expected {folder} (../shared/slicer-python)")
    import slicer

    savedModules = {name: module for name, module in sys.modules.items() if _replacedModule(name)}
    savedAttributes = dict(vars(slicer))
    savedPath = list(slicer.__path__)
    qt, ctk = standInModules()
    try:
        for name in savedModules:
            del sys.modules[name]
        for name in [name for name in vars(slicer) if name in ("util", "i18n", "parameterNodeWrapper", "ScriptedLoadableModule")]:
            delattr(slicer, name)
        sys.modules["qt"], sys.modules["ctk"] = qt, ctk
        slicer.__path__.insert(0, str(folder))
        for cls in SLICER_QT_CLASSES:
            setattr(slicer, cls.__name__, cls)
        for name in SLICER_QT_PLACEHOLDERS:
            setattr(slicer, name, type(name, (StandInObject,), {}))
        slicer.app = StandInApplication()
        slicer.mrmlScene = scene
        importlib.import_module("slicer.util")
        module = importlib.import_module("UncertaintySeg")
        assert Path(slicer.parameterNodeWrapper.__file__).is_relative_to(folder)
        yield slicer, qt, ctk, module
    finally:
        for name in [name for name in sys.modules if _replacedModule(name)]:
            del sys.modules[name]
        sys.modules.update(savedModules)
        for name in [name for name in vars(slicer) if name not in savedAttributes]:
            delattr(slicer, name)
        for name, value in savedAttributes.items():
            setattr(slicer, name, value)
        slicer.__path__[:] = savedPath
