"""The Slicer layer of UncertaintySeg: `mrml/` (arrays <-> nodes, colours, folders, tables, charts, the Logic),
`analysis/` (feature maps, ranking, annotator agreement in the scene) and `panel/` (the panel's Qt-free half).

Imports slicer and vtk, never qt or ctk, so it runs against `slicer-core` in tests.
"""
