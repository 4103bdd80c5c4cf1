"""matplotlib for files, not windows: `pyplot()` selects the non-interactive Agg backend and returns pyplot.

matplotlib is heavy and optional (only figures need it), so it is imported when a figure is drawn.
"""

from __future__ import annotations


def pyplot():
    """`matplotlib.pyplot`, with the Agg backend selected (figures are only saved to files)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
