"""A real MRML scene from `slicer-core`, set up as the Slicer application sets it up.

`slicer-core` ships Slicer's MRML and module logics but not its share folder, so the
file-based colour tables the project uses (Viridis, Inferno, and the panel's other overlay
colour maps Magma, Plasma, Cividis) are written from matplotlib's definitions into a temporary
share folder, where `vtkSlicerColorLogic` loads them under Slicer's own IDs. Slice views render
to RGBA through `vtkMRMLSliceLogic`, without OpenGL.
"""

from pathlib import Path



def writeColorFiles(homeDirectory: Path, shareSubdirectory="share"):
    import matplotlib

    colorDirectory = homeDirectory / shareSubdirectory / "ColorFiles"
    colorDirectory.mkdir(parents=True, exist_ok=True)
    for name in ("Viridis", "Inferno", "Magma", "Plasma", "Cividis"):
        colormap = matplotlib.colormaps[name.lower()]
        lines = ["# 256 values"]
        for index in range(256):
            r, g, b = (int(round(255 * v)) for v in colormap(index / 255.0)[:3])
            lines.append(f"{index} {name}{index} {r} {g} {b} 255")
        (colorDirectory / f"{name}.txt").write_text("\n".join(lines) + "\n")


def createScene(homeDirectory: Path):
    """Scene + application logic + Colors/Volumes/Segmentations/SubjectHierarchy/Plots logics; sets slicer.mrmlScene."""
    import slicer
    from vtkmodules.vtkCommonCore import vtkCollection

    writeColorFiles(homeDirectory)
    scene = slicer.vtkMRMLScene()
    appLogic = slicer.vtkSlicerApplicationLogic()
    appLogic.SetHomeDirectory(str(homeDirectory))
    appLogic.SetShareDirectory("share")
    appLogic.SetMRMLScene(scene)
    appLogic.SetSliceLogics(vtkCollection())
    appLogic.SetViewLogics(vtkCollection())
    colorLogic = slicer.vtkSlicerColorLogic()
    colorLogic.SetMRMLApplicationLogic(appLogic)
    colorLogic.SetMRMLScene(scene)
    appLogic.SetColorLogic(colorLogic)
    for name, logic in (("Volumes", slicer.vtkSlicerVolumesLogic()), ("Segmentations", slicer.vtkSlicerSegmentationsModuleLogic()),
                        ("SubjectHierarchy", slicer.vtkSlicerSubjectHierarchyModuleLogic()), ("Plots", slicer.vtkSlicerPlotsLogic())):
        logic.SetMRMLApplicationLogic(appLogic)
        logic.SetMRMLScene(scene)
        appLogic.SetModuleLogic(name, logic)
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene)
    slicer.mrmlScene = scene
    return scene, appLogic


def addSliceView(appLogic, name="Red", orientation="Axial", size=(256, 256)):
    """A slice logic + slice node + composite node, as a slice view of the app has."""
    import slicer

    sliceLogic = slicer.vtkMRMLSliceLogic()
    sliceLogic.SetMRMLApplicationLogic(appLogic)
    sliceLogic.SetMRMLScene(appLogic.GetMRMLScene())
    sliceNode = sliceLogic.AddSliceNode(name)
    appLogic.GetSliceLogics().AddItem(sliceLogic)
    sliceNode.SetOrientation(orientation)
    sliceNode.SetDimensions(size[0], size[1], 1)
    return sliceLogic


def renderSlice(sliceLogic):
    """RGBA uint8 image (rows, columns, 4) of what the slice view shows; row 0 is the bottom."""
    from vtk.util import numpy_support

    connection = sliceLogic.GetImageDataConnection()
    connection.GetProducer().Update()
    image = connection.GetProducer().GetOutputDataObject(connection.GetIndex())
    width, height, _ = image.GetDimensions()
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, -1).copy(), image


def rasToSlicePixel(sliceLogic, ras):
    """(column, row) of a RAS point in the slice view's image."""
    import vtk

    inverse = vtk.vtkMatrix4x4()
    vtk.vtkMatrix4x4.Invert(sliceLogic.GetSliceNode().GetXYToRAS(), inverse)
    x, y, _, _ = inverse.MultiplyPoint([*ras, 1.0])
    return int(round(x)), int(round(y))
