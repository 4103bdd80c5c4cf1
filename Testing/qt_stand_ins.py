"""Stand-ins for `qt`, `ctk` and Slicer's Qt widget classes, which exist only inside the Slicer application.

They are not Qt. Slicer's own parameterNodeWrapper picks a GUI connector by the widget's exact class
(`type(widget) == qt.QComboBox`), so each name here is a plain Python class of that name, one class per
name, and a stand-in widget keeps what a connector writes to it (`checked`, `value`, `currentIndex`,
`currentPath`, `nodeTypes`, ...), the items of a combo box, and the slots connected to each signal.
`StandInSignal.emit` plays the user's edit. Only the members Slicer's connectors and message boxes use
are provided; anything else raises AttributeError, so a call the real class lacks is not hidden.
"""

import types


class StandInSignal:
    """A Qt signal: `connect(slot)`, `disconnect(slot)`, `emit()`; `slots` are the live connections. The slots are called
    without the signal's arguments: Slicer's connectors take none (PythonQt passes a slot only the arguments it takes)."""

    def __init__(self):
        self.slots = []

    def connect(self, slot):
        self.slots.append(slot)

    def disconnect(self, slot):
        self.slots.remove(slot)  # Qt raises too when the slot is not connected

    def emit(self):
        for slot in list(self.slots):
            slot()


class StandInObject:
    """Any Qt object: dynamic properties (`property`/`setProperty`, as the .ui's SlicerParameterName) and signals."""

    SIGNALS = ()

    def __init__(self, **properties):
        self._properties = dict(properties)
        self.signals = {name: StandInSignal() for name in self.SIGNALS}

    def __getattr__(self, name):
        signals = self.__dict__.get("signals", {})
        if name in signals:
            return signals[name]
        raise AttributeError(f"{type(self).__name__} stand-in has no {name!r}")

    def property(self, name):
        return self._properties.get(name)

    def setProperty(self, name, value):
        self._properties[name] = value

    def isWidgetType(self):
        return True

    def connectionCount(self):
        return sum(len(signal.slots) for signal in self.signals.values())


class QCheckBox(StandInObject):
    SIGNALS = ("stateChanged",)
    checked = False


class QPushButton(StandInObject):
    SIGNALS = ("toggled",)
    checked = False
    checkable = False


class QSpinBox(StandInObject):
    SIGNALS = ("valueChanged",)
    value = 0
    minimum = 0
    maximum = 99

    def setRange(self, minimum, maximum):
        self.minimum, self.maximum = minimum, maximum

    def setMinimum(self, minimum):
        self.minimum = minimum

    def setMaximum(self, maximum):
        self.maximum = maximum


class ctkSliderWidget(StandInObject):
    SIGNALS = ("valueChanged",)
    value = 0.0
    minimum = 0.0
    maximum = 99.0
    decimals = 2
    singleStep = 1.0


class QComboBox(StandInObject):
    """Adding the first item selects it and clearing selects nothing (index -1), as in Qt."""

    SIGNALS = ("currentIndexChanged",)

    def __init__(self, **properties):
        super().__init__(**properties)
        self.items = []
        self.currentIndex = -1

    def clear(self):
        self.items = []
        self.currentIndex = -1

    def addItem(self, text):
        self.items.append(text)
        if self.currentIndex == -1:
            self.currentIndex = 0

    @property
    def currentText(self):
        return self.items[self.currentIndex] if 0 <= self.currentIndex < len(self.items) else ""


class QLineEdit(StandInObject):
    SIGNALS = ("textChanged",)
    text = ""


class ctkPathLineEdit(StandInObject):
    SIGNALS = ("currentPathChanged",)
    currentPath = ""


class qMRMLNodeComboBox(StandInObject):
    SIGNALS = ("currentNodeChanged",)
    nodeTypes = ()

    def __init__(self, **properties):
        super().__init__(**properties)
        self._currentNode = None

    def currentNode(self):
        return self._currentNode

    def setCurrentNode(self, node):
        self._currentNode = node


class QModelIndex:
    def __init__(self, row):
        self._row = row

    def row(self):
        return self._row


class QItemSelectionModel:
    def __init__(self, selectedRows):
        self._selectedRows = [QModelIndex(row) for row in selectedRows]

    def selectedRows(self):
        return list(self._selectedRows)


class QSortFilterProxyModel:
    """The view's sorting: row `r` of the view shows row `sourceRows[r]` of the table model."""

    def __init__(self, sourceRows):
        self._sourceRows = list(sourceRows)

    def mapToSource(self, index):
        return QModelIndex(self._sourceRows[index.row()])


class qMRMLTableModel:
    """Python sees no member of it that the module needs: `mrmlTableRowIndex` is a plain C++ method (not a slot, not
    Q_INVOKABLE) of Slicer's Libs/MRML/Widgets/qMRMLTableModel.h, which PythonQt does not wrap."""


class qMRMLTableView(StandInObject):
    """The Q_INVOKABLE members of Slicer's qMRMLTableView.h the module uses, and Qt's `selectionModel()`."""

    SIGNALS = ("selectionChanged",)

    def __init__(self, tableNode=None, sourceRows=(), selectedRows=(), **properties):
        super().__init__(**properties)
        self._tableNode = tableNode
        self._proxy = QSortFilterProxyModel(sourceRows)
        self._selection = QItemSelectionModel(selectedRows)

    def mrmlTableNode(self):
        return self._tableNode

    def tableModel(self):
        return qMRMLTableModel()

    def sortFilterProxyModel(self):
        return self._proxy

    def selectionModel(self):
        return self._selection


class ctkMessageBox(StandInObject):
    """Slicer's `messageBox` sets every keyword it is given that the box has (`hasattr`), then runs it."""

    text = ""
    detailedText = ""
    windowTitle = ""
    icon = None
    standardButtons = None

    def __init__(self, parent=None):
        super().__init__()
        shown.append(self)

    def deleteLater(self):
        pass

    def exec_(self):
        return 0


shown = []  # every ctkMessageBox created, in order


class QMessageBox:
    Ok, Cancel, Critical, Question, Warning, Information = 1, 2, 3, 4, 5, 6


class QColor:
    """Subclassed at import by Slicer's serializers (ObservedQColor)."""


def _module(name, classes):
    module = types.ModuleType(name, f"Stand-in for the Slicer application's `{name}` module (Testing/qt_stand_ins.py).")

    def placeholder(attribute):
        # A name no test uses: a class of that name, so that `type(widget) in (qt.QSlider, ...)` reads as in Slicer.
        cls = type(attribute, (StandInObject,), {"__module__": name})
        setattr(module, attribute, cls)
        return cls

    def missing(attribute):
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        return placeholder(attribute)

    for cls in classes:
        setattr(module, cls.__name__, cls)
    module.__getattr__ = missing
    return module


QT_CLASSES = (QCheckBox, QPushButton, QSpinBox, QComboBox, QLineEdit, QMessageBox, QColor)
CTK_CLASSES = (ctkSliderWidget, ctkPathLineEdit, ctkMessageBox)
SLICER_QT_CLASSES = (qMRMLNodeComboBox, qMRMLTableView)  # Slicer's own Qt widgets, which `slicer-core` lacks
# The other Slicer widget classes Slicer's GUI connectors name (placeholders: no .ui of the module uses them)
SLICER_QT_PLACEHOLDERS = ("qMRMLSliderWidget", "qMRMLSpinBox", "qMRMLRangeWidget", "qSlicerWidget", "qMRMLWidget")


def standInModules():
    """Fresh `qt` and `ctk` stand-in modules (their placeholder classes are made on first use)."""
    return _module("qt", QT_CLASSES), _module("ctk", CTK_CLASSES)


def widgetFor(className, qt, ctk, slicer, **properties):
    """A stand-in widget of the .ui's class `className`, from whichever module Slicer's code names it in."""
    module = slicer if className.startswith("qMRML") or className.startswith("qSlicer") else ctk if className.startswith("ctk") else qt
    return getattr(module, className)(**properties)
