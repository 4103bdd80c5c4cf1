"""TP/FP/FN confidence per slice and per 3-D component: hand-built cases with every outcome and mean known."""

import argparse
import csv
import json

import numpy as np
import pytest
from UncertaintySegLib.evaluation.error_confidence import (
    ErrorConfidenceRow,
    case_error_confidence,
    error_confidence_rows,
    save_error_confidence_plot,
    summarize_error_confidence,
    write_error_confidence_csv,
)
from UncertaintySegLib.common.errors import InputError
from UncertaintySegLib.cli.evaluate import add_evaluate_parser, run_evaluate
from UncertaintySegLib.predict.io import Geometry, Volume, write_volume
from UncertaintySegLib.common.progress import Progress

CLASSES = ["background", "lipid", "calcium"]
FP_CONFIDENCES = [[0.4, 0.5], [0.6, 0.7]]


def hand_built_case():
    """Probabilities `(3, 6, 6, 4)` and reference `(6, 6, 4)`; class 1 ("lipid"), slices along axis 2:

    - TP blob: predicted [0:2, 0:2, 0:2] (slice 0 at confidence 0.8, slice 1 at 0.7), reference [0:2, 0:2, 0];
    - FP blob: predicted [4:6, 4:6, 1] at confidences FP_CONFIDENCES, reference background;
    - missed blob: reference [4:6, 0:2, 2], predicted class 2 at confidence 0.5;
    - slice 3: no class 1 anywhere. Background is predicted at confidence 0.9.
    """
    predicted = np.zeros((6, 6, 4), np.int64)
    confidence = np.full((6, 6, 4), 0.9)
    predicted[0:2, 0:2, 0:2] = 1
    confidence[0:2, 0:2, 0] = 0.8
    confidence[0:2, 0:2, 1] = 0.7
    predicted[4:6, 4:6, 1] = 1
    confidence[4:6, 4:6, 1] = FP_CONFIDENCES
    predicted[4:6, 0:2, 2] = 2
    confidence[4:6, 0:2, 2] = 0.5
    reference = np.zeros((6, 6, 4), np.uint8)
    reference[0:2, 0:2, 0] = 1
    reference[4:6, 0:2, 2] = 1
    others = (1 - confidence) / 2
    probabilities = np.where(np.arange(3)[:, None, None, None] == predicted, confidence, others)
    return probabilities.astype(np.float32), reference


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def outcomes(rows, unit):
    return [(r.index, r.outcome, r.voxels, r.confidence) for r in rows if r.unit == unit]


def assert_rows(actual, expected):
    assert [a[:3] for a in actual] == [e[:3] for e in expected]
    for a, e in zip(actual, expected):
        assert (a[3] is None) == (e[3] is None), (a, e)
        if e[3] is not None:
            assert a[3] == pytest.approx(e[3], abs=1e-6)


def test_every_slice_and_component_along_axis_2():
    probabilities, reference = hand_built_case()
    rows = error_confidence_rows(probabilities, reference, 1, axis=2, case="c1", class_name="lipid")
    assert_rows(outcomes(rows, "slice"), [(0, "TP", 4, 0.8), (1, "FP", 8, (4 * 0.7 + 0.4 + 0.5 + 0.6 + 0.7) / 8),
                                          (2, "FN", 4, 0.5), (3, "TN", 0, None)])
    # predicted components in raster order (TP blob first); FN: reference component 2, the missed blob
    assert_rows(outcomes(rows, "component"), [(1, "TP", 8, 0.75), (2, "FP", 4, 0.55), (2, "FN", 4, 0.5)])
    assert {(r.case, r.class_name) for r in rows} == {("c1", "lipid")}
    assert [r.unit for r in rows] == ["slice"] * 4 + ["component"] * 3


def test_axis_choice_changes_which_slices_are_counted():
    probabilities, reference = hand_built_case()
    rows = error_confidence_rows(probabilities, reference, 1, axis=0)
    # slice i=4 holds the FP blob's first row and the missed blob: both present, so a TP slice
    assert_rows(outcomes(rows, "slice"), [(0, "TP", 4, 0.75), (1, "TP", 4, 0.75), (2, "TN", 0, None),
                                          (3, "TN", 0, None), (4, "TP", 2, 0.45), (5, "TP", 2, 0.65)])
    assert len(outcomes(error_confidence_rows(probabilities, reference, 1, axis=1), "slice")) == 6
    assert outcomes(rows, "component") == outcomes(error_confidence_rows(probabilities, reference, 1), "component")
    assert rows[0].class_name == "1"


def test_components_use_full_26_connectivity():
    probabilities = np.zeros((2, 3, 3, 3), np.float32)
    probabilities[0] = 1.0
    for voxel in ((0, 0, 0), (1, 1, 1)):  # touching only at a corner
        probabilities[:, voxel[0], voxel[1], voxel[2]] = (0.2, 0.8)
    rows = error_confidence_rows(probabilities, np.zeros((3, 3, 3), np.uint8), 1)
    assert_rows(outcomes(rows, "component"), [(1, "FP", 2, 0.8)])


def test_every_foreground_class_of_a_case():
    probabilities, reference = hand_built_case()
    rows = case_error_confidence("c1", probabilities, reference, CLASSES, axis=2)
    lipid = [r for r in rows if r.class_name == "lipid"]
    assert lipid == error_confidence_rows(probabilities, reference, 1, 2, "c1", "lipid")
    calcium = [r for r in rows if r.class_name == "calcium"]  # class 2: predicted on the missed blob, never in reference
    assert_rows(outcomes(calcium, "slice"), [(0, "TN", 0, None), (1, "TN", 0, None), (2, "FP", 4, 0.5),
                                             (3, "TN", 0, None)])
    assert_rows(outcomes(calcium, "component"), [(1, "FP", 4, 0.5)])


def test_summary_counts_means_and_medians():
    probabilities, reference = hand_built_case()
    summary = summarize_error_confidence(error_confidence_rows(probabilities, reference, 1, axis=0))
    slices = summary["slice"]
    assert slices["TP"]["count"] == 4 and slices["TN"]["count"] == 2
    assert slices["TP"]["mean_confidence"] == pytest.approx((0.75 + 0.75 + 0.45 + 0.65) / 4, abs=1e-6)
    assert slices["TP"]["median_confidence"] == pytest.approx(0.7, abs=1e-6)
    assert slices["TN"]["mean_confidence"] is None and slices["FP"] == {"count": 0, "mean_confidence": None,
                                                                         "median_confidence": None}
    assert set(summary["component"]) == {"TP", "FP", "FN"}
    assert summary["component"]["FN"]["mean_confidence"] == pytest.approx(0.5, abs=1e-6)


def test_bad_inputs_are_explained():
    probabilities, reference = hand_built_case()
    with pytest.raises(InputError, match=r"shape \(3, 6, 6, 4\).*\(6, 6, 3\).*same grid"):
        error_confidence_rows(probabilities, reference[..., :3], 1)
    with pytest.raises(InputError, match="shape"):
        error_confidence_rows(probabilities[0], reference, 1)
    for bad in (0, 3):
        with pytest.raises(InputError, match=rf"class index {bad}: expected a foreground class 1\.\.2"):
            error_confidence_rows(probabilities, reference, bad)
    with pytest.raises(InputError, match="slice axis 3: expected 0, 1 or 2"):
        error_confidence_rows(probabilities, reference, 1, axis=3)
    with pytest.raises(InputError, match="2 class names for 3 probability channels"):
        case_error_confidence("c1", probabilities, reference, CLASSES[:2])
    with pytest.raises(InputError, match="no error-confidence rows"):
        save_error_confidence_plot("unused.png", {"m": []})


def test_csv_round_trips(tmp_path):
    probabilities, reference = hand_built_case()
    rows = case_error_confidence("c1", probabilities, reference, CLASSES)
    path = write_error_confidence_csv(tmp_path / "rows.csv", {"base": rows, "ts": rows[:3]})
    read = read_csv(path)
    assert list(read[0]) == ["method", "case", "class", "unit", "index", "outcome", "voxels", "confidence"]
    assert [r["method"] for r in read] == ["base"] * len(rows) + ["ts"] * 3
    back = [ErrorConfidenceRow(r["case"], r["class"], r["unit"], int(r["index"]), r["outcome"], int(r["voxels"]),
                               None if r["confidence"] == "" else float(r["confidence"])) for r in read]
    assert back == rows + rows[:3]
    assert "nan" not in path.read_text().lower()


def test_box_plot_is_a_png_and_handles_empty_groups(tmp_path):
    probabilities, reference = hand_built_case()
    rows = case_error_confidence("c1", probabilities, reference, CLASSES)
    only_tp = [ErrorConfidenceRow("c1", "lipid", "slice", 0, "TP", 4, 0.8)]  # no FP, no FN, no components at all
    path = save_error_confidence_plot(tmp_path / "plot.png", {"base": rows, "sparse": only_tp})
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000


def evaluate(*argv):
    parser = argparse.ArgumentParser()
    add_evaluate_parser(parser.add_subparsers(dest="command"))
    return run_evaluate(parser.parse_args(["evaluate", *argv, "--progress", "none"]), Progress("none"))


def test_evaluate_writes_error_confidence_files(tmp_path):
    probabilities, reference = hand_built_case()
    geometry = Geometry((0.0, 0.0, 0.0), (1.0, 1.0, 2.0), (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
    write_volume(tmp_path / "refs" / "c1.nii.gz", Volume(reference, geometry))
    folder = tmp_path / "preds" / "c1"
    folder.mkdir(parents=True)
    write_volume(folder / "probabilities.nrrd", Volume(probabilities, geometry))
    (folder / "run.json").write_text(json.dumps({"class_names": CLASSES}))
    out = tmp_path / "eval"
    document = evaluate("--pred", f"base={tmp_path / 'preds'}", "--ref", str(tmp_path / "refs"),
                        "--error-confidence-axis", "0", "--out", str(out))
    read = read_csv(out / "error_confidence.csv")
    lipid = [(r["unit"], int(r["index"]), r["outcome"], int(r["voxels"])) for r in read if r["class"] == "lipid"]
    assert lipid == [("slice", 0, "TP", 4), ("slice", 1, "TP", 4), ("slice", 2, "TN", 0), ("slice", 3, "TN", 0),
                     ("slice", 4, "TP", 2), ("slice", 5, "TP", 2), ("component", 1, "TP", 8),
                     ("component", 2, "FP", 4), ("component", 2, "FN", 4)]
    assert {(r["method"], r["case"]) for r in read} == {("base", "c1")} and len(read) == 2 * 6 + 3 + 1
    assert float(read[4]["confidence"]) == pytest.approx(0.45, abs=1e-6) and read[2]["confidence"] == ""
    assert (out / "error_confidence.png").read_bytes().startswith(b"\x89PNG")
    summary = document["error_confidence"]["base"]["lipid"]
    assert summary["component"]["FP"] == {"count": 1, "mean_confidence": pytest.approx(0.55, abs=1e-6),
                                          "median_confidence": pytest.approx(0.55, abs=1e-6)}
    assert document["settings"]["error_confidence_axis"] == 0
    assert "TP/FP/FN confidence" in (out / "report.html").read_text()
