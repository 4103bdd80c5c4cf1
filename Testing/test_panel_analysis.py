"""The panel's Analysis section without Qt: feature-map settings as `predict` arguments (parsed by the real CLI) and
their checks, a background predict run with feature maps loaded into the run's folder, and the Rank button's
ranking of a real scene stored in the parameter node."""

from types import SimpleNamespace

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core is not installed (pip install slicer-core)")

from panel_settings import parsed, settings  # noqa: E402
from UncertaintySegLib.predict.io import read_volume  # noqa: E402
from UncertaintySegSlicer.mrml.logic import UncertaintySegLogicBase  # noqa: E402
from UncertaintySegSlicer.panel.panelChoices import (MODEL_FILE, PRECOMPUTED, FeatureMapReduction, RankingScore,  # noqa: E402
                                               UncertaintyMethod, panelVisibility)
from UncertaintySegSlicer.panel.panelRanking import RANKING_TABLE_NAME, checkRankParameters, rankScene  # noqa: E402
from UncertaintySegSlicer.panel.panelRun import PanelRun, checkRunParameters  # noqa: E402
from UncertaintySegSlicer.panel.process import RUNNING, SUCCEEDED  # noqa: E402
from UncertaintySegSlicer.mrml.volumes import addVolumeNode, volumeFromNode  # noqa: E402


def test_feature_map_settings_become_predict_arguments_the_cli_parses():
    assert parsed(settings()).feature_maps is None  # unticked: no maps
    assert parsed(settings(createFeatureMaps=True)).feature_maps == []  # no layer named: the CLI's default layers, mean
    args = parsed(settings(createFeatureMaps=True, featureMapLayers=" encoder.1  decoder=mean head=0,3,5 ",
                           featureMapReduction=FeatureMapReduction.MAX, method=UncertaintyMethod.MC_DROPOUT, samples=4))
    assert args.feature_maps == ["encoder.1=max", "decoder=mean", "head=0,3,5"]  # a layer's own reduction wins
    assert (args.method, args.samples) == ("mc_dropout", 4)
    # saved probabilities come without layers: the option is left out (and Apply refuses, below)
    assert parsed(settings(model=PRECOMPUTED, probabilitiesFile="case.npz", createFeatureMaps=True)).feature_maps is None


def test_feature_map_settings_that_predict_would_refuse_disable_apply(tmp_path):
    (tmp_path / "case.npz").write_bytes(b"")
    cases = [
        (settings(createFeatureMaps=True, model=PRECOMPUTED, probabilitiesFile=tmp_path / "case.npz"), "Feature maps need a model"),
        (settings(createFeatureMaps=True, featureMapReduction=FeatureMapReduction.MAX), "name the layers"),
        (settings(createFeatureMaps=True, featureMapLayers="encoder=first"), "expected mean, max, or channel indices"),
        (settings(createFeatureMaps=True, featureMapLayers="=max"), "expected LAYER"),
        (settings(createFeatureMaps=True, featureMapLayers="encoder=1,1"), "distinct"),
    ]
    for case, expected in cases:
        assert expected in (checkRunParameters(case) or ""), (case, checkRunParameters(case))
    for fine in (settings(createFeatureMaps=True), settings(createFeatureMaps=True, featureMapLayers="a b=0,2",
                                                            featureMapReduction=FeatureMapReduction.MAX),
                 settings(featureMapReduction=FeatureMapReduction.MAX, featureMapLayers="=bad")):  # unticked: not checked
        assert checkRunParameters(fine) is None, fine


def test_feature_map_options_show_when_feature_maps_are_ticked():
    def shown(**changes):
        return panelVisibility(SimpleNamespace(**vars(settings(**changes))))["featureMapOptions"]

    assert not shown() and shown(createFeatureMaps=True)


def wait(run, timeout):
    while run.state == RUNNING:
        if run.process.elapsedSeconds > timeout:
            run.cancel()
            pytest.fail(f"the run did not end within {timeout} s:\n{run.log}")
        run.poll()
        run.process.wait(0.1)
    return run.state


def test_apply_with_feature_maps_adds_them_to_the_runs_folder(mrml_scene, test_case, tmp_path):
    """A real background `predict --feature-maps` run (default layers), loaded as the panel does: one volume per layer
    in the run's folder, equal to the files predict wrote; a second load for the same parameter node replaces them."""
    scene, appLogic = mrml_scene
    image = read_volume(test_case[0])
    inputNode = addVolumeNode(scene, image.array, image.geometry, "hippocampus case")
    parameterNode = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", "UncertaintySeg")
    logic = UncertaintySegLogicBase()
    logic.applicationLogic = appLogic
    chosen = settings(inputVolume=inputNode, device="cpu", createFeatureMaps=True)
    assert checkRunParameters(chosen) is None
    run = PanelRun(chosen, parameterNode=parameterNode, workParent=tmp_path).start()
    assert wait(run, timeout=180) == SUCCEEDED, run.log
    written = sorted((run.outputFolder / "feature_maps").glob("*.nrrd"))
    assert written and all(path.name.endswith("_mean.nrrd") for path in written)

    loaded = run.load(logic)
    nodes = loaded.featureMapNodes
    assert len(nodes) == len(written) and f"{len(nodes)} feature map(s) added" in loaded.notes
    shNode = scene.GetSubjectHierarchyNode()
    for node, path in zip(nodes, written):
        layer = path.name[: -len("_mean.nrrd")]
        assert node.GetName() == f"hippocampus case {layer} mean"
        assert shNode.GetItemParent(shNode.GetItemByDataNode(node)) == loaded.result.folderItemID
        volume = volumeFromNode(node)
        assert volume.array.shape == image.array.shape
        assert np.allclose(volume.array, read_volume(path).array)

    before = scene.GetNumberOfNodes()
    again = run.load(logic)
    assert all(node.GetScene() is None for node in nodes)  # the earlier run's maps went with its folder
    assert all(node.GetScene() is scene for node in again.featureMapNodes) and scene.GetNumberOfNodes() == before
    run.cleanup()


def rank_parameters(rankingScore=RankingScore.MEAN_ENTROPY, **changes):
    """The parameter node's fields the Rank button reads (a plain object: rankScene writes rankingTable)."""
    return SimpleNamespace(**{**vars(settings(**changes)), "rankingScore": rankingScore, "rankingTable": None})


def test_rank_button_ranks_the_scene_into_the_parameter_nodes_table(mrml_scene, test_case):
    """The scene's hippocampus case and a noisy copy: the noisy one first; ranking again replaces the table."""
    from UncertaintySegLib.analysis.ood import corrupt
    from UncertaintySegSlicer.analysis.ranking import rankVolumeNodes

    scene, _ = mrml_scene
    image = read_volume(test_case[0])
    parameters = rank_parameters(device="cpu")
    assert "No volumes to rank" in checkRankParameters(parameters, scene)
    clean = addVolumeNode(scene, image.array, image.geometry, "clean")
    noisy = addVolumeNode(scene, corrupt(image.array, "noise", 3, seed=0), image.geometry, "noisy")
    voxels = volumeFromNode(clean).array.copy()
    assert checkRankParameters(parameters, scene) is None
    assert "choose a model" in checkRankParameters(rank_parameters(model=PRECOMPUTED), scene)
    assert "Choose the TorchScript file" in checkRankParameters(rank_parameters(model=MODEL_FILE), scene)
    for method in (UncertaintyMethod.AUTO, UncertaintyMethod.SOFTMAX):
        assert "needs several samples" in checkRankParameters(rank_parameters(method=method, rankingScore=RankingScore.MEAN_MI), scene)
    assert checkRankParameters(rank_parameters(method=UncertaintyMethod.TTA, rankingScore=RankingScore.MEAN_MI), scene) is None

    stages = []
    tableNode = rankScene(parameters, scene=scene, progress=lambda stage, fraction: stages.append(stage))
    assert parameters.rankingTable is tableNode and tableNode.GetName() == RANKING_TABLE_NAME
    table = tableNode.GetTable()
    assert [table.GetValueByName(row, "node ID").ToString() for row in range(table.GetNumberOfRows())] == [noisy.GetID(), clean.GetID()]
    assert any("noisy" in stage for stage in stages)
    direct = rankVolumeNodes(model="hippocampus", device="cpu", scene=scene, tableName="direct").GetTable()
    for row in range(2):  # the same numbers as the console's rankVolumeNodes with the panel's settings
        assert table.GetValueByName(row, "score").ToDouble() == pytest.approx(direct.GetValueByName(row, "score").ToDouble())
    assert np.array_equal(volumeFromNode(clean).array, voxels)

    parameters.rankingScore = RankingScore.SEGMENT_ENTROPY
    second = rankScene(parameters, scene=scene)
    assert tableNode.GetScene() is None and parameters.rankingTable is second
    assert second.GetName() == RANKING_TABLE_NAME
    tables = scene.GetNodesByClass("vtkMRMLTableNode")
    assert sorted(tables.GetItemAsObject(i).GetName() for i in range(tables.GetNumberOfItems())) == ["direct", RANKING_TABLE_NAME]
    assert second.GetTable().GetNumberOfRows() == 2  # the table nodes are not volumes: still two to rank
