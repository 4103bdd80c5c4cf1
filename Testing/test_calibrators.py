"""Logit calibrators on synthetic cases: what they recover, that they lower NLL, saving, argmax, refusals."""

import json

import numpy as np
import pytest
import torch

from UncertaintySegLib.calibration import (AuxiliaryConvCalibrator, HistogramBinning, IsotonicRegression, PlattScaling,
                                           TemperatureScaling, VectorScaling, load_calibrator, model_fingerprint, network_checksum)
from UncertaintySegLib.calibration.base import JSON_FILE
from UncertaintySegLib.common.errors import InputError

FACTORIES = {
    "temperature": lambda: TemperatureScaling(),
    "vector": lambda: VectorScaling(),
    "platt": lambda: PlattScaling(),
    "auxconv": lambda: AuxiliaryConvCalibrator(kernel_size=3, max_epochs=15, patience=3),
    "histogram": lambda: HistogramBinning(n_bins=10),
    "isotonic": lambda: IsotonicRegression(),
}


def sampled_labels(true_logits, generator):
    """Labels `(I, J, K)` drawn voxel by voxel from softmax(true_logits `(C, I, J, K)`)."""
    probabilities = torch.softmax(true_logits, 0).reshape(true_logits.shape[0], -1).T
    return torch.multinomial(probabilities, 1, generator=generator).reshape(true_logits.shape[1:])


def miscalibrated_cases(count=4, shape=(16, 18, 14), seed=0):
    """(network logits, labels) per case: labels drawn from softmax(u), the network says 3u + (1, 0, -1):
    overconfident and biased towards background, so every calibrator has something to fix."""
    generator = torch.Generator().manual_seed(seed)
    cases = []
    for _ in range(count):
        true = torch.randn((3, *shape), generator=generator) * 1.5
        cases.append((3 * true + torch.tensor([1.0, 0.0, -1.0]).view(3, 1, 1, 1), sampled_labels(true, generator)))
    return cases


def nll(logits, labels):
    return float(torch.nn.functional.cross_entropy(logits[None].double(), labels[None].long()))


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_temperature_scaling_recovers_the_temperature_the_logits_were_made_with(temperature):
    generator = torch.Generator().manual_seed(1)
    true = torch.randn(3, 64, 64, 48, generator=generator) * 2
    labels = sampled_labels(true, generator)
    fitted = TemperatureScaling(max_voxels_per_case=None).fit(true * temperature, labels)
    assert fitted.temperature_ == pytest.approx(temperature, rel=0.02)
    assert fitted.voxels_used_ == 64 * 64 * 48 and fitted.cases_used_ == 1


@pytest.mark.parametrize("method", list(FACTORIES))
def test_each_calibrator_lowers_the_nll_of_its_fitting_data(method):
    cases = miscalibrated_cases()
    logits, labels = [c[0] for c in cases], [c[1] for c in cases]
    calibrator = FACTORIES[method]().fit(logits, labels)
    assert calibrator.nll_after_ <= calibrator.nll_before_
    before = sum(nll(z, y) for z, y in cases)
    after = sum(nll(calibrator.transform(z), y) for z, y in cases)  # recomputed here, on every voxel of every case
    assert after < before
    assert calibrator.nll_before_ == pytest.approx(before / len(cases), rel=1e-6)  # every voxel was used (fewer than the cap)
    assert calibrator.nll_after_ == pytest.approx(after / len(cases), rel=1e-5)


def test_constraints_order_the_fits_and_vector_scaling_undoes_scale_and_bias():
    logits, labels = zip(*miscalibrated_cases())
    fits = {name: FACTORIES[name]().fit(list(logits), list(labels)) for name in ("temperature", "platt", "vector")}
    # more freedom, never a worse optimum on the same voxels (each is a constraint of vector scaling)
    assert fits["vector"].nll_after_ <= fits["platt"].nll_after_ + 1e-7 <= fits["temperature"].nll_after_ + 2e-7
    vector = fits["vector"]
    shift = vector.bias_ - vector.bias_.mean()  # softmax ignores a common shift
    assert torch.allclose(vector.scale_, torch.full((3,), 1 / 3), atol=0.02)
    assert torch.allclose(shift, torch.tensor([-1 / 3, 0.0, 1 / 3]), atol=0.05)
    assert fits["temperature"].bias_.abs().max() == 0  # the constraint, not a copy: no bias at all


def test_platt_scaling_is_an_affine_map_of_the_foreground_logit_difference():
    generator = torch.Generator().manual_seed(2)
    true = torch.randn(2, 30, 30, 30, generator=generator) * 2
    labels = sampled_labels(true, generator)
    platt = PlattScaling().fit(true * 2.5 + torch.tensor([0.8, 0.0]).view(2, 1, 1, 1), labels)
    z = torch.randn(2, 5, 5, 5)
    out = platt.transform(z)
    assert torch.allclose(out[1] - out[0], platt.platt_scale_ * (z[1] - z[0]) + platt.platt_bias_, atol=1e-5)
    assert platt.platt_scale_ == pytest.approx(0.4, rel=0.05) and platt.platt_bias_ == pytest.approx(0.8 * 0.4, abs=0.05)


@pytest.mark.parametrize("method", list(FACTORIES))
def test_save_load_transform_is_identical(method, tmp_path):
    logits, labels = zip(*miscalibrated_cases(3))
    calibrator = FACTORIES[method]().fit(list(logits), list(labels))
    calibrator.save(tmp_path / "cal")
    loaded = load_calibrator(tmp_path / "cal")
    assert type(loaded) is type(calibrator) and loaded.get_params() == calibrator.get_params()
    assert loaded.describe() == calibrator.describe()
    batch = torch.randn(2, 3, 9, 10, 11)
    assert torch.equal(loaded.transform(batch), calibrator.transform(batch))
    assert torch.equal(loaded.transform(batch[1]), calibrator.transform(batch[1]))
    assert torch.allclose(calibrator.transform(batch)[1], calibrator.transform(batch[1]), atol=1e-6)  # batched = one by one
    record = json.loads((tmp_path / "cal" / JSON_FILE).read_text())
    assert record["method"] == method and record["fit"]["voxels"] == calibrator.voxels_used_


def test_tensors_are_read_with_weights_only(tmp_path):
    calibrator = TemperatureScaling().fit(*miscalibrated_cases(1)[0])
    calibrator.save(tmp_path / "cal")
    torch.save({"scale": torch.ones(3), "bias": torch.zeros(3), "payload": object()}, tmp_path / "cal" / "calibrator.pt")
    with pytest.raises(InputError, match="weights_only=True"):
        load_calibrator(tmp_path / "cal")


def test_temperature_scaling_keeps_every_argmax():
    logits, labels = miscalibrated_cases(1)[0]
    calibrator = TemperatureScaling().fit(logits, labels)
    assert calibrator.temperature_ > 2  # far from 1 (the logits are 3x overconfident): the check below means something
    probe = torch.randn(4, 3, 12, 12, 12) * 5
    assert torch.equal(calibrator.transform(probe).argmax(1), probe.argmax(1))


def test_fitting_streams_a_generator_and_subsamples_the_roi_with_a_seed():
    cases = miscalibrated_cases(3)
    masks = [torch.zeros(16, 18, 14, dtype=torch.bool) for _ in cases]
    for mask in masks:
        mask[2:12, 3:15, 2:10] = True  # 960 voxels
    consumed = []

    def logits():
        for z, _ in cases:
            consumed.append(len(consumed))
            yield z

    first = VectorScaling(max_voxels_per_case=500, seed=3).fit(logits(), [y for _, y in cases], masks)
    again = VectorScaling(max_voxels_per_case=500, seed=3).fit([z for z, _ in cases], [y for _, y in cases], masks)
    other = VectorScaling(max_voxels_per_case=500, seed=4).fit([z for z, _ in cases], [y for _, y in cases], masks)
    assert consumed == [0, 1, 2] and first.voxels_used_ == 1500 and first.cases_used_ == 3
    assert torch.equal(first.scale_, again.scale_) and not torch.equal(first.scale_, other.scale_)
    assert VectorScaling(max_voxels_per_case=5000).fit([z for z, _ in cases], [y for _, y in cases], masks).voxels_used_ == 3 * 960


def test_a_sigmoid_models_single_logit_is_calibrated_as_two_softmax_logits():
    generator = torch.Generator().manual_seed(5)
    true = torch.randn(1, 40, 40, 30, generator=generator) * 2
    labels = (torch.rand(true.shape[1:], generator=generator) < torch.sigmoid(true[0])).long()
    calibrator = TemperatureScaling().fit(true * 2.0, labels)
    assert calibrator.n_classes_ == 2 and calibrator.temperature_ == pytest.approx(2.0, rel=0.05)
    z = torch.randn(1, 4, 4, 4)
    assert calibrator.transform(z).shape == (1, 4, 4, 4)
    assert torch.allclose(calibrator.transform(z), z / calibrator.temperature_, atol=1e-6)


@pytest.mark.parametrize("logits, labels, mask, message", [
    (torch.randn(3, 4, 4, 4), torch.zeros(4, 4, 5), None, r"labels have shape \(4, 4, 5\), logits \(3, 4, 4, 4\)"),
    (torch.randn(4, 4, 4), torch.zeros(4, 4), None, r"expected \(C, I, J, K\)"),
    (torch.randn(3, 4, 4, 4), torch.full((4, 4, 4), 3), None, r"values 3..3, the model has 3 classes: expected class indices 0..2"),
    (torch.randn(3, 4, 4, 4), torch.full((4, 4, 4), -1), None, r"expected class indices 0..2"),
    (torch.randn(3, 4, 4, 4), torch.full((4, 4, 4), 0.5), None, "non-integer"),
    (torch.randn(3, 4, 4, 4), torch.zeros(4, 4, 4), torch.zeros(4, 4, 4, dtype=torch.bool), "the ROI is empty"),
    (torch.randn(3, 4, 4, 4), torch.zeros(4, 4, 4), torch.ones(4, 4, 3, dtype=torch.bool), "ROI mask has shape"),
    (torch.zeros(3, 4, 4, 4, dtype=torch.int64), torch.zeros(4, 4, 4), None, "floating-point logits"),
    (torch.full((3, 4, 4, 4), float("nan")), torch.zeros(4, 4, 4), None, "NaN or infinite"),
])
def test_fitting_refuses_bad_cases_with_clear_errors(logits, labels, mask, message):
    for calibrator in (TemperatureScaling(), AuxiliaryConvCalibrator()):
        with pytest.raises(InputError, match=message):
            calibrator.fit(logits, labels, mask)


def test_fitting_refuses_inconsistent_sequences_and_wrong_settings():
    z, y = miscalibrated_cases(1)[0]
    with pytest.raises(InputError, match="case 2: logits have 2 classes, earlier cases or the calibrator 3"):
        TemperatureScaling().fit([z, z[:2]], [y, y.clamp(max=1)])
    with pytest.raises(InputError, match="fewer label maps"):
        TemperatureScaling().fit([z, z], [y])
    with pytest.raises(InputError, match="more label maps"):
        TemperatureScaling().fit([z], [y, y])
    with pytest.raises(InputError, match="no cases"):
        TemperatureScaling().fit([], [])
    with pytest.raises(InputError, match="at least 2 cases"):
        AuxiliaryConvCalibrator().fit(z, y)
    with pytest.raises(InputError, match="odd number"):
        AuxiliaryConvCalibrator(kernel_size=4).fit([z, z], [y, y])
    with pytest.raises(InputError, match="max_voxels_per_case 0"):
        TemperatureScaling(max_voxels_per_case=0).fit(z, y)


def test_transform_refuses_other_class_counts_and_an_unfitted_calibrator():
    calibrator = VectorScaling().fit(*miscalibrated_cases(1)[0])
    with pytest.raises(InputError, match="4 channel"):
        calibrator.transform(torch.randn(4, 5, 5, 5))
    with pytest.raises(RuntimeError, match="not fitted"):
        TemperatureScaling().transform(torch.randn(3, 5, 5, 5))


def test_the_model_a_calibrator_was_fitted_for_is_checked(small_model_dir):
    from UncertaintySegLib.predict.model_loading import load_model

    model = load_model(small_model_dir)
    fingerprint = model_fingerprint(model)
    calibrator = TemperatureScaling().fit(*miscalibrated_cases(1)[0], model=fingerprint)
    calibrator.check_model(fingerprint)  # the same model passes
    renamed = {**fingerprint, "class_names": ["background", "x", "y"]}
    with pytest.raises(InputError, match=r"fitted for classes \['background', 'a', 'b'\]"):
        calibrator.check_model(renamed)
    with torch.no_grad():
        next(model.network.parameters()).add_(1e-3)
    changed = model_fingerprint(model)
    assert changed["weights_sha256"] != fingerprint["weights_sha256"]
    assert network_checksum(load_model(small_model_dir).network) == fingerprint["weights_sha256"][0]  # reproducible
    with pytest.raises(InputError, match="only fits the weights it was fitted on"):
        calibrator.check_model(changed)


def test_loading_refuses_what_is_not_a_calibrator(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_calibrator(tmp_path / "missing")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / JSON_FILE).write_text(json.dumps({"name": "hippocampus"}))
    with pytest.raises(InputError, match="not a calibrator file"):
        load_calibrator(tmp_path / "other")


def top_label_voxels(cases):
    logits = torch.cat([z.reshape(3, -1).T for z, _ in cases]).double()
    labels = torch.cat([y.reshape(-1) for _, y in cases])
    confidence, top = torch.softmax(logits, 1).max(1)
    return logits, confidence.numpy(), (top == labels).numpy()


def test_isotonic_map_matches_scikit_learn_and_other_classes_keep_their_proportions():
    from sklearn.isotonic import IsotonicRegression as Reference

    cases = miscalibrated_cases(2)
    logits, confidence, correct = top_label_voxels(cases)
    calibrator = IsotonicRegression(max_voxels_per_case=None).fit([z for z, _ in cases], [y for _, y in cases])
    calibrated = torch.softmax(calibrator.transform(logits.float().T.reshape(3, -1, 1, 1)).reshape(3, -1).T.double(), 1)
    expected = Reference(out_of_bounds="clip").fit(confidence, correct).predict(confidence).clip(1e-6, 1 - 1e-6)
    top = logits.argmax(1, keepdim=True)
    assert np.allclose(calibrated.gather(1, top)[:, 0].numpy(), expected, atol=1e-5)
    original = torch.softmax(logits, 1)
    others = original.scatter(1, top, 0.0)
    scaled = calibrated.scatter(1, top, 0.0)
    ratio = scaled.sum(1) / others.sum(1)
    assert torch.allclose(scaled, others * ratio[:, None], atol=1e-6)


def test_histogram_binning_maps_each_bin_to_its_accuracy_as_scikit_learn_measures_it():
    from sklearn.calibration import calibration_curve

    cases = miscalibrated_cases(2)
    logits, confidence, correct = top_label_voxels(cases)
    calibrator = HistogramBinning(n_bins=10, max_voxels_per_case=None).fit([z for z, _ in cases], [y for _, y in cases])
    top = logits.argmax(1, keepdim=True)
    mapped = torch.softmax(calibrator.transform(logits.float()), 1).gather(1, top)[:, 0].numpy()  # the original top label's
    accuracy, _ = calibration_curve(correct, confidence, n_bins=10, strategy="uniform")  # per non-empty bin
    assert np.allclose(np.unique(mapped.round(5)), np.unique(accuracy.clip(1e-6, 1 - 1e-6).round(5)), atol=1e-5)
    bins = np.minimum((confidence * 10).astype(int), 9)
    for b in np.unique(bins):
        assert np.allclose(mapped[bins == b], correct[bins == b].mean(), atol=1e-5)
