"""Regenerate the README pictures in Resources/Screenshots from the default model and real data.

    .venv/bin/python scripts/make_screenshots.py

- demo-overlay.png: `uncertaintyseg demo`'s slice figure on the first test-split case;
- slice-entropy-overlay.png: what a Slicer slice view shows after the Logic runs, rendered
  headless from a real `slicer-core` MRML scene (the same set-up as the tests);
- slice-mutual-information-overlay.png: what the panel's Apply shows for MC dropout (20 samples) with the
  mutual-information overlay in Magma: `predict` run in the background and its folder loaded, as the
  Widget does it (UncertaintySegSlicer.panel.panelRun), rendered the same way.
"""

import shutil
import sys
import tempfile
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPOSITORY / "Resources" / "Screenshots"
sys.path[:0] = [str(REPOSITORY / "UncertaintySeg"), str(REPOSITORY / "Testing")]


def demo_overlay(workspace: Path) -> None:
    from UncertaintySegLib.cli.demo import run_demo

    run_demo(workspace / "demo", device="cpu")
    shutil.copy(workspace / "demo" / "overlay.png", SCREENSHOTS / "demo-overlay.png")


def save_slice_through_maximum(sliceLogic, inputNode, values, name: str) -> None:
    """Render the slice view through the voxel where `values (I, J, K)` peak (the model is least sure) to a PNG."""
    import numpy as np
    import vtk
    from slicer_scene import renderSlice

    sliceLogic.FitSliceToAll()
    matrix = vtk.vtkMatrix4x4()
    inputNode.GetIJKToRASMatrix(matrix)
    i, j, k = np.unravel_index(values.argmax(), values.shape)
    sliceLogic.SetSliceOffset(matrix.MultiplyPoint([float(i), float(j), float(k), 1.0])[2])
    _, image = renderSlice(sliceLogic)
    writer = vtk.vtkPNGWriter()
    writer.SetFileName(str(SCREENSHOTS / name))
    writer.SetInputData(image)
    writer.Write()


def slice_view(workspace: Path) -> None:
    from slicer_scene import addSliceView, createScene

    from UncertaintySegLib.data.hippocampus import load_split, resolve_data_root
    from UncertaintySegLib.predict.io import read_volume
    from UncertaintySegSlicer.mrml.logic import UncertaintySegLogicBase
    from UncertaintySegSlicer.mrml.volumes import addVolumeNode, volumeFromNode

    scene, appLogic = createScene(workspace / "slicer-home")
    sliceLogic = addSliceView(appLogic, size=(400, 400))
    volume = read_volume(load_split(resolve_data_root(), "test")[0].image)
    inputNode = addVolumeNode(scene, volume.array, volume.geometry, "hippocampus_011")
    result = UncertaintySegLogicBase().run(inputNode, model="hippocampus", device="cpu", overlayOpacity=0.7)
    save_slice_through_maximum(sliceLogic, inputNode, volumeFromNode(result.entropyNode).array, "slice-entropy-overlay.png")


def panel_mutual_information_view(workspace: Path) -> None:
    from panel_settings import settings as panelSettings
    from slicer_scene import addSliceView, createScene

    from UncertaintySegLib.data.hippocampus import load_split, resolve_data_root
    from UncertaintySegLib.predict.io import read_volume
    from UncertaintySegSlicer.mrml.logic import UncertaintySegLogicBase
    from UncertaintySegSlicer.panel.panelChoices import OverlayColormap, OverlayMap, UncertaintyMethod
    from UncertaintySegSlicer.panel.panelRun import PanelRun
    from UncertaintySegSlicer.panel.process import SUCCEEDED
    from UncertaintySegSlicer.mrml.volumes import addVolumeNode, volumeFromNode

    scene, appLogic = createScene(workspace / "slicer-home-panel")
    sliceLogic = addSliceView(appLogic, size=(400, 400))
    volume = read_volume(load_split(resolve_data_root(), "test")[0].image)
    inputNode = addVolumeNode(scene, volume.array, volume.geometry, "hippocampus_011")
    settings = panelSettings(inputVolume=inputNode, device="cpu", method=UncertaintyMethod.MC_DROPOUT, samples=20,
                             overlay=OverlayMap.MUTUAL_INFORMATION, overlayColormap=OverlayColormap.MAGMA, overlayOpacity=0.7)
    run = PanelRun(settings, workParent=workspace).start()
    if run.process.wait(600) != SUCCEEDED:
        raise RuntimeError(f"predict failed: {run.errorMessage}\n{run.log}")
    loaded = run.load(UncertaintySegLogicBase())
    run.cleanup()
    save_slice_through_maximum(sliceLogic, inputNode, volumeFromNode(loaded.overlayNode).array,
                               "slice-mutual-information-overlay.png")


if __name__ == "__main__":
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as workspace:
        demo_overlay(Path(workspace))
        slice_view(Path(workspace))
        panel_mutual_information_view(Path(workspace))
    print(f"written: {sorted(p.name for p in SCREENSHOTS.iterdir())}")
