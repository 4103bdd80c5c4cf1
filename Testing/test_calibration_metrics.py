"""Calibration histograms: agreement with torchmetrics, MONAI and scikit-learn; hand-computed cases; properties; bad input."""

import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from UncertaintySegLib.evaluation.binning import accumulate_numpy, accumulate_torch
from UncertaintySegLib.evaluation.calibration_metrics import CalibrationHistogram
from UncertaintySegLib.common.errors import InputError


def softmax_case(num_classes=3, voxels=20000, seed=0, sharpness=2.0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(num_classes, voxels)) * sharpness
    probabilities = np.exp(logits - logits.max(0))
    probabilities = (probabilities / probabilities.sum(0)).astype(np.float32)
    labels = rng.integers(0, num_classes, voxels).astype(np.uint8)
    return probabilities, labels


def away_from_edges(values, bins):
    """The peers put values lying exactly on a bin edge in different bins; these tests avoid edges."""
    return np.all(np.abs(values * bins - np.round(values * bins)) > 1e-6)


def test_top_label_ece_matches_torchmetrics():
    from torchmetrics.classification import MulticlassCalibrationError

    probabilities, labels = softmax_case(voxels=10000)
    assert away_from_edges(probabilities.max(0), 15)
    assert probabilities.max() < 1.0  # a confidence of 1.0 is binned differently (next test)
    peer = MulticlassCalibrationError(num_classes=3, n_bins=15, norm="l1")
    expected = float(peer(torch.from_numpy(probabilities.T.copy()), torch.from_numpy(labels.astype(np.int64))))
    ours = CalibrationHistogram(3, "top_label", bins=15).update(probabilities, labels).compute().ece
    assert ours == pytest.approx(expected, abs=1e-6)


def test_confidence_one_goes_to_the_last_bin_unlike_torchmetrics():
    # two voxels, confidence exactly 1.0, one right and one wrong: torchmetrics bins them alone (ECE 0.5);
    # here they join the last bin [0.9, 1.0] with a voxel at 0.95 that is right: acc 2/3, conf 0.9833.
    probabilities = np.array([[1.0, 0.0, 0.05], [0.0, 1.0, 0.95]], np.float32)
    labels = np.array([0, 0, 1], np.uint8)
    summary = CalibrationHistogram(2, "top_label", bins=10).update(probabilities, labels).compute()
    assert summary.curve.count[0, -1] == 3
    assert summary.ece == pytest.approx(abs(2 / 3 - (1 + 1 + 0.95) / 3), abs=1e-7)


def test_class_wise_bins_match_monai_calibration_binning():
    from monai.metrics import CalibrationErrorMetric, calibration_binning

    probabilities, labels = softmax_case(voxels=5000, seed=1)
    assert away_from_edges(probabilities, 20)
    one_hot = np.eye(3, dtype=np.float32)[labels].T
    mean_p, mean_gt, counts = calibration_binning(torch.from_numpy(probabilities)[None], torch.from_numpy(one_hot)[None], 20)
    histogram = CalibrationHistogram(3, "class_wise", bins=20).update(probabilities, labels)
    curve = histogram.curve()
    np.testing.assert_array_equal(curve.count, counts[0].numpy())
    np.testing.assert_allclose(curve.confidence, mean_p[0].numpy(), atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(curve.accuracy, mean_gt[0].numpy(), atol=1e-6, equal_nan=True)
    summary = histogram.compute()
    for reduction, ours in (("expected", summary.ece), ("maximum", summary.mce), ("average", summary.ace)):
        metric = CalibrationErrorMetric(num_bins=20, calibration_reduction=reduction)
        metric(y_pred=torch.from_numpy(probabilities)[None], y=torch.from_numpy(one_hot)[None])
        assert ours == pytest.approx(float(metric.aggregate()), abs=1e-6)


def test_foreground_curve_matches_scikit_learn():
    from sklearn.calibration import calibration_curve

    probabilities, labels = softmax_case(num_classes=2, voxels=8000, seed=2)
    foreground = 1.0 - probabilities[0].astype(np.float64)
    assert away_from_edges(foreground, 10)
    accuracy, confidence = calibration_curve(labels != 0, foreground, n_bins=10)
    curve = CalibrationHistogram(2, "foreground", bins=10).update(probabilities, labels).curve()
    filled = curve.count[0] > 0
    np.testing.assert_allclose(curve.accuracy[0][filled], accuracy, atol=1e-6)
    np.testing.assert_allclose(curve.confidence[0][filled], confidence, atol=1e-6)


def test_hand_computed_case():
    # 4 voxels, 2 classes, 2 bins [0, 0.5) and [0.5, 1], every reference voxel is class 0.
    # Top label: confidences 0.6, 0.8, 0.9, 0.7, right/wrong/right/right: one bin, conf 0.75 = acc 0.75 -> ECE 0.
    # Class 0 (member everywhere): bin 0 holds 0.2 (gap 0.8), bin 1 holds 0.6, 0.9, 0.7 (gap 1 - 0.7333 = 0.2667).
    # Class 1 (member nowhere): bin 0 holds 0.4, 0.1, 0.3 (gap 0.2667), bin 1 holds 0.8 (gap 0.8).
    # Per class: ECE (0.8 + 3 * 0.2667) / 4 = 0.4, MCE 0.8, ACE (0.8 + 0.2667) / 2 = 0.5333.
    probabilities = np.array([[0.6, 0.2, 0.9, 0.7], [0.4, 0.8, 0.1, 0.3]], np.float32)
    labels = np.array([0, 0, 0, 0], np.uint8)
    top = CalibrationHistogram(2, "top_label", bins=2).update(probabilities, labels).compute()
    assert top.curve.count.tolist() == [[0, 4]] and top.ece == pytest.approx(0.0, abs=1e-7)
    classes = CalibrationHistogram(2, "class_wise", bins=2).update(probabilities, labels).compute()
    assert classes.curve.count.tolist() == [[1, 3], [3, 1]]
    assert classes.per_row_ece == pytest.approx([0.4, 0.4], abs=1e-6)
    assert (classes.ece, classes.mce, classes.ace) == pytest.approx((0.4, 0.8, (0.8 + 0.8 / 3) / 2), abs=1e-6)


def test_calibrated_source_gives_ece_near_zero():
    rng = np.random.default_rng(3)
    eces = []
    for voxels in (10**3, 10**5):
        foreground = rng.random(voxels)
        labels = (rng.random(voxels) < foreground).astype(np.uint8)  # P(label = 1 | p) = p: calibrated
        probabilities = np.stack([1 - foreground, foreground]).astype(np.float32)
        eces.append(CalibrationHistogram(2, "foreground", bins=20).update(probabilities, labels).compute().ece)
    assert eces[1] < 0.01 and eces[1] < eces[0]


def test_equal_mass_bins_hold_equal_counts():
    probabilities, labels = softmax_case(voxels=40000, seed=4)
    summary = CalibrationHistogram(3, "top_label", bins=10, binning="equal_mass").update(probabilities, labels).compute()
    assert np.all(np.abs(summary.curve.count[0] - 4000) <= 40)
    assert 0 <= summary.ece <= 1


@pytest.mark.parametrize("voxels", [3000, 300_001])  # one block; several blocks of uneven size (one per thread)
def test_torch_kernel_agrees_with_the_numba_kernel(voxels):
    probabilities, labels = softmax_case(voxels=voxels, seed=5)
    mask = np.random.default_rng(5).random(voxels) < 0.7
    for variant in ("class_wise", "top_label", "foreground"):
        ours, _ = accumulate_numpy(probabilities, labels, mask, variant, 20)
        peer, _ = accumulate_torch(torch.from_numpy(probabilities), torch.from_numpy(labels), torch.from_numpy(mask), variant, 20)
        np.testing.assert_array_equal(ours.counts, peer.counts)
        np.testing.assert_array_equal(ours.hits, peer.hits)
        np.testing.assert_allclose(ours.confidence_sums, peer.confidence_sums, rtol=1e-12)


def test_faults_in_any_block_are_counted():
    probabilities, labels = softmax_case(voxels=300_001, seed=7)
    labels[[5, 299_999]] = 7
    probabilities[:, 200_000] = np.nan
    _, faults = accumulate_numpy(probabilities, labels, None, "class_wise", 20)
    assert faults.bad_labels == 2 and faults.out_of_range == 1


def test_torch_tensors_and_masks_are_accepted():
    probabilities, labels = softmax_case(voxels=1000, seed=6)
    mask = np.arange(1000) < 400
    from_numpy = CalibrationHistogram(3).update(probabilities[:, :400], labels[:400]).compute()
    from_torch = CalibrationHistogram(3).update(torch.from_numpy(probabilities), torch.from_numpy(labels),
                                                torch.from_numpy(mask)).compute()
    assert from_torch.voxels == 400 and from_torch.ece == pytest.approx(from_numpy.ece, abs=1e-12)


def test_empty_roi_is_no_voxels_not_nan():
    probabilities, labels = softmax_case(voxels=100)
    summary = CalibrationHistogram(3).update(probabilities, labels, np.zeros(100, bool)).compute()
    assert summary.voxels == 0 and summary.ece is None and summary.mce is None and summary.ace is None


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), voxels=st.integers(1, 400), cut=st.floats(0, 1),
       variant=st.sampled_from(["class_wise", "top_label", "foreground"]), binning=st.sampled_from(["equal_width", "equal_mass"]))
def test_ece_in_range_and_chunking_order_and_merge_invariant(seed, voxels, cut, variant, binning):
    probabilities, labels = softmax_case(voxels=voxels, seed=seed, sharpness=4.0)
    one_pass = CalibrationHistogram(3, variant, 10, binning).update(probabilities, labels)
    split = int(cut * voxels)
    first = CalibrationHistogram(3, variant, 10, binning).update(probabilities[:, split:], labels[split:])
    second = CalibrationHistogram(3, variant, 10, binning).update(probabilities[:, :split], labels[:split])
    merged = second.merge(first)  # other order than the array
    expected, found = one_pass.compute(), merged.compute()
    assert 0.0 <= expected.ece <= 1.0 and 0.0 <= expected.mce <= 1.0 and 0.0 <= expected.ace <= 1.0
    np.testing.assert_array_equal(one_pass.sums.counts, merged.sums.counts)
    np.testing.assert_array_equal(one_pass.sums.hits, merged.sums.hits)
    assert found.ece == pytest.approx(expected.ece, abs=1e-12)


@pytest.mark.parametrize("change, message", [
    (lambda p, y: (p[:, :-1], y), "expected labels of the probabilities' spatial shape"),
    (lambda p, y: (p * 1.5, y), "outside [0, 1]"),
    (lambda p, y: (np.where(np.arange(p.shape[1]) == 3, np.nan, p).astype(np.float32), y), "NaN"),
    (lambda p, y: (p * 0.9, y), "sum to 1"),
    (lambda p, y: (p, np.where(np.arange(y.size) == 5, 7, y).astype(np.uint8)), "labels outside 0..2"),
    (lambda p, y: (p, y.astype(np.float32)), "expected integer class indices"),
    (lambda p, y: (p[:2], y), "expected (3, ...)"),
])
def test_bad_input_is_explained(change, message):
    probabilities, labels = softmax_case(voxels=50)
    histogram = CalibrationHistogram(3, "class_wise")
    with pytest.raises(InputError, match=re.escape(message)):
        histogram.update(*change(probabilities, labels))
    assert histogram.voxels == 0
