"""Per-segment and per-component mean entropy, volume and quality flag on hand-built label maps."""

import math

import numpy as np
import pytest

from UncertaintySegLib.common.errors import InputError
from UncertaintySegLib.predict.segment_scores import segment_scores, write_segment_csv

NAMES = ("background", "anterior", "posterior")


def two_blobs():
    """Class 1: a 2x2x2 blob (entropy 0.1) and a diagonal-touching single voxel (entropy 0.7) -> one 26-connected component;
    a separate 1x1x3 bar (entropy 0.4) -> second component. Class 2: absent."""
    labels = np.zeros((8, 8, 8), np.uint8)
    entropy = np.zeros((8, 8, 8), np.float32)
    labels[1:3, 1:3, 1:3] = 1
    entropy[1:3, 1:3, 1:3] = 0.1
    labels[3, 3, 3] = 1  # touches (2, 2, 2) by a corner only
    entropy[3, 3, 3] = 0.7
    labels[6, 6, 2:5] = 1
    entropy[6, 6, 2:5] = 0.4
    return labels, entropy


def test_scores_by_hand():
    labels, entropy = two_blobs()
    mi = entropy / 2
    rows = segment_scores(labels, entropy, spacing=(1.0, 2.0, 0.5), class_names=NAMES, mutual_information=mi, thresholds=0.2)
    whole, largest, bar, posterior = rows
    assert (whole.class_name, whole.component, whole.voxels) == ("anterior", 0, 12)
    assert whole.mean_entropy == pytest.approx((8 * 0.1 + 0.7 + 3 * 0.4) / 12, abs=1e-6)
    assert whole.mean_mutual_information == pytest.approx(whole.mean_entropy / 2, abs=1e-6)
    assert whole.volume_ml == pytest.approx(12 * 1.0 / 1000)
    assert (largest.component, largest.voxels) == (1, 9)  # corner-touching voxel joins the blob (26-connectivity)
    assert largest.mean_entropy == pytest.approx((0.8 + 0.7) / 9, abs=1e-6) and largest.flagged is False
    assert (bar.component, bar.voxels) == (2, 3) and bar.mean_entropy == pytest.approx(0.4) and bar.flagged is True
    assert whole.flagged is True  # 0.225 > 0.2
    assert (posterior.class_name, posterior.voxels, posterior.flagged) == ("posterior", 0, None)
    assert math.isnan(posterior.mean_entropy)


def test_per_class_thresholds_and_no_components():
    labels, entropy = two_blobs()
    rows = segment_scores(labels, entropy, (1, 1, 1), NAMES, thresholds={"anterior": 0.3}, components=False)
    assert [(row.class_name, row.component, row.flagged) for row in rows] == [("anterior", 0, False), ("posterior", 0, None)]
    assert rows[0].mean_mutual_information is None


def test_shape_mismatch_is_refused():
    with pytest.raises(InputError, match="share one"):
        segment_scores(np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 5)), (1, 1, 1), NAMES)


def test_csv_has_one_line_per_row(tmp_path):
    labels, entropy = two_blobs()
    write_segment_csv(tmp_path / "segments.csv", segment_scores(labels, entropy, (1, 1, 1), NAMES))
    lines = (tmp_path / "segments.csv").read_text().splitlines()
    assert lines[0] == "class_index,class_name,component,voxels,volume_ml,mean_entropy,mean_mutual_information,flagged"
    assert len(lines) == 1 + 4 and lines[1].startswith("1,anterior,0,12,")
