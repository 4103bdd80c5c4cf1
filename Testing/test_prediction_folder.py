"""A predict folder read back: the same maps, record and segment rows that were written; clear errors otherwise."""

import math

import numpy as np
import pytest

from UncertaintySegLib.common.errors import InputError
from UncertaintySegLib.predict.io import Geometry
from UncertaintySegLib.common.output_folders import atomic_output_folder
from UncertaintySegLib.predict.outputs import run_record, write_prediction_files
from UncertaintySegLib.predict.pipeline import Prediction
from UncertaintySegLib.predict.prediction_folder import read_prediction_folder
from UncertaintySegLib.predict.segment_scores import segment_scores, write_segment_csv


def written_prediction(folder, samples):
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(3), size=(6, 5, 4)).transpose(3, 0, 1, 2).astype(np.float32)
    entropy = -(probabilities * np.log(probabilities)).sum(0)
    geometry = Geometry((1.0, -2.0, 3.0), (0.5, 0.75, 2.0), (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    prediction = Prediction(probabilities, entropy, probabilities.argmax(0).astype(np.uint8), ("background", "a", "b"), geometry,
                            timings={"total_s": 1.5}, sampling={"method": "mc_dropout" if samples else "softmax"})
    if samples:
        prediction.expected_entropy = entropy * 0.75
        prediction.mutual_information = entropy * 0.25
        prediction.variance = probabilities * 0.01
    with atomic_output_folder(folder) as staging:  # as `predict` writes a folder
        write_prediction_files(staging, prediction, run_record(prediction, {"name": "toy"}, {}))
    rows = segment_scores(prediction.labels, entropy, geometry.spacing, prediction.class_names, prediction.mutual_information, 0.5)
    write_segment_csv(folder / "segments.csv", rows)
    return prediction, rows


@pytest.mark.parametrize("samples", [False, True])
def test_read_back_what_predict_wrote(tmp_path, samples):
    written, rows = written_prediction(tmp_path / "case", samples)
    saved = read_prediction_folder(tmp_path / "case")
    read = saved.prediction
    assert saved.model_name == "toy" and read.class_names == written.class_names
    assert read.geometry.matches(written.geometry, 1e-9) and read.sampling == written.sampling and read.timings == written.timings
    for name in ("probabilities", "entropy", "labels", "expected_entropy", "mutual_information", "variance"):
        expected, found = getattr(written, name), getattr(read, name)
        assert (found is None) == (expected is None), name
        if expected is not None:
            assert np.array_equal(found, expected), name
    def keys(segments):
        return [(r.class_name, r.component, r.voxels, r.flagged) for r in segments]

    assert keys(saved.segments) == keys(rows)
    assert all(math.isclose(a.mean_entropy, b.mean_entropy, rel_tol=1e-12) for a, b in zip(saved.segments, rows) if b.voxels)


def test_incomplete_folders_are_refused(tmp_path):
    with pytest.raises(InputError, match="no run.json"):
        read_prediction_folder(tmp_path)
    written_prediction(tmp_path / "case", False)
    (tmp_path / "case" / "segments.csv").unlink()
    assert read_prediction_folder(tmp_path / "case").segments is None
    (tmp_path / "case" / "entropy.nrrd").unlink()
    with pytest.raises(InputError, match="no entropy.nrrd"):
        read_prediction_folder(tmp_path / "case")
