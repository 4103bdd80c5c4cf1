"""Feature maps: hooks capture exactly a layer's output, reduced as asked, on the input's grid; CLI and Slicer folder."""

import json
import warnings

import numpy as np
import pytest
import torch
from UncertaintySegLib.cli import main
from UncertaintySegLib.common.errors import InputError
from UncertaintySegLib.predict.feature_maps import (
    FeatureMapRequest,
    capture_layers,
    default_layers,
    feature_maps,
    list_layers,
    parse_feature_map,
    reduce_channels,
)
from UncertaintySegLib.predict.inference import normalize_intensity, predict_logits
from UncertaintySegLib.predict.io import read_volume
from UncertaintySegLib.predict.models import ModelSpec


@pytest.fixture(scope="module")
def tiny_unet():
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    network = UNet(spatial_dims=3, in_channels=1, out_channels=3, channels=(4, 8), strides=(2,), num_res_units=1).eval()
    spec = ModelSpec(name="tiny", class_names=("background", "a", "b"), roi_size=(16, 16, 16))
    return network, spec


def no_hooks(network):
    return all(not module._forward_hooks for module in network.modules())


def test_parse_feature_map_options():
    assert parse_feature_map("model.0") == FeatureMapRequest("model.0", "mean")
    assert parse_feature_map("model.0=max").key == "model.0_max"
    assert parse_feature_map("model.0=0,3,5") == FeatureMapRequest("model.0", (0, 3, 5))
    assert parse_feature_map("model.0=0,3,5").key == "model.0_c0-3-5"
    for bad in ("=max", "model.0=median", "model.0=1,1", "model.0=-1"):
        with pytest.raises(InputError):
            parse_feature_map(bad)


def test_reductions_mean_max_and_channels_by_hand():
    output = torch.tensor([1.0, 5.0, -3.0]).reshape(1, 3, 1, 1, 1) * torch.ones(1, 3, 2, 2, 2)
    assert torch.allclose(reduce_channels(output, "mean"), torch.ones(1, 1, 2, 2, 2))
    assert torch.allclose(reduce_channels(output, "max"), torch.full((1, 1, 2, 2, 2), 5.0))
    assert torch.equal(reduce_channels(output, (2, 0)), output[:, [2, 0]])
    with pytest.raises(InputError, match="channel 3 requested, the layer has 3"):
        reduce_channels(output, (3,))


def test_hooks_capture_exactly_the_layer_output_and_only_the_requested(tiny_unet):
    network, _ = tiny_unet
    x = torch.randn(2, 1, 16, 16, 16)
    requests = [parse_feature_map("model.0.conv.unit0=0,1,2,3"), parse_feature_map("model.0.conv.unit0=max"),
                parse_feature_map("model.1.submodule=mean")]
    with torch.no_grad(), capture_layers(network, requests) as captured:
        network(x)
        encoder = network.model[0].conv.unit0(x)  # the sub-networks by hand
        bottom = network.model[1].submodule(network.model[0](x))
    assert sorted(captured) == sorted(request.key for request in requests)  # nothing else is kept
    assert torch.equal(captured["model.0.conv.unit0_c0-1-2-3"], encoder)
    assert torch.equal(captured["model.0.conv.unit0_max"], encoder.amax(dim=1, keepdim=True))
    assert torch.allclose(captured["model.1.submodule_mean"], bottom.mean(dim=1, keepdim=True))
    assert captured["model.1.submodule_mean"].shape == (2, 1, 8, 8, 8)  # reduced at once: one channel, not eight
    assert no_hooks(network)


def test_hooks_are_removed_after_an_error(tiny_unet):
    network, _ = tiny_unet
    with pytest.raises(RuntimeError, match="boom"), capture_layers(network, [parse_feature_map("model.0")]):
        assert not no_hooks(network)
        raise RuntimeError("boom")
    assert no_hooks(network)
    with pytest.raises(InputError, match="channel 9 requested"):  # a failing hook also leaves none behind
        feature_maps(network, tiny_unet[1], np.random.rand(1, 16, 16, 16), [parse_feature_map("model.0=9")], device="cpu")
    assert no_hooks(network)


def test_unknown_layer_is_refused(tiny_unet):
    with pytest.raises(InputError, match="layer\\(s\\) nope not in the model.*--list-layers"), \
            capture_layers(tiny_unet[0], [parse_feature_map("nope")]):
        pass


def test_default_layers_are_each_blocks_last_convolution(tiny_unet):
    network, _ = tiny_unet
    # encoder, bottom, decoder (transposed up-convolution, then the residual unit's convolution: the output)
    assert default_layers(network) == ["model.0.conv.unit0", "model.1.submodule.conv.unit0", "model.2.1.conv.unit0"]
    layers = {name: channels for name, _, channels in list_layers(network, tiny_unet[1])}
    assert layers["model.0.conv.unit0"] == 4 and layers["model.1.submodule.conv.unit0"] == 8 and layers["model"] == 3
    with pytest.raises(InputError, match="no default feature-map layers for Linear"):
        default_layers(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("shape", [(11, 13, 9), (16, 16, 16), (29, 21, 18)])  # padded, one window, several windows
def test_maps_lie_on_the_input_grid(tiny_unet, shape):
    """The network's own output taken as a feature map is exactly the sliding-window logits, so the
    padding, blending and cropping align; a strided layer's map has the input's shape too."""
    network, spec = tiny_unet
    image = np.random.default_rng(1).normal(size=(1, *shape)).astype(np.float32)
    maps = feature_maps(network, spec, image, [parse_feature_map("model=0,1,2"), parse_feature_map("model.0=mean")], device="cpu")
    assert torch.allclose(torch.from_numpy(maps["model_c0-1-2"]), predict_logits(network, spec, image, device="cpu"), atol=1e-5)
    assert maps["model.0_mean"].shape == (1, *shape)
    if shape == spec.roi_size:  # one window, no padding: the half-resolution map upsampled trilinearly
        with torch.no_grad():
            low = network.model[0](normalize_intensity(torch.from_numpy(image), spec.normalization)[None]).mean(1, keepdim=True)
        expected = torch.nn.functional.interpolate(low, size=shape, mode="trilinear", align_corners=False)[0]
        assert torch.allclose(torch.from_numpy(maps["model.0_mean"]), expected, atol=1e-5)
    assert no_hooks(network)


def test_torchscript_is_refused_clearly(tiny_unet):
    network, spec = tiny_unet
    with warnings.catch_warnings():  # tracing is deprecated and warns; TorchScript files are what users bring
        warnings.simplefilter("ignore")
        scripted = torch.jit.trace(network, torch.zeros(1, 1, 16, 16, 16))
    for call in (lambda: feature_maps(scripted, spec, np.zeros((1, 16, 16, 16)), [parse_feature_map("model")]),
                 lambda: list_layers(scripted, spec), lambda: default_layers(scripted)):
        with pytest.raises(InputError, match="TorchScript model does not support.*format 'monai_network'"):
            call()


@pytest.fixture(scope="module")
def feature_map_run(test_case, tmp_path_factory):
    out = tmp_path_factory.mktemp("feature_maps") / "run"
    code = main(["predict", "--image", str(test_case[0]), "--model", "hippocampus", "--out", str(out), "--progress", "none",
                 "--device", "cpu", "--feature-maps", "model.0.conv.unit0=max", "model.2.1.conv.unit0=0,2"])
    assert code == 0
    return out


def test_cli_writes_feature_maps_with_the_input_geometry(feature_map_run, test_case):
    image = read_volume(test_case[0])
    record = json.loads((feature_map_run / "run.json").read_text())
    files = record["outputs"]["feature_maps"]
    assert files == {"model.0.conv.unit0_max": "feature_maps/model.0.conv.unit0_max.nrrd",
                     "model.2.1.conv.unit0_c0-2": "feature_maps/model.2.1.conv.unit0_c0-2.nrrd"}
    maximum, channels = (read_volume(feature_map_run / files[key]) for key in sorted(files))
    assert maximum.array.shape == image.array.shape and channels.array.shape == (2, *image.array.shape)
    assert maximum.geometry.matches(image.geometry) and channels.geometry.matches(image.geometry)
    assert np.isfinite(maximum.array).all() and maximum.array.std() > 0


def test_cli_list_layers_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["predict", "--model", "hippocampus", "--list-layers", "--progress", "none"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "layer\ttype\toutput channels\tdefault"
    assert "model.0.conv.unit0\tConvolution\t16\tyes" in lines and "model.0.residual\tConv3d\t16\t" in lines
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SystemExit):  # without --list-layers, --image and --out stay required
        main(["predict", "--model", "hippocampus"])
    assert "required: --image, --out" in capsys.readouterr().err


def test_cli_refuses_feature_maps_without_a_model_and_unknown_layers(tmp_path, capsys, test_case):
    args = ["predict", "--image", str(test_case[0]), "--out", str(tmp_path / "out"), "--progress", "none"]
    assert main([*args, "--model", "hippocampus", "--feature-maps", "nope"]) == 2
    assert "nope not in the model" in capsys.readouterr().err and not (tmp_path / "out").exists()
    assert main([*args, "--probabilities", str(test_case[0]), "--feature-maps"]) == 2
    assert "--feature-maps needs --model" in capsys.readouterr().err


def test_slicer_feature_maps_in_the_run_folder(mrml_scene, feature_map_run, test_case):
    from UncertaintySegSlicer.analysis.featureMaps import (
        GREY,
        addFeatureMapFolder,
        addFeatureMapNodes,
    )
    from UncertaintySegSlicer.mrml.folders import createFolder
    from UncertaintySegSlicer.mrml.runs import removeRun, tagRun
    from UncertaintySegSlicer.mrml.volumes import volumeFromNode

    scene, _ = mrml_scene
    shNode = scene.GetSubjectHierarchyNode()
    folder = createFolder(scene, "UncertaintySeg run")
    tagRun(scene, folder, [], "run 1")
    nodes = addFeatureMapFolder(folder, feature_map_run, scene=scene)
    case = test_case[0].name.split(".")[0]
    assert [node.GetName() for node in nodes] == [f"{case} model.0.conv.unit0 max", f"{case} model.2.1.conv.unit0 channel 0",
                                                  f"{case} model.2.1.conv.unit0 channel 2"]
    image = read_volume(test_case[0])
    for node in nodes:
        assert shNode.GetItemParent(shNode.GetItemByDataNode(node)) == folder
        assert node.GetDisplayNode().GetColorNodeID() == GREY
        back = volumeFromNode(node)
        assert back.array.shape == image.array.shape and back.geometry.matches(image.geometry, tolerance=1e-5)
    saved = read_volume(feature_map_run / "feature_maps" / "model.0.conv.unit0_max.nrrd").array
    assert np.allclose(volumeFromNode(nodes[0]).array, saved)
    display = nodes[0].GetDisplayNode()
    assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == pytest.approx((saved.min(), saved.max()), rel=1e-5)

    viridis = addFeatureMapNodes(scene, folder, {"layer_mean": np.ones((2, 3, 4))}, image.geometry, "x", colorMap="viridis")
    assert viridis[0].GetDisplayNode().GetColorNodeID() == "vtkMRMLColorTableNodeFileViridis.txt"
    with pytest.raises(ValueError, match="colorMap 'jet'"):
        addFeatureMapNodes(scene, folder, {"layer_mean": np.ones((2, 3, 4))}, image.geometry, "x", colorMap="jet")
    assert removeRun(scene, "run 1") == 1  # the maps go with their run
    assert all(scene.GetNodeByID(node.GetID()) is None for node in nodes + viridis)
