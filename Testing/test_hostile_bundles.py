"""MONAI bundles are read safely unless trusted: no `$` expression, foreign `_target_` or reference to one runs.

Each hostile bundle's payload touches a marker file in the test's tmp folder: loading safely must refuse it with
exit 2 (naming the key), create nothing (no output folder, no marker), also under `--list-layers`; with
`--trust-bundle` MONAI's own ConfigParser runs it, as MONAI does. A normal bundle reads the same both ways, and
the same as MONAI's parser reads it (the oracle).
"""

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import write_image

from UncertaintySegLib.cli import main
from UncertaintySegLib.common.errors import ModelError
from UncertaintySegLib.predict.model_loading import load_model

ARGS = {"spatial_dims": 3, "in_channels": 1, "out_channels": 3, "channels": [4, 8], "strides": [2], "num_res_units": 0}
UNET_CALL = "monai.networks.nets.UNet(spatial_dims=3, in_channels=1, out_channels=3, channels=[4, 8], strides=[2], num_res_units=0)"


def write_bundle(folder, small_model_dir, inference):
    (folder / "configs").mkdir(parents=True)
    (folder / "models").mkdir()
    shutil.copy(small_model_dir / "model.pt", folder / "models" / "model.pt")
    (folder / "configs" / "inference.json").write_text(json.dumps(inference))
    (folder / "configs" / "metadata.json").write_text(json.dumps({"name": "toy bundle", "network_data_format": {
        "inputs": {"image": {"num_channels": 1}},
        "outputs": {"pred": {"num_channels": 3, "channel_def": {"0": "background", "1": "liver", "2": "tumour"}}}}}))
    return folder


def normal_config(**changes):
    config = {
        "roi": [16, 16, 16],
        "levels": [4, 8],
        "network_def": {"_target_": "UNet", **ARGS, "channels": "@levels"},
        "network": "$@network_def.to(@device)",
        "device": "$torch.device('cpu')",
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": "@roi", "sw_batch_size": 4},
        "preprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "LoadImaged", "keys": "image", "reader": "$monai.data.ITKReader"},
            {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": -57, "a_max": 164, "b_min": 0.0, "b_max": 1.0,
             "clip": True}]},
        "postprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "Activationsd", "keys": "pred", "softmax": True},
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True}]},
    }
    config.update(changes)
    return config


def hostile_configs(marker):
    touch = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    return {
        # the expression runs, returns None, and `or` builds a working UNet: the prediction succeeds
        "expression": normal_config(network_def=f"${touch} or {UNET_CALL}"),
        "foreign_target": normal_config(network_def={"_target_": "os.system", "command": f"touch '{marker}'"}),
        "reference_to_expression": normal_config(network_def="@payload", payload=f"${touch} or {UNET_CALL}"),
        "expression_argument": normal_config(network_def={"_target_": "UNet", **ARGS, "channels": f"$({touch}, [4, 8])[1]"}),
    }


HOSTILE = ("expression", "foreign_target", "reference_to_expression", "expression_argument")
REFUSED_KEY = {"expression": "'network_def'", "foreign_target": "'network_def::_target_'",
               "reference_to_expression": "'payload'", "expression_argument": "'network_def::channels'"}


@pytest.fixture
def image_path(tmp_path):
    array = np.random.default_rng(0).normal(100, 20, (18, 16, 14)).astype(np.float32)
    return write_image(tmp_path / "image.nii.gz", array)


def hostile_bundle(tmp_path, small_model_dir, name):
    marker = tmp_path / "PWNED"
    return write_bundle(tmp_path / f"bundle_{name}", small_model_dir, hostile_configs(marker)[name]), marker


def predict_arguments(bundle, image, out, list_layers):
    if list_layers:
        return ["predict", "--model", str(bundle), "--list-layers"]
    return ["predict", "--image", str(image), "--model", str(bundle), "--out", str(out), "--progress", "none"]


@pytest.mark.parametrize("list_layers", [False, True], ids=["predict", "list_layers"])
@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_bundle_is_refused_and_nothing_runs(name, list_layers, tmp_path, small_model_dir, image_path, capsys):
    bundle, marker = hostile_bundle(tmp_path, small_model_dir, name)
    before = sorted(p.name for p in tmp_path.iterdir())
    out = tmp_path / "out"
    assert main(predict_arguments(bundle, image_path, out, list_layers)) == 2
    error = capsys.readouterr().err
    assert REFUSED_KEY[name] in error and "--trust-bundle" in error and "monai.networks.nets" in error
    assert not marker.exists(), "the bundle's code ran without --trust-bundle"
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == before  # no output, no staging folder


@pytest.mark.parametrize("name", HOSTILE)
def test_trust_bundle_runs_monai_parser_and_so_the_payload(name, tmp_path, small_model_dir, image_path):
    """Only the flag enables the bundle's code: the marker appears under --trust-bundle (exit code as MONAI leaves it)."""
    bundle, marker = hostile_bundle(tmp_path, small_model_dir, name)
    code = main([*predict_arguments(bundle, image_path, tmp_path / "out", list_layers=False), "--trust-bundle"])
    assert marker.exists()
    if name != "foreign_target":  # os.system returns 0, not a network: that one fails after running, as under MONAI
        assert code == 0 and (tmp_path / "out" / "probabilities.nrrd").is_file()


def test_trusted_benign_expression_bundle_predicts(tmp_path, small_model_dir, image_path, capsys):
    bundle = write_bundle(tmp_path / "bundle", small_model_dir, normal_config(network_def=f"${UNET_CALL}"))
    assert main(predict_arguments(bundle, image_path, tmp_path / "refused", list_layers=False)) == 2
    assert "a Python expression" in capsys.readouterr().err and not (tmp_path / "refused").exists()
    assert main([*predict_arguments(bundle, image_path, tmp_path / "out", list_layers=False), "--trust-bundle"]) == 0
    assert (tmp_path / "out" / "probabilities.nrrd").is_file()
    assert main(["predict", "--model", str(bundle), "--list-layers", "--trust-bundle"]) == 0


@pytest.mark.parametrize("change, key", [
    ({"inferer": {"_target_": "SlidingWindowInferer", "roi_size": "$[16] * 3"}}, "'inferer::roi_size'"),
    ({"roi": "%other.json#roi"}, "'roi'"),
    ({"preprocessing": {"_target_": "Compose", "transforms": "$[]"}}, "'preprocessing::transforms'"),
    ({"network_def": {"_target_": "UNet", **ARGS, "norm": {"_target_": "torch.nn.Identity"}}}, "'network_def::norm'"),
    ({"network_def": {"_target_": "monai.transforms.Compose", "transforms": []}}, "'network_def::_target_'"),
    ({"network_def": {"_target_": "UNet", "_requires_": "@device", **ARGS}}, "'network_def::_requires_'"),
    ({"network_def#_target_": "os.system"}, "'network_def::_target_'"),
])
def test_other_unsafe_paths_are_refused_by_key(change, key, tmp_path, small_model_dir):
    bundle = write_bundle(tmp_path / "bundle", small_model_dir, normal_config(**change))
    with pytest.raises(ModelError, match="--trust-bundle") as refused:
        load_model(bundle)
    assert key in str(refused.value)


@pytest.mark.parametrize("change", [{"network_def": "@a", "a": "@b", "b": "@a"},
                                    {"network_def": {"_target_": "UNet", **ARGS, "channels": [4, "@network_def::channels"]}}],
                         ids=["chain", "self_containing"])
def test_circular_reference_is_an_error(change, tmp_path, small_model_dir):
    bundle = write_bundle(tmp_path / "bundle", small_model_dir, normal_config(**change))
    with pytest.raises(ModelError, match="circular"):
        load_model(bundle)


def test_unread_sections_are_not_evaluated(tmp_path, small_model_dir, monkeypatch):
    """A `$` the project never reads (postprocessing of a softmax bundle, an unused key) is neither run nor refused.
    MONAI's parser runs every `$import` statement of the config as soon as it resolves any item: not so here."""
    marker = tmp_path / "PWNED"
    touch = f"$__import__('pathlib').Path({str(marker)!r}).touch()"
    (tmp_path / "pwned_payload.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = normal_config(unused=touch, imports=["$import pwned_payload"],
                           postprocessing={"_target_": "Compose", "transforms": touch})
    bundle = write_bundle(tmp_path / "bundle", small_model_dir, config)
    load_model(bundle)
    assert not marker.exists()
    load_model(bundle, trust_bundle=True)  # MONAI's own parser: the import statement runs
    assert marker.exists()


def forward(model):
    with torch.no_grad():
        return torch.softmax(model.network(torch.randn((1, 1, 16, 16, 16), generator=torch.Generator().manual_seed(1))), 1)


def test_safe_reader_agrees_with_monai_config_parser(tmp_path, small_model_dir):
    """Oracle: MONAI's own ConfigParser builds the same network class with the same weights' probabilities, and
    reads the same ROI size and normalisation, as the safe reader (references followed, nothing evaluated)."""
    from monai.bundle import ConfigParser

    bundle = write_bundle(tmp_path / "bundle", small_model_dir, normal_config())
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    monai_network = parser.get_parsed_content("network_def")
    monai_network.load_state_dict(torch.load(bundle / "models" / "model.pt", weights_only=True))
    safe, trusted = load_model(bundle), load_model(bundle, trust_bundle=True)
    assert type(safe.network) is type(monai_network) is type(trusted.network)
    assert safe.network.channels == monai_network.channels and safe.network.strides == monai_network.strides
    assert torch.allclose(forward(safe), forward(trusted)) and torch.allclose(forward(safe), torch.softmax(
        monai_network.eval()(torch.randn((1, 1, 16, 16, 16), generator=torch.Generator().manual_seed(1))).detach(), 1))
    assert safe.spec == trusted.spec
    assert list(safe.spec.roi_size) == parser.get_parsed_content("inferer::roi_size")
    scale = {k: parser.get_parsed_content(f"preprocessing::transforms::1::{k}") for k in ("a_min", "a_max", "b_min", "b_max", "clip")}
    assert safe.spec.normalization == {"kind": "range", **scale}


def test_dotted_monai_target_and_relative_reference(tmp_path, small_model_dir):
    # MONAI's relative id "@##levels": `levels` two levels up from network_def::channels, i.e. at the top
    config = normal_config(network_def={"_target_": "monai.networks.nets.unet.UNet", **ARGS, "channels": "@##levels"})
    model = load_model(write_bundle(tmp_path / "bundle", small_model_dir, config))
    assert type(model.network).__name__ == "UNet" and list(model.network.channels) == [4, 8]


@pytest.mark.parametrize("command", ["predict", "calibrate", "compare", "ood", "rank"])
def test_every_command_that_loads_a_model_takes_trust_bundle(command):
    from UncertaintySegLib.cli import build_parser

    subparsers = next(a for a in build_parser()._actions if a.dest == "command").choices
    assert "--trust-bundle" in subparsers[command]._option_string_actions


def test_panel_passes_trust_bundle_only_when_ticked(tmp_path):
    """The panel's box (shown with the model folder row) becomes `--trust-bundle`, as the real CLI parses it."""
    pytest.importorskip("slicer", reason="slicer-core is not installed (pip install slicer-core)")
    from panel_settings import parsed, settings
    from UncertaintySegSlicer.panel.panelChoices import MODEL_FOLDER, panelVisibility

    folder = {"model": MODEL_FOLDER, "modelFolder": tmp_path / "bundle"}
    assert parsed(settings(**folder)).trust_bundle is False  # the default: read as data
    assert parsed(settings(**folder, trustBundle=True)).trust_bundle is True
    assert parsed(settings(model="hippocampus", trustBundle=True)).trust_bundle is False  # hidden box: not a bundle
    assert settings().trustBundle is False
    from types import SimpleNamespace
    assert panelVisibility(SimpleNamespace(**vars(settings(**folder))))["modelFolder"]
    assert not panelVisibility(SimpleNamespace(**vars(settings())))["modelFolder"]


def test_slicer_entry_points_read_a_bundle_safely_unless_trusted(mrml_scene, tmp_path, small_model_dir, image_path):
    """The panel's and the console's in-process routes (run, fit, rank, feature maps) load a bundle as predict does:
    refused without `trustBundle` (nothing runs), MONAI's parser with it (the bundle's code runs)."""
    pytest.importorskip("slicer", reason="slicer-core is not installed (pip install slicer-core)")
    from UncertaintySegLib.predict.io import read_volume
    from UncertaintySegSlicer.mrml.calibrationFitting import CalibrationFittingMixin
    from UncertaintySegSlicer.analysis.featureMaps import addFeatureMaps
    from UncertaintySegSlicer.mrml.folders import createFolder
    from UncertaintySegSlicer.mrml.logic import UncertaintySegLogicBase
    from UncertaintySegSlicer.analysis.ranking import rankVolumeNodes
    from UncertaintySegSlicer.mrml.volumes import addVolumeNode

    class Logic(UncertaintySegLogicBase, CalibrationFittingMixin):
        pass

    scene, _ = mrml_scene
    volume = read_volume(image_path)
    node = addVolumeNode(scene, volume.array, volume.geometry, "image")
    labels = addVolumeNode(scene, (volume.array > 100).astype(np.uint8), volume.geometry, "labels", "vtkMRMLLabelMapVolumeNode")
    bundle, marker = hostile_bundle(tmp_path, small_model_dir, "expression")
    routes = {
        "run": lambda **trust: Logic().run(node, model=str(bundle), device="cpu", **trust),
        "fitCalibrator": lambda **trust: Logic().fitCalibrator([(node, labels)], model=str(bundle), device="cpu", **trust),
        "rankVolumeNodes": lambda **trust: rankVolumeNodes([node], model=str(bundle), device="cpu", scene=scene, **trust),
        "addFeatureMaps": lambda **trust: addFeatureMaps(node, createFolder(scene, "maps"), model=str(bundle), device="cpu",
                                                         **trust),
    }
    for name, route in routes.items():
        with pytest.raises(ModelError, match="--trust-bundle"):
            route()
        assert not marker.exists(), f"{name} ran the bundle's code without trustBundle"
        route(trustBundle=True)
        assert marker.exists(), f"{name} did not pass trustBundle to MONAI's parser"
        marker.unlink()
