"""Regenerate the extension icon and the Sample Data thumbnail (checked in; run again after changing them).

    .venv/bin/python scripts/make_icons.py

- Resources/Icons/UncertaintySeg.png (128x128): the extension icon of the Extensions Index (EXTENSION_ICONURL), also the
  module's icon (UncertaintySeg/Resources/Icons/UncertaintySeg.png): a segmented structure whose boundary glows in
  Inferno, where a network is least sure;
- UncertaintySeg/Resources/Icons/SampleHippocampus.png (260x280): the Sample Data module's thumbnail of the registered
  hippocampus case (UncertaintySegSlicer/panel/sampleData.py), its middle slice with the reference outlined; needs the data
  (MSD Task04, found as `uncertaintyseg` finds it).
"""

import sys
from pathlib import Path

import numpy as np

REPOSITORY = Path(__file__).resolve().parents[1]
EXTENSION_ICON = REPOSITORY / "Resources" / "Icons" / "UncertaintySeg.png"
MODULE_ICONS = REPOSITORY / "UncertaintySeg" / "Resources" / "Icons"
sys.path.insert(0, str(REPOSITORY / "UncertaintySeg"))


def icon(size=128):
    """RGBA float image: a rounded dark square, a structure in muted teal, its boundary band in Inferno."""
    import matplotlib

    y, x = np.mgrid[0:size, 0:size] / (size - 1) * 2 - 1  # [-1, 1], y downwards
    # rounded-square background mask (superellipse), dark blue-grey
    background = (np.abs(x) ** 6 + np.abs(y) ** 6) <= 0.97 ** 6
    image = np.zeros((size, size, 4))
    image[background] = (0.09, 0.10, 0.16, 1.0)
    # a curved, hippocampus-like structure: a bent ellipse, signed distance approximated in its own frame
    bend = 0.18 - 0.5 * x ** 2
    u, v = x / 0.78, (y - bend) / 0.26
    radius = np.sqrt(u ** 2 + v ** 2)
    inside = radius < 1.0
    image[inside & background] = (0.30, 0.55, 0.60, 1.0)
    # entropy: highest on the boundary, falling off both ways (what the overlay shows)
    entropy = np.exp(-((radius - 1.0) / 0.16) ** 2)
    glow = matplotlib.colormaps["inferno"](0.25 + 0.75 * entropy)
    alpha = np.clip(1.6 * entropy, 0, 1)[..., None]
    image[..., :3] = np.where(background[..., None], (1 - alpha) * image[..., :3] + alpha * glow[..., :3], image[..., :3])
    return image


def sample_thumbnail(size=(280, 260)):
    """RGBA uint8 (rows, columns): the registered case's middle axial slice, reference outlined in the model's class colours."""
    import matplotlib.pyplot as plt

    from UncertaintySegLib.data.hippocampus import resolve_data_root
    from UncertaintySegLib.predict.io import read_volume
    from UncertaintySegSlicer.panel.sampleData import HIPPOCAMPUS_FILES, LOCAL_PATHS

    task = resolve_data_root() / "Task04_Hippocampus"
    image = read_volume(task / LOCAL_PATHS[HIPPOCAMPUS_FILES[0].fileName]).array
    labels = read_volume(task / LOCAL_PATHS[HIPPOCAMPUS_FILES[1].fileName]).array
    k = int(np.argmax((labels > 0).sum(axis=(0, 1))))  # the slice with the most reference voxels
    figure = plt.figure(figsize=(size[1] / 100, size[0] / 100), dpi=100)
    axis = figure.add_axes((0, 0, 1, 1))
    axis.imshow(image[:, :, k].T, cmap="gray", origin="lower", aspect="equal", interpolation="bilinear")
    for value, colour in ((1, "#7fad7f"), (2, "#f2d691")):  # Slicer's label colours of classes 1, 2 (colors.CLASS_COLORS)
        axis.contour((labels[:, :, k] == value).T, levels=[0.5], colors=[colour], linewidths=2.0, origin="lower")
    axis.set_axis_off()
    figure.set_facecolor("black")
    figure.canvas.draw()
    pixels = np.asarray(figure.canvas.buffer_rgba()).copy()
    plt.close(figure)
    return pixels


def main():
    import matplotlib.pyplot as plt

    picture = icon()
    for path in (EXTENSION_ICON, MODULE_ICONS / "UncertaintySeg.png"):
        path.parent.mkdir(parents=True, exist_ok=True)
        plt.imsave(path, picture)
    plt.imsave(MODULE_ICONS / "SampleHippocampus.png", sample_thumbnail())
    print(f"written: {EXTENSION_ICON.relative_to(REPOSITORY)}, UncertaintySeg/Resources/Icons/UncertaintySeg.png, "
          "UncertaintySeg/Resources/Icons/SampleHippocampus.png")


if __name__ == "__main__":
    main()
