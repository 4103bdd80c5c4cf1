"""Stochastic models: the Probabilistic U-Net (prior/posterior nets, KL, ELBO, training) and `predict --method sample`."""

import csv
import json

import numpy as np
import pytest
import torch
from conftest import write_image

from UncertaintySegLib.cli import main
from UncertaintySegLib.predict.io import read_volume
from UncertaintySegLib.predict.model_loading import load_model
from UncertaintySegLib.predict.probabilistic_unet import ProbabilisticUNet, kl_divergence_gaussians
from UncertaintySegLib.training.train import TrainSettings, train

TINY = {"spatial_dims": 3, "in_channels": 1, "out_channels": 3, "channels": [4, 8], "strides": [2], "num_res_units": 0,
        "feature_channels": 4, "latent_dim": 3, "encoder_channels": [4, 8], "fcomb_channels": 8, "fcomb_layers": 2}


def tiny_network(seed=0):
    torch.manual_seed(seed)
    return ProbabilisticUNet(**TINY).eval()


@pytest.fixture(scope="module")
def prob_unet_dir(tmp_path_factory):
    """A tiny untrained ProbabilisticUNet saved as a state_dict + model.json (roi 16^3: several windows per case)."""
    folder = tmp_path_factory.mktemp("prob_unet")
    torch.save(tiny_network().state_dict(), folder / "model.pt")
    spec = {"name": "tiny-prob-unet", "class_names": ["background", "anterior", "posterior"], "roi_size": [16, 16, 16],
            "normalization": {"kind": "zscore"}, "network": {"name": "ProbabilisticUNet", "args": TINY}, "weights": "model.pt"}
    (folder / "model.json").write_text(json.dumps(spec))
    return folder


def predict(image, model, out, *extra):
    return main(["predict", "--image", str(image), "--model", str(model), "--out", str(out), "--progress", "none", *extra])


def test_forward_is_deterministic_and_samples_vary_but_repeat_under_a_seed():
    network = tiny_network()
    x = torch.randn(1, 1, 12, 12, 12)
    with torch.no_grad():
        assert torch.equal(network(x), network(x))
        torch.manual_seed(5)
        first = network.sample(x)
        second = network.sample(x)
        torch.manual_seed(5)
        again = network.sample(x)
    assert first.shape == (1, 3, 12, 12, 12)
    assert not torch.allclose(first, second)
    assert torch.equal(first, again)


def test_shared_latent_noise_keeps_one_draw_across_windows():
    network = tiny_network()
    x = torch.randn(1, 1, 12, 12, 12)
    with torch.no_grad():
        with network.shared_latent_noise():
            first, second = network.sample(x), network.sample(x)
        outside = network.sample(x), network.sample(x)
    assert torch.equal(first, second)  # the second window reuses the first window's noise
    assert not torch.allclose(*outside)
    assert network._shared_noise is None  # context left cleanly


def test_kl_of_gaussians_by_hand_and_against_torch():
    zero = torch.zeros(1, 2)
    assert torch.allclose(kl_divergence_gaussians(zero, zero, zero, zero), torch.zeros(1))
    # q = N(1, 1), p = N(0, 1) per dim: KL = 1/2 per dim; q = N(0, e^2), p = N(0, 1): KL = -1 + (e^2 - 1)/2
    assert torch.allclose(kl_divergence_gaussians(torch.ones(1, 2), zero, zero, zero), torch.tensor([1.0]))
    expected = -1 + (np.e ** 2 - 1) / 2
    assert torch.allclose(kl_divergence_gaussians(zero[:, :1], torch.ones(1, 1), zero[:, :1], zero[:, :1]),
                          torch.tensor([expected]))
    generator = torch.Generator().manual_seed(0)
    mu_q, ls_q, mu_p, ls_p = (torch.randn(4, 6, generator=generator) for _ in range(4))
    reference = torch.distributions.kl_divergence(torch.distributions.Normal(mu_q, ls_q.exp()),
                                                  torch.distributions.Normal(mu_p, ls_p.exp())).sum(-1)
    ours = kl_divergence_gaussians(mu_q, ls_q, mu_p, ls_p)
    assert torch.allclose(ours, reference, atol=1e-5) and (ours >= 0).all()


def test_elbo_loss_decreases_when_overfitting_one_case():
    network = tiny_network().train()
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(1, 1, 8, 8, 8, generator=generator)
    labels = (x[:, 0] > 0.5).long() + (x[:, 0] > 1.2).long()
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-2)
    losses = []
    torch.manual_seed(0)
    for _ in range(40):
        optimizer.zero_grad()
        loss = network.elbo_loss(x, labels, beta=0.1)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    reconstruction, kl = network.elbo_terms(x, labels[:, None])
    assert kl.item() >= 0 and reconstruction.item() > 0


def test_loads_from_model_json_with_weights_only(prob_unet_dir):
    model = load_model(prob_unet_dir)
    assert isinstance(model.network, ProbabilisticUNet) and not model.network.training
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model.network(x), tiny_network()(x))


def test_predict_sample_end_to_end_on_a_real_case(test_case, prob_unet_dir, tmp_path):
    image, _ = test_case
    assert predict(image, prob_unet_dir, tmp_path / "a", "--method", "sample", "--samples", "3", "--seed", "7") == 0
    record = json.loads((tmp_path / "a" / "run.json").read_text())
    assert record["sampling"] == {"method": "sample", "samples": 3, "seed": 7, "tta_axes": [0, 1, 2], "samples_drawn": 3}
    mi = read_volume(tmp_path / "a" / "mutual_information.nrrd").array
    assert mi.max() > 1e-4
    assert predict(image, prob_unet_dir, tmp_path / "b", "--method", "sample", "--samples", "3", "--seed", "7") == 0
    assert predict(image, prob_unet_dir, tmp_path / "c", "--method", "sample", "--samples", "3", "--seed", "8") == 0
    same = read_volume(tmp_path / "b" / "mutual_information.nrrd").array
    other = read_volume(tmp_path / "c" / "mutual_information.nrrd").array
    assert np.array_equal(mi, same) and not np.allclose(mi, other)
    assert np.array_equal(read_volume(tmp_path / "a" / "probabilities.nrrd").array,
                          read_volume(tmp_path / "b" / "probabilities.nrrd").array)


def test_sample_combines_with_ensemble_as_members_times_draws(prob_unet_dir, tmp_path):
    image = tmp_path / "image.nii.gz"
    write_image(image, np.random.default_rng(0).normal(100, 20, (20, 18, 15)).astype(np.float32))
    assert main(["predict", "--image", str(image), "--model", str(prob_unet_dir), str(prob_unet_dir), "--out", str(tmp_path / "o"),
                 "--progress", "none", "--method", "ensemble+sample", "--samples", "2"]) == 0
    assert json.loads((tmp_path / "o" / "run.json").read_text())["sampling"]["samples_drawn"] == 4


def test_sample_refused_for_a_model_without_sample(small_model_dir, tmp_path, capsys):
    image = tmp_path / "image.nii.gz"
    write_image(image, np.random.default_rng(0).normal(100, 20, (20, 18, 15)).astype(np.float32))
    assert predict(image, small_model_dir, tmp_path / "out", "--method", "sample", "--samples", "3") == 2
    error = capsys.readouterr().err
    assert "needs a stochastic model" in error and '"stochastic": true' in error
    assert not (tmp_path / "out").exists()


def test_model_declared_stochastic_is_drawn_through_its_forward(small_model_dir, tmp_path):
    folder = tmp_path / "declared"
    folder.mkdir()
    spec = json.loads((small_model_dir / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps({**spec, "stochastic": True}))
    (folder / "model.pt").write_bytes((small_model_dir / "model.pt").read_bytes())
    assert load_model(folder).spec.to_json()["stochastic"] is True
    image = tmp_path / "image.nii.gz"
    write_image(image, np.random.default_rng(0).normal(100, 20, (20, 18, 15)).astype(np.float32))
    assert predict(image, folder, tmp_path / "out", "--method", "sample", "--samples", "2") == 0
    assert json.loads((tmp_path / "out" / "run.json").read_text())["sampling"]["samples_drawn"] == 2
    # this UNet's forward is in fact deterministic: both draws agree, so there is no mutual information
    assert read_volume(tmp_path / "out" / "mutual_information.nrrd").array.max() < 1e-6


def test_train_probabilistic_unet_on_a_tiny_run(data_root, tmp_path):
    settings = TrainSettings(architecture="probabilistic_unet", loss="elbo", beta=0.1, latent_dim=2, epochs=2, patience=2,
                             channels=(4, 8), batch_size=4, name="tiny-prob", seed=1, max_cases=5,
                             patch_size=(32, 40, 32))
    summary = train(data_root, tmp_path / "out", settings)
    model = load_model(tmp_path / "out")
    assert isinstance(model.network, ProbabilisticUNet) and model.spec.network["args"]["latent_dim"] == 2
    assert "Probabilistic U-Net" in model.spec.description and summary["settings"]["loss"] == "elbo"
    log = list(csv.DictReader(open(tmp_path / "out" / "training_log.csv")))
    losses = [float(row["train_loss"]) for row in log]
    assert len(losses) == summary["members"][0]["epochs_run"] and all(np.isfinite(losses))
    assert 0.0 <= summary["members"][0]["best_validation_dice"] <= 1.0
    untrained = ProbabilisticUNet(**model.spec.network["args"])
    trained = model.network.state_dict()
    assert any(not torch.equal(trained[k].float(), v) for k, v in untrained.state_dict().items() if v.is_floating_point())


def test_train_refuses_elbo_for_a_unet_and_other_losses_for_a_probabilistic_unet(data_root, tmp_path, capsys):
    common = ["train", "--data-root", str(data_root), "--out", str(tmp_path / "out"), "--progress", "none"]
    assert main([*common, "--loss", "elbo"]) == 2
    assert main([*common, "--architecture", "probabilistic_unet", "--loss", "dice_ce"]) == 2
    assert capsys.readouterr().err.count("trains on its ELBO") == 2
    assert not (tmp_path / "out").exists()
