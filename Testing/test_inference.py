"""Pre-processing and sliding-window inference return logits on the input's grid."""

import json
import shutil

import numpy as np
import pytest
import torch

from UncertaintySegLib.common.errors import InputError
from UncertaintySegLib.predict.inference import check_image, normalize_intensity, predict_logits, probabilities_from_logits
from UncertaintySegLib.predict.io import Geometry, Volume
from UncertaintySegLib.predict.model_loading import load_model

GEOMETRY = Geometry((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))


def test_zscore_and_range_normalisation():
    image = torch.tensor([[[[0.0, 2.0], [4.0, 6.0]]]])
    z = normalize_intensity(image, {"kind": "zscore"})
    assert abs(float(z.mean())) < 1e-6 and abs(float(z.std()) - 1) < 1e-6
    r = normalize_intensity(image, {"kind": "range", "a_min": 0, "a_max": 4, "b_min": 0, "b_max": 1, "clip": True})
    assert r.flatten().tolist() == [0.0, 0.5, 1.0, 1.0]
    nz = normalize_intensity(image, {"kind": "zscore", "nonzero": True})
    assert float(nz.flatten()[0]) == 0.0 and abs(float(nz.flatten()[1:].mean())) < 1e-6


@pytest.mark.parametrize("shape", [(13, 17, 11), (40, 21, 35)])
def test_logits_cover_the_input_grid_smaller_or_larger_than_the_roi(small_model_dir, shape):
    model = load_model(small_model_dir)  # ROI 16^3: the second shape needs several windows
    image = np.random.default_rng(0).random((1, *shape)).astype(np.float32)
    logits = predict_logits(model.network, model.spec, image, device="cpu")
    assert logits.shape == (3, *shape) and logits.dtype == torch.float32 and torch.isfinite(logits).all()


def test_sliding_window_equals_one_pass_when_the_roi_covers_the_image(small_model_dir):
    model = load_model(small_model_dir)
    image = np.random.default_rng(1).random((1, 16, 16, 16)).astype(np.float32)
    expected = model.network(normalize_intensity(torch.from_numpy(image), {"kind": "zscore"})[None])[0]
    assert torch.allclose(predict_logits(model.network, model.spec, image, device="cpu"), expected.detach(), atol=1e-5)


def test_probability_output_is_turned_back_into_logits(small_model_dir, tmp_path):
    folder = tmp_path / "probs"
    shutil.copytree(small_model_dir, folder)
    spec = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps({**spec, "output": "probabilities"}))
    logits_model, probability_model = load_model(small_model_dir), load_model(folder)
    softmax_network = torch.nn.Sequential(probability_model.network, torch.nn.Softmax(dim=1))
    image = np.random.default_rng(2).random((1, 16, 16, 16)).astype(np.float32)
    expected = probabilities_from_logits(predict_logits(logits_model.network, logits_model.spec, image, device="cpu"))
    back = probabilities_from_logits(predict_logits(softmax_network, probability_model.spec, image, device="cpu"))
    assert torch.allclose(back, expected, atol=1e-5)


def test_sigmoid_single_channel_becomes_two_classes():
    probabilities = probabilities_from_logits(torch.tensor([[[0.0, 100.0]]]), activation="sigmoid")
    assert probabilities.shape == (2, 1, 2)
    assert torch.allclose(probabilities[:, 0, 0], torch.tensor([0.5, 0.5])) and float(probabilities[1, 0, 1]) == 1.0


@pytest.mark.parametrize("array, message", [
    (np.ones((2, 8, 8, 8), np.float32), "2 channel.*expects 1"),
    (np.zeros((0, 8, 8), np.float32), "empty"),
    (np.where(np.eye(8)[None].repeat(8, 0) > 0, np.nan, 1.0).astype(np.float32), "NaN or infinite"),
    (np.full((8, 8, 8), np.inf, np.float32), "NaN or infinite"),
    (np.full((8, 8, 8), 3, np.uint8), "no contrast"),
])
def test_bad_images_are_refused_with_reasons(small_model_dir, array, message):
    with pytest.raises(InputError, match=message):
        check_image(Volume(array, GEOMETRY), load_model(small_model_dir).spec)
