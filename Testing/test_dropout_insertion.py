"""Dropout inserted into a trained MONAI UNet: where it goes, that weights still load, and retraining what follows it."""

import json

import pytest
import torch
from monai.networks.nets import UNet

from UncertaintySegLib.predict.dropout_insertion import insert_dropout, modules_after_dropout
from UncertaintySegLib.training.dropout_retraining import LEARNING_RATES, make_dropout_model
from UncertaintySegLib.common.errors import InputError
from UncertaintySegLib.predict.model_loading import load_model
from UncertaintySegLib.predict.sampling import dropout_layers, mc_dropout_mode
from synthetic_cases import blob_cases, digest

ARGS = {"spatial_dims": 3, "in_channels": 1, "out_channels": 3, "channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1}


def unet():
    torch.manual_seed(0)
    return UNet(**ARGS).eval()


@pytest.mark.parametrize("placement, expected", [
    ("decoder", ["model.1.submodule.2 (before)", "model.2 (before)", "model.2.1 (before)"]),
    ("center", ["model.1.submodule.0 (before)", "model.1.submodule.2 (after)"]),
])
def test_placements_wrap_the_intended_blocks(placement, expected):
    network = unet()
    keys = list(network.state_dict())
    assert dropout_layers(network) == []
    assert insert_dropout(network, placement, 0.5) == expected
    assert list(network.state_dict()) == keys  # weights of the original network load as they are
    assert len(dropout_layers(network)) == len(expected)


@pytest.mark.parametrize("placement", ["decoder", "center"])
def test_inserted_dropout_acts_only_in_mc_dropout_mode_and_at_its_blocks(placement):
    original, network = unet(), unet()
    insert_dropout(network, placement, 0.5)
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        assert torch.equal(network(x), original(x))  # eval mode: identity
        seen = []
        wrapped = [m for m in network.modules() if hasattr(m, "dropout_before")]
        for module in wrapped:  # registered after the dropout hook, so it sees the dropped-out input
            module.register_forward_pre_hook(lambda block, args: seen.append(float((args[0] == 0).float().mean())))
        with mc_dropout_mode(network):
            first, second = network(x), network(x)
    assert not torch.allclose(first, second)
    assert len(seen) == 2 * len(wrapped) and all(0.3 < fraction < 0.7 for fraction in seen)  # about p of the inputs zeroed


def test_bad_requests_are_refused():
    with pytest.raises(InputError, match="between 0 and 1"):
        insert_dropout(unet(), "decoder", 1.5)
    with pytest.raises(InputError, match="expected one of decoder, center"):
        insert_dropout(unet(), "everywhere", 0.1)
    with pytest.raises(InputError, match="MONAI UNet, found Conv3d"):
        insert_dropout(torch.nn.Conv3d(1, 3, 1), "decoder", 0.1)
    network = unet()
    insert_dropout(network, "center", 0.1)
    with pytest.raises(InputError, match="already inserted"):
        insert_dropout(network, "center", 0.1)


@pytest.fixture
def model_dir(tmp_path):
    folder = tmp_path / "plain"
    folder.mkdir()
    torch.save(unet().state_dict(), folder / "model.pt")
    spec = {"name": "plain", "class_names": ["background", "a", "b"], "roi_size": [16, 16, 16],
            "normalization": {"kind": "zscore"}, "network": {"name": "UNet", "args": ARGS}, "weights": "model.pt"}
    (folder / "model.json").write_text(json.dumps(spec))
    return folder


def test_model_with_inserted_dropout_is_written_and_loads(model_dir, tmp_path):
    before = digest(model_dir)
    summary = make_dropout_model(str(model_dir), "decoder", 0.2, tmp_path / "out")
    assert digest(model_dir) == before  # the original is untouched
    spec = json.loads((tmp_path / "out" / "model.json").read_text())
    assert spec["inserted_dropout"] == {"placement": "decoder", "p": 0.2, "retrained": False}
    assert spec["name"] == "plain-dropout-decoder" and "not retrained" in spec["description"]
    assert summary["members"][0]["modules"] == ["model.1.submodule.2 (before)", "model.2 (before)", "model.2.1 (before)"]
    loaded = load_model(tmp_path / "out")
    assert len(dropout_layers(loaded.network)) == 3
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        assert torch.allclose(loaded.network(x), load_model(model_dir).network(x))  # same weights, identity in eval mode


def test_retraining_updates_only_the_blocks_after_the_dropout(model_dir, tmp_path):
    summary = make_dropout_model(str(model_dir), "decoder", 0.1, tmp_path / "out", retrain_cases=blob_cases(), loss="dice_ce", epochs=2)
    record = summary["members"][0]
    assert record["retrained"] is True and record["learning_rate"] in LEARNING_RATES
    assert set(record["holdout_nll_by_learning_rate"]) == {"0.001", "0.0001", "1e-05"}
    assert record["holdout_nll_after"] <= record["holdout_nll_before"]
    assert (record["fit_cases"], record["holdout_cases"]) == (4, 1)
    original, retrained = load_model(model_dir).network, load_model(tmp_path / "out").network
    after = {id(p) for block in modules_after_dropout(retrained, "decoder") for p in block.parameters()}
    names_after = {name for name, p in retrained.named_parameters() if id(p) in after}
    original_state, retrained_state = original.state_dict(), retrained.state_dict()
    for name in original_state:
        same = torch.equal(original_state[name], retrained_state[name])
        if name not in names_after:
            assert same, f"{name} is before the dropout and must not change"
    if record["learning_rate"] and record["holdout_nll_after"] < record["holdout_nll_before"]:
        assert any(not torch.equal(original_state[n], retrained_state[n]) for n in names_after)
    assert json.loads((tmp_path / "out" / "model.json").read_text())["inserted_dropout"]["retrained"] is True


def test_retraining_needs_the_training_loss(model_dir, tmp_path):
    with pytest.raises(InputError, match="--loss"):
        make_dropout_model(str(model_dir), "center", 0.1, tmp_path / "out", retrain_cases=blob_cases(2))
    assert not (tmp_path / "out").exists()
