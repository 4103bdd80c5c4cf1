"""The panel's run settings for tests without Qt: the module's real parameter-node defaults, a stand-in node, and
the `predict` arguments the real CLI parses.

Import after `pytest.importorskip("slicer")`: `UncertaintySegSlicer.panel.panelRun` needs slicer-core. The defaults
come from `UncertaintySegParameterNode` as Slicer's own parameterNodeWrapper builds it (the newest release in
../shared/slicer-python; skipped where absent), so no test keeps a copy of the module's fields.
"""

from functools import lru_cache

from UncertaintySegLib.cli import build_parser
from UncertaintySegSlicer.panel.panelRun import RunSettings


class FakeNode:
    """Stands in for a node where only its presence matters (parameter checks)."""

    def GetScene(self):
        return object()

    def GetName(self):
        return "node"


@lru_cache(maxsize=1)
def panelDefaults() -> RunSettings:
    """Every parameter of a fresh parameter node of the module, as Slicer's wrapper gives it."""
    import slicer
    from slicer_release import RELEASES, slicerRelease

    with slicerRelease(RELEASES[-1], slicer.vtkMRMLScene()) as (_, _, _, module):
        return RunSettings.fromParameters(module.UncertaintySegLogic().getParameterNode())


def settings(**changes):
    """The panel's defaults with `changes`, for a stand-in input volume."""
    return panelDefaults().replaced(**{"inputVolume": FakeNode(), **changes})


def parsed(run_settings):
    """The `predict` arguments of `run_settings` as the real CLI parses them."""
    return build_parser().parse_args(["predict", *run_settings.predictArguments("in.nrrd", "out")])
