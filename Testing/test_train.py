"""`uncertaintyseg train`: real training on the real split, deterministic given the seed, whole outputs."""

import json

import numpy as np
import pytest
import torch

from UncertaintySegLib.common.errors import InputError
from UncertaintySegLib.predict.model_loading import load_model
from UncertaintySegLib.training.train import TrainSettings, place_in_roi, train


def test_place_in_roi_pads_centred_or_crops():
    image, label = np.ones((3, 5, 7), np.float32), np.ones((3, 5, 7), np.int64)
    padded, padded_label = place_in_roi(image, label, (5, 5, 5), None)
    assert padded.shape == (5, 5, 5) and padded[1:4, :, :].sum() == 3 * 5 * 5 and padded[0].sum() == 0
    assert np.array_equal(padded > 0, padded_label > 0)


TINY = TrainSettings(epochs=1, channels=(4, 8), batch_size=4, name="tiny", seed=3, max_cases=10)


@pytest.fixture(scope="module")
def tiny_runs(data_root, tmp_path_factory):
    """Two one-epoch runs of a tiny network with the same seed."""
    folders = [tmp_path_factory.mktemp("train") / "out" for _ in range(2)]
    summaries = [train(data_root, folder, TINY) for folder in folders]
    return folders, summaries


def test_training_writes_a_loadable_model_and_its_log(tiny_runs):
    (folder, _), (summary, _) = tiny_runs
    assert {p.name for p in folder.iterdir()} == {"model.json", "model.pt", "training_log.csv", "training_curve.png", "training_summary.json"}
    model = load_model(folder)
    assert model.spec.name == "tiny" and model.spec.class_names == ("background", "anterior", "posterior")
    member = summary["members"][0]
    assert member["training_cases"] + member["validation_cases"] == 10  # validation carved from the train cases
    assert json.loads((folder / "training_summary.json").read_text())["members"][0]["epochs_run"] == 1


def test_training_is_deterministic_given_the_seed(tiny_runs):
    (first, second), _ = tiny_runs
    a, b = torch.load(first / "model.pt", weights_only=True), torch.load(second / "model.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_an_ensemble_has_one_differently_seeded_member_per_file(data_root, tmp_path):
    summary = train(data_root, tmp_path / "ensemble", TINY, members=2)
    model = load_model(tmp_path / "ensemble")
    assert model.spec.weight_files == ("member_0.pt", "member_1.pt") and len(model.networks) == 2
    assert [m["seed"] for m in summary["members"]] == [3, 4]
    assert (tmp_path / "ensemble" / "training_curve_member_1.png").is_file()
    first, second = (next(network.parameters()) for network in model.networks)
    assert not torch.equal(first, second)


def test_collapsed_runs_are_set_aside_and_reported(data_root, tmp_path):
    from dataclasses import replace

    with pytest.raises(RuntimeError, match="below validation Dice 1.01"):
        train(data_root, tmp_path / "out", replace(TINY, min_validation_dice=1.01))
    assert not (tmp_path / "out").exists()
    summary = train(data_root, tmp_path / "kept", replace(TINY, min_validation_dice=0.0))
    assert summary["rejected"] == [] and [m["seed"] for m in summary["members"]] == [3]


def test_members_trained_at_once_match_members_trained_in_turn(data_root, tmp_path):
    at_once = train(data_root, tmp_path / "at_once", TINY, members=2, workers=2)
    in_turn = train(data_root, tmp_path / "in_turn", TINY, members=2)
    assert [m["seed"] for m in at_once["members"]] == [m["seed"] for m in in_turn["members"]] == [3, 4]
    for name in ("member_0.pt", "member_1.pt"):
        a = torch.load(tmp_path / "at_once" / name, weights_only=True)
        b = torch.load(tmp_path / "in_turn" / name, weights_only=True)
        assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-2) for k in a)


def test_collapsed_runs_trained_at_once_are_replaced_then_refused(data_root, tmp_path):
    from dataclasses import replace

    with pytest.raises(RuntimeError, match="below validation Dice 1.01"):
        train(data_root, tmp_path / "out", replace(TINY, min_validation_dice=1.01), members=2, workers=2)
    assert not (tmp_path / "out").exists()


def test_bad_worker_counts_are_refused(data_root, tmp_path):
    with pytest.raises(InputError, match="--workers 0"):
        train(data_root, tmp_path / "out", TINY, workers=0)


def test_channels_are_parsed_and_bad_ones_refused(capsys):
    from UncertaintySegLib.cli import build_parser

    args = build_parser().parse_args(["train", "--channels", "8,16,32,64", "--out", "x"])
    assert args.channels == (8, 16, 32, 64)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--channels", "8", "--out", "x"])
    assert "at least two positive integers" in capsys.readouterr().err
