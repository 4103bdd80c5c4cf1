"""Colour tables, by Slicer's own IDs, and class colours for segments."""

VIRIDIS = "vtkMRMLColorTableNodeFileViridis.txt"
INFERNO = "vtkMRMLColorTableNodeFileInferno.txt"

# Distinct colours for classes 1, 2, ... (background gets none): Slicer's label colours.
CLASS_COLORS = (
    (0.50, 0.68, 0.50), (0.95, 0.84, 0.57), (0.69, 0.48, 0.39), (0.44, 0.71, 0.84),
    (0.85, 0.40, 0.40), (0.56, 0.42, 0.79), (0.86, 0.63, 0.27), (0.30, 0.58, 0.60),
)


def classColor(classIndex):
    """RGB in [0, 1] for a foreground class index (1, 2, ...)."""
    return CLASS_COLORS[(classIndex - 1) % len(CLASS_COLORS)]


def requireColorNode(scene, colorNodeID):
    node = scene.GetNodeByID(colorNodeID)
    if node is None:
        raise RuntimeError(f"colour table '{colorNodeID}' is not in the scene: expected Slicer's default colour tables (Colors module).")
    return node
