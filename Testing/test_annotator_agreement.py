"""Several annotators: agreement groups and confidence on raters with known disagreement, D²_GED by brute force and by hand, `evaluate --ref --ref`."""

import argparse
import csv
import itertools
import json
import shutil

import numpy as np
import pytest

from UncertaintySegLib.evaluation.annotator_agreement import (annotator_agreement, generalized_energy_distance,
                                                   label_agreement_groups, rater_counts)
from UncertaintySegLib.cli import main
from UncertaintySegLib.common.errors import InputError
from UncertaintySegLib.cli.evaluate import add_evaluate_parser, run_evaluate
from UncertaintySegLib.predict.io import Volume, read_volume, write_volume
from UncertaintySegLib.common.progress import Progress

CLASSES = ["background", "a", "b"]


def ball(radius, shape=(21, 21, 21)):
    grid = np.indices(shape) - np.array(shape).reshape(3, 1, 1, 1) // 2
    return ((grid ** 2).sum(axis=0) <= radius ** 2).astype(np.uint8)


def rows_by_key(rows):
    return {(row.scope, row.group): row for row in rows}


def test_three_balls_give_the_known_shell_and_confidences():
    r = 6
    inner, middle, outer = ball(r - 1), ball(r), ball(r + 1)
    p = np.where(inner, 0.9, np.where(middle, 0.4, np.where(outer, 0.3, 0.05)))  # P(foreground)
    probabilities = np.stack([1 - p, p])
    rows = rows_by_key(annotator_agreement([middle, outer, inner], probabilities, ["background", "ball"]))
    n_inner, n_shell_in, n_shell_out = inner.sum(), (middle - inner).sum(), (outer - middle).sum()
    outside = outer.size - outer.sum()
    label = {g: rows[("label", g)] for g in ("all_background", "all_foreground", "majority", "no_majority")}
    assert [label[g].voxels for g in label] == [outside, n_inner, n_shell_in + n_shell_out, 0]
    assert label["all_foreground"].mean_max_probability == pytest.approx(0.9)
    assert label["all_background"].mean_majority_probability == pytest.approx(0.95)
    # shell: inside r the majority (2 of 3) says foreground, p = 0.4; outside r it says background, 1 - p = 0.7
    assert label["majority"].mean_max_probability == pytest.approx((0.6 * n_shell_in + 0.7 * n_shell_out) / (n_shell_in + n_shell_out))
    assert label["majority"].mean_majority_probability == pytest.approx((0.4 * n_shell_in + 0.7 * n_shell_out) / (n_shell_in + n_shell_out))
    assert label["no_majority"].mean_max_probability is None and label["no_majority"].fraction == 0
    assert rows[("ball", "mixed")].voxels == n_shell_in + n_shell_out
    assert rows[("ball", "all_foreground")].voxels == n_inner and rows[("ball", "all_background")].voxels == outside
    assert sum(label[g].fraction for g in label) == pytest.approx(1.0)


def test_two_raters_multi_class_by_hand_and_roi():
    a = np.array([0, 1, 2, 2, 1, 0], np.uint8).reshape(1, 2, 3)
    b = np.array([0, 1, 1, 0, 1, 2], np.uint8).reshape(1, 2, 3)
    probabilities = np.array([[0.8, 0.1, 0.3, 0.2, 0.2, 0.5],
                              [0.1, 0.7, 0.3, 0.2, 0.6, 0.1],
                              [0.1, 0.2, 0.4, 0.6, 0.2, 0.4]]).reshape(3, 1, 2, 3)
    groups, majority = label_agreement_groups(rater_counts([a, b], 3), 2)
    assert groups.ravel().tolist() == [0, 1, 3, 3, 1, 3]  # bg, fg, none, none, fg, none
    assert majority.ravel().tolist() == [0, 1, 1, 0, 1, 0]  # ties to the lowest class
    rows = rows_by_key(annotator_agreement([a, b], probabilities, CLASSES))
    assert rows[("label", "no_majority")].voxels == 3
    assert rows[("label", "no_majority")].mean_max_probability == pytest.approx((0.4 + 0.6 + 0.5) / 3)
    assert rows[("label", "no_majority")].mean_majority_probability == pytest.approx((0.3 + 0.2 + 0.5) / 3)
    assert rows[("label", "all_foreground")].mean_majority_probability == pytest.approx(0.65)
    # class b: mixed at voxels 2, 3, 5; 1 of 2 raters is no majority, so the majority is "not b"
    assert rows[("b", "mixed")].voxels == 3 and rows[("b", "all_foreground")].voxels == 0
    assert rows[("b", "mixed")].mean_majority_probability == pytest.approx((0.6 + 0.4 + 0.6) / 3)
    roi = np.array([True, True, False, False, False, True]).reshape(1, 2, 3)
    rows = rows_by_key(annotator_agreement([a, b], probabilities, CLASSES, roi))
    assert [rows[("label", g)].voxels for g in ("all_background", "all_foreground", "majority", "no_majority")] == [1, 1, 0, 1]
    assert rows[("label", "no_majority")].fraction == pytest.approx(1 / 3)


def brute_force_ged(samples, raters, num_classes):
    def d(x, y, scope):
        mx, my = (x > 0, y > 0) if scope == 0 else (x == scope, y == scope)
        union = np.logical_or(mx, my).sum()
        return 0.0 if union == 0 else 1 - np.logical_and(mx, my).sum() / union

    def mean(xs, ys, scope):
        return np.mean([d(x, y, scope) for x, y in itertools.product(xs, ys)])

    return np.array([2 * mean(samples, raters, c) - mean(samples, samples, c) - mean(raters, raters, c)
                     for c in range(num_classes)])


def test_ged_matches_brute_force_and_is_symmetric():
    rng = np.random.default_rng(3)
    samples = [rng.integers(0, 3, (4, 5, 3)).astype(np.uint8) for _ in range(4)]
    raters = [rng.integers(0, 3, (4, 5, 3)).astype(np.uint8) for _ in range(3)]
    samples[0][samples[0] == 2] = 0  # a sample without class b
    result = generalized_energy_distance(samples, raters, 3)
    np.testing.assert_allclose(result.d2, brute_force_ged(samples, raters, 3), atol=1e-12)
    np.testing.assert_allclose(generalized_energy_distance(raters, samples, 3).d2, result.d2, atol=1e-12)
    assert np.all(result.d2 >= 0) and (result.samples, result.references) == (4, 3)
    assert np.allclose(generalized_energy_distance(raters, raters, 3).d2, 0)


def test_ged_by_hand():
    a = np.zeros((2, 2, 2), np.uint8)
    a[0, 0, 0] = 1
    b = np.zeros_like(a)
    b[1, 1, 1] = 1
    empty = np.zeros_like(a)
    assert generalized_energy_distance([a], [a], 2).d2 == pytest.approx([0, 0])
    # samples {a}, raters {a, b}, d(a, b) = 1: 2 * 1/2 - 0 - 2/4
    hand = generalized_energy_distance([a], [a, b], 2)
    assert hand.d2 == pytest.approx([0.5, 0.5]) and hand.reference_reference == pytest.approx([0.5, 0.5])
    assert generalized_energy_distance([empty], [empty], 2).d2 == pytest.approx([0, 0])  # IoU(empty, empty) = 1
    assert generalized_energy_distance([empty], [a], 2).d2 == pytest.approx([2, 2])
    half = a.copy()
    half[0, 0, 1] = 1  # IoU(a, half) = 1/2
    assert generalized_energy_distance([half], [a], 2).d2 == pytest.approx([1, 1])


def test_pure_functions_explain_bad_input():
    with pytest.raises(InputError, match="at least 2"):
        rater_counts([ball(2)], 2)
    with pytest.raises(InputError, match="one 3-D shape"):
        rater_counts([ball(2), ball(2, (21, 21, 20))], 2)
    with pytest.raises(InputError, match="one grid"):
        generalized_energy_distance([ball(2)], [ball(2, (21, 21, 20))], 2)


def evaluate(*argv):
    parser = argparse.ArgumentParser()
    add_evaluate_parser(parser.add_subparsers(dest="command"))
    return run_evaluate(parser.parse_args(["evaluate", *argv, "--progress", "none"]), Progress("none"))


@pytest.fixture(scope="module")
def predicted_case(test_case, tmp_path_factory):
    """A real hippocampus case predicted with MC dropout, 3 samples saved; two annotators (the label, and it dilated)."""
    image_path, label_path = test_case
    root = tmp_path_factory.mktemp("annotators")
    case = label_path.name[: -len(".nii.gz")]
    assert main(["predict", "--image", str(image_path), "--model", "hippocampus", "--method", "mc_dropout",
                 "--samples", "3", "--save-samples", "--out", str(root / "pred" / case), "--progress", "none"]) == 0
    (root / "rater1").mkdir()
    shutil.copy(label_path, root / "rater1" / label_path.name)
    label = read_volume(label_path)
    grown = label.array.copy()
    grown[:-1][(grown[:-1] == 0) & (label.array[1:] > 0)] = 1  # one voxel more of class 1 on the -i side
    (root / "rater2").mkdir()
    write_volume(root / "rater2" / label_path.name, Volume(grown.astype(np.uint8), label.geometry))
    return root, case, label.array, grown


def test_evaluate_with_two_annotators_and_samples(predicted_case):
    root, case, first, second = predicted_case
    document = evaluate("--pred", str(root / "pred"), "--ref", str(root / "rater1"), "--ref", str(root / "rater2"),
                        "--out", str(root / "eval"), "--overwrite")
    single = evaluate("--pred", str(root / "pred"), "--ref", str(root / "rater1"), "--out", str(root / "eval1"), "--overwrite")
    assert document["methods"] == single["methods"]  # calibration and Dice: the first --ref, as before
    assert not (root / "eval1" / "annotator_agreement.csv").exists()
    with open(root / "eval" / "annotator_agreement.csv") as file:
        rows = list(csv.DictReader(file))
    label = {r["group"]: r for r in rows if r["scope"] == "label"}
    disagree = int((first != second).sum())
    assert int(label["no_majority"]["voxels"]) == disagree and int(label["majority"]["voxels"]) == 0
    assert int(label["all_foreground"]["voxels"]) == int(((first == second) & (first > 0)).sum())
    assert sum(int(r["voxels"]) for r in rows if r["scope"] == "label") == first.size
    assert len(rows) == 4 + 3 * 2 and json.loads((root / "eval" / "annotator_agreement.json").read_text())[0]["case"] == case
    # Czolbe et al.'s observation on this case: the model is less sure where the annotators disagree
    assert float(label["no_majority"]["mean_max_probability"]) < float(label["all_foreground"]["mean_max_probability"])
    with open(root / "eval" / "ged.csv") as file:
        ged = {r["scope"]: r for r in csv.DictReader(file)}
    assert list(ged) == ["foreground", "anterior", "posterior"]
    fg = ged["foreground"]
    union = ((first > 0) | (second > 0)).sum()
    hand = 1 - ((first > 0) & (second > 0)).sum() / union
    assert float(fg["mean_d_reference_reference"]) == pytest.approx(hand / 2, rel=1e-5)
    assert int(fg["samples"]) == 3 and int(fg["references"]) == 2 and float(fg["d2_ged"]) >= 0
    summary = json.loads((root / "eval" / "metrics.json").read_text())["annotators"]
    assert summary["annotators"] == 2 and summary["ged"]["prediction"]["foreground"]["cases"] == 1
    assert summary["agreement"]["prediction"]["label/no_majority"]["voxels"] == disagree
    html = (root / "eval" / "report.html").read_text()
    assert "Annotator agreement (2 annotators)" in html and "no_majority" in html and "D&sup2;<sub>GED</sub>" in html


def test_evaluate_explains_bad_annotator_input(predicted_case, tmp_path):
    root, case, first, _ = predicted_case
    label = read_volume(root / "rater1" / f"{case}.nii.gz")
    (tmp_path / "other").mkdir()
    write_volume(tmp_path / "other" / f"{case}.nii.gz", Volume(first[:, :, :-1].copy(), label.geometry))
    with pytest.raises(InputError, match="different grids"):
        evaluate("--pred", str(root / "pred"), "--ref", str(root / "rater1"), "--ref", str(tmp_path / "other"),
                 "--out", str(tmp_path / "eval"))
    (tmp_path / "wrong").mkdir()
    write_volume(tmp_path / "wrong" / "another_case.nii.gz", Volume(first, label.geometry))
    write_volume(tmp_path / "wrong" / "third_case.nii.gz", Volume(first, label.geometry))
    with pytest.raises(InputError, match=f"case '{case}' has no reference in --ref"):
        evaluate("--pred", str(root / "pred"), "--ref", str(root / "rater1"), "--ref", str(tmp_path / "wrong"),
                 "--out", str(tmp_path / "eval"))
