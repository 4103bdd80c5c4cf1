"""What the Widget does through Slicer's Python API, free of qt and ctk: binding the panel to its parameter node
(Slicer's parameterNodeWrapper), repairing a saved node's values, the selected table row, error dialogs.

Each works around a behaviour of Slicer that `Testing/test_slicer_releases.py` checks with Slicer's own code at
5.8.1, 5.10.0 and 5.12.3; the wrapper is only imported inside functions (`slicer-core` has none).
"""

import logging

import slicer


def connectPanel(parameterNode, ui):
    """Bind every widget of `ui` that has a SlicerParameterName; returns the tag that `disconnectGui` takes.
    `connectParametersToGui`, not `connectGui`: Slicer 5.8's `connectGui` returns no tag, so its connections could never
    be undone and would pile up."""
    widgets = {widget.property("SlicerParameterName"): widget for widget in vars(ui).values()
               if widget.property("SlicerParameterName")}
    return parameterNode.connectParametersToGui(widgets)


class PanelBinding:
    """The panel's widgets bound to the module's parameter node (a parameterNodeWrapper) while it is the same MRML node.

    Binding again to the same node keeps the binding: Slicer 5.8 and 5.10 never remove the observer that each
    `connectParametersToGui` adds (5.12 does), so unbinding on exit() and binding the Logic's new wrapper on enter(),
    as Slicer's template does, left one observer holding one wrapper per visit, and every change got slower."""

    def __init__(self):
        self.parameterNode = None
        self._tag = None

    def bind(self, parameterNode, ui):
        """Bind `ui` to `parameterNode` (None: unbind); True when the binding changed."""
        if parameterNode is not None and self.parameterNode is not None and parameterNode.parameterNode is self.parameterNode.parameterNode:
            return False
        if self.parameterNode is not None:
            self.parameterNode.disconnectGui(self._tag)
        self.parameterNode, self._tag = parameterNode, None
        if parameterNode is not None:
            self._tag = connectPanel(parameterNode, ui)
        return True


def selectedTableRow(view):
    """The MRML table row selected in a qMRMLTableView, or None. The project's tables use column titles as headers, so
    the source model's row is the table's row (qMRMLTableModel.mrmlTableRowIndex is plain C++, not exposed to Python)."""
    selection = view.selectionModel()
    rows = selection.selectedRows() if selection is not None else []
    if view.mrmlTableNode() is None or not rows:
        return None
    return view.sortFilterProxyModel().mapToSource(rows[0]).row()


def resetUnreadableParameters(node, wrapperClass):
    """Reset to its default every value of the MRML parameter `node` that `wrapperClass` cannot read or no longer
    offers: a scene saved with a model not installed here, or with a choice or range a later version changed, would
    otherwise make wrapping (enum) or binding (Choice) the node raise. Returns the names reset."""
    from slicer.parameterNodeWrapper.serializers import createSerializerFromAnnotatedType

    reset = []
    for name in wrapperClass.allParameters:
        serializer = createSerializerFromAnnotatedType(wrapperClass.dataType(name))
        if not serializer.isIn(node, name):
            continue
        try:
            serializer.validate(serializer.read(node, name))
        except Exception as error:  # Slicer's serializers and validators raise ValueError, TypeError or KeyError
            logging.warning(f"UncertaintySeg: the scene's {name} ({error}) is not one this version offers; reset to its default.")
            serializer.remove(node, name)
            reset.append(name)
    return reset


def errorDialog(text, details=None):
    """Slicer's error message box, with a Details section only when there are details."""
    slicer.util.errorDisplay(text, **({"detailedText": details} if details else {}))
