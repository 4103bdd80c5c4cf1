"""UncertaintySeg core: segmentation uncertainty and calibration, without Slicer.

Never imports slicer, vtk, qt or ctk: the same code runs in Slicer, the CLI and scripts.
"""

__version__ = "0.1.0"
