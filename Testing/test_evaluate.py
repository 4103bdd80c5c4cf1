"""`evaluate`: cohort matching, files written, pooled = one pass, ROI, comparisons, bad input; NLL/Brier/HD95 by hand."""

import argparse
import csv
import json

import numpy as np
import pytest

from UncertaintySegLib.evaluation.calibration_metrics import CalibrationHistogram
from UncertaintySegLib.evaluation.comparison import best_or_equivalent, bootstrap_interval, paired_wilcoxon
from UncertaintySegLib.common.errors import InputError
from UncertaintySegLib.cli.evaluate import add_evaluate_parser, run_evaluate
from UncertaintySegLib.predict.io import Geometry, Volume, read_volume, write_volume
from UncertaintySegLib.evaluation.metrics import brier_score, hausdorff95_per_class, negative_log_likelihood
from UncertaintySegLib.common.progress import Progress
from UncertaintySegLib.evaluation.roi import dilated_foreground_box, roi_mask

SHAPE = (20, 18, 12)
GEOMETRY = Geometry((1.0, 2.0, 3.0), (1.0, 1.0, 2.0), (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
CLASSES = ["background", "a", "b"]


def make_reference(seed):
    labels = np.zeros(SHAPE, np.uint8)
    labels[5:12, 4:10, 3:8] = 1
    labels[12:15, 4:10, 3:8] = 2
    return labels


def make_probabilities(labels, seed, sharpness):
    rng = np.random.default_rng(seed)
    logits = np.eye(3, dtype=np.float32)[labels].transpose(3, 0, 1, 2) * sharpness + rng.normal(size=(3, *SHAPE))
    probabilities = np.exp(logits - logits.max(0))
    return (probabilities / probabilities.sum(0)).astype(np.float32)


def write_prediction(folder, probabilities, geometry=GEOMETRY):
    write_volume(folder / "probabilities.nrrd", Volume(probabilities, geometry), overwrite=True)
    write_volume(folder / "labels.nrrd", Volume(probabilities.argmax(0).astype(np.uint8), geometry), overwrite=True)
    (folder / "run.json").write_text(json.dumps({"class_names": CLASSES, "input": f"/images/{folder.name}.nii.gz"}))


@pytest.fixture
def cohort(tmp_path):
    """References for 3 cases and two methods (sharp, soft) as `predict` writes them."""
    for case in range(3):
        reference = make_reference(case)
        write_volume(tmp_path / "refs" / f"case{case}.nii.gz", Volume(reference, GEOMETRY))
        for method, sharpness in (("sharp", 4.0), ("soft", 1.0)):
            (tmp_path / method / f"case{case}").mkdir(parents=True)
            write_prediction(tmp_path / method / f"case{case}", make_probabilities(reference, case, sharpness))
    return tmp_path


def evaluate(*argv):
    parser = argparse.ArgumentParser()
    add_evaluate_parser(parser.add_subparsers(dest="command"))
    return run_evaluate(parser.parse_args(["evaluate", *argv, "--progress", "none"]), Progress("none"))


def test_cohort_with_two_methods_writes_every_file(cohort):
    out = cohort / "eval"
    document = evaluate("--pred", f"sharp={cohort / 'sharp'}", "--pred", f"soft={cohort / 'soft'}",
                        "--ref", str(cohort / "refs"), "--roi", "bbox", "--out", str(out))
    expected = {"metrics.json", "per_case.csv", "reliability.csv", "report.html"}
    expected |= {f"reliability_{m}_{v}.png" for m in ("sharp", "soft") for v in ("top_label", "class_wise", "foreground")}
    assert expected <= {p.name for p in out.iterdir()}
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(document))
    rows = list(csv.DictReader(open(out / "per_case.csv")))
    assert [(r["method"], r["case"]) for r in rows] == [(m, f"case{c}") for m in ("sharp", "soft") for c in range(3)]
    assert "nan" not in (out / "per_case.csv").read_text().lower() and "NaN" not in (out / "metrics.json").read_text()
    html = (out / "report.html").read_text()
    assert "reliability_sharp_top_label.png" in html and "<b>" in html
    assert set(document["comparison"]["ece_top_label"]["methods"]) == {"sharp", "soft"}


def test_pooled_calibration_equals_one_pass_over_all_cases(cohort):
    document = evaluate("--pred", str(cohort / "soft"), "--ref", str(cohort / "refs"), "--roi", "bbox",
                        "--out", str(cohort / "eval"))
    histogram = CalibrationHistogram(3, "top_label")
    for case in range(3):
        reference = read_volume(cohort / "refs" / f"case{case}.nii.gz").array
        probabilities = read_volume(cohort / "soft" / f"case{case}" / "probabilities.nrrd").array
        histogram.update(probabilities, reference, roi_mask("bbox", reference, GEOMETRY.spacing))
    pooled = document["methods"]["prediction"]["pooled"]
    assert pooled["ece_top_label"] == pytest.approx(histogram.compute().ece, abs=1e-12)
    assert pooled["voxels"] == histogram.voxels
    per_case = document["methods"]["prediction"]["per_case"].values()
    assert pooled["dice_a"] == pytest.approx(np.mean([case["dice_a"] for case in per_case]))
    assert pooled["nll"] == pytest.approx(np.average([c["nll"] for c in per_case], weights=[c["voxels"] for c in per_case]))


def test_one_case_with_one_reference_file(cohort):
    document = evaluate("--pred", str(cohort / "sharp" / "case0"), "--ref", str(cohort / "refs" / "case1.nii.gz"),
                        "--out", str(cohort / "eval"))
    assert list(document["methods"]["prediction"]["per_case"]) == ["case1"]
    assert document["methods"]["prediction"]["pooled"]["voxels"] == np.prod(SHAPE)


def test_empty_roi_is_reported_as_no_voxels(cohort, tmp_path):
    write_volume(cohort / "refs" / "case1.nii.gz", Volume(np.zeros(SHAPE, np.uint8), GEOMETRY), overwrite=True)
    document = evaluate("--pred", str(cohort / "soft"), "--ref", str(cohort / "refs"), "--roi", "bbox",
                        "--out", str(cohort / "eval"))
    case = document["methods"]["prediction"]["per_case"]["case1"]
    assert case["voxels"] == 0 and case["note"] == "no voxels in the ROI" and case["ece_top_label"] is None
    assert "no voxels in the ROI" in (cohort / "eval" / "per_case.csv").read_text()


def test_grid_mismatch_is_explained(cohort):
    shifted = Geometry((9.0, 2.0, 3.0), GEOMETRY.spacing, GEOMETRY.direction)
    write_prediction(cohort / "soft" / "case0", make_probabilities(make_reference(0), 0, 1.0), shifted)
    with pytest.raises(InputError, match="different grids.*Expected the same grid"):
        evaluate("--pred", str(cohort / "soft"), "--ref", str(cohort / "refs"), "--out", str(cohort / "eval"))
    assert not (cohort / "eval").exists()


def test_reference_labels_beyond_the_classes_are_explained(cohort):
    bad = make_reference(0)
    bad[0, 0, 0] = 5
    write_volume(cohort / "refs" / "case0.nii.gz", Volume(bad, GEOMETRY), overwrite=True)
    with pytest.raises(InputError, match="labels 0..5: expected 0..2"):
        evaluate("--pred", str(cohort / "soft"), "--ref", str(cohort / "refs"), "--out", str(cohort / "eval"))


def test_unmatched_case_and_unequal_sets_are_explained(cohort):
    (cohort / "refs" / "case2.nii.gz").unlink()
    with pytest.raises(InputError, match="no reference for prediction"):
        evaluate("--pred", str(cohort / "soft"), "--ref", str(cohort / "refs"), "--out", str(cohort / "eval"))
    (cohort / "refs" / "case2.nii.gz").touch()
    import shutil

    shutil.rmtree(cohort / "soft" / "case2")
    with pytest.raises(InputError, match="cover different cases"):
        evaluate("--pred", f"a={cohort / 'sharp'}", "--pred", f"b={cohort / 'soft'}", "--ref", str(cohort / "refs"),
                 "--out", str(cohort / "eval"))


def test_bbox_roi_uses_spacing_in_plane_and_slices_out_of_plane():
    reference = np.zeros((40, 40, 20), np.uint8)
    reference[20, 20, 10] = 1
    box = dilated_foreground_box(reference, (2.0, 0.5, 3.0))
    assert box == (slice(16, 25), slice(4, 37), slice(8, 13))  # 8 mm = 4 voxels at 2 mm, 16 at 0.5 mm; 2 slices
    assert dilated_foreground_box(np.zeros((4, 4, 4)), (1.0, 1.0, 1.0)) is None
    assert roi_mask("bbox", reference, (2.0, 0.5, 3.0)).sum() == 9 * 33 * 5


def test_nll_and_brier_by_hand():
    probabilities = np.array([[0.9, 0.2], [0.1, 0.8]])
    labels = np.array([0, 0])
    nll, count = negative_log_likelihood(probabilities, labels)
    assert count == 2 and nll == pytest.approx((-np.log(0.9) - np.log(0.2)) / 2)
    brier, _ = brier_score(probabilities, labels)
    assert brier == pytest.approx(((0.1 ** 2 + 0.1 ** 2) + (0.8 ** 2 + 0.8 ** 2)) / 2)
    assert negative_log_likelihood(probabilities, labels, np.zeros(2, bool)) == (None, 0)


def test_hd95_in_millimetres_and_absent_classes():
    reference = np.zeros((10, 10, 10), np.uint8)
    reference[2:5, 2:5, 2:5] = 1
    predicted = np.roll(reference, 2, axis=0)
    hd95 = hausdorff95_per_class(predicted, reference, 3, (1.5, 1.0, 1.0))
    assert hd95[0] == pytest.approx(3.0) and hd95[1] is None


def test_comparison_statistics():
    from scipy.stats import wilcoxon

    rng = np.random.default_rng(0)
    a = rng.normal(0.10, 0.01, 20)
    b = a + rng.normal(0.02, 0.005, 20)
    c = a + rng.normal(0.0, 0.01, 20)
    assert paired_wilcoxon(a, b) == pytest.approx(wilcoxon(a, b).pvalue) and paired_wilcoxon(a, a) == 1.0
    low, high = bootstrap_interval(a)
    assert low < a.mean() < high and high - low < 0.02
    flags = best_or_equivalent({"a": a, "b": b, "c": c})
    assert flags["b"]["best_or_equivalent"] is False and flags[min("ac", key=lambda m: {"a": a, "c": c}[m].mean())]["best"]


def test_real_hippocampus_case(test_case, tmp_path):
    image_path, label_path = test_case
    reference = read_volume(label_path)
    labels = reference.array.astype(np.int64)
    probabilities = np.eye(3, dtype=np.float32)[labels].transpose(3, 0, 1, 2) * 0.9 + 0.1 / 3
    folder = tmp_path / "case"
    folder.mkdir()
    write_volume(folder / "probabilities.nrrd", Volume(probabilities, reference.geometry))
    (folder / "run.json").write_text(json.dumps({"class_names": CLASSES}))
    document = evaluate("--pred", str(folder), "--ref", str(label_path), "--roi", "bbox", "--out", str(tmp_path / "eval"))
    pooled = document["methods"]["prediction"]["pooled"]
    # every voxel: confidence 0.9333 and right -> ECE = 1 - 0.9333
    assert pooled["ece_top_label"] == pytest.approx(1 - (0.9 + 0.1 / 3), abs=1e-6)
    assert pooled["dice_a"] == pytest.approx(1.0) and 0 < pooled["voxels"] < labels.size
