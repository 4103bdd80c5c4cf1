"""Annotation ranking: the core order and its ties, `uncertaintyseg rank` on real images with OOD ones among
them, every bad input, and the Slicer table against the CLI's CSV for the same images."""

import csv
import json

import numpy as np
import pytest

from UncertaintySegLib.cli import main
from UncertaintySegLib.common.errors import InputError
from UncertaintySegLib.analysis.ranking import CaseUncertainty, case_uncertainty, rank_cases

CLEAN_CASES = 3


def scores(entropy, mi=None, segment=None):
    return CaseUncertainty(mean_entropy=entropy, mean_mi=mi, segment_entropy=entropy if segment is None else segment,
                           foreground_voxels=10, foreground_ml=0.01, region="foreground")


def test_rank_cases_orders_by_the_chosen_score_highest_first():
    values = [scores(0.1, 0.3, 0.5), scores(0.3, 0.1, 0.2), scores(0.2, 0.2, 0.9)]
    assert [c.case for c in rank_cases(["a", "b", "c"], values, "mean_entropy")] == ["b", "c", "a"]
    assert [c.case for c in rank_cases(["a", "b", "c"], values, "mean_mi")] == ["a", "c", "b"]
    ranked = rank_cases(["a", "b", "c"], values, "segment_entropy")
    assert [(c.rank, c.case, c.score, c.index) for c in ranked] == [(1, "c", 0.9, 2), (2, "a", 0.5, 0), (3, "b", 0.2, 1)]


def test_ties_are_broken_by_name_then_input_order_whatever_the_input_order():
    names = ["d", "b", "c", "b", "a"]
    values = [scores(0.5), scores(0.2), scores(0.5), scores(0.2), scores(0.2)]
    ranked = rank_cases(names, values)
    assert [(c.case, c.index) for c in ranked] == [("c", 2), ("d", 0), ("a", 4), ("b", 1), ("b", 3)]
    permutation = [4, 2, 0, 3, 1]
    again = rank_cases([names[i] for i in permutation], [values[i] for i in permutation])
    assert [c.case for c in again] == [c.case for c in ranked]


def test_rank_cases_refuses_missing_mi_nan_and_unknown_scores():
    with pytest.raises(InputError, match="mc_dropout"):
        rank_cases(["a", "b"], [scores(0.1), scores(0.2)], "mean_mi")
    with pytest.raises(InputError, match="NaN or infinite for b"):
        rank_cases(["a", "b"], [scores(0.1), scores(float("nan"))])
    with pytest.raises(InputError, match="unknown ranking score 'variance'"):
        rank_cases(["a"], [scores(0.1)], "variance")


def test_case_uncertainty_hand_computed():
    labels = np.zeros((4, 4, 2), dtype=np.uint8)
    labels[0, 0, 0] = labels[0, 1, 0] = 1  # class 1: entropies 0.2, 0.4
    labels[3, 3, 1] = 2  # class 2: entropy 0.9
    entropy = np.full(labels.shape, 0.05)
    entropy[0, 0, 0], entropy[0, 1, 0], entropy[3, 3, 1] = 0.2, 0.4, 0.9
    mi = entropy / 10
    result = case_uncertainty(labels, entropy, (2.0, 1.0, 1.0), ["background", "a", "b"], mi)
    assert result.mean_entropy == pytest.approx(0.5) and result.mean_mi == pytest.approx(0.05)
    assert result.segment_entropy == pytest.approx(0.9)  # class b's mean: the least trusted segment decides
    assert (result.foreground_voxels, result.foreground_ml, result.region) == (3, 0.006, "foreground")
    empty = case_uncertainty(np.zeros_like(labels), entropy, (1.0, 1.0, 1.0), ["background", "a", "b"])
    assert empty.region == "whole volume" and empty.segment_entropy == pytest.approx(entropy.mean()) and empty.mean_mi is None


@pytest.fixture(scope="module")
def image_folder(data_root, tmp_path_factory):
    """Three test-split hippocampus images, a strongly noisy copy of the first (as `ood` makes it), and a
    48 x 64 x 26 block of the far-OOD spleen CT (the whole CT takes 15 s per pass on two cores)."""
    from UncertaintySegLib.data.hippocampus import load_split
    from UncertaintySegLib.predict.io import Volume, read_volume, write_volume
    from UncertaintySegLib.analysis.ood import corrupt

    spleen = data_root / "ood" / "spleen_ct_image.nii.gz"
    if not spleen.is_file():
        pytest.skip(f"far-OOD scan absent: expected {spleen}")
    folder = tmp_path_factory.mktemp("unlabelled")
    cases = load_split(data_root, "test")[:CLEAN_CASES]
    for case in cases:
        write_volume(folder / f"{case.case_id}.nii.gz", read_volume(case.image))
    first = read_volume(cases[0].image)
    write_volume(folder / "noisy.nii.gz", Volume(corrupt(first.array, "noise", 3, seed=0), first.geometry))
    ct = read_volume(spleen)
    write_volume(folder / "spleen.nrrd", Volume(np.ascontiguousarray(ct.array[40:88, 60:124, :]), ct.geometry))
    return folder


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def cli_ranking(image_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("rank") / "ranking"
    assert main(["rank", "--model", "hippocampus", "--images", str(image_folder), "--out", str(out), "--progress", "none"]) == 0
    return out


def test_out_of_distribution_images_rank_first(cli_ranking):
    rows = read_csv(cli_ranking / "ranking.csv")
    assert [row["rank"] for row in rows] == ["1", "2", "3", "4", "5"]
    assert {row["case"] for row in rows[:2]} == {"noisy", "spleen"}, rows
    assert list(rows[0]) == ["rank", "case", "score", "mean_entropy", "mean_mi", "segment_entropy", "foreground_voxels",
                             "foreground_ml", "region"]


def test_ranking_equals_sorting_the_core_scores(cli_ranking, image_folder):
    from UncertaintySegLib.predict.io import read_volume
    from UncertaintySegLib.predict.model_loading import load_model
    from UncertaintySegLib.predict.pipeline import predict_volume

    rows = read_csv(cli_ranking / "ranking.csv")
    model = load_model("hippocampus")
    expected = {}
    for path in sorted(image_folder.iterdir()):
        volume = read_volume(path)
        prediction = predict_volume(volume, model)
        expected[path.name.split(".")[0]] = case_uncertainty(prediction.labels, prediction.entropy, volume.geometry.spacing,
                                                             prediction.class_names)
    assert [row["case"] for row in rows] == sorted(expected, key=lambda case: -expected[case].mean_entropy)
    for row in rows:
        core = expected[row["case"]]
        assert float(row["score"]) == float(row["mean_entropy"]) == pytest.approx(core.mean_entropy, rel=1e-6)
        assert float(row["segment_entropy"]) == pytest.approx(core.segment_entropy, rel=1e-6)
        assert int(row["foreground_voxels"]) == core.foreground_voxels and row["mean_mi"] == ""
    record = json.loads((cli_ranking / "ranking.json").read_text())
    assert record["score"] == "mean_entropy" and record["sampling"]["method"] == "softmax"
    assert [r["case"] for r in record["rows"]] == [row["case"] for row in rows]


def test_mean_mi_ranking_with_mc_dropout_and_progress_per_case(image_folder, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("noisy.nii.gz", "spleen.nrrd"):
        (images / name).write_bytes((image_folder / name).read_bytes())
    out = tmp_path / "ranking"
    assert main(["rank", "--model", "hippocampus", "--images", str(images), "--out", str(out), "--progress", "json",
                 "--method", "mc_dropout", "--samples", "2", "--score", "mean_mi"]) == 0
    stages = [json.loads(line)["stage"] for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert "case noisy (1/2)" in stages and "case spleen (2/2)" in stages and stages[-1] == "done"
    rows = read_csv(out / "ranking.csv")
    assert [float(row["score"]) for row in rows] == [float(row["mean_mi"]) for row in rows]
    assert float(rows[0]["mean_mi"]) >= float(rows[1]["mean_mi"]) > 0  # dropout active: the two passes differ
    assert json.loads((out / "ranking.json").read_text())["sampling"] == {"method": "mc_dropout", "samples": 2, "seed": 0,
                                                                           "tta_axes": [0, 1, 2]}


def rank_cli(images, out, *extra):
    return main(["rank", "--model", "hippocampus", "--images", str(images), "--out", str(out), "--progress", "none", *extra])


def test_bad_inputs_fail_clearly_and_write_nothing(tmp_path, image_folder, capsys):
    from UncertaintySegLib.predict.io import Geometry, Volume, write_volume

    out = tmp_path / "out"
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a volume")
    assert rank_cli(empty, out) == 2
    assert "no volumes in --images folder" in capsys.readouterr().err
    assert rank_cli(tmp_path / "missing", out) == 2
    assert "is not a folder" in capsys.readouterr().err

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.nii.gz").write_bytes((image_folder / "noisy.nii.gz").read_bytes())
    (broken / "b.nii.gz").write_bytes(b"this is not a NIfTI file")
    assert rank_cli(broken, out) == 2
    assert "cannot read" in (err := capsys.readouterr().err) and "b.nii.gz" in err

    twice = tmp_path / "twice"
    twice.mkdir()
    (twice / "a.nii.gz").write_bytes((image_folder / "noisy.nii.gz").read_bytes())
    (twice / "a.nrrd").write_bytes((image_folder / "spleen.nrrd").read_bytes())
    assert rank_cli(twice, out) == 2
    assert "two files for case 'a'" in capsys.readouterr().err

    assert rank_cli(image_folder, out, "--score", "mean_mi") == 2
    err = capsys.readouterr().err
    assert "mean_mi" in err and "--method mc_dropout" in err and "draws 1" in err

    channels = tmp_path / "channels"  # a readable file the model refuses, after a good case: nothing is written
    channels.mkdir()
    (channels / "a.nii.gz").write_bytes((image_folder / "noisy.nii.gz").read_bytes())
    write_volume(channels / "z.nrrd", Volume(np.zeros((2, 8, 8, 8), dtype=np.float32), Geometry((0.0,) * 3, (1.0,) * 3,
                                                                                              (1, 0, 0, 0, 1, 0, 0, 0, 1))))
    assert rank_cli(channels, out) == 2
    assert "case 'z'" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(SystemExit):
        rank_cli(image_folder, out, "--score", "variance")


def test_slicer_table_matches_the_cli_csv(mrml_scene, cli_ranking, image_folder):
    from UncertaintySegLib.predict.io import read_volume
    from UncertaintySegSlicer.mrml.folders import createFolder, placeInFolder
    from UncertaintySegSlicer.analysis.ranking import RANKING_TABLE_COLUMNS, rankVolumeNodes
    from UncertaintySegSlicer.mrml.volumes import addVolumeNode

    scene, _ = mrml_scene
    nodes = {}
    for path in sorted(image_folder.iterdir()):
        volume = read_volume(path)
        nodes[path.name.split(".")[0]] = addVolumeNode(scene, volume.array, volume.geometry, path.name.split(".")[0])
    first = read_volume(image_folder / "noisy.nii.gz")
    labelmap = addVolumeNode(scene, (first.array > 0).astype(np.uint8), first.geometry, "labels", "vtkMRMLLabelMapVolumeNode")
    output = addVolumeNode(scene, np.ones_like(first.array), first.geometry, "noisy entropy")
    placeInFolder(createFolder(scene, "UncertaintySeg hippocampus: noisy"), output)
    before = {node.GetID(): node.GetMTime() for node in [*nodes.values(), labelmap]}

    tableNode = rankVolumeNodes(model="hippocampus", scene=scene)

    table = tableNode.GetTable()
    assert [table.GetColumn(i).GetName() for i in range(table.GetNumberOfColumns())] == list(RANKING_TABLE_COLUMNS)
    rows = read_csv(cli_ranking / "ranking.csv")
    assert table.GetNumberOfRows() == len(rows)  # neither the label map nor the run's output volume is ranked
    for index, row in enumerate(rows):
        assert table.GetValueByName(index, "rank").ToInt() == int(row["rank"])
        assert table.GetValueByName(index, "volume").ToString() == row["case"]
        assert table.GetValueByName(index, "node ID").ToString() == nodes[row["case"]].GetID()
        for column in ("score", "mean_entropy", "segment_entropy", "foreground_ml"):
            assert table.GetValueByName(index, column).ToDouble() == pytest.approx(float(row[column]), rel=1e-6)
        assert table.GetValueByName(index, "foreground_voxels").ToInt() == int(row["foreground_voxels"])
    assert {node.GetID(): node.GetMTime() for node in [*nodes.values(), labelmap]} == before


def test_slicer_ranking_refuses_an_empty_scene_and_mi_without_samples(mrml_scene):
    from UncertaintySegSlicer.analysis.ranking import rankVolumeNodes

    scene, _ = mrml_scene
    with pytest.raises(InputError, match="no volumes to rank"):
        rankVolumeNodes(model="hippocampus", scene=scene)
    with pytest.raises(InputError, match="unknown ranking score"):
        rankVolumeNodes(model="hippocampus", score="variance", scene=scene)


def test_listing_the_rankable_volumes_keeps_no_reference_to_them(mrml_scene):
    """The panel asks for the rankable volumes on every change of its parameters: a removed volume must be freed."""
    import numpy as np
    from UncertaintySegLib.predict.io import Geometry
    from UncertaintySegSlicer.analysis.ranking import rankableVolumeNodes
    from UncertaintySegSlicer.mrml.volumes import addVolumeNode

    scene, _ = mrml_scene
    node = addVolumeNode(scene, np.zeros((4, 4, 4), np.float32), Geometry((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), tuple(np.eye(3).ravel())), "case")
    references = node.GetReferenceCount()
    for _ in range(10):
        assert rankableVolumeNodes(scene) == [node]
    assert node.GetReferenceCount() == references
