"""Hostile model.json, calibrator.json, option values and probability files: refused with one line per problem that
names the field, the value found and what is allowed (exit 2 from the CLI), never Python's own text (exit 1)."""

import json
import math

import numpy as np
import pytest
import torch

from UncertaintySegLib.calibration import TemperatureScaling, VectorScaling, load_calibrator, model_fingerprint
from UncertaintySegLib.calibration.base import JSON_FILE, TENSOR_FILE
from UncertaintySegLib.cli import build_parser, main
from UncertaintySegLib.common.errors import InputError, ModelError
from UncertaintySegLib.predict.io import Geometry, Volume
from UncertaintySegLib.predict.models import spec_from_json
from UncertaintySegLib.predict.model_loading import BUNDLED_MODELS_DIR, bundled_model_names
from UncertaintySegLib.predict.precomputed import read_probabilities

BASE = {"name": "m", "class_names": ["background", "fg"], "network": {"name": "UNet", "args": {}}}


# ---- model.json --------------------------------------------------------------------------------

@pytest.mark.parametrize("change, message", [
    ({"roi_size": 32}, "roi_size: expected a list of 3 positive integers, found 32"),
    ({"roi_size": ["a", "b", "c"]}, "roi_size: expected a list of 3 positive integers, found ['a', 'b', 'c']"),
    ({"roi_size": [16, 16, 0]}, "roi_size: expected a list of 3 positive integers, found [16, 16, 0]"),
    ({"roi_size": [16.0, 16, 16]}, "roi_size: expected a list of 3 positive integers"),
    ({"normalization": "zscore"}, "normalization: expected an object {\"kind\": "),
    ({"normalization": {"kind": "range"}}, "normalization.a_min: required for kind 'range'"),
    ({"normalization": {"kind": "range", "a_min": 0, "a_max": 0}}, "normalization: a_max must differ from a_min"),
    ({"normalization": {"kind": "zscore", "nonzero": "yes"}}, "normalization.nonzero: expected true or false, found 'yes'"),
    ({"input_channels": "1"}, "input_channels: expected a positive integer, found '1'"),
    ({"input_channels": True}, "input_channels: expected a positive integer, found True"),
    ({"class_names": "abc"}, "class_names: expected a list of unique names, found 'abc'"),
    ({"class_names": ["background", 1]}, "class_names: expected a list of unique names, found ['background', 1]"),
    ({"class_names": ["background", "background"]}, "class_names: names must be unique, found 'background' twice"),
    ({"class_names": ["background", " "]}, "class_names: names must be non-empty"),
    ({"stochastic": "yes"}, "stochastic: expected true or false, found 'yes'"),
    ({"flip_axes": [0, 5]}, "flip_axes: expected a list of axes among 0, 1, 2, found [0, 5]"),
    ({"inserted_dropout": {"placement": "decoder", "p": 2}}, "inserted_dropout.p: expected a probability in [0, 1)"),
    ({"weights": []}, "weights: expected a file name or a non-empty list of file names"),
    ({"name": ""}, "name: expected a non-empty string"),
    ({"output": "scores"}, "output: expected one of 'logits', 'probabilities', found 'scores'"),
    ({"activation": "sigmoid", "class_names": ["a", "b", "c"]}, "activation: 'sigmoid' takes one foreground channel"),
])
def test_hostile_model_json_names_the_field_the_value_and_what_is_allowed(change, message):
    with pytest.raises(ModelError) as raised:
        spec_from_json({**BASE, **change})
    assert str(raised.value).startswith("model.json: ") and message in str(raised.value)


def test_every_bad_field_gets_its_own_line():
    with pytest.raises(ModelError) as raised:
        spec_from_json({**BASE, "class_names": "abc", "roi_size": 32, "colour": "red"})
    lines = str(raised.value).splitlines()
    assert len(lines) == 3 and all(line.startswith("model.json: ") for line in lines)
    assert any(line.startswith("model.json: colour: unknown field") for line in lines)


def test_valid_specs_still_load_and_round_trip():
    for name in bundled_model_names():
        spec = spec_from_json(json.loads((BUNDLED_MODELS_DIR / name / "model.json").read_text()))
        assert spec_from_json(spec.to_json()) == spec
    torchscript = spec_from_json({"name": "ts", "class_names": ["bg", "fg"], "format": "torchscript", "network": None,
                                  "weights": "net.ts", "normalization": {"kind": "range", "a_min": -100, "a_max": 300.5}})
    assert torchscript.roi_size == (96, 96, 96) and torchscript.normalization["a_min"] == -100


@pytest.fixture
def image_path(tmp_path):
    import SimpleITK as sitk

    path = tmp_path / "image.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.random.default_rng(0).normal(100, 20, (12, 12, 12)).astype(np.float32)), str(path))
    return path


def test_predict_with_a_hostile_model_json_exits_2_with_one_line(image_path, tmp_path, capsys):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.json").write_text(json.dumps({**BASE, "roi_size": 32}))
    code = main(["predict", "--image", str(image_path), "--model", str(tmp_path / "model"), "--out", str(tmp_path / "out"),
                 "--progress", "none"])
    error = capsys.readouterr().err.strip()
    assert code == 2 and len(error.splitlines()) == 1 and "roi_size: expected a list of 3 positive integers, found 32" in error


# ---- calibrator.json and calibrator.pt -----------------------------------------------------------

def cases(seed=0):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, 10, 10, 10, generator=generator) * 3
    return logits, torch.softmax(logits / 3, 0).reshape(3, -1).T.multinomial(1, generator=generator).reshape(10, 10, 10)


@pytest.fixture
def fitted(tmp_path, small_model_dir):
    from UncertaintySegLib.predict.model_loading import load_model

    model = load_model(small_model_dir)
    TemperatureScaling().fit(*cases(), model=model_fingerprint(model)).save(tmp_path / "cal")
    return tmp_path / "cal", model


def edit_record(folder, **changes):
    record = json.loads((folder / JSON_FILE).read_text())
    for key, value in changes.items():
        if value is KeyError:
            del record[key]
        else:
            record[key] = value
    (folder / JSON_FILE).write_text(json.dumps(record))


def test_a_calibrator_without_its_model_record_is_refused(fitted):
    from UncertaintySegLib.calibration import load_calibrator_for

    folder, model = fitted
    load_calibrator_for(folder, model)  # intact: fine
    edit_record(folder, model=KeyError)
    with pytest.raises(InputError, match=r"model: .*no record of the model it was fitted for.*uncertaintyseg calibrate --model"):
        load_calibrator_for(folder, model)
    edit_record(folder, model=None)
    with pytest.raises(InputError, match="no record of the model it was fitted for"):
        load_calibrator_for(folder, model)


def test_a_calibrator_fitted_without_a_model_cannot_be_checked_against_one(small_model_dir):
    from UncertaintySegLib.predict.model_loading import load_model

    calibrator = TemperatureScaling().fit(*cases())
    with pytest.raises(InputError, match="no record of the model it was fitted for"):
        calibrator.check_model(model_fingerprint(load_model(small_model_dir)))


@pytest.mark.parametrize("scale", [-0.5, 0.0, math.nan, math.inf])
def test_saved_scales_must_be_finite_and_positive(fitted, scale):
    folder, _ = fitted
    torch.save({"scale": torch.full((3,), scale), "bias": torch.zeros(3)}, folder / TENSOR_FILE)
    with pytest.raises(InputError, match=r"calibrator.pt: scale: expected finite, positive values"):
        load_calibrator(folder)


def test_saved_tensors_must_have_the_fitted_shapes(fitted):
    folder, _ = fitted
    torch.save({"scale": torch.ones(5), "bias": torch.zeros(3)}, folder / TENSOR_FILE)
    with pytest.raises(InputError, match=r"scale: expected shape \(3,\) \(one value per class\), found \(5,\)"):
        load_calibrator(folder)
    torch.save({"bias": torch.zeros(3)}, folder / TENSOR_FILE)
    with pytest.raises(InputError, match=r"missing tensor 'scale'"):
        load_calibrator(folder)


def test_fitting_refuses_a_scale_that_is_not_finite_and_positive(monkeypatch):
    from UncertaintySegLib.calibration import scaling

    monkeypatch.setattr(scaling, "fit_logit_scaling", lambda *args, **kwargs: (torch.full((3,), math.inf), torch.zeros(3)))
    with pytest.raises(InputError, match="scale: expected finite, positive values"):
        VectorScaling().fit(*cases())


@pytest.mark.parametrize("changes, message", [
    ({"format_version": "2"}, "format_version: expected an integer, found '2'"),
    ({"format_version": 99}, "update UncertaintySeg"),
    ({"settings": "fast"}, "settings: expected an object"),
    ({"fit": {"n_classes": "3", "cases": 1, "voxels": 10, "nll_before": 1.0, "nll_after": 0.5}}, "fit.n_classes: expected"),
    ({"fit": KeyError}, "fit: required field missing"),
    ({"method": "magic"}, "method: expected one of"),
])
def test_hostile_calibrator_json_names_the_field(fitted, changes, message):
    folder, _ = fitted
    edit_record(folder, **changes)
    with pytest.raises(InputError) as raised:
        load_calibrator(folder)
    assert message in str(raised.value) and "calibrator.json" in str(raised.value)


def test_predict_with_a_hostile_calibrator_exits_2(fitted, image_path, tmp_path, capsys, small_model_dir):
    folder, _ = fitted
    edit_record(folder, format_version="2")
    code = main(["predict", "--image", str(image_path), "--model", str(small_model_dir), "--calibrator", str(folder),
                 "--out", str(tmp_path / "out"), "--progress", "none", "--device", "cpu"])
    assert code == 2 and "format_version: expected an integer, found '2'" in capsys.readouterr().err


# ---- option values --------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["predict", "--seed", "1e23"], "--seed: expected an integer from 0 to 4294967295, found '1e23'"),
    (["predict", "--seed", "100000000000000000000000"], "--seed: expected an integer from 0 to 4294967295"),
    (["calibrate", "--seed", "-1"], "--seed: expected an integer from 0 to 4294967295, found '-1'"),
    (["predict", "--device", "tpu9"], "--device: expected auto, cpu, cuda, cuda:N or mps, found 'tpu9'; available here: auto, cpu"),
    (["train", "--epochs", "0"], "--epochs: expected an integer of at least 1, found '0'"),
    (["predict", "--samples", "0"], "--samples: expected an integer of at least 1, found '0'"),
    (["predict", "--flag-threshold", "nan"], "--flag-threshold: expected a finite number >= 0 or a thresholds.json, found 'nan'"),
    (["predict", "--flag-threshold", "-0.1"], "--flag-threshold: expected a finite number >= 0"),
    (["predict", "--flag-threshold", "inf"], "--flag-threshold: expected a finite number >= 0"),
])
def test_bad_option_values_exit_2_saying_what_was_expected(argv, message, capsys):
    with pytest.raises(SystemExit) as raised:
        build_parser().parse_args([*argv, "--out", "unused"])
    assert raised.value.code == 2 and message in capsys.readouterr().err


def test_devices_that_are_absent_are_refused_up_front(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["predict", "--device", "cuda:0", "--out", "unused"])
    assert "--device: 'cuda:0' is not available here (no CUDA GPU); available: auto, cpu" in capsys.readouterr().err
    assert build_parser().parse_args(["predict", "--model", "m", "--device", "cpu"]).device == "cpu"
    assert build_parser().parse_args(["predict", "--model", "m", "--flag-threshold", "0.08"]).flag_threshold == "0.08"
    assert build_parser().parse_args(["predict", "--model", "m", "--flag-threshold", "t.json"]).flag_threshold == "t.json"


def test_run_json_never_holds_nan(tmp_path):
    from UncertaintySegLib.predict.outputs import write_prediction_files

    class Stub:
        probability_volume = entropy_volume = label_volume = Volume(np.zeros((2, 2, 2), np.float32),
                                                                     Geometry((0.0,) * 3, (1.0,) * 3, (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)))

        def sample_maps(self):
            return {}

    write_prediction_files(tmp_path, Stub(), {"settings": {"flag_threshold": math.nan, "list": [math.inf, 1.0]}})
    text = (tmp_path / "run.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text)["settings"] == {"flag_threshold": None, "list": [None, 1.0]}


# ---- probability files -------------------------------------------------------------------------------

IMAGE = Volume(np.zeros((4, 5, 6), np.float32), Geometry((0.0,) * 3, (1.0,) * 3, (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)))


def test_a_npy_renamed_npz_is_named_for_what_it_is(tmp_path):
    np.save(tmp_path / "case.npy", np.full((2, 6, 5, 4), 0.5, np.float32))
    (tmp_path / "case.npy").rename(tmp_path / "case.npz")
    with pytest.raises(InputError, match=r"is a single NumPy array \(\.npy\), not an \.npz archive"):
        read_probabilities(tmp_path / "case.npz", IMAGE)


def test_a_text_file_named_npz_is_not_called_pickled(tmp_path):
    (tmp_path / "case.npz").write_text("probabilities 0.5 0.5\n")
    with pytest.raises(InputError) as raised:
        read_probabilities(tmp_path / "case.npz", IMAGE)
    assert "pickled" not in str(raised.value) and "is not a NumPy .npz archive (a zip file)" in str(raised.value)


def test_thresholds_json_values_must_be_finite(tmp_path):
    from UncertaintySegLib.predict.segment_scores import read_thresholds

    (tmp_path / "thresholds.json").write_text('{"thresholds": {"a": NaN, "b": 0.1}, "entropy_units": "nats"}')
    with pytest.raises(InputError, match="thresholds: expected a finite number >= 0 per class"):
        read_thresholds(str(tmp_path / "thresholds.json"), normalized=False)
    (tmp_path / "thresholds.json").write_text('{"thresholds": {"a": 0.2, "b": 0.1}, "entropy_units": "nats"}')
    assert read_thresholds(str(tmp_path / "thresholds.json"), normalized=False) == {"a": 0.2, "b": 0.1}


# ---- a MONAI bundle's configs/metadata.json (the schema bundle.py validates with) ---------------------

@pytest.mark.parametrize("metadata, message", [
    ({"network_data_format": {"inputs": {"image": {"num_channels": "1"}}}},
     "network_data_format.inputs.image.num_channels: expected a positive integer, found '1'"),
    ({"network_data_format": {"outputs": {"pred": {"num_channels": 2, "channel_def": {"0": "bg", "1": "bg"}}}}},
     "network_data_format.outputs.pred.channel_def: names must be unique, found ['bg'] more than once"),
    ({"name": 3}, "name: expected a non-empty string, found 3"),
])
def test_bundle_metadata_schema_names_the_field(metadata, message):
    from UncertaintySegLib.predict.schemas import BundleMetadataSchema, validate

    with pytest.raises(ModelError) as raised:
        validate(BundleMetadataSchema, metadata, "configs/metadata.json", ModelError)
    assert str(raised.value) == f"configs/metadata.json: {message}"


def test_bundle_metadata_schema_keeps_monais_other_keys():
    from UncertaintySegLib.predict.schemas import BundleMetadataSchema, validate

    checked = validate(BundleMetadataSchema, {"name": "spleen", "version": "0.5.0", "authors": "MONAI", "network_data_format": {
        "inputs": {"image": {"num_channels": 1, "spatial_shape": [96, 96, 96], "format": "hounsfield"}},
        "outputs": {"pred": {"num_channels": 2, "channel_def": {"0": "background", "1": "spleen"}}}}}, "metadata.json")
    assert checked.network_data_format.outputs["pred"].channel_def == {"0": "background", "1": "spleen"}
    assert checked.model_extra == {"authors": "MONAI"}


def test_a_bundle_with_damaged_metadata_is_refused_naming_the_field(tmp_path):
    """bundle.py reads configs/metadata.json through the schema: a string channel count was turned into int() before."""
    import json

    from UncertaintySegLib.predict.bundle import _read_metadata
    from UncertaintySegLib.common.errors import ModelError

    path = tmp_path / "metadata.json"
    path.write_text(json.dumps({"name": "spleen", "network_data_format": {"inputs": {"image": {"num_channels": "1"}}}}))
    with pytest.raises(ModelError, match=r"network_data_format\.inputs\.image\.num_channels: expected a positive integer"):
        _read_metadata(path)
    path.write_text(json.dumps({"name": "spleen", "network_data_format": {"inputs": {"image": {"num_channels": 1}},
                                                                          "outputs": {"pred": {"num_channels": 2}}}}))
    assert _read_metadata(path)["name"] == "spleen"


def test_a_sigmoid_model_with_several_output_channels_is_told_what_sigmoid_takes(small_model_dir, tmp_path, capsys):
    """The old message read 'returned 3 channels but its spec lists 2 classes' even when 2 classes was right."""
    import shutil

    from UncertaintySegLib.cli import main
    from UncertaintySegLib.predict.io import Geometry, Volume, write_volume

    folder = tmp_path / "sigmoid_model"
    shutil.copytree(small_model_dir, folder)
    spec = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps({**spec, "class_names": ["background", "lesion"], "activation": "sigmoid"}))
    image = write_volume(tmp_path / "case.nii.gz", Volume(np.random.default_rng(0).normal(size=(20, 20, 20)).astype(np.float32),
                                                          Geometry((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), tuple(np.eye(3).ravel()))))
    assert main(["predict", "--image", str(image), "--model", str(folder), "--device", "cpu", "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "returned 3 channels" in error and "'sigmoid' takes one foreground channel" in error
    assert not (tmp_path / "out").exists()
