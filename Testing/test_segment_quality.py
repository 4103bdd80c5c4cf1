"""Dice vs mean segment entropy: rows by hand, correlations against scipy's, the fitted flag, and through `evaluate`."""

import argparse
import json
import math

import numpy as np
import pytest
from scipy import stats
from test_evaluate import CLASSES, GEOMETRY, make_probabilities, make_reference, write_prediction

from UncertaintySegLib.cli.evaluate import add_evaluate_parser, run_evaluate
from UncertaintySegLib.predict.io import Volume, write_volume
from UncertaintySegLib.common.progress import Progress
from UncertaintySegLib.evaluation.segment_quality import SegmentQualityRow, case_segment_quality, correlations, fit_threshold, logit_dice


def row(dice, entropy, name="a"):
    return SegmentQualityRow("m", "c", name, dice, entropy, None, 10, 10)


def test_case_rows_by_hand():
    predicted = np.array([[[1, 1, 0, 2]]])
    reference = np.array([[[1, 0, 0, 0]]])
    entropy = np.array([[[0.2, 0.4, 9.0, 0.5]]])
    a, b = case_segment_quality("m", "c", predicted, reference, entropy, CLASSES)
    assert (a.dice, a.mean_entropy, a.predicted_voxels, a.reference_voxels) == (pytest.approx(2 / 3), pytest.approx(0.3), 2, 1)
    assert (b.dice, b.mean_entropy) == (0.0, pytest.approx(0.5))
    empty = case_segment_quality("m", "c", np.zeros((1, 1, 4), int), reference, entropy, CLASSES)[0]
    assert math.isnan(empty.mean_entropy) and empty.dice == 0.0


def test_correlations_match_scipy_and_leave_out_empty_segments():
    rng = np.random.default_rng(0)
    dice = rng.uniform(0.3, 0.95, 12)
    entropy = 0.5 - 0.4 * dice + rng.normal(0, 0.03, 12)
    rows = [row(d, e) for d, e in zip(dice, entropy)] + [row(0.0, math.nan)]
    result = correlations(rows)
    assert (result["n"], result["left_out_empty"]) == (12, 1)
    assert result["pearson_r"] == pytest.approx(stats.pearsonr(entropy, logit_dice(dice)).statistic)
    assert result["spearman_rho"] == pytest.approx(stats.spearmanr(entropy, logit_dice(dice)).statistic)
    assert result["pearson_r"] < -0.8  # more entropy, lower Dice
    assert correlations(rows[:2])["pearson_r"] is None  # too few to correlate


def test_fitted_threshold_separates_poor_segments():
    rows = [row(0.9, 0.1), row(0.85, 0.15), row(0.88, 0.3), row(0.5, 0.35), row(0.6, 0.5)]
    flag = fit_threshold(rows, dice_floor=0.8)
    assert flag["threshold"] == pytest.approx(0.3) and flag["sensitivity"] == 1.0 and flag["specificity"] == 1.0
    assert fit_threshold([row(0.9, 0.1), row(0.95, 0.2)], 0.8)["youden_j"] is None  # nothing to separate


def test_evaluate_writes_segment_quality_and_thresholds_predict_can_read(tmp_path):
    for case in range(4):
        reference = make_reference(case)
        write_volume(tmp_path / "refs" / f"case{case}.nii.gz", Volume(reference, GEOMETRY))
        (tmp_path / "pred" / f"case{case}").mkdir(parents=True)
        write_prediction(tmp_path / "pred" / f"case{case}", make_probabilities(reference, case, 1.0 + case))
    parser = argparse.ArgumentParser()
    add_evaluate_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "refs"),
                              "--out", str(tmp_path / "eval"), "--dice-floor", "0.9", "--progress", "none"])
    run_evaluate(args, Progress("none"))
    summary = json.loads((tmp_path / "eval" / "segment_quality.json").read_text())
    assert summary["entropy_units"] == "nats" and set(summary["methods"]["prediction"]) == {"a", "b", "all classes"}
    assert summary["methods"]["prediction"]["all classes"]["correlation"]["n"] == 8
    thresholds = json.loads((tmp_path / "eval" / "thresholds.json").read_text())
    assert set(thresholds["thresholds"]) == {"a", "b"} and thresholds["dice_floor"] == 0.9
    lines = (tmp_path / "eval" / "segment_quality.csv").read_text().splitlines()
    assert len(lines) == 1 + 4 * 2 and (tmp_path / "eval" / "segment_quality.png").stat().st_size > 1000
