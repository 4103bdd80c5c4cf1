"""MC dropout, ensembles, TTA and streaming aggregation on hand-computed cases and toy networks."""

import math

import numpy as np
import pytest
import torch

from UncertaintySegLib.common.errors import InputError
from UncertaintySegLib.predict.io import Geometry, Volume
from UncertaintySegLib.predict.models import LoadedModel, ModelSpec
from UncertaintySegLib.predict.pipeline import predict_volume
from UncertaintySegLib.predict.sampling import SamplingPlan, dropout_layers, parse_method, sample_probabilities
from UncertaintySegLib.predict.uncertainty import StreamingMoments, predictive_entropy

SPEC = ModelSpec(name="toy", class_names=("background", "a", "b"), roi_size=(8, 8, 8), normalization={"kind": "none"})


def moments_of(samples):
    moments = StreamingMoments()
    for sample in samples:
        moments.update(sample.clone())
    return moments


def test_entropy_and_mutual_information_by_hand():
    certain_a = torch.tensor([[1.0], [0.0]])  # (C=2, V=1)
    certain_b = torch.tensor([[0.0], [1.0]])
    maps = moments_of([certain_a, certain_b]).maps()
    assert torch.allclose(maps["probabilities"], torch.tensor([[0.5], [0.5]]))
    assert maps["entropy"].item() == pytest.approx(math.log(2), abs=1e-6)  # total
    assert maps["expected_entropy"].item() == pytest.approx(0.0, abs=1e-6)  # each sample is certain
    assert maps["mutual_information"].item() == pytest.approx(math.log(2), abs=1e-6)  # all of it is disagreement
    assert torch.allclose(maps["variance"], torch.tensor([[0.25], [0.25]]))


def test_mutual_information_is_zero_when_samples_agree():
    sample = torch.softmax(torch.randn(3, 50), dim=0)
    maps = moments_of([sample] * 7).maps()
    assert torch.allclose(maps["mutual_information"], torch.zeros(50), atol=1e-6)
    assert torch.allclose(maps["expected_entropy"], predictive_entropy(sample), atol=1e-6)
    assert torch.allclose(maps["variance"], torch.zeros(3, 50), atol=1e-7)


def test_welford_matches_the_stacked_computation():
    generator = torch.Generator().manual_seed(0)
    stacked = torch.softmax(torch.randn(20, 4, 6, 5, 3, generator=generator) * 3, dim=1)  # (S, C, *spatial)
    maps = moments_of(list(stacked)).maps()
    mean = stacked.double().mean(0)
    expected_entropy = torch.special.entr(stacked.double()).sum(1).mean(0)
    assert torch.allclose(maps["probabilities"].double(), mean, atol=1e-6)
    assert torch.allclose(maps["variance"].double(), stacked.double().var(0, unbiased=False), atol=1e-6)
    assert torch.allclose(maps["expected_entropy"].double(), expected_entropy, atol=1e-6)
    assert torch.allclose(maps["mutual_information"].double(), predictive_entropy(mean) - expected_entropy, atol=1e-6)


class DropoutNet(torch.nn.Module):
    """Pointwise (1x1x1) network with batch-norm and dropout: flip-equivariant, stochastic only through dropout."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv3d(1, 8, 1)
        self.norm = torch.nn.BatchNorm3d(8)
        self.dropout = torch.nn.Dropout(0.5)
        self.head = torch.nn.Conv3d(8, 3, 1)
        self.norm.running_mean.fill_(0.3)
        self.norm.running_var.fill_(2.0)

    def forward(self, x):
        return self.head(self.dropout(torch.relu(self.norm(self.conv(x)))))


def asymmetric_image(shape=(10, 12, 9)):
    """(1, I, J, K) image with a different value at every voxel, so any misalignment shows."""
    return np.arange(np.prod(shape), dtype=np.float32).reshape(1, *shape) / np.prod(shape) * 4 - 2


def test_mc_dropout_is_reproducible_and_varies_across_samples():
    network = DropoutNet().eval()
    plan = SamplingPlan(methods=parse_method("mc_dropout"), samples=5, seed=3)
    samples = []
    first, timings = sample_probabilities([network], SPEC, asymmetric_image(), plan, device="cpu",
                                          on_sample=lambda index, label, p: samples.append(p.clone()))
    again, _ = sample_probabilities([network], SPEC, asymmetric_image(), plan, device="cpu")
    other_seed, _ = sample_probabilities([network], SPEC, asymmetric_image(), SamplingPlan(parse_method("mc_dropout"), 5, seed=4), device="cpu")
    assert timings["samples"] == len(samples) == 5
    assert torch.equal(first.mean, again.mean)
    assert not torch.allclose(first.mean, other_seed.mean)
    assert not torch.allclose(samples[0], samples[1])
    assert float(first.maps()["mutual_information"].mean()) > 1e-4


def test_mc_dropout_leaves_batch_norm_in_eval_mode_and_restores_modes():
    network = DropoutNet().train()
    running_mean, running_var = network.norm.running_mean.clone(), network.norm.running_var.clone()
    modes = []
    network.norm.register_forward_hook(lambda module, args, output: modes.append((module.training, network.dropout.training)))
    sample_probabilities([network], SPEC, asymmetric_image(), SamplingPlan(parse_method("mc_dropout"), samples=3), device="cpu")
    assert modes and all(mode == (False, True) for mode in modes)  # batch-norm eval, dropout on, in every pass
    assert torch.equal(network.norm.running_mean, running_mean) and torch.equal(network.norm.running_var, running_var)
    assert network.training and network.norm.training and network.dropout.training  # caller's modes are back


def test_softmax_is_deterministic_even_with_dropout_layers():
    network = DropoutNet().eval()
    plan = SamplingPlan(methods=parse_method("softmax"))
    first, _ = sample_probabilities([network], SPEC, asymmetric_image(), plan, device="cpu")
    second, _ = sample_probabilities([network], SPEC, asymmetric_image(), plan, device="cpu")
    assert first.count == 1 and torch.equal(first.mean, second.mean)


def test_tta_flips_back_onto_the_input_grid():
    network = DropoutNet().eval()
    image = asymmetric_image()
    plain, _ = sample_probabilities([network], SPEC, image, SamplingPlan(parse_method("softmax")), device="cpu")
    flips = []
    tta, timings = sample_probabilities([network], SPEC, image, SamplingPlan(parse_method("tta"), tta_axes=(0, 2)), device="cpu",
                                        on_sample=lambda index, label, p: flips.append((label, p.clone())))
    assert [label for label, _ in flips] == ["flip none", "flip I", "flip K", "flip I+K"]
    for label, probabilities in flips:  # a pointwise network is flip-equivariant: every flipped-back sample equals the plain pass
        assert torch.allclose(probabilities, plain.mean, atol=1e-5), label
    assert not torch.allclose(torch.flip(plain.mean, dims=[1]), plain.mean, atol=1e-3)  # misalignment would have shown
    assert torch.allclose(tta.maps()["mutual_information"], torch.zeros(image.shape[1:]), atol=1e-5)


def test_ensemble_uses_every_member_and_sliding_windows_cover_large_volumes():
    members = [DropoutNet().eval(), DropoutNet().eval()]
    with torch.no_grad():
        members[1].head.bias.add_(torch.tensor([2.0, 0.0, 0.0]))
    image = asymmetric_image((20, 17, 11))  # larger than the 8^3 window
    moments, timings = sample_probabilities(members, SPEC, image, SamplingPlan(parse_method("ensemble")), device="cpu")
    singles = [sample_probabilities([m], SPEC, image, SamplingPlan(parse_method("softmax")), device="cpu")[0].mean for m in members]
    assert timings["samples"] == 2
    assert torch.allclose(moments.mean, (singles[0] + singles[1]) / 2, atol=1e-6)
    assert moments.mean.shape == (3, 20, 17, 11)


def test_ensemble_with_mc_dropout_and_tta_draws_the_product():
    members = [DropoutNet().eval(), DropoutNet().eval()]
    plan = SamplingPlan(parse_method("ensemble+mc_dropout+tta"), samples=3, tta_axes=(1,))
    labels = []
    sample_probabilities(members, SPEC, asymmetric_image(), plan, device="cpu", on_sample=lambda i, label, p: labels.append(label))
    assert len(labels) == plan.count(2) == 2 * 2 * 3
    assert labels[0] == "member 1/2, flip none, MC dropout sample 1/3" and labels[-1] == "member 2/2, flip J, MC dropout sample 3/3"


@pytest.mark.parametrize("method, message", [("dropout", "unknown method"), ("softmax+tta", "combines with nothing"), ("", "unknown method")])
def test_bad_methods_say_what_is_expected(method, message):
    with pytest.raises(InputError, match=message):
        parse_method(method)


def test_methods_the_model_cannot_do_are_refused():
    without_dropout = torch.nn.Conv3d(1, 3, 1)
    with pytest.raises(InputError, match="needs dropout layers.*--insert-dropout"):
        sample_probabilities([without_dropout], SPEC, asymmetric_image(), SamplingPlan(parse_method("mc_dropout")), device="cpu")
    with pytest.raises(InputError, match="several members"):
        sample_probabilities([without_dropout], SPEC, asymmetric_image(), SamplingPlan(parse_method("ensemble")), device="cpu")
    with pytest.raises(InputError, match="at least 1"):
        SamplingPlan(parse_method("mc_dropout"), samples=0)
    with pytest.raises(InputError, match="TTA axes"):
        SamplingPlan(parse_method("tta"), tta_axes=(0, 3))


def test_predict_volume_writes_sample_maps_only_for_several_samples():
    model = LoadedModel(spec=SPEC, networks=[DropoutNet().eval()], source="toy")
    volume = Volume(asymmetric_image()[0], Geometry(spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=tuple(np.eye(3).ravel())))
    single = predict_volume(volume, model, device="cpu")
    sampled = predict_volume(volume, model, device="cpu", plan=SamplingPlan(parse_method("mc_dropout"), samples=4))
    assert single.sample_maps() == {} and single.sampling["method"] == "softmax"
    assert set(sampled.sample_maps()) == {"expected_entropy", "mutual_information", "variance"}
    assert sampled.sampling == {"method": "mc_dropout", "samples": 4, "seed": 0, "tta_axes": [0, 1, 2], "samples_drawn": 4}
    assert sampled.variance.shape == (3, 10, 12, 9) and sampled.mutual_information.shape == (10, 12, 9)
    assert dropout_layers(model.network) == ["dropout"]


def test_tta_on_axes_the_model_was_not_trained_for_is_flagged():
    from dataclasses import replace

    from UncertaintySegLib.predict.sampling import tta_warning

    plan = SamplingPlan(parse_method("tta"), tta_axes=(0, 2))
    assert "does not declare flip_axes" in tta_warning(plan, SPEC) and "[0, 2]" in tta_warning(plan, SPEC)
    assert "[2]" in tta_warning(plan, replace(SPEC, flip_axes=(0,)))
    assert tta_warning(plan, replace(SPEC, flip_axes=(0, 1, 2))) is None
    assert tta_warning(SamplingPlan(parse_method("mc_dropout")), SPEC) is None
    model = LoadedModel(spec=SPEC, networks=[DropoutNet().eval()], source="toy")
    volume = Volume(asymmetric_image()[0], Geometry(spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=tuple(np.eye(3).ravel())))
    assert "warning" in predict_volume(volume, model, device="cpu", plan=plan).sampling
