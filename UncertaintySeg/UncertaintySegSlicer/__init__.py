"""MRML glue for UncertaintySeg: arrays <-> nodes, colour tables, overlays, folders.

Imports slicer and vtk, never qt or ctk, so it runs against `slicer-core` in tests.
"""
