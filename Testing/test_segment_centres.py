"""Segment centres row for row with segment_scores, and segments.csv read back as written."""

import math

import numpy as np

from UncertaintySegLib.predict.segment_centres import segment_centres
from UncertaintySegLib.predict.segment_scores import read_segment_csv, segment_scores, write_segment_csv


def labels_with_a_curve_and_a_dot():
    """Class 1: an L-shaped segment (centroid outside it) and a single voxel; class 2: absent."""
    labels = np.zeros((8, 8, 3), dtype=np.uint8)
    labels[1:6, 1, 1] = 1  # 5 voxels along i at j = 1
    labels[1, 2:6, 1] = 1  # 4 more along j at i = 1
    labels[6, 6, 2] = 1  # a separate voxel
    return labels


def test_centres_by_hand_and_in_the_order_of_segment_scores():
    labels = labels_with_a_curve_and_a_dot()
    centres = segment_centres(labels, 3)
    scores = segment_scores(labels, np.zeros(labels.shape), (1.0, 1.0, 1.0), ["background", "a", "b"])
    assert [(c.class_index, c.component, c.voxels) for c in centres] == [(s.class_index, s.component, s.voxels) for s in scores]
    whole, curve, dot, absent = centres
    # the L: i = 1..5 at j = 1 plus i = 1 at j = 2..5 -> centroid ((1+2+3+4+5) + 4*1) / 9 = 19/9 along i, likewise along j
    assert np.allclose(curve.centroid, (19 / 9, 19 / 9, 1.0))
    assert labels[curve.voxel] == 1 and labels[tuple(round(v) for v in curve.centroid)] == 0  # the centroid is outside, the centre inside
    assert curve.voxel in {(1, 2, 1), (2, 1, 1)}  # the two voxels nearest (2.11, 2.11)
    assert dot.voxel == (6, 6, 2) and dot.voxels == 1
    assert np.allclose(whole.centroid, ((19 + 6) / 10, (19 + 6) / 10, (9 + 2) / 10))
    assert absent.class_index == 2 and absent.voxels == 0 and absent.voxel is None and absent.centroid is None


def test_segment_csv_round_trip_keeps_none_and_nan(tmp_path):
    labels = labels_with_a_curve_and_a_dot()
    entropy = np.linspace(0, 1, labels.size).reshape(labels.shape)
    for mutual_information, thresholds in ((None, None), (entropy / 2, {"a": 0.5})):
        rows = segment_scores(labels, entropy, (0.5, 0.5, 2.0), ["background", "a", "b"], mutual_information, thresholds)
        write_segment_csv(tmp_path / "segments.csv", rows)
        back = read_segment_csv(tmp_path / "segments.csv")
        assert len(back) == len(rows)
        for read, written in zip(back, rows):
            for name in written.__dataclass_fields__:
                a, b = getattr(read, name), getattr(written, name)
                assert (isinstance(a, float) and math.isnan(a) and math.isnan(b)) or a == b or math.isclose(a, b, rel_tol=1e-12), name
        assert {row.flagged for row in back if row.voxels} == ({None} if thresholds is None else {True, False})
