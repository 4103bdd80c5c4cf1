"""`uncertaintyseg train`: real training on the real split, deterministic given the seed, whole outputs."""

import json

import numpy as np
import pytest
import torch

from UncertaintySegLib.models import load_model
from UncertaintySegLib.train import TrainSettings, place_in_roi, train


def test_place_in_roi_pads_centred_or_crops():
    image, label = np.ones((3, 5, 7), np.float32), np.ones((3, 5, 7), np.int64)
    padded, padded_label = place_in_roi(image, label, (5, 5, 5), None)
    assert padded.shape == (5, 5, 5) and padded[1:4, :, :].sum() == 3 * 5 * 5 and padded[0].sum() == 0
    assert np.array_equal(padded > 0, padded_label > 0)


@pytest.fixture(scope="module")
def tiny_runs(data_root, tmp_path_factory):
    """Two one-epoch runs of a tiny network with the same seed."""
    settings = TrainSettings(epochs=1, channels=(4, 8), batch_size=4, name="tiny", seed=3, max_cases=10)
    folders = [tmp_path_factory.mktemp("train") / "out" for _ in range(2)]
    summaries = [train(data_root, folder, settings) for folder in folders]
    return folders, summaries


def test_training_writes_a_loadable_model_and_its_log(tiny_runs):
    (folder, _), (summary, _) = tiny_runs
    assert {p.name for p in folder.iterdir()} == {"model.json", "model.pt", "training_log.csv", "training_curve.png", "training_summary.json"}
    model = load_model(folder)
    assert model.spec.name == "tiny" and model.spec.class_names == ("background", "anterior", "posterior")
    assert summary["training_cases"] + summary["validation_cases"] == 10  # validation carved from the train cases
    assert json.loads((folder / "training_summary.json").read_text())["epochs_run"] == 1


def test_training_is_deterministic_given_the_seed(tiny_runs):
    (first, second), _ = tiny_runs
    a, b = torch.load(first / "model.pt", weights_only=True), torch.load(second / "model.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
