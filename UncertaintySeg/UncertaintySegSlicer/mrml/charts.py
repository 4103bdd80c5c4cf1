"""Reliability diagrams as MRML nodes: a table of bins, plot series, and one plot chart per volume.

Each run adds a bins table (lower, upper, centre, count, mean confidence, accuracy: row 0 of the
core's `ReliabilityCurve`, NaN for an empty bin) and two series: accuracy per bin (points joined
by a line) and mean confidence per bin (points), both against the bin centre. A volume's chart
(one per volume and calibration variant) holds a dashed identity line and the series of every
run on that volume, so runs overlay for comparison; its title lists each run's ECE. The chart and
its identity line sit in their own folder, outside the runs' folders, and go when no run is left.
"""

import math

import slicer

from UncertaintySegSlicer.mrml.folders import createFolder, placeInFolder
from UncertaintySegSlicer.mrml.names import nodeName
from UncertaintySegSlicer.mrml.sceneChanges import removeNodeWithDependents
from UncertaintySegSlicer.mrml.tables import addTableNode

RELIABILITY_COLUMNS = ("lower", "upper", "centre", "count", "mean confidence", "accuracy")
CHART_VOLUME_ATTRIBUTE = "UncertaintySeg.reliabilityVolumeID"
CHART_VARIANT_ATTRIBUTE = "UncertaintySeg.reliabilityVariant"
SERIES_ROLE_ATTRIBUTE = "UncertaintySeg.seriesRole"  # identity, accuracy, confidence
SERIES_LABEL_ATTRIBUTE = "UncertaintySeg.runLabel"
SERIES_ECE_ATTRIBUTE = "UncertaintySeg.ECE"
VARIANT_TITLES = {"top_label": "top-label", "class_wise": "class-wise, classes pooled", "foreground": "foreground"}
RUN_COLORS = ((0.30, 0.45, 0.69), (0.87, 0.52, 0.32), (0.33, 0.66, 0.41), (0.77, 0.31, 0.32), (0.51, 0.45, 0.70),
              (0.58, 0.47, 0.38), (0.85, 0.52, 0.76), (0.55, 0.55, 0.55))
IDENTITY_COLOR = (0.5, 0.5, 0.5)


def addReliabilityTable(scene, name, curve):
    """Bins table from row 0 of a `ReliabilityCurve` `(rows, B)`."""
    lower, upper = curve.lower[0], curve.upper[0]
    columns = dict(zip(RELIABILITY_COLUMNS, (lower, upper, (lower + upper) / 2, curve.count[0], curve.confidence[0], curve.accuracy[0])))
    return addTableNode(scene, name, {key: [v.item() for v in values] for key, values in columns.items()}, descriptions={
        "count": "voxels in the bin", "mean confidence": "mean confidence of the bin's voxels (empty bin: nan)",
        "accuracy": "fraction of the bin's voxels whose class is the reference's (empty bin: nan)"})


def _addSeries(scene, name, tableNode, xColumn, yColumn, role, color, plotType, markerStyle, lineStyle):
    series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", nodeName(scene, name))
    series.SetAndObserveTableNodeID(tableNode.GetID())
    series.SetXColumnName(xColumn)
    series.SetYColumnName(yColumn)
    series.SetPlotType(plotType)
    series.SetMarkerStyle(markerStyle)
    series.SetLineStyle(lineStyle)
    series.SetColor(*color)
    series.SetAttribute(SERIES_ROLE_ATTRIBUTE, role)
    return series


def chartSeries(chartNode, role=None):
    series = [chartNode.GetNthPlotSeriesNode(index) for index in range(chartNode.GetNumberOfPlotSeriesNodes())]
    return [s for s in series if s is not None and (role is None or s.GetAttribute(SERIES_ROLE_ATTRIBUTE) == role)]


def findReliabilityChart(scene, volumeNode, variant):
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLPlotChartNode")):
        chart = scene.GetNthNodeByClass(index, "vtkMRMLPlotChartNode")
        if chart.GetAttribute(CHART_VOLUME_ATTRIBUTE) == volumeNode.GetID() and chart.GetAttribute(CHART_VARIANT_ATTRIBUTE) == variant:
            return chart
    return None


def reliabilityChart(scene, volumeNode, variant):
    """The volume's reliability chart for `variant`, created (with its identity line) when there is none yet."""
    chart = findReliabilityChart(scene, volumeNode, variant)
    if chart is not None:
        return chart
    name = volumeNode.GetName()
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", nodeName(scene, f"{name} reliability"))
    chart.SetAttribute(CHART_VOLUME_ATTRIBUTE, volumeNode.GetID())
    chart.SetAttribute(CHART_VARIANT_ATTRIBUTE, variant)
    chart.SetXAxisTitle("confidence")
    chart.SetYAxisTitle("accuracy")
    for setAuto, setRange in ((chart.SetXAxisRangeAuto, chart.SetXAxisRange), (chart.SetYAxisRangeAuto, chart.SetYAxisRange)):
        setAuto(False)
        setRange(0.0, 1.0)
    chart.SetLegendVisibility(True)
    identityTable = addTableNode(scene, f"{name} perfect calibration", {"confidence": [0.0, 1.0], "accuracy": [0.0, 1.0]})
    identityTable.SetAttribute(CHART_VOLUME_ATTRIBUTE, volumeNode.GetID())
    # a scatter series joined by a line: PlotTypeLine would ignore X and space the points evenly
    identity = _addSeries(scene, f"{name} perfect calibration", identityTable, "confidence", "accuracy", "identity", IDENTITY_COLOR,
                          slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter, slicer.vtkMRMLPlotSeriesNode.MarkerStyleNone,
                          slicer.vtkMRMLPlotSeriesNode.LineStyleDash)
    chart.AddAndObservePlotSeriesNodeID(identity.GetID())
    updateChartTitle(chart)
    folderItemID = createFolder(scene, f"UncertaintySeg reliability: {name}")
    scene.GetSubjectHierarchyNode().SetItemAttribute(folderItemID, CHART_VOLUME_ATTRIBUTE, volumeNode.GetID())
    for node in (chart, identity, identityTable):
        placeInFolder(folderItemID, node)
    return chart


def addRunSeries(chartNode, tableNode, runLabel, ece):
    """Accuracy and mean-confidence series of one run's bins table, added to the chart; returns them."""
    scene = chartNode.GetScene()
    color = RUN_COLORS[len(chartSeries(chartNode, "accuracy")) % len(RUN_COLORS)]
    kinds = slicer.vtkMRMLPlotSeriesNode
    accuracy = _addSeries(scene, f"{runLabel} accuracy", tableNode, "centre", "accuracy", "accuracy", color,
                          kinds.PlotTypeScatter, kinds.MarkerStyleCircle, kinds.LineStyleSolid)
    confidence = _addSeries(scene, f"{runLabel} mean confidence", tableNode, "centre", "mean confidence", "confidence", color,
                            kinds.PlotTypeScatter, kinds.MarkerStyleSquare, kinds.LineStyleNone)
    for series in (accuracy, confidence):
        series.SetAttribute(SERIES_LABEL_ATTRIBUTE, runLabel)
        series.SetAttribute(SERIES_ECE_ATTRIBUTE, "" if ece is None else repr(float(ece)))
        chartNode.AddAndObservePlotSeriesNodeID(series.GetID())
    updateChartTitle(chartNode)
    return accuracy, confidence


def chartTitle(volumeName, variant, runs):
    """'Reliability (top-label), case: ECE 0.0087' for one run; each run's label before its ECE for several."""
    def text(ece):
        return "n/a" if ece is None or math.isnan(ece) else f"{ece:.4f}"

    title = f"Reliability ({VARIANT_TITLES.get(variant, variant)}), {volumeName}"
    if len(runs) == 1:
        return f"{title}: ECE {text(runs[0][1])}"
    if runs:
        return f"{title}: ECE " + ", ".join(f"{label} {text(ece)}" for label, ece in runs)
    return title


def updateChartTitle(chartNode):
    """Title from the runs whose series the chart holds now."""
    runs = [(s.GetAttribute(SERIES_LABEL_ATTRIBUTE), float(s.GetAttribute(SERIES_ECE_ATTRIBUTE) or "nan"))
            for s in chartSeries(chartNode, "accuracy")]
    volume = chartNode.GetScene().GetNodeByID(chartNode.GetAttribute(CHART_VOLUME_ATTRIBUTE) or "")
    chartNode.SetTitle(chartTitle(volume.GetName() if volume else chartNode.GetName(), chartNode.GetAttribute(CHART_VARIANT_ATTRIBUTE), runs))


def refreshReliabilityCharts(scene):
    """After runs were removed: retitle the charts, and remove those left with no run (with their identity line)."""
    charts = [scene.GetNthNodeByClass(index, "vtkMRMLPlotChartNode") for index in range(scene.GetNumberOfNodesByClass("vtkMRMLPlotChartNode"))]
    for chart in charts:
        if chart.GetAttribute(CHART_VOLUME_ATTRIBUTE) is None:
            continue
        if chartSeries(chart, "accuracy") or chartSeries(chart, "confidence"):
            updateChartTitle(chart)
            continue
        shNode = scene.GetSubjectHierarchyNode()
        folderItemID = shNode.GetItemParent(shNode.GetItemByDataNode(chart))
        for identity in chartSeries(chart, "identity"):
            table = identity.GetTableNode()
            removeNodeWithDependents(identity)
            if table is not None:
                removeNodeWithDependents(table)
        removeNodeWithDependents(chart)
        if shNode.HasItemAttribute(folderItemID, CHART_VOLUME_ATTRIBUTE) and not shNode.GetNumberOfItemChildren(folderItemID):
            shNode.RemoveItem(folderItemID, False, True)


def showChart(chartNode, applicationLogic=None):
    """Show the chart the way the Plots module does: a layout with a plot view (where the scene has a layout node)
    and the chart made active in the plot views (propagated where an application logic is given)."""
    scene = chartNode.GetScene()
    plotsLogic = applicationLogic.GetModuleLogic("Plots") if applicationLogic is not None else None
    temporary = plotsLogic is None
    if temporary:
        plotsLogic = slicer.vtkSlicerPlotsLogic()
        if applicationLogic is not None:
            plotsLogic.SetMRMLApplicationLogic(applicationLogic)
        plotsLogic.SetMRMLScene(scene)
    try:
        plotsLogic.ShowChartInLayout(chartNode)
    finally:
        if temporary:
            plotsLogic.SetMRMLScene(None)
    selectionNode = applicationLogic.GetSelectionNode() if applicationLogic is not None else scene.GetNodeByID("vtkMRMLSelectionNodeSingleton")
    if selectionNode is not None and selectionNode.GetActivePlotChartID() != chartNode.GetID():
        selectionNode.SetActivePlotChartID(chartNode.GetID())
