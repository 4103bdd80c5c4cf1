"""Model specs and loaders: MONAI network + state_dict, TorchScript, MONAI bundle; clear errors."""

import json
import shutil

import pytest
import torch

from UncertaintySegLib.common.errors import ModelError
from UncertaintySegLib.predict.models import spec_from_json
from UncertaintySegLib.predict.model_loading import bundled_model_names, load_model


def forward(model, shape=(1, 1, 16, 16, 16)):
    with torch.no_grad():
        return model.network(torch.ones(shape))


def test_monai_network_with_state_dict(small_model_dir):
    model = load_model(small_model_dir)
    assert model.spec.class_names == ("background", "a", "b")
    assert forward(model).shape == (1, 3, 16, 16, 16)
    assert load_model(small_model_dir / "model.json").spec == model.spec


def test_bundled_default_model_loads_by_name():
    assert "hippocampus" in bundled_model_names()
    model = load_model("hippocampus")
    assert model.spec.num_classes == 3 and forward(model, (1, 1, 48, 64, 48)).shape == (1, 3, 48, 64, 48)


def test_torchscript_file_with_spec_beside_it(small_model_dir, tmp_path):
    network = load_model(small_model_dir).network
    folder = tmp_path / "ts"
    folder.mkdir()
    torch.jit.script(network).save(str(folder / "net.ts"))
    spec = json.loads((small_model_dir / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps({**spec, "format": "torchscript", "weights": "net.ts", "network": None}))
    by_file, by_folder = load_model(folder / "net.ts"), load_model(folder)
    assert torch.allclose(forward(by_file), forward(load_model(small_model_dir)), atol=1e-6)
    assert torch.allclose(forward(by_folder), forward(by_file))


def test_torchscript_without_spec_says_to_write_one(small_model_dir, tmp_path):
    torch.jit.script(load_model(small_model_dir).network).save(str(tmp_path / "net.ts"))
    with pytest.raises(ModelError, match="no model.json beside it"):
        load_model(tmp_path / "net.ts")


def test_monai_bundle_folder(small_model_dir, tmp_path):
    spec = json.loads((small_model_dir / "model.json").read_text())
    bundle = tmp_path / "bundle"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "models").mkdir()
    shutil.copy(small_model_dir / "model.pt", bundle / "models" / "model.pt")
    inference = {
        "network_def": {"_target_": "UNet", **spec["network"]["args"]},
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [16, 16, 16]},
        "preprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "LoadImaged", "keys": "image"},
            {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": -57, "a_max": 164, "b_min": 0.0, "b_max": 1.0, "clip": True}]},
        "postprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "Activationsd", "keys": "pred", "softmax": True},
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True}]},
    }
    (bundle / "configs" / "inference.json").write_text(json.dumps(inference))
    (bundle / "configs" / "metadata.json").write_text(json.dumps({"name": "toy bundle", "network_data_format": {
        "inputs": {"image": {"num_channels": 1}},
        "outputs": {"pred": {"num_channels": 3, "channel_def": {"0": "background", "1": "liver", "2": "tumour"}}}}}))
    model = load_model(bundle)
    assert model.spec.class_names == ("background", "liver", "tumour")
    assert model.spec.roi_size == (16, 16, 16) and model.spec.activation == "softmax"
    assert model.spec.normalization == {"kind": "range", "a_min": -57, "a_max": 164, "b_min": 0.0, "b_max": 1.0, "clip": True}
    assert torch.allclose(forward(model), forward(load_model(small_model_dir)))  # raw logits: no argmax


def test_file_that_is_not_a_model(small_model_dir, tmp_path):
    folder = tmp_path / "broken"
    shutil.copytree(small_model_dir, folder)
    (folder / "model.pt").write_text("definitely not weights")
    with pytest.raises(ModelError, match="not a PyTorch state_dict"):
        load_model(folder)
    (tmp_path / "net.ts").write_bytes(b"\x00garbage")
    spec = json.loads((small_model_dir / "model.json").read_text())
    (tmp_path / "model.json").write_text(json.dumps({**spec, "format": "torchscript", "weights": "net.ts"}))
    with pytest.raises(ModelError, match="not a TorchScript model"):
        load_model(tmp_path / "net.ts")


def test_weights_that_do_not_fit_the_network(small_model_dir, tmp_path):
    folder = tmp_path / "mismatch"
    shutil.copytree(small_model_dir, folder)
    spec = json.loads((folder / "model.json").read_text())
    spec["network"]["args"]["channels"] = [8, 16]
    (folder / "model.json").write_text(json.dumps(spec))
    with pytest.raises(ModelError, match="do not fit the network UNet"):
        load_model(folder)


def test_unknown_model_name_lists_the_bundled_ones():
    with pytest.raises(ModelError, match="hippocampus"):
        load_model("no-such-model")


@pytest.mark.parametrize("change, message", [
    ({"class_names": ["only"]}, "at least 2 classes"),
    ({"activation": "relu"}, "activation: expected 'softmax' or 'sigmoid', found 'relu'"),
    ({"roi_size": [16, 16]}, "3-D model"),
    ({"normalization": {"kind": "magic"}}, "normalization.kind"),
    ({"colour": "red"}, "unknown field"),
    ({"network": None}, "needs 'network'"),
])
def test_spec_validation_says_what_is_wrong(change, message):
    base = {"name": "m", "class_names": ["bg", "fg"], "network": {"name": "UNet", "args": {}}}
    with pytest.raises(ModelError, match=message):
        spec_from_json({**base, **change})


def test_ensemble_spec_loads_every_member_and_predict_averages_them(small_model_dir, tmp_path):
    import numpy as np

    from UncertaintySegLib.predict.io import Geometry, Volume
    from UncertaintySegLib.predict.pipeline import predict_volume

    folder = tmp_path / "ensemble"
    folder.mkdir()
    spec = json.loads((small_model_dir / "model.json").read_text())
    for seed in (1, 2):
        torch.manual_seed(seed)
        network = load_model(small_model_dir).network
        for parameter in network.parameters():
            parameter.data.normal_(0, 0.3)
        torch.save({k: v.half() for k, v in network.state_dict().items()}, folder / f"member_{seed}.pt")  # float16 on disk
    (folder / "model.json").write_text(json.dumps({**spec, "weights": ["member_1.pt", "member_2.pt"]}))
    ensemble = load_model(folder)
    assert len(ensemble.networks) == 2 and ensemble.spec.weight_files == ("member_1.pt", "member_2.pt")
    assert all(p.dtype == torch.float32 for p in ensemble.networks[0].parameters())
    volume = Volume(np.random.default_rng(0).random((12, 14, 10)).astype(np.float32),
                    Geometry((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)))
    members = []
    for network in ensemble.networks:
        single = load_model(small_model_dir)
        single.networks = [network]
        members.append(predict_volume(volume, single, device="cpu").probabilities)
    assert not np.allclose(members[0], members[1], atol=1e-3)
    averaged = predict_volume(volume, ensemble, device="cpu").probabilities
    assert np.allclose(averaged, (members[0] + members[1]) / 2, atol=1e-6)


def test_ensemble_member_that_is_missing(small_model_dir, tmp_path):
    folder = tmp_path / "ensemble"
    shutil.copytree(small_model_dir, folder)
    spec = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps({**spec, "weights": ["model.pt", "member_9.pt"]}))
    with pytest.raises(ModelError, match="member_9.pt"):
        load_model(folder)
