"""The panel's run settings for tests without Qt: a stand-in node and the `predict` arguments the real CLI parses.

Import after `pytest.importorskip("slicer")`: `UncertaintySegSlicer.panel.panelRun` needs slicer-core.
"""

from dataclasses import replace

from UncertaintySegLib.cli import build_parser
from UncertaintySegSlicer.panel.panelRun import RunSettings


class FakeNode:
    """Stands in for a node where only its presence matters (parameter checks)."""

    def GetScene(self):
        return object()

    def GetName(self):
        return "node"


def settings(**changes):
    """The panel's defaults with `changes`, for a stand-in input volume."""
    return replace(RunSettings(inputVolume=FakeNode()), **changes)


def parsed(run_settings):
    """The `predict` arguments of `run_settings` as the real CLI parses them."""
    return build_parser().parse_args(["predict", *run_settings.predictArguments("in.nrrd", "out")])
